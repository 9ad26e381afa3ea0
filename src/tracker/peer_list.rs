//! The peers of one swarm and one address family, kept compact: each peer is its compact address
//! (BEP 23: IP then port, big-endian; 6 bytes for v4, 18 for v6) and a 16-bit "last seen" tick, in
//! two vectors (seeders, leechers) sorted by address.
//!
//! Sorted vectors rather than hash maps: 8 bytes per v4 peer instead of ~20, lookups by binary
//! search, and a random contiguous window is a fair random pick for the answer. Inserts and
//! removals move memory, bounded by `max_peers_per_torrent`.

/// A peer's address in compact form: `N` = 6 (v4) or 18 (v6).
pub type Addr<const N: usize> = [u8; N];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peer<const N: usize> {
    addr: Addr<N>,
    /// When the peer last announced, in wrapping ticks (see `Tracker::tick`).
    seen: u16,
}

/// Where a peer stood before an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Was {
    Absent,
    Seeder,
    Leecher,
}

#[derive(Debug, Default)]
pub struct PeerList<const N: usize> {
    seeders: Vec<Peer<N>>,
    leechers: Vec<Peer<N>>,
}

impl<const N: usize> PeerList<N> {
    pub fn seeders(&self) -> usize {
        self.seeders.len()
    }

    pub fn leechers(&self) -> usize {
        self.leechers.len()
    }

    pub fn len(&self) -> usize {
        self.seeders.len() + self.leechers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of a compact address that name one client: an IPv4 address, or an IPv6 /64 (a
    /// client can hold a whole /64, so its addresses are one).
    const CLIENT: usize = if N == 6 { 4 } else { 8 };

    /// Peers stored whose address is in the same client as `addr` (any port).
    pub fn same_client(&self, addr: &Addr<N>) -> usize {
        let prefix = &addr[..Self::CLIENT];
        let count = |list: &[Peer<N>]| {
            let lo = list.partition_point(|p| &p.addr[..Self::CLIENT] < prefix);
            let hi = list.partition_point(|p| &p.addr[..Self::CLIENT] <= prefix);
            hi - lo
        };
        count(&self.seeders) + count(&self.leechers)
    }

    /// Records an announce: the peer at `addr` is now a seeder or a leecher, seen at `now`. A new
    /// peer is stored only while the list holds fewer than `cap` peers, and fewer than
    /// `per_client` (0: no limit) from its address. Returns where it was.
    pub fn upsert(
        &mut self,
        addr: Addr<N>,
        seeder: bool,
        now: u16,
        cap: usize,
        per_client: usize,
    ) -> Was {
        let was = self.remove_or_touch(addr, seeder, now);
        if was == Was::Absent
            && (self.len() >= cap || (per_client > 0 && self.same_client(&addr) >= per_client))
        {
            return was;
        }
        if was != if seeder { Was::Seeder } else { Was::Leecher } {
            let list = if seeder {
                &mut self.seeders
            } else {
                &mut self.leechers
            };
            if let Err(at) = list.binary_search_by(|p| p.addr.cmp(&addr)) {
                list.insert(at, Peer { addr, seen: now });
            }
        }
        was
    }

    /// Touches the peer if it is already in the right list, else removes it from the other one.
    fn remove_or_touch(&mut self, addr: Addr<N>, seeder: bool, now: u16) -> Was {
        let (same, other, same_was, other_was) = if seeder {
            (
                &mut self.seeders,
                &mut self.leechers,
                Was::Seeder,
                Was::Leecher,
            )
        } else {
            (
                &mut self.leechers,
                &mut self.seeders,
                Was::Leecher,
                Was::Seeder,
            )
        };
        if let Ok(i) = same.binary_search_by(|p| p.addr.cmp(&addr)) {
            same[i].seen = now;
            return same_was;
        }
        if let Ok(i) = other.binary_search_by(|p| p.addr.cmp(&addr)) {
            other.remove(i);
            return other_was;
        }
        Was::Absent
    }

    /// Removes the peer (event `stopped`); returns where it was.
    pub fn remove(&mut self, addr: Addr<N>) -> Was {
        if let Ok(i) = self.seeders.binary_search_by(|p| p.addr.cmp(&addr)) {
            self.seeders.remove(i);
            return Was::Seeder;
        }
        if let Ok(i) = self.leechers.binary_search_by(|p| p.addr.cmp(&addr)) {
            self.leechers.remove(i);
            return Was::Leecher;
        }
        Was::Absent
    }

    /// Appends up to `want` compact addresses to `out`, never `requester`'s. A seeder gets only
    /// leechers; a leecher gets seeders and leechers. The pick is a window at offset `random`
    /// (wrapping) over the candidates.
    pub fn pick(
        &self,
        want: usize,
        requester: &Addr<N>,
        seeder: bool,
        random: u64,
        out: &mut Vec<u8>,
    ) {
        let (first, second): (&[Peer<N>], &[Peer<N>]) = if seeder {
            (&self.leechers, &[])
        } else {
            (&self.seeders, &self.leechers)
        };
        let total = first.len() + second.len();
        if total == 0 || want == 0 {
            return;
        }
        let start = (random % total as u64) as usize;
        // The candidates are `first ++ second`; walk them from `start`, wrapping around.
        let window = if start < first.len() {
            first[start..].iter().chain(second).chain(&first[..start])
        } else {
            let s = start - first.len();
            second[s..].iter().chain(first).chain(&second[..s])
        };
        out.reserve(want.min(total) * N);
        let mut taken = 0;
        for peer in window {
            if &peer.addr == requester {
                continue;
            }
            out.extend_from_slice(&peer.addr);
            taken += 1;
            if taken == want {
                break;
            }
        }
    }

    /// Drops peers last seen more than `max_age` ticks before `now`; returns how many.
    pub fn expire(&mut self, now: u16, max_age: u16) -> usize {
        let before = self.len();
        for list in [&mut self.seeders, &mut self.leechers] {
            list.retain(|p| now.wrapping_sub(p.seen) <= max_age);
            // Memory follows live peers: give back space a shrunken swarm no longer needs.
            if list.capacity() > 16 && list.len() < list.capacity() / 4 {
                list.shrink_to(list.len() * 2);
            }
        }
        before - self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> Addr<6> {
        [10, 0, 0, n, 0x1a, 0xe1]
    }

    #[test]
    fn stored_peer_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Peer<6>>(), 8);
        assert_eq!(std::mem::size_of::<Peer<18>>(), 20);
    }

    #[test]
    fn upsert_moves_between_lists_and_remove() {
        let mut l = PeerList::<6>::default();
        assert_eq!(l.upsert(a(1), false, 0, 10, 0), Was::Absent);
        assert_eq!(l.upsert(a(1), false, 1, 10, 0), Was::Leecher);
        assert_eq!((l.seeders(), l.leechers()), (0, 1));
        assert_eq!(l.upsert(a(1), true, 2, 10, 0), Was::Leecher);
        assert_eq!((l.seeders(), l.leechers()), (1, 0));
        assert_eq!(l.upsert(a(1), true, 3, 10, 0), Was::Seeder);
        assert_eq!(l.remove(a(1)), Was::Seeder);
        assert_eq!(l.remove(a(1)), Was::Absent);
        assert!(l.is_empty());
    }

    #[test]
    fn cap_stops_new_peers_but_not_known_ones() {
        let mut l = PeerList::<6>::default();
        l.upsert(a(1), false, 0, 2, 0);
        l.upsert(a(2), false, 0, 2, 0);
        assert_eq!(l.upsert(a(3), false, 0, 2, 0), Was::Absent);
        assert_eq!(l.len(), 2);
        assert_eq!(l.upsert(a(2), true, 0, 2, 0), Was::Leecher);
        assert_eq!((l.seeders(), l.leechers()), (1, 1));
    }

    #[test]
    fn one_client_stores_at_most_per_client_peers_whatever_its_ports() {
        let mut l = PeerList::<6>::default();
        for port in 1..=10u16 {
            let mut addr = a(7);
            addr[4..].copy_from_slice(&port.to_be_bytes());
            l.upsert(addr, port % 2 == 0, 0, 100, 3);
        }
        assert_eq!(l.len(), 3);
        assert_eq!(l.same_client(&a(7)), 3);
        // Others are not held back, and a known peer still moves between lists.
        assert_eq!(l.upsert(a(8), false, 0, 100, 3), Was::Absent);
        assert_eq!(l.len(), 4);
        let mut first = a(7);
        first[4..].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(l.upsert(first, true, 1, 100, 3), Was::Leecher);
        // IPv6: one /64 is one client.
        let mut l6 = PeerList::<18>::default();
        for i in 0..10u8 {
            let mut addr = [0u8; 18];
            addr[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1]);
            addr[15] = i;
            l6.upsert(addr, false, 0, 100, 2);
        }
        assert_eq!(l6.len(), 2);
    }

    #[test]
    fn pick_skips_requester_and_seeders_get_leechers() {
        let mut l = PeerList::<6>::default();
        for n in 1..=5 {
            l.upsert(a(n), n <= 2, 0, 100, 0);
        }
        for random in 0..10 {
            let mut out = Vec::new();
            l.pick(50, &a(3), false, random, &mut out);
            assert_eq!(out.len(), 4 * 6);
            assert!(!out.chunks(6).any(|c| c == a(3)));
            let mut out = Vec::new();
            l.pick(50, &a(1), true, random, &mut out);
            let got: Vec<u8> = out.chunks(6).map(|c| c[3]).collect();
            assert_eq!(got.len(), 3);
            assert!(got.iter().all(|n| *n >= 3), "{got:?}");
            let mut out = Vec::new();
            l.pick(2, &a(9), false, random, &mut out);
            assert_eq!(out.len(), 12);
        }
        let mut out = Vec::new();
        l.pick(0, &a(9), false, 1, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn expire_uses_wrapping_ticks() {
        let mut l = PeerList::<6>::default();
        l.upsert(a(1), false, 65530, 10, 0);
        l.upsert(a(2), true, 3, 10, 0);
        assert_eq!(l.expire(4, 10), 0);
        assert_eq!(l.expire(13, 10), 1);
        assert_eq!((l.seeders(), l.leechers()), (1, 0));
    }
}
