//! A hybrid torrent is tracked under two hashes (v1 and truncated v2): one swarm, kept under the
//! v1 hash, whichever hash a peer announces (issue 15: two swarms hid v1 peers from v2
//! announcers and split the counts). `serve` links the two hashes when it publishes; the
//! standalone `bitseed tracker` cannot know which hashes are twins, so there every hash is a
//! swarm of its own.
//!
//! libtorrent 2.0 announces both hashes at once. Given our own seed in both answers, it may
//! connect with one hash, then, reading the second answer, expect the other hash back in the
//! handshake: it drops the connection as "invalid info-hash" and never retries that peer. Seen
//! in one run in four of `serve::libtorrent_downloads_from_the_magnet_link` before this module.
//! So each client is given our own seed under one of the two hashes only: the one it asked
//! about first (remembered for twice the announce interval, forgotten when it stops). A client
//! that announces one hash only (v1-only clients, a `btmh`-only magnet) always gets it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use super::http_request::InfoHash;

/// Clients remembered at most; past it, the own seed is listed under the v1 hash only, which
/// every client of a hybrid torrent announces but a v2-only one.
const MAX_CLIENTS: usize = 100_000;

/// The two hashes of one hybrid torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// Also the key of the pair's one swarm.
    pub v1: InfoHash,
    pub v2: InfoHash,
}

#[derive(Debug, Default)]
pub struct Twins {
    /// Each hash of each pair → the pair.
    pairs: RwLock<HashMap<InfoHash, Pair>>,
    /// `pairs.len()`, read without the lock: most trackers link nothing, and every announce
    /// asks.
    linked: AtomicUsize,
    /// (the pair's v1 hash, client) → the hash it was given our seed under, and when.
    given: Mutex<HashMap<(InfoHash, SocketAddr), (InfoHash, Instant)>>,
}

impl Twins {
    /// `v1` and `v2_truncated` name one hybrid torrent.
    pub fn link(&self, v1: InfoHash, v2_truncated: InfoHash) {
        let pair = Pair {
            v1,
            v2: v2_truncated,
        };
        let mut pairs = self.pairs.write().unwrap_or_else(|e| e.into_inner());
        pairs.insert(v1, pair);
        pairs.insert(v2_truncated, pair);
        self.linked.store(pairs.len(), Ordering::Relaxed);
    }

    /// Forgets the pair `hash` belongs to (its client records expire on their own).
    pub fn unlink(&self, hash: &InfoHash) {
        let mut pairs = self.pairs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(pair) = pairs.remove(hash) {
            pairs.remove(&pair.v1);
            pairs.remove(&pair.v2);
        }
        self.linked.store(pairs.len(), Ordering::Relaxed);
    }

    /// The pair `hash` belongs to, if any: one atomic load while nothing is linked.
    pub fn pair(&self, hash: &InfoHash) -> Option<Pair> {
        if self.linked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let pairs = self.pairs.read().unwrap_or_else(|e| e.into_inner());
        pairs.get(hash).copied()
    }

    /// The key of the swarm `hash` is tracked in: the v1 hash of its pair, else itself.
    pub fn swarm_key(&self, hash: &InfoHash) -> InfoHash {
        self.pair(hash).map_or(*hash, |p| p.v1)
    }

    /// Whether our own seed may be listed to `client` in the answer for `hash` (of `pair`), at
    /// `now`.
    pub fn may_list_own_seed(
        &self,
        pair: &Pair,
        hash: &InfoHash,
        client: SocketAddr,
        now: Instant,
    ) -> bool {
        let is_v1 = *hash == pair.v1;
        let other = if is_v1 { pair.v2 } else { pair.v1 };
        let mut given = self.given.lock().unwrap_or_else(|e| e.into_inner());
        let full = given.len() >= MAX_CLIENTS;
        match given.get_mut(&(pair.v1, client)) {
            Some((h, _)) if *h == other => false,
            Some(entry) => {
                entry.1 = now;
                true
            }
            None if full => is_v1,
            None => {
                given.insert((pair.v1, client), (*hash, now));
                true
            }
        }
    }

    /// `client` left the torrent of `pair` (`stopped`, under either hash): when it comes back,
    /// under whichever hash, it asks afresh.
    pub fn forget(&self, pair: &Pair, client: SocketAddr) {
        let mut given = self.given.lock().unwrap_or_else(|e| e.into_inner());
        given.remove(&(pair.v1, client));
    }

    /// Forgets clients not seen for `max_age`.
    pub fn sweep(&self, now: Instant, max_age: Duration) {
        let mut given = self.given.lock().unwrap_or_else(|e| e.into_inner());
        given.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < max_age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: InfoHash = InfoHash::new([1; 20]);
    const V2: InfoHash = InfoHash::new([2; 20]);
    const PAIR: Pair = Pair { v1: V1, v2: V2 };

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn both_hashes_name_the_v1_swarm_once_linked() {
        let t = Twins::default();
        assert_eq!(t.pair(&V2), None);
        assert_eq!(t.swarm_key(&V2), V2);
        t.link(V1, V2);
        assert_eq!(t.pair(&V1), Some(PAIR));
        assert_eq!(t.pair(&V2), Some(PAIR));
        assert_eq!((t.swarm_key(&V1), t.swarm_key(&V2)), (V1, V1));
        assert_eq!(t.swarm_key(&InfoHash::new([3; 20])), InfoHash::new([3; 20]));
        t.unlink(&V2);
        assert_eq!((t.pair(&V1), t.swarm_key(&V2)), (None, V2));
    }

    #[test]
    fn a_client_gets_the_own_seed_under_the_hash_it_asked_first() {
        let t = Twins::default();
        t.link(V1, V2);
        let now = Instant::now();
        let may = |hash: &InfoHash, port: u16| t.may_list_own_seed(&PAIR, hash, client(port), now);
        // v2 first: then v2 only, for as long as it is remembered.
        assert!(may(&V2, 1));
        assert!(!may(&V1, 1));
        assert!(may(&V2, 1));
        // v1 first, another client.
        assert!(may(&V1, 2));
        assert!(!may(&V2, 2));
        // Forgotten after the sweep: asked again, the first hash asked wins again.
        t.sweep(now + Duration::from_secs(10), Duration::from_secs(5));
        assert!(may(&V1, 1));
        assert!(!may(&V2, 1));
    }

    /// Issue 15: a client that announced v1, stopped, and came back with v2 only got no seed
    /// for an hour.
    #[test]
    fn a_client_that_stopped_asks_afresh() {
        let t = Twins::default();
        t.link(V1, V2);
        let now = Instant::now();
        assert!(t.may_list_own_seed(&PAIR, &V1, client(1), now));
        assert!(!t.may_list_own_seed(&PAIR, &V2, client(1), now));
        t.forget(&PAIR, client(1));
        assert!(t.may_list_own_seed(&PAIR, &V2, client(1), now));
        assert!(!t.may_list_own_seed(&PAIR, &V1, client(1), now));
    }

    #[test]
    fn when_full_only_the_v1_hash_lists_the_own_seed() {
        let t = Twins::default();
        t.link(V1, V2);
        let now = Instant::now();
        {
            let mut given = t.given.lock().unwrap();
            for ip in 0..MAX_CLIENTS as u32 {
                let other = SocketAddr::from((std::net::Ipv4Addr::from(ip), 1));
                given.insert((V1, other), (V2, now));
            }
        }
        assert!(t.may_list_own_seed(&PAIR, &V1, client(7), now));
        assert!(!t.may_list_own_seed(&PAIR, &V2, client(7), now));
        assert_eq!(t.given.lock().unwrap().len(), MAX_CLIENTS, "bounded");
    }
}
