//! A hybrid torrent is tracked under two hashes (v1 and truncated v2), and libtorrent 2.0
//! announces both at once. Given our own seed in both answers, it may connect with one hash,
//! then, reading the second answer, expect the other hash back in the handshake: it drops the
//! connection as "invalid info-hash" and never retries that peer. Seen in one run in four of
//! `serve::libtorrent_downloads_from_the_magnet_link` before this module.
//!
//! So each client is given our own seed under one of the two hashes only: the one it asked
//! about first (remembered for twice the announce interval). A client that announces one hash
//! only (v1-only clients, a `btmh`-only magnet) always gets it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use super::http_request::InfoHash;

/// Clients remembered at most; past it, the own seed is listed under the v1 hash only, which
/// every client of a hybrid torrent announces but a v2-only one.
const MAX_CLIENTS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Twin {
    other: InfoHash,
    is_v1: bool,
}

#[derive(Debug, Default)]
pub struct Twins {
    pairs: RwLock<HashMap<InfoHash, Twin>>,
    /// `pairs.len()`, read without the lock: most trackers link nothing, and every leecher's
    /// announce asks.
    linked: AtomicUsize,
    /// (the pair's v1 hash, client) → the hash it was given our seed under, and when.
    given: Mutex<HashMap<(InfoHash, SocketAddr), (InfoHash, Instant)>>,
}

impl Twins {
    /// `v1` and `v2_truncated` name one hybrid torrent.
    pub fn link(&self, v1: InfoHash, v2_truncated: InfoHash) {
        let mut pairs = self.pairs.write().unwrap_or_else(|e| e.into_inner());
        pairs.insert(
            v1,
            Twin {
                other: v2_truncated,
                is_v1: true,
            },
        );
        pairs.insert(
            v2_truncated,
            Twin {
                other: v1,
                is_v1: false,
            },
        );
        self.linked.store(pairs.len(), Ordering::Relaxed);
    }

    /// Forgets the pair `hash` belongs to (its client records expire on their own).
    pub fn unlink(&self, hash: &InfoHash) {
        let mut pairs = self.pairs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(twin) = pairs.remove(hash) {
            pairs.remove(&twin.other);
        }
        self.linked.store(pairs.len(), Ordering::Relaxed);
    }

    /// Whether any hybrid torrent is linked (without taking a lock).
    pub fn any(&self) -> bool {
        self.linked.load(Ordering::Relaxed) != 0
    }

    /// Whether our own seed may be listed to `client` in the answer for `hash`, at `now`.
    pub fn may_list_own_seed(&self, hash: &InfoHash, client: SocketAddr, now: Instant) -> bool {
        let twin = {
            let pairs = self.pairs.read().unwrap_or_else(|e| e.into_inner());
            match pairs.get(hash) {
                Some(t) => *t,
                None => return true,
            }
        };
        let v1 = if twin.is_v1 { *hash } else { twin.other };
        let mut given = self.given.lock().unwrap_or_else(|e| e.into_inner());
        let full = given.len() >= MAX_CLIENTS;
        match given.get_mut(&(v1, client)) {
            Some((h, _)) if *h == twin.other => false,
            Some(entry) => {
                entry.1 = now;
                true
            }
            None if full => twin.is_v1,
            None => {
                given.insert((v1, client), (*hash, now));
                true
            }
        }
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

    const V1: InfoHash = [1; 20];
    const V2: InfoHash = [2; 20];

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_client_gets_the_own_seed_under_the_hash_it_asked_first() {
        let t = Twins::default();
        assert!(!t.any());
        t.link(V1, V2);
        assert!(t.any());
        let now = Instant::now();
        // v2 first: then v2 only, for as long as it is remembered.
        assert!(t.may_list_own_seed(&V2, client(1), now));
        assert!(!t.may_list_own_seed(&V1, client(1), now));
        assert!(t.may_list_own_seed(&V2, client(1), now));
        // v1 first, another client.
        assert!(t.may_list_own_seed(&V1, client(2), now));
        assert!(!t.may_list_own_seed(&V2, client(2), now));
        // Forgotten after the sweep: asked again, the first hash asked wins again.
        t.sweep(now + Duration::from_secs(10), Duration::from_secs(5));
        assert!(t.may_list_own_seed(&V1, client(1), now));
        // Hashes not of a hybrid torrent are not limited.
        assert!(t.may_list_own_seed(&[3; 20], client(1), now));
        t.unlink(&V2);
        assert!(t.may_list_own_seed(&V2, client(2), now));
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
        assert!(t.may_list_own_seed(&V1, client(7), now));
        assert!(!t.may_list_own_seed(&V2, client(7), now));
        assert_eq!(t.given.lock().unwrap().len(), MAX_CLIENTS, "bounded");
    }
}
