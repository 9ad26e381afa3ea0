//! The peers of one swarm and one address family, kept compact: each peer is its compact address
//! (BEP 23: IP then port, big-endian; 6 bytes for v4, 18 for v6) and a 16-bit word (a 15-bit
//! "last seen" tick and one flag), in two vectors (seeders, leechers) sorted by address.
//!
//! Sorted vectors rather than hash maps: 8 bytes per v4 peer instead of ~20, lookups by binary
//! search, and a random contiguous window is a fair random pick for the answer. Inserts and
//! removals move memory, bounded by `max_peers_per_torrent`.

/// A peer's address in compact form: `N` = 6 (v4) or 18 (v6).
pub type Addr<const N: usize> = [u8; N];

/// Ticks are 15 bits wide (see `Tracker::tick`): the 16th bit of a peer's word is its flag.
pub const TICK_MASK: u16 = 0x7fff;

/// Set on a leecher that has only ever said `left=0` (see [`Report::NothingLeft`]).
const UNCONFIRMED: u16 = 0x8000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peer<const N: usize> {
    addr: Addr<N>,
    /// When the peer last announced (`TICK_MASK` bits), and `UNCONFIRMED`. One word for both:
    /// a separate flag would make a v4 peer 10 bytes instead of 8.
    word: u16,
}

impl<const N: usize> Peer<N> {
    fn tick(&self) -> u16 {
        self.word & TICK_MASK
    }

    fn unconfirmed(&self) -> bool {
        self.word & UNCONFIRMED != 0
    }
}

/// What an announce says of the peer's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// `left > 0`.
    Leeching,
    /// `left = 0`, no `completed`: a seed, or a client that does not know the size yet (aria2
    /// fetching a magnet link's metadata announces `left=0`).
    NothingLeft,
    /// `left = 0` with `event=completed`.
    Completed,
}

/// Where a peer stood before an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Was {
    Absent,
    Seeder,
    Leecher,
    /// A leecher that has only ever said `left=0`.
    Unconfirmed,
}

/// Whether a peer that `was` so and now reports `report` counts as a seeder: only once it has
/// shown it has the data, by `completed` or by `left` going from above zero to zero. A peer
/// that has only ever said `left=0` stays a leecher: listed to everyone (seeders included) and
/// given every kind of peer, counted as `incomplete`. A seed that restarts (`left=0`, no
/// `completed`) is thus counted as incomplete until it completes something again: scrape counts
/// may under-count seeds, never count as a seed a client that has nothing yet. (opentracker,
/// aquatic and chihaya trust `left=0`; libtorrent and Transmission never send it without the
/// data, aria2 does.)
pub fn seeds(was: Was, report: Report) -> bool {
    match report {
        Report::Leeching => false,
        Report::Completed => true,
        Report::NothingLeft => matches!(was, Was::Seeder | Was::Leecher),
    }
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

    /// Records an announce: the peer at `addr` reports `report` at `now` (see [`seeds`]). A new
    /// peer is stored only while the list holds fewer than `cap` peers, and fewer than
    /// `per_client` (0: no limit) from its address. Returns where it was.
    pub fn upsert(
        &mut self,
        addr: Addr<N>,
        report: Report,
        now: u16,
        cap: usize,
        per_client: usize,
    ) -> Was {
        let found = self.locate(&addr);
        let was = found.map_or(Was::Absent, |(was, _)| was);
        let seeder = seeds(was, report);
        let flag = if !seeder && report == Report::NothingLeft {
            UNCONFIRMED
        } else {
            0
        };
        let word = (now & TICK_MASK) | flag;
        match found {
            // Already in the right list: touch it (and its flag).
            Some((Was::Seeder, i)) if seeder => self.seeders[i].word = word,
            Some((Was::Leecher | Was::Unconfirmed, i)) if !seeder => self.leechers[i].word = word,
            Some((Was::Seeder, i)) => {
                self.seeders.remove(i);
                insert(&mut self.leechers, Peer { addr, word });
            }
            Some((_, i)) => {
                self.leechers.remove(i);
                insert(&mut self.seeders, Peer { addr, word });
            }
            None => {
                if self.len() >= cap || (per_client > 0 && self.same_client(&addr) >= per_client) {
                    return was;
                }
                let list = if seeder {
                    &mut self.seeders
                } else {
                    &mut self.leechers
                };
                insert(list, Peer { addr, word });
            }
        }
        was
    }

    /// Where the peer at `addr` is, and its index in that list.
    fn locate(&self, addr: &Addr<N>) -> Option<(Was, usize)> {
        if let Ok(i) = self.seeders.binary_search_by(|p| p.addr.cmp(addr)) {
            return Some((Was::Seeder, i));
        }
        let i = self.leechers.binary_search_by(|p| p.addr.cmp(addr)).ok()?;
        let was = if self.leechers[i].unconfirmed() {
            Was::Unconfirmed
        } else {
            Was::Leecher
        };
        Some((was, i))
    }

    /// Adds the peers of `other` not already here, as they stood there, while fewer than `cap`
    /// are stored (two swarms becoming one: the hashes of a hybrid torrent being linked).
    pub fn absorb(&mut self, other: PeerList<N>, cap: usize) {
        for (peer, seeder) in other
            .seeders
            .into_iter()
            .map(|p| (p, true))
            .chain(other.leechers.into_iter().map(|p| (p, false)))
        {
            if self.len() >= cap {
                return;
            }
            if self.locate(&peer.addr).is_none() {
                let list = if seeder {
                    &mut self.seeders
                } else {
                    &mut self.leechers
                };
                insert(list, peer);
            }
        }
    }

    /// Removes the peer (event `stopped`); returns where it was.
    pub fn remove(&mut self, addr: Addr<N>) -> Was {
        let Some((was, i)) = self.locate(&addr) else {
            return Was::Absent;
        };
        if was == Was::Seeder {
            self.seeders.remove(i);
        } else {
            self.leechers.remove(i);
        }
        was
    }

    /// Appends up to `want` compact addresses to `out`, never `requester`'s. A seeder gets only
    /// leechers (unconfirmed ones too: they may be seeds, or need the metadata from one); a
    /// leecher gets seeders and leechers. The pick is a window at offset `random`
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
            list.retain(|p| now.wrapping_sub(p.tick()) & TICK_MASK <= max_age);
            // Memory follows live peers: give back space a shrunken swarm no longer needs.
            if list.capacity() > 16 && list.len() < list.capacity() / 4 {
                list.shrink_to(list.len() * 2);
            }
        }
        before - self.len()
    }
}

/// Inserts `peer` into `list`, kept sorted by address (the caller knows it is absent).
fn insert<const N: usize>(list: &mut Vec<Peer<N>>, peer: Peer<N>) {
    if let Err(at) = list.binary_search_by(|p| p.addr.cmp(&peer.addr)) {
        list.insert(at, peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Report::{Completed, Leeching, NothingLeft};

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
        assert_eq!(l.upsert(a(1), Leeching, 0, 10, 0), Was::Absent);
        assert_eq!(l.upsert(a(1), Leeching, 1, 10, 0), Was::Leecher);
        assert_eq!((l.seeders(), l.leechers()), (0, 1));
        assert_eq!(l.upsert(a(1), Completed, 2, 10, 0), Was::Leecher);
        assert_eq!((l.seeders(), l.leechers()), (1, 0));
        assert_eq!(l.upsert(a(1), NothingLeft, 3, 10, 0), Was::Seeder);
        assert_eq!(l.upsert(a(1), Leeching, 4, 10, 0), Was::Seeder);
        assert_eq!((l.seeders(), l.leechers()), (0, 1));
        assert_eq!(l.remove(a(1)), Was::Leecher);
        assert_eq!(l.remove(a(1)), Was::Absent);
        assert!(l.is_empty());
    }

    /// Issue 15: aria2 fetching a magnet link's metadata announces `left=0`; it must not count
    /// as a seeder until it shows it has the data.
    #[test]
    fn left_zero_alone_is_not_a_seeder_until_the_data_is_shown() {
        let mut l = PeerList::<6>::default();
        // Only ever `left=0`: a leecher, flagged, however often it says so.
        assert_eq!(l.upsert(a(1), NothingLeft, 0, 10, 0), Was::Absent);
        assert_eq!(l.upsert(a(1), NothingLeft, 1, 10, 0), Was::Unconfirmed);
        assert_eq!((l.seeders(), l.leechers()), (0, 1));
        // Then it learns the size (`left>0`), and later has everything (`left=0`): a seeder,
        // with or without `completed`.
        assert_eq!(l.upsert(a(1), Leeching, 2, 10, 0), Was::Unconfirmed);
        assert_eq!(l.upsert(a(1), Leeching, 3, 10, 0), Was::Leecher);
        assert_eq!(l.upsert(a(1), NothingLeft, 4, 10, 0), Was::Leecher);
        assert_eq!((l.seeders(), l.leechers()), (1, 0));
        // `completed` with `left=0` is enough on its own.
        assert_eq!(l.upsert(a(2), NothingLeft, 5, 10, 0), Was::Absent);
        assert_eq!(l.upsert(a(2), Completed, 6, 10, 0), Was::Unconfirmed);
        assert_eq!(l.upsert(a(3), Completed, 6, 10, 0), Was::Absent);
        assert_eq!((l.seeders(), l.leechers()), (3, 0));
        // A stopped unconfirmed peer comes back unconfirmed.
        l.upsert(a(4), NothingLeft, 7, 10, 0);
        assert_eq!(l.remove(a(4)), Was::Unconfirmed);
        assert_eq!(l.upsert(a(4), NothingLeft, 8, 10, 0), Was::Absent);
        assert_eq!(l.upsert(a(4), NothingLeft, 8, 10, 0), Was::Unconfirmed);
        // The rule itself.
        for was in [Was::Absent, Was::Unconfirmed] {
            assert!(!seeds(was, NothingLeft));
            assert!(seeds(was, Completed));
        }
        assert!(seeds(Was::Leecher, NothingLeft) && seeds(Was::Seeder, NothingLeft));
        assert!(!seeds(Was::Seeder, Leeching));
    }

    #[test]
    fn the_flag_is_not_part_of_the_tick() {
        let mut l = PeerList::<6>::default();
        l.upsert(a(1), NothingLeft, 100, 10, 0);
        l.upsert(a(2), Leeching, 100, 10, 0);
        assert_eq!(l.expire(110, 10), 0);
        assert_eq!(l.expire(111, 10), 2);
        // Ticks wrap at 15 bits.
        l.upsert(a(1), NothingLeft, TICK_MASK - 2, 10, 0);
        assert_eq!(l.expire(5, 10), 0);
        assert_eq!(l.expire(9, 10), 1);
    }

    #[test]
    fn absorb_adds_the_peers_not_here_as_they_were() {
        let mut l = PeerList::<6>::default();
        l.upsert(a(1), Leeching, 0, 10, 0);
        let mut other = PeerList::<6>::default();
        other.upsert(a(1), Completed, 0, 10, 0);
        other.upsert(a(2), Completed, 0, 10, 0);
        other.upsert(a(3), NothingLeft, 0, 10, 0);
        other.upsert(a(4), Leeching, 0, 10, 0);
        l.absorb(other, 3);
        assert_eq!((l.seeders(), l.leechers()), (1, 2));
        assert_eq!(l.upsert(a(3), NothingLeft, 1, 10, 0), Was::Unconfirmed);
        assert_eq!(l.upsert(a(1), Leeching, 1, 10, 0), Was::Leecher);
    }

    #[test]
    fn cap_stops_new_peers_but_not_known_ones() {
        let mut l = PeerList::<6>::default();
        l.upsert(a(1), Leeching, 0, 2, 0);
        l.upsert(a(2), Leeching, 0, 2, 0);
        assert_eq!(l.upsert(a(3), Leeching, 0, 2, 0), Was::Absent);
        assert_eq!(l.len(), 2);
        assert_eq!(l.upsert(a(2), Completed, 0, 2, 0), Was::Leecher);
        assert_eq!((l.seeders(), l.leechers()), (1, 1));
    }

    #[test]
    fn one_client_stores_at_most_per_client_peers_whatever_its_ports() {
        let mut l = PeerList::<6>::default();
        for port in 1..=10u16 {
            let mut addr = a(7);
            addr[4..].copy_from_slice(&port.to_be_bytes());
            let report = if port % 2 == 0 { Completed } else { Leeching };
            l.upsert(addr, report, 0, 100, 3);
        }
        assert_eq!(l.len(), 3);
        assert_eq!(l.same_client(&a(7)), 3);
        // Others are not held back, and a known peer still moves between lists.
        assert_eq!(l.upsert(a(8), Leeching, 0, 100, 3), Was::Absent);
        assert_eq!(l.len(), 4);
        let mut first = a(7);
        first[4..].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(l.upsert(first, Completed, 1, 100, 3), Was::Leecher);
        // IPv6: one /64 is one client.
        let mut l6 = PeerList::<18>::default();
        for i in 0..10u8 {
            let mut addr = [0u8; 18];
            addr[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1]);
            addr[15] = i;
            l6.upsert(addr, Leeching, 0, 100, 2);
        }
        assert_eq!(l6.len(), 2);
    }

    #[test]
    fn pick_skips_requester_and_seeders_get_leechers() {
        let mut l = PeerList::<6>::default();
        for n in 1..=5 {
            let report = if n <= 2 { Completed } else { Leeching };
            l.upsert(a(n), report, 0, 100, 0);
        }
        // An unconfirmed peer is listed to seeders too.
        l.upsert(a(6), NothingLeft, 0, 100, 0);
        for random in 0..10 {
            let mut out = Vec::new();
            l.pick(50, &a(3), false, random, &mut out);
            assert_eq!(out.len(), 5 * 6);
            assert!(!out.chunks(6).any(|c| c == a(3)));
            let mut out = Vec::new();
            l.pick(50, &a(1), true, random, &mut out);
            let got: Vec<u8> = out.chunks(6).map(|c| c[3]).collect();
            assert_eq!(got.len(), 4);
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
        l.upsert(a(1), Leeching, TICK_MASK - 5, 10, 0);
        l.upsert(a(2), Completed, 3, 10, 0);
        assert_eq!(l.expire(4, 10), 0);
        assert_eq!(l.expire(13, 10), 1);
        assert_eq!((l.seeders(), l.leechers()), (1, 0));
    }
}
