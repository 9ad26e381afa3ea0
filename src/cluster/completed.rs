//! Completed counts across nodes. Each node's own count per swarm stays in its SQLite store
//! (the tracker's, as on one node) and is copied into the Redis hash
//! `{name}:completed:{node}`; a node's count shown to clients is its own plus the sum of the
//! others'. Writes are a "raise to at least" script, so they are idempotent (a retried write
//! counts nothing twice) and monotonic. After Redis comes back empty each node writes its own
//! counts again, and the others' from its last reading, so a node that died meanwhile loses
//! nothing either.

use std::collections::HashMap;

use redis::aio::ConnectionManager;

use crate::tracker::InfoHash;

/// Nodes whose counts are read (the set is never pruned: a dead node's completions still count).
const MAX_NODES: usize = 256;

/// Sets each field to the given count when it is higher than the stored one.
const RAISE: &str = r"
for i = 1, #ARGV, 2 do
  local now = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if now < tonumber(ARGV[i + 1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 0";

/// Fields written per script call.
const CHUNK: usize = 1_000;

fn key(name: &str, node: &str) -> String {
    format!("{name}:completed:{node}")
}

fn set_key(name: &str) -> String {
    format!("{name}:completed_nodes")
}

/// Raises `node`'s stored counts to `counts`.
pub async fn raise(
    conn: &mut ConnectionManager,
    name: &str,
    node: &str,
    counts: &HashMap<InfoHash, u64>,
) -> redis::RedisResult<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let script = redis::Script::new(RAISE);
    let all: Vec<(&InfoHash, &u64)> = counts.iter().collect();
    for chunk in all.chunks(CHUNK) {
        let mut invocation = script.key(key(name, node));
        for (hash, n) in chunk {
            invocation.arg(hash.as_bytes().as_slice()).arg(**n);
        }
        let _: i64 = invocation.invoke_async(conn).await?;
    }
    let _: i64 = redis::cmd("SADD")
        .arg(set_key(name))
        .arg(node)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Every node's stored counts (this one's included).
pub async fn read_all(
    conn: &mut ConnectionManager,
    name: &str,
) -> redis::RedisResult<HashMap<String, HashMap<InfoHash, u64>>> {
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(set_key(name))
        .query_async(conn)
        .await?;
    let mut out = HashMap::new();
    for node in nodes.into_iter().take(MAX_NODES) {
        let raw: Vec<(Vec<u8>, u64)> = redis::cmd("HGETALL")
            .arg(key(name, &node))
            .query_async(conn)
            .await?;
        let counts = raw
            .into_iter()
            .filter_map(|(h, n)| Some((InfoHash::from_slice(&h)?, n)))
            .collect();
        out.insert(node, counts);
    }
    Ok(out)
}

/// The sum over the nodes other than `me`.
pub fn others(all: &HashMap<String, HashMap<InfoHash, u64>>, me: &str) -> HashMap<InfoHash, u64> {
    let mut sum: HashMap<InfoHash, u64> = HashMap::new();
    for (node, counts) in all {
        if node != me {
            for (h, n) in counts {
                let e = sum.entry(*h).or_default();
                *e = e.saturating_add(*n);
            }
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn others_sums_every_node_but_this_one() {
        let all = HashMap::from([
            (
                "a".to_string(),
                HashMap::from([(InfoHash::new([1; 20]), 2), (InfoHash::new([2; 20]), 1)]),
            ),
            (
                "b".to_string(),
                HashMap::from([(InfoHash::new([1; 20]), 3)]),
            ),
            (
                "me".to_string(),
                HashMap::from([(InfoHash::new([1; 20]), 100)]),
            ),
        ]);
        let sum = others(&all, "me");
        assert_eq!(
            sum,
            HashMap::from([(InfoHash::new([1; 20]), 5), (InfoHash::new([2; 20]), 1)])
        );
    }
}
