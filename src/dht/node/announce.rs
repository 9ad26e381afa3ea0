//! The announcing half of the node: lookups, and `announce_peer` for the torrents it seeds
//! (every REANNOUNCE, and at once to a node new to the table that is closer to a hash than
//! those announced to).

use std::net::SocketAddrV4;
use std::time::Instant;

use super::*;

impl Node {
    /// Starts announcing `info_hash` (at the next tick).
    pub fn seed(&mut self, info_hash: [u8; 20], now: Instant) {
        self.seeding.entry(NodeId(info_hash)).or_insert(Seeding {
            next: now,
            lookup: None,
            farthest: [0xff; 20],
        });
    }

    pub fn unseed(&mut self, info_hash: [u8; 20]) {
        if let Some(s) = self.seeding.remove(&NodeId(info_hash)) {
            if let Some(l) = s.lookup {
                self.lookups.remove(&l);
            }
        }
    }

    pub(super) fn announce(
        &mut self,
        hash: NodeId,
        to: SocketAddrV4,
        token: &[u8],
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if !self.seeding.contains_key(&hash) {
            return;
        }
        self.stats.announces_sent += 1;
        let q = Query::AnnouncePeer {
            info_hash: hash,
            port: self.port,
            // The DHT shares the peer port: the source port is the one to connect to, even
            // through a NAT that changes it.
            implied_port: true,
            token,
        };
        self.query(to, None, Purpose::Announce, &q, now, out);
    }

    /// A node new to the table, closer to some seeded hashes than the nodes they were last
    /// announced to: get a token from it and announce, without waiting for the next round.
    pub(super) fn announce_to_new(
        &mut self,
        id: NodeId,
        addr: SocketAddrV4,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let mut due: Vec<([u8; 20], NodeId)> = self
            .seeding
            .iter()
            .map(|(h, s)| (h.distance(&id), *h, s.farthest))
            .filter(|(d, _, farthest)| d < farthest)
            .map(|(d, h, _)| (d, h))
            .collect();
        due.sort();
        for (_, hash) in due.into_iter().take(DIRECT_PER_NODE) {
            let q = Query::GetPeers { info_hash: hash };
            self.query(addr, Some(id), Purpose::Direct(hash), &q, now, out);
        }
    }

    pub(super) fn start_lookup(
        &mut self,
        target: NodeId,
        kind: Kind,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> u64 {
        let start = self.table.closest(&target, K * 2);
        let routers = if self.table.len() < K {
            self.routers.clone()
        } else {
            Vec::new()
        };
        let l = self.next_lookup;
        self.next_lookup += 1;
        self.lookups
            .insert(l, Lookup::new(target, kind, &start, &routers));
        self.stats.lookups += 1;
        self.drive(l, now, out);
        l
    }

    /// Sends a lookup's next queries, or finishes it.
    pub(super) fn drive(&mut self, l: u64, now: Instant, out: &mut Vec<Out>) {
        let Some(lookup) = self.lookups.get_mut(&l) else {
            return;
        };
        let q = match lookup.kind {
            Kind::FindNode => Query::FindNode {
                target: lookup.target,
            },
            Kind::GetPeers => Query::GetPeers {
                info_hash: lookup.target,
            },
        };
        for to in lookup.to_ask() {
            self.query(to, None, Purpose::Lookup(l), &q, now, out);
        }
        let Some(lookup) = self.lookups.get(&l) else {
            return;
        };
        if !lookup.done() {
            return;
        }
        let Some(lookup) = self.lookups.remove(&l) else {
            return;
        };
        if self.own_lookup == Some(l) {
            self.own_lookup = None;
        }
        if lookup.kind != Kind::GetPeers {
            return;
        }
        let targets = lookup.announce_to();
        let hash = lookup.target;
        let Some(s) = self.seeding.get_mut(&hash) else {
            return;
        };
        s.lookup = None;
        if targets.is_empty() {
            s.next = now + RETRY;
            return;
        }
        s.next = now + REANNOUNCE;
        s.farthest = lookup.farthest_announced().unwrap_or([0xff; 20]);
        for (to, token) in targets {
            self.announce(hash, to, &token, now, out);
        }
    }

    /// Starts the lookups of the seeded hashes that are due (MAX_LOOKUPS at once).
    pub(super) fn announce_due(&mut self, now: Instant, out: &mut Vec<Out>) {
        if self.table.is_empty() && self.routers.is_empty() {
            return;
        }
        let due: Vec<NodeId> = self
            .seeding
            .iter()
            .filter(|(_, s)| s.lookup.is_none() && s.next <= now)
            .map(|(h, _)| *h)
            .collect();
        for hash in due {
            if self.lookups.len() >= MAX_LOOKUPS {
                break;
            }
            let l = self.start_lookup(hash, Kind::GetPeers, now, out);
            if self.lookups.contains_key(&l) {
                if let Some(s) = self.seeding.get_mut(&hash) {
                    s.lookup = Some(l);
                }
            }
        }
    }
}
