//! BEP 16 super-seeding: the seed shows each peer one piece at a time, choosing pieces that have
//! been handed out least, so that its upload goes to pieces nobody has yet and peers get the
//! rest from each other.
//!
//! A peer is shown its next piece once it reports having the one it was shown (BEP 16 waits to
//! see the piece at another peer; the relaxed rule keeps a lone downloader moving and spreads
//! the same way in a swarm, since pieces are still handed out least-offered first).

/// Per torrent: how often each piece was offered and reported by peers.
#[derive(Debug, Clone)]
pub struct SuperSeed {
    offered: Vec<u32>,
    seen: Vec<u32>,
}

impl SuperSeed {
    pub fn new(pieces: u32) -> Self {
        SuperSeed {
            offered: vec![0; pieces as usize],
            seen: vec![0; pieces as usize],
        }
    }

    /// A peer reported having `piece`.
    pub fn seen(&mut self, piece: u32) {
        if let Some(s) = self.seen.get_mut(piece as usize) {
            *s += 1;
        }
    }

    /// The piece to show a peer that has `has`: the least offered, then least seen, it lacks.
    pub fn pick(&mut self, has: &[bool]) -> Option<u32> {
        let best = (0..self.offered.len())
            .filter(|&i| !has.get(i).copied().unwrap_or(false))
            .min_by_key(|&i| (self.offered[i], self.seen[i]))?;
        self.offered[best] += 1;
        Some(best as u32)
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
        assert_eq!(s.pick(&none), Some(0));
        assert_eq!(s.pick(&none), Some(1));
        assert_eq!(s.pick(&none), Some(2));
        // Piece 3 seen elsewhere already still goes next (never offered), then the least seen.
        s.seen(3);
        s.seen(0);
        assert_eq!(s.pick(&none), Some(3));
        assert_eq!(s.pick(&none), Some(1));
        // A peer with everything gets nothing.
        assert_eq!(s.pick(&[true; 4]), None);
        assert_eq!(s.pick(&[true, true, false, true]), Some(2));
    }
}
