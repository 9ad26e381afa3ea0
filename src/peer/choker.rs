//! Which peers get upload slots. A seed has nothing to reciprocate, so slots rotate: every round
//! (10 s) the regular slots go to interested peers, those that have held a slot for a while
//! yielding to those still waiting, the rest by upload rate; one more slot is optimistic, moved
//! to a random waiting peer every third round. A newly interested peer gets a free slot at once.
//!
//! Pure: the caller runs the rounds, passes randomness, and applies the returned changes.

use std::collections::BTreeMap;

pub type PeerKey = u64;

/// Rounds a peer keeps a regular slot before peers still waiting go first.
const TENURE: u32 = 3;
/// The optimistic slot moves every this many rounds.
const OPTIMISTIC_ROUNDS: u64 = 3;

#[derive(Debug, Default, Clone)]
struct Peer {
    interested: bool,
    unchoked: bool,
    /// Consecutive rounds unchoked.
    rounds: u32,
    /// Bytes sent since the last round.
    uploaded: u64,
    /// Consecutive rounds interested and choked.
    waited: u32,
    /// Its last round unchoked went by without a request: it ranks behind every peer that has
    /// not shown that, until it asks for something (the optimistic slot gives it the chance).
    idle: bool,
}

#[derive(Debug)]
pub struct Choker {
    slots: usize,
    peers: BTreeMap<PeerKey, Peer>,
    optimistic: Option<PeerKey>,
    round: u64,
}

/// `(peer, unchoke?)` for every peer whose state changed.
pub type Changes = Vec<(PeerKey, bool)>;

impl Choker {
    pub fn new(slots: usize) -> Self {
        Choker {
            slots: slots.max(1),
            peers: BTreeMap::new(),
            optimistic: None,
            round: 0,
        }
    }

    pub fn add(&mut self, key: PeerKey) {
        self.peers.insert(key, Peer::default());
    }

    fn unchoked_count(&self) -> usize {
        self.peers.values().filter(|p| p.unchoked).count()
    }

    /// A peer became (un)interested. An interested peer takes a free slot at once.
    pub fn set_interested(&mut self, key: PeerKey, interested: bool) -> Changes {
        let free = self.unchoked_count() < self.slots;
        let Some(p) = self.peers.get_mut(&key) else {
            return Vec::new();
        };
        p.interested = interested;
        if interested && !p.unchoked && free {
            p.unchoked = true;
            p.rounds = 0;
            return vec![(key, true)];
        }
        Vec::new()
    }

    pub fn uploaded(&mut self, key: PeerKey, bytes: u64) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.uploaded += bytes;
        }
    }

    /// A peer left; its slot goes to a waiting peer at once.
    pub fn remove(&mut self, key: PeerKey) -> Changes {
        let Some(p) = self.peers.remove(&key) else {
            return Vec::new();
        };
        if self.optimistic == Some(key) {
            self.optimistic = None;
        }
        if !p.unchoked {
            return Vec::new();
        }
        let waiting = self
            .peers
            .iter_mut()
            .find(|(_, p)| p.interested && !p.unchoked);
        match waiting {
            Some((k, p)) => {
                p.unchoked = true;
                p.rounds = 0;
                vec![(*k, true)]
            }
            None => Vec::new(),
        }
    }

    /// One round. `random` picks the optimistic peer.
    pub fn rechoke(&mut self, random: u64) -> Changes {
        self.round += 1;
        let regular = if self.slots > 1 {
            self.slots - 1
        } else {
            self.slots
        };
        // A slot held a whole round without a request was wasted: interest alone does not hold
        // one, and such a peer does not count as waiting until it asks for something.
        for p in self.peers.values_mut() {
            if p.unchoked && p.rounds >= 1 {
                p.idle = p.uploaded == 0;
            }
        }
        let waiting = self
            .peers
            .values()
            .filter(|p| p.interested && !p.unchoked && !p.idle)
            .count();
        let mut ranked: Vec<(PeerKey, bool, bool, u64, u32)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.interested)
            .map(|(k, p)| {
                // Idle peers last. With peers waiting, a long-held slot ranks behind the rest;
                // among those, the fastest first, then whoever waited longest.
                let tired = waiting > 0 && p.unchoked && p.rounds >= TENURE;
                (*k, p.idle, tired, p.uploaded, p.waited)
            })
            .collect();
        ranked.sort_by(|a, b| {
            a.1.cmp(&b.1)
                .then(a.2.cmp(&b.2))
                .then(b.3.cmp(&a.3))
                .then(b.4.cmp(&a.4))
        });
        let mut keep: Vec<PeerKey> = ranked.iter().take(regular).map(|r| r.0).collect();

        let rotate = self.round % OPTIMISTIC_ROUNDS == 0
            || self
                .optimistic
                .is_none_or(|k| !self.peers.get(&k).is_some_and(|p| p.interested));
        if self.slots > 1 {
            if rotate {
                let rest: Vec<PeerKey> = ranked
                    .iter()
                    .map(|r| r.0)
                    .filter(|k| !keep.contains(k))
                    .collect();
                self.optimistic = if rest.is_empty() {
                    None
                } else {
                    Some(rest[(random % rest.len() as u64) as usize])
                };
            }
            if let Some(k) = self.optimistic {
                if !keep.contains(&k) {
                    keep.push(k);
                }
            }
        }

        let mut changes = Vec::new();
        for (k, p) in self.peers.iter_mut() {
            let on = keep.contains(k);
            if on != p.unchoked {
                changes.push((*k, on));
            }
            p.rounds = if on { p.rounds + 1 } else { 0 };
            p.waited = if !on && p.interested { p.waited + 1 } else { 0 };
            p.unchoked = on;
            p.uploaded = 0;
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_are_taken_at_once_and_freed_on_leave() {
        let mut c = Choker::new(2);
        for k in 1..=3 {
            c.add(k);
        }
        assert_eq!(c.set_interested(1, true), vec![(1, true)]);
        assert_eq!(c.set_interested(2, true), vec![(2, true)]);
        assert_eq!(c.set_interested(3, true), vec![]);
        assert_eq!(c.remove(1), vec![(3, true)]);
    }

    fn unchoked(c: &Choker) -> Vec<PeerKey> {
        c.peers
            .iter()
            .filter(|(_, p)| p.unchoked)
            .map(|(k, _)| *k)
            .collect()
    }

    #[test]
    fn slots_rotate_so_every_waiting_peer_is_served() {
        // 3 slots (2 regular + 1 optimistic), 8 interested peers, the first ones faster.
        let mut c = Choker::new(3);
        for k in 0..8 {
            c.add(k);
            c.set_interested(k, true);
        }
        let mut served = std::collections::BTreeSet::new();
        for round in 0..40u64 {
            // Only unchoked peers receive data; the low keys are the fast ones.
            let on = unchoked(&c);
            for k in on {
                c.uploaded(k, 1000 * (8 - k));
            }
            c.rechoke(round * 7919);
            let on = unchoked(&c);
            assert!(on.len() <= 3, "{on:?}");
            served.extend(on);
        }
        assert_eq!(served.len(), 8, "every peer got a slot: {served:?}");
    }

    #[test]
    fn a_slot_held_without_requests_goes_to_a_waiting_peer() {
        // 2 slots (1 regular + 1 optimistic); peer 1 downloads, peers 2..=5 only say interested.
        let mut c = Choker::new(2);
        for k in 1..=5 {
            c.add(k);
            c.set_interested(k, true);
        }
        let mut rounds_served = 0;
        for round in 0..30u64 {
            if unchoked(&c).contains(&1) {
                c.uploaded(1, 100_000);
                rounds_served += 1;
            }
            c.rechoke(round * 7919);
        }
        // Idle peers lose their slot after one round; the downloader keeps coming back.
        assert!(
            rounds_served >= 27,
            "the downloader was served {rounds_served} of 30 rounds"
        );
    }

    #[test]
    fn uninterested_peers_are_choked() {
        let mut c = Choker::new(4);
        c.add(1);
        c.set_interested(1, true);
        c.set_interested(1, false);
        assert_eq!(c.rechoke(0), vec![(1, false)]);
    }
}
