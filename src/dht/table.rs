//! The routing table (BEP 5): up to K nodes for each length of id prefix shared with ours, so
//! it knows many nodes near us and a few far away, and never more than 160 × K in all.
//!
//! Only nodes that answered one of our queries enter it (a query's source address may be
//! forged), one per IP address, with a BEP 42 id where the address is global.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::id::NodeId;
use super::krpc::CompactNode;

/// Nodes per bucket (BEP 5's K).
pub const K: usize = 8;
const BUCKETS: usize = 160;
/// A node not heard from for this long is questionable: pinged before it is trusted again.
pub const QUESTIONABLE: Duration = Duration::from_secs(15 * 60);
/// Unanswered queries in a row after which a node is bad and gives way.
const BAD_AFTER: u8 = 2;

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: NodeId,
    pub addr: SocketAddrV4,
    pub last_seen: Instant,
    pub fails: u8,
}

impl Entry {
    pub fn compact(&self) -> CompactNode {
        CompactNode {
            id: self.id,
            addr: self.addr,
        }
    }
}

/// What `insert` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    New,
    Refreshed,
    Full,
    Refused,
}

pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Vec<Entry>>,
}

impl RoutingTable {
    pub fn new(own: NodeId) -> Self {
        RoutingTable {
            own,
            buckets: vec![Vec::new(); BUCKETS],
        }
    }

    pub fn own(&self) -> NodeId {
        self.own
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bucket(&self, id: &NodeId) -> Option<usize> {
        let p = self.own.common_prefix(id);
        (p < BUCKETS).then_some(p)
    }

    /// A node that answered us: added, refreshed, or refused (bucket full of good nodes, a
    /// second node on a known address, a BEP 42 id that does not fit its address, ourselves).
    pub fn insert(&mut self, id: NodeId, addr: SocketAddrV4, now: Instant) -> Inserted {
        let Some(b) = self.bucket(&id) else {
            return Inserted::Refused;
        };
        if !id.valid_for(*addr.ip()) || addr.port() == 0 {
            return Inserted::Refused;
        }
        if let Some(e) = self.buckets[b].iter_mut().find(|e| e.id == id) {
            if e.addr != addr {
                // A known id from another address: keep the one we know (BEP 5's advice).
                return Inserted::Refused;
            }
            e.last_seen = now;
            e.fails = 0;
            return Inserted::Refreshed;
        }
        if self.iter().any(|e| e.addr.ip() == addr.ip()) {
            return Inserted::Refused;
        }
        let bucket = &mut self.buckets[b];
        if bucket.len() >= K {
            match bucket.iter().position(|e| e.fails >= BAD_AFTER) {
                Some(i) => {
                    bucket.remove(i);
                }
                None => return Inserted::Full,
            }
        }
        bucket.push(Entry {
            id,
            addr,
            last_seen: now,
            fails: 0,
        });
        Inserted::New
    }

    /// Loads a node from the saved table: kept as questionable (it is pinged first).
    pub fn restore(&mut self, node: CompactNode, now: Instant) {
        let stale = now.checked_sub(QUESTIONABLE).unwrap_or(now);
        if self.insert(node.id, node.addr, stale) == Inserted::New {
            if let Some(e) = self.find_mut(&node.id) {
                e.last_seen = stale;
            }
        }
    }

    fn find_mut(&mut self, id: &NodeId) -> Option<&mut Entry> {
        let b = self.bucket(id)?;
        self.buckets[b].iter_mut().find(|e| e.id == *id)
    }

    /// A query to `id` went unanswered.
    pub fn failed(&mut self, id: &NodeId) {
        if let Some(e) = self.find_mut(id) {
            e.fails = e.fails.saturating_add(1);
        }
    }

    /// Whether a node with this id would find room (its bucket has space or a bad node).
    pub fn has_room_for(&self, id: &NodeId) -> bool {
        self.bucket(id).is_some_and(|b| {
            let bucket = &self.buckets[b];
            bucket.len() < K || bucket.iter().any(|e| e.fails >= BAD_AFTER)
        })
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.bucket(id)
            .is_some_and(|b| self.buckets[b].iter().any(|e| e.id == *id))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flatten()
    }

    /// The `n` good nodes closest to `target`.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<CompactNode> {
        let mut all: Vec<&Entry> = self.iter().filter(|e| e.fails < BAD_AFTER).collect();
        all.sort_by_key(|e| e.id.distance(target));
        all.into_iter().take(n).map(Entry::compact).collect()
    }

    /// Nodes not heard from in QUESTIONABLE (or failing), to ping: at most `n`.
    pub fn questionable(&self, now: Instant, n: usize) -> Vec<CompactNode> {
        self.iter()
            .filter(|e| e.fails > 0 || now.saturating_duration_since(e.last_seen) >= QUESTIONABLE)
            .take(n)
            .map(Entry::compact)
            .collect()
    }

    /// Drops bad nodes whose bucket is full, so newcomers find room; returns how many.
    pub fn prune(&mut self) -> usize {
        let mut n = 0;
        for b in &mut self.buckets {
            let before = b.len();
            b.retain(|e| e.fails < BAD_AFTER * 2);
            n += before - b.len();
        }
        n
    }

    /// The same nodes under a new own id.
    pub fn rebuild(&self, own: NodeId) -> RoutingTable {
        let mut t = RoutingTable::new(own);
        for e in self.iter() {
            if let Some(b) = t.bucket(&e.id) {
                if t.buckets[b].len() < K {
                    t.buckets[b].push(e.clone());
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8, last: u8) -> NodeId {
        let mut b = [0; 20];
        b[0] = first;
        b[19] = last;
        NodeId(b)
    }

    fn addr(i: u8) -> SocketAddrV4 {
        SocketAddrV4::new([10, 0, 0, i].into(), 6881)
    }

    #[test]
    fn buckets_hold_k_and_bad_nodes_give_way() {
        let now = Instant::now();
        let mut t = RoutingTable::new(id(0, 0));
        // All in bucket 0 (first bit differs).
        for i in 0..K as u8 {
            assert_eq!(t.insert(id(0x80, i), addr(i), now), Inserted::New);
        }
        assert_eq!(t.insert(id(0x80, 99), addr(99), now), Inserted::Full);
        assert!(!t.has_room_for(&id(0x80, 99)));
        t.failed(&id(0x80, 3));
        t.failed(&id(0x80, 3));
        assert!(t.has_room_for(&id(0x80, 99)));
        assert_eq!(t.insert(id(0x80, 99), addr(99), now), Inserted::New);
        assert!(!t.contains(&id(0x80, 3)));
        assert_eq!(t.len(), K);
        // Other buckets are separate.
        assert_eq!(t.insert(id(0x40, 1), addr(200), now), Inserted::New);
        assert_eq!(t.closest(&id(0x40, 0), 1)[0].id, id(0x40, 1));
    }

    #[test]
    fn one_node_per_address_and_not_ourselves() {
        let now = Instant::now();
        let mut t = RoutingTable::new(id(0, 0));
        assert_eq!(t.insert(id(0, 0), addr(1), now), Inserted::Refused);
        assert_eq!(t.insert(id(0x80, 1), addr(1), now), Inserted::New);
        assert_eq!(t.insert(id(0x80, 2), addr(1), now), Inserted::Refused);
        assert_eq!(t.insert(id(0x80, 1), addr(2), now), Inserted::Refused);
        assert_eq!(t.insert(id(0x80, 1), addr(1), now), Inserted::Refreshed);
        // A global address needs a BEP 42 id.
        let global = SocketAddrV4::new([8, 8, 8, 8].into(), 1);
        assert_eq!(t.insert(id(0x80, 5), global, now), Inserted::Refused);
        let ok = NodeId::for_ip(*global.ip(), [5; 20]);
        assert_eq!(t.insert(ok, global, now), Inserted::New);
    }

    #[test]
    fn restored_nodes_are_questionable() {
        let now = Instant::now() + QUESTIONABLE;
        let mut t = RoutingTable::new(id(0, 0));
        t.restore(
            CompactNode {
                id: id(0x80, 1),
                addr: addr(1),
            },
            now,
        );
        assert_eq!(t.questionable(now, 10).len(), 1);
        t.insert(id(0x80, 1), addr(1), now);
        assert!(t.questionable(now, 10).is_empty());
    }
}
