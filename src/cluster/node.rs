//! One node as the others see it, and the live set: each node writes `{name}:node:{id}` (its
//! record, with a TTL) at every heartbeat and keeps its id in the set `{name}:nodes`; a node
//! whose record expired is dead and leaves the lists (and the set).

use std::net::SocketAddr;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// Longest node record read back (a few URLs).
const MAX_RECORD: usize = 4_096;
/// Nodes listed at most: the torrents name each one.
pub const MAX_NODES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// `http(s)://host[:port]`: its tracker at `/announce`, its web seed at `/files/`.
    pub base_url: String,
    /// `udp://host:port/announce`, when it names one.
    pub udp_announce: Option<String>,
    /// Its seeder.
    pub peer: SocketAddr,
}

pub fn key(name: &str, id: &str) -> String {
    format!("{name}:node:{id}")
}

fn set_key(name: &str) -> String {
    format!("{name}:nodes")
}

/// Writes this node's record for `ttl_ms`.
pub async fn heartbeat(
    conn: &mut ConnectionManager,
    name: &str,
    me: &NodeInfo,
    ttl_ms: u64,
) -> redis::RedisResult<()> {
    let record = serde_json::to_string(me).unwrap_or_default();
    redis::pipe()
        .set(key(name, &me.id), record)
        .arg("PX")
        .arg(ttl_ms)
        .ignore()
        .sadd(set_key(name), &me.id)
        .ignore()
        .query_async(conn)
        .await
}

/// Removes this node's record (clean shutdown: the others drop it at once).
pub async fn leave(conn: &mut ConnectionManager, name: &str, id: &str) -> redis::RedisResult<()> {
    redis::pipe()
        .del(key(name, id))
        .ignore()
        .srem(set_key(name), id)
        .ignore()
        .query_async(conn)
        .await
}

/// The live nodes, sorted by id.
pub async fn live(conn: &mut ConnectionManager, name: &str) -> redis::RedisResult<Vec<NodeInfo>> {
    let mut ids: Vec<String> = conn.smembers(set_key(name)).await?;
    ids.sort();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| key(name, id)).collect();
    let records: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
    let mut nodes = Vec::new();
    let mut dead = Vec::new();
    for (id, record) in ids.iter().zip(records) {
        let node = record
            .filter(|r| r.len() <= MAX_RECORD)
            .and_then(|r| serde_json::from_slice::<NodeInfo>(&r).ok())
            .filter(|n| &n.id == id);
        match node {
            Some(n) if nodes.len() < MAX_NODES => nodes.push(n),
            Some(_) => {}
            None => dead.push(id.clone()),
        }
    }
    if !dead.is_empty() {
        let _: () = conn.srem(set_key(name), &dead).await?;
    }
    Ok(nodes)
}
