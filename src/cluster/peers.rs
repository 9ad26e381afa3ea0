//! Peers across nodes. The hot path stays local: every node answers announces from its own
//! memory. Each node sends its announces (taken from the tracker's shard outboxes) every
//! `batch_ms` as one entry of the stream `{name}:announces` (capped length), and reads the
//! others' entries into its swarms. The stream keeps the last 30 s (trimmed by entry id, which
//! is Redis's own clock, so the nodes' clocks do not matter). Every `reconcile_secs` each node also writes a snapshot of
//! the peers it heard itself (`{name}:snap:{node}`, with their ages) and reads the others':
//! that covers entries it missed (Redis away, the stream trimmed) and a Redis restart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::streams::StreamReadReply;
use redis::Value;

use super::codec;
use crate::tracker::{InfoHash, PeerDelta};

/// Stream entries kept (approximately) until a node knows Redis's clock.
const STREAM_LEN: usize = 1_000;
/// Then: milliseconds of history kept. A node away longer reads the snapshots instead.
const STREAM_KEEP_MS: u64 = 30_000;
/// Entries read per call.
const READ_COUNT: usize = 64;
/// Snapshot chunks read per node (each up to 65,535 peers).
const MAX_CHUNKS: usize = 64;
/// Longest stream entry or snapshot chunk accepted.
const MAX_BLOB: usize = 3 + codec::MAX_RECORDS * 41;

pub fn stream_key(name: &str) -> String {
    format!("{name}:announces")
}

fn snap_key(name: &str, node: &str) -> String {
    format!("{name}:snap:{node}")
}

/// The peers this node heard itself, with when: what its snapshot holds.
#[derive(Default)]
pub struct Heard {
    peers: Mutex<HashMap<(InfoHash, SocketAddr), (bool, Instant)>>,
}

impl Heard {
    pub fn record(&self, deltas: &[PeerDelta], now: Instant) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        for d in deltas {
            if d.stopped {
                peers.remove(&(d.info_hash, d.peer));
            } else {
                peers.insert((d.info_hash, d.peer), (d.seeder, now));
            }
        }
    }

    /// Forgets peers older than `max_age`; returns the others with their ages.
    pub fn snapshot(&self, now: Instant, max_age: Duration) -> Vec<PeerDelta> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.retain(|_, (_, at)| now.saturating_duration_since(*at) <= max_age);
        peers
            .iter()
            .map(|((info_hash, peer), (seeder, at))| PeerDelta {
                info_hash: *info_hash,
                peer: *peer,
                seeder: *seeder,
                stopped: false,
                age_secs: now
                    .saturating_duration_since(*at)
                    .as_secs()
                    .min(u64::from(u16::MAX)) as u16,
            })
            .collect()
    }
}

/// Appends `deltas` to the stream, as this node's, trimming entries older than
/// [`STREAM_KEEP_MS`] before the last entry this node added (`last_ms`, Redis's clock: the
/// ids it gives; no trim by age before the first). Returns the new last entry's milliseconds.
pub async fn send(
    conn: &mut ConnectionManager,
    name: &str,
    node: &str,
    deltas: &[PeerDelta],
    last_ms: Option<u64>,
) -> redis::RedisResult<Option<u64>> {
    let mut pipe = redis::pipe();
    for chunk in deltas.chunks(codec::MAX_RECORDS) {
        let xadd = pipe.cmd("XADD").arg(stream_key(name));
        match last_ms {
            Some(ms) => xadd
                .arg("MINID")
                .arg("~")
                .arg(ms.saturating_sub(STREAM_KEEP_MS)),
            None => xadd.arg("MAXLEN").arg("~").arg(STREAM_LEN),
        };
        xadd.arg("*")
            .arg("n")
            .arg(node)
            .arg("d")
            .arg(codec::encode(chunk));
    }
    let ids: Vec<String> = pipe.query_async(conn).await?;
    Ok(ids.last().and_then(|id| id.split('-').next()?.parse().ok()))
}

/// Reads the entries after `last` (blocking up to `block`), returns the other nodes' deltas and
/// moves `last` on. `last` starts as `$` (only what comes next).
pub async fn receive(
    conn: &mut ConnectionManager,
    name: &str,
    me: &str,
    last: &mut String,
    block: Duration,
) -> redis::RedisResult<Vec<PeerDelta>> {
    let reply: Option<StreamReadReply> = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(READ_COUNT)
        .arg("BLOCK")
        .arg(block.as_millis() as u64)
        .arg("STREAMS")
        .arg(stream_key(name))
        .arg(&*last)
        .query_async(conn)
        .await?;
    let mut out = Vec::new();
    for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
        *last = entry.id.clone();
        let from = match entry.map.get("n") {
            Some(Value::BulkString(n)) => n.as_slice(),
            _ => continue,
        };
        if from == me.as_bytes() {
            continue;
        }
        if let Some(Value::BulkString(blob)) = entry.map.get("d") {
            match blob_deltas(blob) {
                Ok(d) => out.extend(d),
                Err(e) => tracing::debug!("cluster: entry {} skipped: {e}", entry.id),
            }
        }
    }
    Ok(out)
}

fn blob_deltas(blob: &[u8]) -> Result<Vec<PeerDelta>, codec::CodecError> {
    if blob.len() > MAX_BLOB {
        return Err(codec::CodecError::Length(blob.len()));
    }
    codec::decode(blob)
}

/// Replaces this node's snapshot with `peers`, kept for `ttl`.
pub async fn write_snapshot(
    conn: &mut ConnectionManager,
    name: &str,
    node: &str,
    peers: &[PeerDelta],
    ttl: Duration,
) -> redis::RedisResult<()> {
    let key = snap_key(name, node);
    let mut pipe = redis::pipe();
    pipe.atomic().del(&key).ignore();
    for (i, chunk) in peers
        .chunks(codec::MAX_RECORDS)
        .take(MAX_CHUNKS)
        .enumerate()
    {
        pipe.hset(&key, i, codec::encode(chunk)).ignore();
    }
    pipe.pexpire(&key, ttl.as_millis() as i64).ignore();
    pipe.query_async(conn).await
}

/// The peers in `node`'s snapshot.
pub async fn read_snapshot(
    conn: &mut ConnectionManager,
    name: &str,
    node: &str,
) -> redis::RedisResult<Vec<PeerDelta>> {
    let chunks: Vec<(u32, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(snap_key(name, node))
        .query_async(conn)
        .await?;
    let mut out = Vec::new();
    for (_, blob) in chunks.into_iter().take(MAX_CHUNKS) {
        match blob_deltas(&blob) {
            Ok(d) => out.extend(d),
            Err(e) => tracing::debug!("cluster: snapshot of {node} skipped: {e}"),
        }
    }
    Ok(out)
}
