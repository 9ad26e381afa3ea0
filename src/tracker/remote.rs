//! Cluster mode's side of the swarm store (`crate::cluster` carries it between nodes): each
//! shard's announces leave as [`PeerDelta`]s, and the other nodes' come back in as peers of the
//! same swarms. A remote peer is an ordinary peer here: answered from memory, expired by the
//! sweep when no node has heard of it for twice the interval. Its completions are not counted
//! again (each node counts its own; the cluster sums them).
//!
//! Pure, like `swarm`: the caller passes the time in ticks.

use std::net::SocketAddr;

use super::http_request::{Event, InfoHash};
use super::peer_list::Report;
use super::swarm::{update, Announce, Limits, Shard, Swarm, SwarmChange};

/// Announces a shard keeps for the next batch; more are dropped (the periodic snapshot covers
/// them), so a node cut off from Redis holds bounded memory.
pub const OUTBOX_MAX: usize = 4_096;

/// One peer's state as one node saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerDelta {
    /// The swarm's key (a hybrid torrent's v1 hash).
    pub info_hash: InfoHash,
    pub peer: SocketAddr,
    pub seeder: bool,
    pub stopped: bool,
    /// Seconds since that node last heard from the peer (0 for a fresh announce).
    pub age_secs: u16,
}

impl Shard {
    /// Takes in another node's view of one peer at tick `at`. In published mode only published
    /// swarms take remote peers. Returns what happened to the live swarms.
    pub fn apply_remote(&mut self, d: &PeerDelta, limits: Limits, at: u16) -> SwarmChange {
        let mut change = SwarmChange::default();
        if d.peer.port() == 0 || (!limits.open && !self.published.contains(&d.info_hash)) {
            return change;
        }
        let swarm = match self.swarms.entry(d.info_hash) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                if d.stopped || !limits.may_create {
                    return change;
                }
                change.created = true;
                e.insert(Swarm::default())
            }
        };
        let a = Announce {
            info_hash: d.info_hash,
            peer: d.peer,
            event: if d.stopped {
                Event::Stopped
            } else {
                Event::None
            },
            left: u64::from(!d.seeder),
            numwant: 0,
            both_families: false,
            local_ip: None,
        };
        // A seeder is taken as one at once: the node that heard it checked it already.
        let report = if d.seeder {
            Report::Completed
        } else {
            Report::Leeching
        };
        update(swarm, &a, report, at, limits);
        if swarm.is_empty() {
            change.removed = self.swarms.remove(&d.info_hash).map(|s| s.creator);
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            open: false,
            max_peers: 100,
            max_peers_per_ip: 0,
            may_create: true,
            own_seed: true,
        }
    }

    fn delta(peer: &str, seeder: bool, stopped: bool) -> PeerDelta {
        PeerDelta {
            info_hash: InfoHash::new([1; 20]),
            peer: peer.parse().unwrap(),
            seeder,
            stopped,
            age_secs: 0,
        }
    }

    #[test]
    fn remote_peers_join_published_swarms_and_leave_on_stop() {
        let mut shard = Shard::default();
        // Unpublished: ignored.
        let c = shard.apply_remote(&delta("10.0.0.1:1", false, false), limits(), 0);
        assert!(!c.created && shard.swarms.is_empty());
        shard.published.insert(InfoHash::new([1; 20]));
        let c = shard.apply_remote(&delta("10.0.0.1:1", false, false), limits(), 0);
        assert!(c.created);
        shard.apply_remote(&delta("10.0.0.2:1", true, false), limits(), 0);
        let counts = shard.counts(&InfoHash::new([1; 20]));
        assert_eq!(
            (counts.complete, counts.incomplete, counts.downloaded),
            (1, 1, 0)
        );
        shard.apply_remote(&delta("10.0.0.1:1", false, true), limits(), 0);
        let c = shard.apply_remote(&delta("10.0.0.2:1", true, true), limits(), 0);
        assert_eq!(c.removed, Some(0));
        assert!(shard.swarms.is_empty());
    }

    #[test]
    fn local_announces_fill_the_outbox_only_when_replicating() {
        let mut shard = Shard::default();
        shard.published.insert(InfoHash::new([1; 20]));
        let a = Announce {
            info_hash: InfoHash::new([1; 20]),
            peer: "10.0.0.1:1".parse().unwrap(),
            event: Event::Started,
            left: 5,
            numwant: 10,
            both_families: true,
            local_ip: None,
        };
        let mut claim = |_| true;
        shard
            .announce(&a, limits(), 0, 0, &mut claim, &mut vec![], &mut vec![])
            .unwrap();
        assert!(shard.outbox.is_none());
        shard.outbox = Some(Vec::new());
        shard
            .announce(&a, limits(), 0, 0, &mut claim, &mut vec![], &mut vec![])
            .unwrap();
        assert_eq!(
            shard.outbox.as_deref(),
            Some(&[delta("10.0.0.1:1", false, false)][..])
        );
    }

    #[test]
    fn cluster_seeds_are_listed_and_counted_with_the_own_seed() {
        let mut shard = Shard::default();
        shard.published.insert(InfoHash::new([1; 20]));
        shard
            .own_seeds
            .insert(InfoHash::new([1; 20]), "10.0.0.9:7000".parse().unwrap());
        shard.cluster_seeds = vec!["10.0.0.10:7000".parse().unwrap()].into();
        shard.remote_completed.insert(InfoHash::new([1; 20]), 4);
        let a = Announce {
            info_hash: InfoHash::new([1; 20]),
            peer: "10.0.0.1:1".parse().unwrap(),
            event: Event::Started,
            left: 5,
            numwant: 10,
            both_families: true,
            local_ip: None,
        };
        let mut p4 = Vec::new();
        let (counts, _) = shard
            .announce(&a, limits(), 0, 0, &mut |_| true, &mut p4, &mut vec![])
            .unwrap();
        assert_eq!(p4, [10, 0, 0, 9, 0x1b, 0x58, 10, 0, 0, 10, 0x1b, 0x58]);
        assert_eq!((counts.complete, counts.downloaded), (2, 4));
    }
}
