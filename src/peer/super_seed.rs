//! BEP 16 super-seeding: the seed shows each peer one piece at a time, choosing pieces that have
//! been handed out least, so that its upload goes to pieces nobody has yet and peers get the
//! rest from each other.
//!
//! A peer is shown its next piece once it reports having the one it was shown (BEP 16 waits to
//! see the piece at another peer; the relaxed rule keeps a lone downloader moving and spreads
//! the same way in a swarm, since pieces are still handed out least-offered first).
//!
//! While some piece has never been handed out (the first copy), a peer is shown several at
//! once (`Connection::offer_wanted`); after that, a piece goes out again only while it is rare.
//! Rare among the peers connected now: a peer that goes takes its reports with it
//! (`Reported`), or pieces whose holders have all left would never be shown again.

/// A piece already handed out is shown again only while fewer peers than this report having
/// it: once it has spread, peers get it from each other and the seed's upload is not spent
/// on it twice.
const AGAIN_BELOW_SEEN: u32 = 2;

/// Offers a wave of downloads may take, in copies of the torrent, while peers behind the
/// average are shown several pieces at a time after the first copy (`SuperSeed::spare`):
/// 6/5, a fifth of a copy beyond the first.
const SPARE: (u64, u64) = (6, 5);

use std::ops::Range;
use std::sync::Mutex;

/// The piece ranges clients are waiting on the web seed for, as `SuperSeed::pick` sweeps them:
/// their starts and ends, each sorted (empty or reversed ranges left out). Built once per
/// round of picks.
#[derive(Debug, Default)]
pub struct Waited {
    starts: Vec<u32>,
    ends: Vec<u32>,
}

impl Waited {
    pub fn new(ranges: &[Range<u32>]) -> Self {
        let ranges = ranges.iter().filter(|r| r.start < r.end);
        let mut starts: Vec<u32> = ranges.clone().map(|r| r.start).collect();
        let mut ends: Vec<u32> = ranges.map(|r| r.end).collect();
        starts.sort_unstable();
        ends.sort_unstable();
        Waited { starts, ends }
    }
}

/// Per torrent: how often each piece was offered, and how many connected peers report it.
#[derive(Debug, Clone)]
pub struct SuperSeed {
    offered: Vec<u32>,
    /// Connected peers that reported having each piece.
    seen: Vec<u32>,
    /// Pieces never offered to anyone yet.
    unoffered: u32,
    /// The sum of `offered`.
    offers: u64,
}

impl SuperSeed {
    pub fn new(pieces: u32) -> Self {
        SuperSeed {
            offered: vec![0; pieces as usize],
            seen: vec![0; pieces as usize],
            unoffered: pieces,
            offers: 0,
        }
    }

    /// A peer reported having `piece`.
    pub fn seen(&mut self, piece: u32) {
        if let Some(s) = self.seen.get_mut(piece as usize) {
            *s += 1;
        }
    }

    /// A peer that reported having `piece` went. When no connected peer has it any more, it
    /// is as if never handed out: the seed owes the swarm that copy again.
    fn forget(&mut self, piece: u32) {
        let i = piece as usize;
        let (Some(s), Some(o)) = (self.seen.get_mut(i), self.offered.get_mut(i)) else {
            return;
        };
        *s = s.saturating_sub(1);
        if *s == 0 && *o > 0 {
            self.offers -= u64::from(*o);
            *o = 0;
            self.unoffered += 1;
        }
    }

    /// The piece to show a peer that has `has`: the least offered, then the one fewest of
    /// `waited` cover (pieces other clients are waiting on the web seed for, and ask no peer
    /// for meanwhile), then the least seen, it lacks.
    ///
    /// Once every piece has been handed out, a piece goes out again only while it is rare
    /// (`AGAIN_BELOW_SEEN`), unless `any` (the swarm does not feed this peer).
    pub fn pick(&mut self, has: &[bool], waited: &Waited, any: bool) -> Option<u32> {
        // How many ranges cover piece i, swept in index order over sorted starts and ends.
        let (starts, ends) = (&waited.starts, &waited.ends);
        let (mut s, mut e) = (0, 0);
        let mut best: Option<((u32, usize, u32), usize)> = None;
        for i in 0..self.offered.len() {
            while s < starts.len() && starts[s] as usize <= i {
                s += 1;
            }
            while e < ends.len() && ends[e] as usize <= i {
                e += 1;
            }
            if has.get(i).copied().unwrap_or(false)
                || (!any && self.offered[i] > 0 && self.seen[i] >= AGAIN_BELOW_SEEN)
            {
                continue;
            }
            let key = (self.offered[i], s - e, self.seen[i]);
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, i));
            }
        }
        let (_, best) = best?;
        if self.offered[best] == 0 {
            self.unoffered -= 1;
        }
        self.offered[best] += 1;
        self.offers += 1;
        Some(best as u32)
    }

    /// Whether this wave's offers are still below `SPARE` copies of the torrent: peers behind
    /// the average may be shown several rare pieces at a time.
    pub fn spare(&self) -> bool {
        self.offers * SPARE.1 < self.offered.len() as u64 * SPARE.0
    }

    /// Whether some piece has never been offered: the first copy is still going out.
    pub fn first_copy(&self) -> bool {
        self.unoffered > 0
    }
}

/// The pieces one peer reported to its torrent's `SuperSeed`, taken back when the peer goes.
pub struct Reported<'a> {
    picker: &'a Mutex<SuperSeed>,
    pieces: Vec<u32>,
}

impl<'a> Reported<'a> {
    pub fn new(picker: &'a Mutex<SuperSeed>) -> Self {
        Reported {
            picker,
            pieces: Vec::new(),
        }
    }

    /// The torrent's picker.
    pub fn picker(&self) -> &'a Mutex<SuperSeed> {
        self.picker
    }

    /// The peer reports having `piece` (to `picker`: this one's, locked).
    pub fn seen(&mut self, picker: &mut SuperSeed, piece: u32) {
        picker.seen(piece);
        self.pieces.push(piece);
    }
}

impl Drop for Reported<'_> {
    fn drop(&mut self) {
        if self.pieces.is_empty() {
            return;
        }
        let mut picker = self.picker.lock().unwrap_or_else(|e| e.into_inner());
        for &p in &self.pieces {
            picker.forget(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_the_rarest_piece_a_peer_lacks() {
        let mut s = SuperSeed::new(4);
        let none = [false; 4];
        // Three peers get three different pieces.
        assert!(s.first_copy());
        assert_eq!(s.pick(&none, &Waited::default(), false), Some(0));
        assert_eq!(s.pick(&none, &Waited::default(), false), Some(1));
        assert_eq!(s.pick(&none, &Waited::default(), false), Some(2));
        // Piece 3 seen elsewhere already still goes next (never offered), then the least seen.
        s.seen(3);
        s.seen(0);
        assert_eq!(s.pick(&none, &Waited::default(), false), Some(3));
        assert!(!s.first_copy());
        assert_eq!(s.pick(&none, &Waited::default(), false), Some(1));
        // A peer with everything gets nothing.
        assert_eq!(s.pick(&[true; 4], &Waited::default(), false), None);
        assert_eq!(
            s.pick(&[true, true, false, true], &Waited::default(), false),
            Some(2)
        );
    }

    #[test]
    fn a_piece_that_has_spread_goes_out_again_only_while_rare() {
        let mut s = SuperSeed::new(2);
        let none = [false; 2];
        let a = s.pick(&none, &Waited::default(), false).unwrap();
        let b = s.pick(&none, &Waited::default(), false).unwrap();
        // Piece a reported by two peers, b by one: only b goes out again.
        for _ in 0..AGAIN_BELOW_SEEN {
            s.seen(a);
        }
        s.seen(b);
        assert_eq!(s.pick(&none, &Waited::default(), false), Some(b));
        let mut only_a = [false; 2];
        only_a[b as usize] = true;
        assert_eq!(s.pick(&only_a, &Waited::default(), false), None);
        // A peer the swarm does not feed is shown it all the same.
        assert_eq!(s.pick(&only_a, &Waited::default(), true), Some(a));
    }

    #[test]
    fn spare_offers_end_a_fifth_of_a_copy_past_the_first() {
        let mut s = SuperSeed::new(10);
        let none = [false; 10];
        for _ in 0..11 {
            assert!(s.spare());
            s.pick(&none, &Waited::default(), true).unwrap();
        }
        assert!(s.spare(), "11 offers of 10 pieces");
        s.pick(&none, &Waited::default(), true).unwrap();
        assert!(!s.spare(), "12 offers of 10 pieces");
    }

    #[test]
    fn a_piece_whose_holders_went_goes_out_again() {
        let picker = Mutex::new(SuperSeed::new(1));
        let none = [false; 1];
        let mut p = picker.lock().unwrap();
        assert_eq!(p.pick(&none, &Waited::default(), false), Some(0));
        drop(p);
        {
            let (mut a, mut b) = (Reported::new(&picker), Reported::new(&picker));
            let mut p = picker.lock().unwrap();
            a.seen(&mut p, 0);
            b.seen(&mut p, 0);
            // Two connected peers have it: not shown again.
            assert_eq!(p.pick(&none, &Waited::default(), false), None);
        }
        // Both went: it is owed again, as part of a first copy.
        let mut p = picker.lock().unwrap();
        assert!(p.first_copy());
        assert_eq!(p.pick(&none, &Waited::default(), false), Some(0));
        assert!(!p.first_copy());
    }

    #[test]
    fn pieces_clients_wait_on_the_web_seed_for_go_last() {
        let mut s = SuperSeed::new(8);
        let none = [false; 8];
        // Two clients wait on the web seed for 0..4 and 2..6: 6 and 7 first, then 0, 1, 4, 5
        // (one client each), then 2 and 3 (both).
        let waited = [0..4, 2..6];
        let order: Vec<u32> = (0..8)
            .filter_map(|_| s.pick(&none, &Waited::new(&waited), false))
            .collect();
        assert_eq!(order, [6, 7, 0, 1, 4, 5, 2, 3]);
        // Empty or reversed ranges count for nothing.
        let mut s = SuperSeed::new(3);
        #[allow(clippy::reversed_empty_ranges)]
        let odd = [1..1, 2..0];
        assert_eq!(s.pick(&[false; 3], &Waited::new(&odd), false), Some(0));
    }
}
