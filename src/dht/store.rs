//! What the node keeps for others (BEP 5): announce tokens and the peers announced to it, both
//! bounded.
//!
//! A token is SHA-1 of a secret and the querier's IP address: only a node that received our
//! `get_peers` answer at that address can announce from it, so an announce cannot be forged
//! for another address. Secrets turn over every five minutes; the previous one still counts.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::id::NodeId;

pub const TOKEN_LEN: usize = 8;
const SECRET_LIFE: Duration = Duration::from_secs(5 * 60);
/// Announced peers are dropped after this (clients re-announce every 15 to 30 minutes).
pub const PEER_LIFE: Duration = Duration::from_secs(30 * 60);

pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    turned: Instant,
}

impl Tokens {
    pub fn new(secret: [u8; 16], now: Instant) -> Self {
        Tokens {
            current: secret,
            previous: secret,
            turned: now,
        }
    }

    /// Turns the secret over when it is due; `fresh` is the next secret.
    pub fn turn(&mut self, now: Instant, fresh: [u8; 16]) {
        if now.saturating_duration_since(self.turned) >= SECRET_LIFE {
            self.previous = self.current;
            self.current = fresh;
            self.turned = now;
        }
    }

    fn make(secret: &[u8; 16], ip: Ipv4Addr) -> [u8; TOKEN_LEN] {
        let mut h = Sha1::new();
        h.update(secret);
        h.update(ip.octets());
        let d = h.finalize();
        let mut t = [0; TOKEN_LEN];
        t.copy_from_slice(&d[..TOKEN_LEN]);
        t
    }

    pub fn token(&self, ip: Ipv4Addr) -> [u8; TOKEN_LEN] {
        Tokens::make(&self.current, ip)
    }

    pub fn valid(&self, ip: Ipv4Addr, token: &[u8]) -> bool {
        token == Tokens::make(&self.current, ip) || token == Tokens::make(&self.previous, ip)
    }
}

/// Peers announced to us, per info hash.
pub struct PeerStore {
    max_hashes: usize,
    max_per_hash: usize,
    peers: HashMap<NodeId, Vec<(SocketAddrV4, Instant)>>,
}

impl PeerStore {
    pub fn new(max_hashes: usize, max_per_hash: usize) -> Self {
        PeerStore {
            max_hashes,
            max_per_hash,
            peers: HashMap::new(),
        }
    }

    /// Stores `peer` for `info_hash`; false when full (a new hash past `max_hashes`). A hash
    /// full of peers drops its oldest.
    pub fn announce(&mut self, info_hash: NodeId, peer: SocketAddrV4, now: Instant) -> bool {
        if !self.peers.contains_key(&info_hash) && self.peers.len() >= self.max_hashes {
            return false;
        }
        let list = self.peers.entry(info_hash).or_default();
        if let Some(p) = list.iter_mut().find(|(a, _)| *a == peer) {
            p.1 = now;
            return true;
        }
        if list.len() >= self.max_per_hash {
            if let Some(oldest) = list
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.1)
                .map(|(i, _)| i)
            {
                list.swap_remove(oldest);
            }
        }
        list.push((peer, now));
        true
    }

    /// Up to `n` peers of `info_hash`, the most recently announced first.
    pub fn peers(&self, info_hash: &NodeId, n: usize) -> Vec<SocketAddrV4> {
        let Some(list) = self.peers.get(info_hash) else {
            return Vec::new();
        };
        let mut l: Vec<_> = list.clone();
        l.sort_by_key(|p| std::cmp::Reverse(p.1));
        l.into_iter().take(n).map(|p| p.0).collect()
    }

    /// Drops peers older than PEER_LIFE, and hashes left empty.
    pub fn expire(&mut self, now: Instant) {
        self.peers.retain(|_, list| {
            list.retain(|p| now.saturating_duration_since(p.1) < PEER_LIFE);
            !list.is_empty()
        });
    }

    pub fn hashes(&self) -> usize {
        self.peers.len()
    }

    pub fn len(&self) -> usize {
        self.peers.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_per_address_and_outlive_one_turn() {
        let t0 = Instant::now();
        let mut t = Tokens::new([1; 16], t0);
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let tok = t.token(ip);
        assert!(t.valid(ip, &tok));
        assert!(!t.valid(Ipv4Addr::new(10, 0, 0, 2), &tok));
        assert!(!t.valid(ip, b"short"));
        t.turn(t0 + Duration::from_secs(10), [2; 16]);
        assert!(t.valid(ip, &tok), "not due yet");
        t.turn(t0 + SECRET_LIFE, [2; 16]);
        assert!(t.valid(ip, &tok), "the previous secret still counts");
        t.turn(t0 + SECRET_LIFE * 2, [3; 16]);
        assert!(!t.valid(ip, &tok));
    }

    #[test]
    fn storage_is_bounded_and_expires() {
        let now = Instant::now();
        let mut s = PeerStore::new(2, 3);
        let p = |i: u8| SocketAddrV4::new([10, 0, 0, i].into(), 1);
        assert!(s.announce(NodeId([1; 20]), p(1), now));
        assert!(s.announce(NodeId([2; 20]), p(1), now));
        assert!(!s.announce(NodeId([3; 20]), p(1), now), "a third hash");
        for i in 2..=5 {
            assert!(s.announce(NodeId([1; 20]), p(i), now + Duration::from_secs(i.into())));
        }
        assert_eq!(s.peers(&NodeId([1; 20]), 10), vec![p(5), p(4), p(3)]);
        s.expire(now + PEER_LIFE + Duration::from_secs(1));
        assert_eq!(s.hashes(), 1);
        assert_eq!(s.len(), 3);
        s.expire(now + PEER_LIFE * 2);
        assert!(s.is_empty());
    }
}
