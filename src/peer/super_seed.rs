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

/// A piece already handed out is shown again only while fewer peers than this report having
/// it: once it has spread, peers get it from each other and the seed's upload is not spent
/// on it twice.
const AGAIN_BELOW_SEEN: u32 = 2;

/// Per torrent: how often each piece was offered and reported by peers.
#[derive(Debug, Clone)]
pub struct SuperSeed {
    offered: Vec<u32>,
    seen: Vec<u32>,
    /// Pieces never offered to anyone yet.
    unoffered: u32,
}

impl SuperSeed {
    pub fn new(pieces: u32) -> Self {
        SuperSeed {
            offered: vec![0; pieces as usize],
            seen: vec![0; pieces as usize],
            unoffered: pieces,
        }
    }

    /// A peer reported having `piece`.
    pub fn seen(&mut self, piece: u32) {
        if let Some(s) = self.seen.get_mut(piece as usize) {
            *s += 1;
        }
    }

    /// The piece to show a peer that has `has`: the least offered, then least seen, it lacks.
    ///
    /// Once every piece has been handed out, a piece goes out again only while it is rare
    /// (`AGAIN_BELOW_SEEN`).
    pub fn pick(&mut self, has: &[bool]) -> Option<u32> {
        let best = (0..self.offered.len())
            .filter(|&i| !has.get(i).copied().unwrap_or(false))
            .filter(|&i| self.offered[i] == 0 || self.seen[i] < AGAIN_BELOW_SEEN)
            .min_by_key(|&i| (self.offered[i], self.seen[i]))?;
        if self.offered[best] == 0 {
            self.unoffered -= 1;
        }
        self.offered[best] += 1;
        Some(best as u32)
    }

    /// Whether some piece has never been offered: the first copy is still going out.
    pub fn first_copy(&self) -> bool {
        self.unoffered > 0
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
        assert_eq!(s.pick(&none), Some(0));
        assert_eq!(s.pick(&none), Some(1));
        assert_eq!(s.pick(&none), Some(2));
        // Piece 3 seen elsewhere already still goes next (never offered), then the least seen.
        s.seen(3);
        s.seen(0);
        assert_eq!(s.pick(&none), Some(3));
        assert!(!s.first_copy());
        assert_eq!(s.pick(&none), Some(1));
        // A peer with everything gets nothing.
        assert_eq!(s.pick(&[true; 4]), None);
        assert_eq!(s.pick(&[true, true, false, true]), Some(2));
    }

    #[test]
    fn a_piece_that_has_spread_goes_out_again_only_while_rare() {
        let mut s = SuperSeed::new(2);
        let none = [false; 2];
        let a = s.pick(&none).unwrap();
        let b = s.pick(&none).unwrap();
        // Piece a reported by two peers, b by one: only b goes out again.
        for _ in 0..AGAIN_BELOW_SEEN {
            s.seen(a);
        }
        s.seen(b);
        assert_eq!(s.pick(&none), Some(b));
        let mut only_a = [false; 2];
        only_a[b as usize] = true;
        assert_eq!(s.pick(&only_a), None);
    }
}
