//! Where a super-seeded torrent's downloading peers stand: how many pieces each has against
//! their average. When the publisher's budget is contended, a peer behind the average draws on
//! it first (`Inner::take_upload`).
//!
//! Why: a rate-limited libtorrent requests from a peer in proportion to what it lately got from
//! it, so a leecher that falls behind at the start (its web seed request holding its download
//! quota, a slow first unchoke) stays behind to the end, and the whole swarm waits for it while
//! the others idle as seeds. The publisher's bytes are the one lever on that: sent first to
//! whoever is behind, they keep the swarm level (measured in the README's "Offload": the last
//! leecher done about 0.35 s sooner, the leechers within 1.2–2.6 s of each other instead of
//! 3–5 s, for 0.04 (N = 8) to 0.07 (N = 16) more copies, in medians).
//!
//! The sum and the count are two atomics, updated one after the other: a reader may see them a
//! message apart, which moves a peer's rank for that moment and nothing else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a peer behind that was refused the budget holds back the peers ahead of it: a
/// little longer than it waits for its next grant (`egress` asks again within 10 ms).
const HOLD: Duration = Duration::from_millis(50);

/// Per torrent: the pieces its downloading peers hold, summed, and how many they are.
#[derive(Debug)]
pub struct Standing {
    held: AtomicU64,
    downloading: AtomicU64,
    /// Until when (milliseconds after `epoch`) a peer behind waits for the budget.
    behind_waits_until: AtomicU64,
    epoch: Instant,
}

impl Default for Standing {
    fn default() -> Self {
        Standing {
            held: AtomicU64::new(0),
            downloading: AtomicU64::new(0),
            behind_waits_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Standing {
    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// A peer behind the others was refused the budget at `now`.
    fn behind_waits(&self, now: Instant) {
        self.behind_waits_until
            .fetch_max(self.ms(now + HOLD), Ordering::Relaxed);
    }

    /// Whether a peer behind is waiting for the budget: peers ahead let it go first.
    fn behind_waiting(&self, now: Instant) -> bool {
        self.ms(now) < self.behind_waits_until.load(Ordering::Relaxed)
    }
}

/// One peer's place in its torrent's `Standing`: counted while it downloads (it lacks some
/// piece), taken out when it completes or goes.
#[derive(Debug)]
pub struct Place<'a> {
    standing: &'a Standing,
    /// The torrent's piece count: a peer with all of them is done.
    pieces: u64,
    /// The pieces it has, while counted.
    counted: Option<u64>,
}

impl<'a> Place<'a> {
    pub fn new(standing: &'a Standing, pieces: u32) -> Self {
        Place {
            standing,
            pieces: u64::from(pieces),
            counted: None,
        }
    }

    /// The peer has `has` pieces (`None`: no longer known).
    pub fn set(&mut self, has: Option<u64>) {
        let now = has.filter(|&h| h < self.pieces);
        if now == self.counted {
            return;
        }
        let s = self.standing;
        match (self.counted, now) {
            (Some(old), Some(new)) => {
                s.held.fetch_add(new.wrapping_sub(old), Ordering::Relaxed);
            }
            (None, Some(new)) => {
                s.held.fetch_add(new, Ordering::Relaxed);
                s.downloading.fetch_add(1, Ordering::Relaxed);
            }
            (Some(old), None) => {
                s.held.fetch_sub(old, Ordering::Relaxed);
                s.downloading.fetch_sub(1, Ordering::Relaxed);
            }
            (None, None) => {}
        }
        self.counted = now;
    }

    /// `Some(true)` when the peer has fewer pieces than its torrent's downloading peers on
    /// average, `Some(false)` when it has as many or more; `None` when it is not counted (a
    /// seed, not super-seeded) or alone.
    pub fn behind(&self) -> Option<bool> {
        let has = self.counted?;
        let n = self.standing.downloading.load(Ordering::Relaxed);
        let held = self.standing.held.load(Ordering::Relaxed);
        (n >= 2).then(|| u128::from(has) * u128::from(n) < u128::from(held))
    }

    /// Whether the peer lets one behind it draw on the budget first at `now`: it is not behind,
    /// and one behind was lately refused.
    pub fn yields(&self, now: Instant) -> bool {
        self.behind() == Some(false) && self.standing.behind_waiting(now)
    }

    /// The budget refused the peer at `now`: if it is behind, peers ahead hold back a while.
    pub fn refused(&self, now: Instant) {
        if self.behind() == Some(true) {
            self.standing.behind_waits(now);
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_below_the_average_are_behind() {
        let s = Standing::default();
        let mut a = Place::new(&s, 100);
        let mut b = Place::new(&s, 100);
        a.set(Some(10));
        assert_eq!(a.behind(), None, "alone");
        b.set(Some(30));
        assert_eq!(a.behind(), Some(true));
        assert_eq!(b.behind(), Some(false));
        // Level: nobody is behind.
        a.set(Some(30));
        assert_eq!((a.behind(), b.behind()), (Some(false), Some(false)));
        // b completes: it leaves the count, and a is alone again.
        a.set(Some(20));
        b.set(Some(100));
        assert_eq!(b.behind(), None);
        assert_eq!(a.behind(), None);
        let mut c = Place::new(&s, 100);
        c.set(Some(60));
        assert_eq!(a.behind(), Some(true));
        // A peer that goes takes its pieces with it.
        drop(c);
        assert_eq!(
            (
                s.held.load(Ordering::Relaxed),
                s.downloading.load(Ordering::Relaxed)
            ),
            (20, 1)
        );
        a.set(None);
        assert_eq!(s.held.load(Ordering::Relaxed), 0);
        assert_eq!(s.downloading.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn peers_ahead_let_a_refused_peer_behind_go_first_for_a_while() {
        let s = Standing::default();
        let (mut behind, mut ahead) = (Place::new(&s, 100), Place::new(&s, 100));
        behind.set(Some(10));
        ahead.set(Some(50));
        let t = Instant::now();
        assert!(!ahead.yields(t), "nobody waits yet");
        // Refusing a peer ahead changes nothing.
        ahead.refused(t);
        assert!(!ahead.yields(t));
        behind.refused(t);
        assert!(ahead.yields(t));
        assert!(ahead.yields(t + HOLD / 2));
        assert!(!behind.yields(t), "a peer behind never yields");
        assert!(
            !ahead.yields(t + HOLD + Duration::from_millis(1)),
            "only a while"
        );
        // Level again: nobody is behind, nobody yields.
        behind.set(Some(50));
        behind.refused(t);
        assert!(!ahead.yields(t + HOLD * 3));
        // A seed or a peer alone is not ranked.
        ahead.set(Some(100));
        behind.set(Some(10));
        behind.refused(t + HOLD * 4);
        assert!(!ahead.yields(t + HOLD * 4));
    }
}
