//! Which connection gives way when a cap is full and a new peer arrives. First come, first
//! served would let idle connections (keep-alives alone) lock real downloaders out for good;
//! instead the least useful connection past its grace time is closed: a peer that is itself a
//! seed (it wants nothing from us), then one not interested, then one that has asked for
//! nothing for a while. A peer downloading now is never the one.
//!
//! Pure: the caller describes the connections and applies the choice.

use std::time::Duration;

use super::choker::PeerKey;

/// A new connection's time to say what it wants before it can be evicted.
pub const GRACE: Duration = Duration::from_secs(10);
/// Interested, but nothing requested for this long (keep-alives do not count): idle.
pub const IDLE: Duration = Duration::from_secs(60);

/// What the caller knows of one open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub key: PeerKey,
    pub connected_for: Duration,
    /// Since the peer last did something useful (became interested, sent a request).
    pub idle_for: Duration,
    pub interested: bool,
    /// The peer has every piece (HaveAll or a full bitfield).
    pub seed: bool,
}

impl Candidate {
    /// Lower is less useful; `None` when it may not be evicted.
    fn rank(&self) -> Option<(u8, std::cmp::Reverse<Duration>)> {
        if self.connected_for < GRACE {
            return None;
        }
        let class = if self.seed {
            0
        } else if !self.interested {
            1
        } else if self.idle_for >= IDLE {
            2
        } else {
            return None;
        };
        Some((class, std::cmp::Reverse(self.idle_for)))
    }
}

/// The connection to close for a newcomer, if any may go.
pub fn victim(candidates: impl IntoIterator<Item = Candidate>) -> Option<PeerKey> {
    candidates
        .into_iter()
        .filter_map(|c| c.rank().map(|r| (r, c.key)))
        .min()
        .map(|(_, key)| key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: PeerKey, connected: u64, idle: u64, interested: bool, seed: bool) -> Candidate {
        Candidate {
            key,
            connected_for: Duration::from_secs(connected),
            idle_for: Duration::from_secs(idle),
            interested,
            seed,
        }
    }

    #[test]
    fn the_least_useful_past_its_grace_goes() {
        // A downloader, a fresh connection, an idle interested peer, an uninterested one.
        let downloading = c(1, 600, 1, true, false);
        let fresh = c(2, 3, 3, false, false);
        let idle = c(3, 600, 300, true, false);
        let uninterested = c(4, 60, 60, false, false);
        assert_eq!(victim([downloading, fresh]), None);
        assert_eq!(victim([downloading, fresh, idle]), Some(3));
        assert_eq!(victim([downloading, idle, uninterested]), Some(4));
        // A seed goes first; among equals, the one idle longest.
        assert_eq!(victim([uninterested, c(5, 60, 1, true, true)]), Some(5));
        assert_eq!(
            victim([c(6, 100, 20, false, false), c(7, 100, 90, false, false)]),
            Some(7)
        );
        // Interested and recently active: never.
        assert_eq!(victim([c(8, 1000, 59, true, false)]), None);
    }
}
