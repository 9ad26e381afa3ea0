//! One shard of the swarm store: the swarms whose info hash falls in it, which of those hashes
//! are published, bitseed's own seed for each, and completed counts. The tracker keeps many
//! shards, each behind its own lock, so an announce locks only the shard of its info hash.
//!
//! Everything here is pure: the caller passes the time (in ticks) and the randomness.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::http_request::{Event, InfoHash};
use super::http_response::Counts;
use super::peer_list::{seeds, Addr, PeerList, Report, Was};
use super::remote::{PeerDelta, OUTBOX_MAX};

/// The peers of one torrent. The v6 half is boxed: most swarms have no v6 peer, and an empty
/// box costs 8 bytes where two empty vectors cost 48.
#[derive(Debug, Default)]
pub struct Swarm {
    v4: PeerList<6>,
    v6: Option<Box<PeerList<18>>>,
    /// The client that created it in open mode (see [`client_key`]), 0 for none: its count of
    /// live swarms goes down when the swarm goes.
    pub creator: u64,
}

impl Swarm {
    pub fn seeders(&self) -> usize {
        self.v4.seeders() + self.v6.as_ref().map_or(0, |l| l.seeders())
    }

    pub fn leechers(&self) -> usize {
        self.v4.leechers() + self.v6.as_ref().map_or(0, |l| l.leechers())
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.as_ref().is_none_or(|l| l.is_empty())
    }

    /// Takes in the peers of `other` (the swarm of a hybrid torrent's other hash, being linked),
    /// up to `max_peers` in all.
    pub fn absorb(&mut self, other: Swarm, max_peers: usize) {
        let v6_len = self.v6.as_ref().map_or(0, |l| l.len());
        self.v4.absorb(other.v4, max_peers.saturating_sub(v6_len));
        if let Some(theirs) = other.v6 {
            let room = max_peers.saturating_sub(self.v4.len());
            self.v6
                .get_or_insert_with(Default::default)
                .absorb(*theirs, room);
            if self.v6.as_ref().is_some_and(|l| l.is_empty()) {
                self.v6 = None;
            }
        }
    }

    fn expire(&mut self, now: u16, max_age: u16) -> usize {
        let mut n = self.v4.expire(now, max_age);
        if let Some(v6) = &mut self.v6 {
            n += v6.expire(now, max_age);
            if v6.is_empty() {
                self.v6 = None;
            }
        }
        n
    }
}

/// One announce, whatever protocol it came over.
#[derive(Debug, Clone, Copy)]
pub struct Announce {
    pub info_hash: InfoHash,
    /// The client's address (v4-mapped v6 already turned into v4) and announced port; port 0
    /// gets an answer but is not stored.
    pub peer: SocketAddr,
    pub event: Event,
    pub left: u64,
    /// Peers wanted, already capped.
    pub numwant: usize,
    /// Whether peers of the other address family may be returned (HTTP yes, UDP no).
    pub both_families: bool,
    /// Our own address on the connection the announce came in on, when known: it stands in
    /// for an own seed registered without an IP (seeder on 0.0.0.0, no `peer.public_ip`).
    pub local_ip: Option<IpAddr>,
}

impl Announce {
    fn report(&self) -> Report {
        match (self.left, self.event) {
            (1.., _) => Report::Leeching,
            (0, Event::Completed) => Report::Completed,
            (0, _) => Report::NothingLeft,
        }
    }
}

/// Why an announce is refused; the text is the client's `failure reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unregistered torrent")]
    Unregistered,
    #[error("tracker is full")]
    TooManyTorrents,
}

/// Limits an announce is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub open: bool,
    pub max_peers: usize,
    /// Peers stored per swarm from one client address (an IPv6 /64); 0 = no limit.
    pub max_peers_per_ip: usize,
    /// Whether a new swarm may be created (the caller checks the global torrent count).
    pub may_create: bool,
    /// Whether bitseed's own seed may be listed in this answer (see `twins`).
    pub own_seed: bool,
}

#[derive(Debug, Default)]
pub struct Shard {
    pub swarms: HashMap<InfoHash, Swarm>,
    pub published: HashSet<InfoHash>,
    pub own_seeds: HashMap<InfoHash, SocketAddr>,
    /// Peers that ever completed, per info hash (nonzero only).
    pub completed: HashMap<InfoHash, u64>,
    /// Completions not yet written to the store.
    pub unsaved: HashMap<InfoHash, u64>,
    /// Announces handled, for the announces-per-second figure.
    pub announces: u64,
    /// Browser peers (WebSocket tracker), counted with the others.
    pub rtc: HashMap<InfoHash, super::rtc_swarm::RtcSwarm>,
    /// Cluster mode (`remote`): the announces to pass on to the other nodes; `None` on a single
    /// node, which then does nothing more per announce.
    pub outbox: Option<Vec<PeerDelta>>,
    /// Cluster mode: the other nodes' seeders, listed (and counted) with the own seed.
    pub cluster_seeds: std::sync::Arc<[SocketAddr]>,
    /// Cluster mode: completions the other nodes counted, per swarm.
    pub remote_completed: HashMap<InfoHash, u64>,
}

/// What an announce did to the live swarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwarmChange {
    /// A swarm was created.
    pub created: bool,
    /// A swarm was removed (possibly the one just created), with its creator's key.
    pub removed: Option<u64>,
}

pub use crate::ip_limit::client_key;

impl Shard {
    /// Records `a` and appends the peers to return to `peers4` / `peers6` (compact form).
    /// Creating a swarm that bitseed does not publish takes `claim(client)`: the caller's count
    /// of swarms per client, which may refuse.
    #[allow(clippy::too_many_arguments)]
    pub fn announce(
        &mut self,
        a: &Announce,
        limits: Limits,
        now: u16,
        random: u64,
        claim: &mut dyn FnMut(u64) -> bool,
        peers4: &mut Vec<u8>,
        peers6: &mut Vec<u8>,
    ) -> Result<(Counts, SwarmChange), Refusal> {
        let own_seed = limits.own_seed;
        self.announces += 1;
        let published = self.published.contains(&a.info_hash);
        if !limits.open && !published {
            return Err(Refusal::Unregistered);
        }
        let mut change = SwarmChange::default();
        if !self.swarms.contains_key(&a.info_hash) {
            // Nothing to store: answer without creating a swarm (the own seed may be listed).
            if a.event == Event::Stopped || a.peer.port() == 0 {
                if a.event != Event::Stopped {
                    let seeder = seeds(Was::Absent, a.report());
                    self.pick(a, seeder, random, own_seed, peers4, peers6);
                }
                return Ok((self.counts(&a.info_hash), change));
            }
            // What bitseed publishes is always tracked; other swarms count against the caps.
            let creator = if published {
                0
            } else {
                let key = client_key(a.peer.ip());
                if !limits.may_create || !claim(key) {
                    return Err(Refusal::TooManyTorrents);
                }
                key
            };
            self.swarms.insert(
                a.info_hash,
                Swarm {
                    creator,
                    ..Swarm::default()
                },
            );
            change.created = true;
        }
        let Some(swarm) = self.swarms.get_mut(&a.info_hash) else {
            return Ok((self.counts(&a.info_hash), change));
        };
        let report = a.report();
        let was = update(swarm, a, report, now, limits);
        let seeder = seeds(was, report);
        if let Some(out) = self.outbox.as_mut().filter(|o| o.len() < OUTBOX_MAX) {
            out.push(PeerDelta {
                info_hash: a.info_hash,
                peer: a.peer,
                seeder,
                stopped: a.event == Event::Stopped,
                age_secs: 0,
            });
        }
        if report == Report::Completed && was != Was::Seeder {
            *self.completed.entry(a.info_hash).or_default() += 1;
            *self.unsaved.entry(a.info_hash).or_default() += 1;
        }
        let counts = self.counts(&a.info_hash);
        if a.event != Event::Stopped {
            self.pick(a, seeder, random, own_seed, peers4, peers6);
        }
        if self.swarms.get(&a.info_hash).is_some_and(Swarm::is_empty) {
            change.removed = self.swarms.remove(&a.info_hash).map(|s| s.creator);
        }
        Ok((counts, change))
    }

    fn pick(
        &self,
        a: &Announce,
        seeder: bool,
        random: u64,
        own_seed: bool,
        peers4: &mut Vec<u8>,
        peers6: &mut Vec<u8>,
    ) {
        let mut want = a.numwant;
        let v4_first = a.peer.is_ipv4();
        // bitseed's own seed first, to everyone, even when it shares the requester's IP: a
        // client saying `left=0` may be a magnet client that needs the metadata from it
        // (issue 15), and a true seed just ignores it.
        let own = self
            .own_seeds
            .get(&a.info_hash)
            .filter(|_| own_seed)
            .and_then(|own| {
                if own.ip().is_unspecified() {
                    a.local_ip
                        .map(|ip| SocketAddr::new(ip.to_canonical(), own.port()))
                } else {
                    Some(*own)
                }
            });
        // The other nodes' seeders (cluster mode) with it: they publish the same torrents.
        let cluster = own.map_or(&[][..], |_| &self.cluster_seeds[..]);
        for own in own.iter().chain(cluster) {
            if want > 0 && (own.is_ipv4() == v4_first || a.both_families) {
                match compact(*own) {
                    Compact::V4(c) => peers4.extend_from_slice(&c),
                    Compact::V6(c) => peers6.extend_from_slice(&c),
                }
                want -= 1;
            }
        }
        let Some(swarm) = self.swarms.get(&a.info_hash) else {
            return;
        };
        let me = compact(a.peer);
        let (me4, me6) = match me {
            Compact::V4(c) => (c, [0; 18]),
            Compact::V6(c) => ([0; 6], c),
        };
        let before = peers4.len() / 6 + peers6.len() / 18;
        let pick4 = |want: usize, out: &mut Vec<u8>| swarm.v4.pick(want, &me4, seeder, random, out);
        let pick6 = |want: usize, out: &mut Vec<u8>| {
            if let Some(v6) = &swarm.v6 {
                v6.pick(want, &me6, seeder, random, out)
            }
        };
        if v4_first {
            pick4(want, peers4);
            if a.both_families {
                let got = peers4.len() / 6 + peers6.len() / 18 - before;
                pick6(want - got, peers6);
            }
        } else {
            pick6(want, peers6);
            if a.both_families {
                let got = peers4.len() / 6 + peers6.len() / 18 - before;
                pick4(want - got, peers4);
            }
        }
    }

    /// Up to `want` peers of `info_hash` (seeders first, from offset `random`), for the
    /// seeder's peer exchange.
    pub fn sample(&self, info_hash: &InfoHash, want: usize, random: u64) -> Vec<SocketAddr> {
        let Some(swarm) = self.swarms.get(info_hash) else {
            return Vec::new();
        };
        let mut v4 = Vec::new();
        swarm.v4.pick(want, &[0; 6], false, random, &mut v4);
        let mut v6 = Vec::new();
        if let Some(l) = &swarm.v6 {
            l.pick(
                want.saturating_sub(v4.len() / 6),
                &[0; 18],
                false,
                random,
                &mut v6,
            );
        }
        let four = v4.chunks_exact(6).map(|c| {
            let ip: [u8; 4] = [c[0], c[1], c[2], c[3]];
            SocketAddr::new(IpAddr::from(ip), u16::from_be_bytes([c[4], c[5]]))
        });
        let six = v6.chunks_exact(18).map(|c| {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&c[..16]);
            SocketAddr::new(IpAddr::from(ip), u16::from_be_bytes([c[16], c[17]]))
        });
        four.chain(six).take(want).collect()
    }

    /// Live seeders (bitseed's own included), leechers and ever-completed for `info_hash`.
    pub fn counts(&self, info_hash: &InfoHash) -> Counts {
        let own = match self.own_seeds.contains_key(info_hash) {
            true => 1 + self.cluster_seeds.len() as u32,
            false => 0,
        };
        let downloaded = self.completed.get(info_hash).copied().unwrap_or(0)
            + self.remote_completed.get(info_hash).copied().unwrap_or(0);
        let (rtc_seeders, rtc_leechers) = self
            .rtc
            .get(info_hash)
            .map_or((0, 0), |s| (s.seeders() as u32, s.leechers() as u32));
        let counts = match self.swarms.get(info_hash) {
            Some(s) => Counts {
                complete: s.seeders() as u32 + own,
                incomplete: s.leechers() as u32,
                downloaded,
            },
            None => Counts {
                complete: own,
                incomplete: 0,
                downloaded,
            },
        };
        Counts {
            complete: counts.complete + rtc_seeders,
            incomplete: counts.incomplete + rtc_leechers,
            ..counts
        }
    }

    /// Drops peers silent for more than `max_age` ticks and swarms left empty; appends the
    /// creators of the swarms removed (0 for none) to `removed`.
    pub fn sweep(&mut self, now: u16, max_age: u16, removed: &mut Vec<u64>) {
        self.swarms.retain(|_, s| {
            s.expire(now, max_age);
            if s.is_empty() {
                removed.push(s.creator);
            }
            !s.is_empty()
        });
        if self.swarms.capacity() > 64 && self.swarms.len() < self.swarms.capacity() / 4 {
            self.swarms.shrink_to(self.swarms.len() * 2);
        }
    }
}

pub(super) fn update(
    swarm: &mut Swarm,
    a: &Announce,
    report: Report,
    now: u16,
    limits: Limits,
) -> Was {
    let (max_peers, per_client) = (limits.max_peers, limits.max_peers_per_ip);
    let stopped = a.event == Event::Stopped;
    if a.peer.port() == 0 {
        return Was::Absent;
    }
    match compact(a.peer) {
        Compact::V4(c) => {
            let room = max_peers.saturating_sub(swarm.v6.as_ref().map_or(0, |l| l.len()));
            if stopped {
                swarm.v4.remove(c)
            } else {
                swarm.v4.upsert(c, report, now, room, per_client)
            }
        }
        Compact::V6(c) => {
            let room = max_peers.saturating_sub(swarm.v4.len());
            if stopped {
                swarm.v6.as_mut().map_or(Was::Absent, |l| l.remove(c))
            } else {
                swarm
                    .v6
                    .get_or_insert_with(Default::default)
                    .upsert(c, report, now, room, per_client)
            }
        }
    }
}

enum Compact {
    V4(Addr<6>),
    V6(Addr<18>),
}

/// BEP 23 / BEP 7 compact form: IP then port, big-endian.
fn compact(addr: SocketAddr) -> Compact {
    let port = addr.port().to_be_bytes();
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => {
            let mut c = [0u8; 6];
            c[..4].copy_from_slice(&ip.octets());
            c[4..].copy_from_slice(&port);
            Compact::V4(c)
        }
        IpAddr::V6(ip) => {
            let mut c = [0u8; 18];
            c[..16].copy_from_slice(&ip.octets());
            c[16..].copy_from_slice(&port);
            Compact::V6(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: InfoHash = InfoHash::new([1; 20]);
    const OPEN: Limits = Limits {
        open: true,
        max_peers: 100,
        max_peers_per_ip: 0,
        may_create: true,
        own_seed: true,
    };

    fn ann(peer: &str, event: Event, left: u64) -> Announce {
        Announce {
            info_hash: H,
            peer: peer.parse().unwrap(),
            event,
            left,
            numwant: 50,
            both_families: true,
            local_ip: None,
        }
    }

    fn run(shard: &mut Shard, a: Announce) -> (Counts, Vec<u8>, Vec<u8>) {
        let (mut p4, mut p6) = (Vec::new(), Vec::new());
        let (counts, _) = shard
            .announce(&a, OPEN, 0, 0, &mut |_| true, &mut p4, &mut p6)
            .unwrap();
        (counts, p4, p6)
    }

    #[test]
    fn published_mode_refuses_unknown_hashes() {
        let mut shard = Shard::default();
        let limits = Limits {
            open: false,
            ..OPEN
        };
        let a = ann("10.0.0.1:1", Event::Started, 5);
        assert_eq!(
            shard.announce(&a, limits, 0, 0, &mut |_| true, &mut vec![], &mut vec![]),
            Err(Refusal::Unregistered)
        );
        shard.published.insert(H);
        assert!(shard
            .announce(&a, limits, 0, 0, &mut |_| true, &mut vec![], &mut vec![])
            .is_ok());
    }

    #[test]
    fn completed_counted_once_and_only_with_left_zero() {
        let mut shard = Shard::default();
        run(&mut shard, ann("10.0.0.1:1", Event::Started, 5));
        let (c, ..) = run(&mut shard, ann("10.0.0.1:1", Event::Completed, 1));
        assert_eq!(c.downloaded, 0);
        let (c, ..) = run(&mut shard, ann("10.0.0.1:1", Event::Completed, 0));
        assert_eq!((c.complete, c.incomplete, c.downloaded), (1, 0, 1));
        let (c, ..) = run(&mut shard, ann("10.0.0.1:1", Event::Completed, 0));
        assert_eq!(c.downloaded, 1);
        assert_eq!(shard.unsaved.get(&H), Some(&1));
    }

    #[test]
    fn own_seed_listed_to_everyone_even_sharing_its_ip_and_counted() {
        let mut shard = Shard::default();
        shard.own_seeds.insert(H, "10.0.0.1:7000".parse().unwrap());
        let (c, p4, p6) = run(&mut shard, ann("10.0.0.1:6881", Event::Started, 5));
        assert_eq!((c.complete, c.incomplete), (1, 1));
        assert_eq!(p4, [10, 0, 0, 1, 0x1b, 0x58]);
        assert!(p6.is_empty());
        // A seeder gets leechers only, and the own seed all the same.
        let (c, p4, _) = run(&mut shard, ann("10.0.0.2:6881", Event::Completed, 0));
        assert_eq!((c.complete, c.incomplete), (2, 1));
        assert_eq!(p4, [10, 0, 0, 1, 0x1b, 0x58, 10, 0, 0, 1, 0x1a, 0xe1]);
    }

    /// Issue 15: aria2 given a magnet link announces `left=0` while it fetches the metadata. It
    /// must get the own seed (it has nothing yet) and not be counted as a seeder.
    #[test]
    fn a_left_zero_announce_gets_the_own_seed_and_counts_as_incomplete() {
        let mut shard = Shard::default();
        shard.own_seeds.insert(H, "10.0.0.7:7000".parse().unwrap());
        let own = [10, 0, 0, 7, 0x1b, 0x58];
        let (c, p4, _) = run(&mut shard, ann("10.0.0.1:6881", Event::Started, 0));
        assert_eq!((c.complete, c.incomplete, c.downloaded), (1, 1, 0));
        assert_eq!(p4, own);
        // Said again (a regular announce), still not a seeder.
        let (c, ..) = run(&mut shard, ann("10.0.0.1:6881", Event::None, 0));
        assert_eq!((c.complete, c.incomplete), (1, 1));
        // Metadata in hand: the size is known, then the data is complete.
        let (c, p4, _) = run(&mut shard, ann("10.0.0.1:6881", Event::Started, 900));
        assert_eq!((c.complete, c.incomplete), (1, 1));
        assert_eq!(p4, own);
        let (c, ..) = run(&mut shard, ann("10.0.0.1:6881", Event::Completed, 0));
        assert_eq!((c.complete, c.incomplete, c.downloaded), (2, 0, 1));
        // An unconfirmed peer is listed to seeders (it may need the metadata from one), and
        // is given seeders (it may need the data).
        let (c, p4, _) = run(&mut shard, ann("10.0.0.2:6881", Event::Started, 0));
        assert_eq!((c.complete, c.incomplete), (2, 1));
        assert_eq!(p4.len(), 2 * 6, "the own seed and the seeder 10.0.0.1");
        let (_, p4, _) = run(&mut shard, ann("10.0.0.1:6881", Event::None, 0));
        assert_eq!(p4, [own, [10, 0, 0, 2, 0x1a, 0xe1]].concat());
        // A port-0 announce with `left=0` is stored nowhere and still gets the own seed.
        let (_, p4, _) = run(&mut shard, ann("10.0.0.3:0", Event::Started, 0));
        assert_eq!(&p4[..6], own);
    }

    #[test]
    fn both_families_and_mapped_v4() {
        let mut shard = Shard::default();
        run(&mut shard, ann("[2001:db8::1]:6881", Event::Completed, 0));
        run(
            &mut shard,
            ann("[::ffff:10.0.0.9]:6881", Event::Completed, 0),
        );
        let (c, p4, p6) = run(&mut shard, ann("10.0.0.1:1", Event::Started, 5));
        assert_eq!((c.complete, c.incomplete), (2, 1));
        assert_eq!(p4, [10, 0, 0, 9, 0x1a, 0xe1]);
        assert_eq!(p6.len(), 18);
        // UDP: only the requester's family.
        let a = Announce {
            both_families: false,
            ..ann("10.0.0.1:1", Event::None, 5)
        };
        let (mut p4, mut p6) = (vec![], vec![]);
        shard
            .announce(&a, OPEN, 0, 0, &mut |_| true, &mut p4, &mut p6)
            .unwrap();
        assert_eq!((p4.len(), p6.len()), (6, 0));
    }

    #[test]
    fn port_zero_newcomer_still_gets_the_own_seed() {
        let mut shard = Shard::default();
        shard.own_seeds.insert(H, "10.0.0.7:7000".parse().unwrap());
        let (c, p4, _) = run(&mut shard, ann("10.0.0.1:0", Event::Started, 5));
        assert_eq!((c.complete, c.incomplete), (1, 0));
        assert_eq!(p4, [10, 0, 0, 7, 0x1b, 0x58]);
        assert!(shard.swarms.is_empty());
    }

    #[test]
    fn stopped_and_port_zero_and_pruning() {
        let mut shard = Shard::default();
        let (c, ..) = run(&mut shard, ann("10.0.0.1:0", Event::Started, 5));
        assert_eq!((c.complete, c.incomplete), (0, 0));
        assert!(shard.swarms.is_empty());
        run(&mut shard, ann("10.0.0.1:1", Event::Started, 5));
        let (mut p4, mut p6) = (vec![], vec![]);
        let (c, change) = shard
            .announce(
                &ann("10.0.0.1:1", Event::Stopped, 5),
                OPEN,
                0,
                0,
                &mut |_| true,
                &mut p4,
                &mut p6,
            )
            .unwrap();
        assert_eq!(c.incomplete, 0);
        assert_eq!(
            change.removed,
            Some(client_key("10.0.0.1".parse().unwrap()))
        );
        assert!(shard.swarms.is_empty());
    }

    #[test]
    fn sweep_expires_and_prunes() {
        let mut shard = Shard::default();
        let (mut p4, mut p6) = (vec![], vec![]);
        shard
            .announce(
                &ann("10.0.0.1:1", Event::Started, 5),
                OPEN,
                10,
                0,
                &mut |_| true,
                &mut p4,
                &mut p6,
            )
            .unwrap();
        shard
            .announce(
                &ann("10.0.0.2:1", Event::Started, 5),
                OPEN,
                20,
                0,
                &mut |_| true,
                &mut p4,
                &mut p6,
            )
            .unwrap();
        let mut removed = Vec::new();
        shard.sweep(25, 10, &mut removed);
        assert!(removed.is_empty());
        assert_eq!(shard.counts(&H).incomplete, 1);
        shard.sweep(40, 10, &mut removed);
        assert_eq!(removed, vec![client_key("10.0.0.1".parse().unwrap())]);
        assert!(shard.swarms.is_empty());
    }

    #[test]
    fn swarms_are_claimed_per_client_and_published_ones_always_created() {
        let mut shard = Shard::default();
        let mut claimed = Vec::new();
        let mut claim = |k: u64| {
            claimed.push(k);
            claimed.len() <= 1
        };
        let mut a = ann("10.0.0.1:1", Event::Started, 5);
        let (mut p4, mut p6) = (vec![], vec![]);
        let (_, change) = shard
            .announce(&a, OPEN, 0, 0, &mut claim, &mut p4, &mut p6)
            .unwrap();
        assert!(change.created);
        // A second new swarm from the same client: refused by the claim.
        a.info_hash = InfoHash::new([2; 20]);
        assert_eq!(
            shard.announce(&a, OPEN, 0, 0, &mut claim, &mut p4, &mut p6),
            Err(Refusal::TooManyTorrents)
        );
        // A published hash is tracked even when the tracker is full, and claims nothing.
        shard.published.insert(InfoHash::new([2; 20]));
        let full = Limits {
            may_create: false,
            ..OPEN
        };
        let (_, change) = shard
            .announce(&a, full, 0, 0, &mut claim, &mut p4, &mut p6)
            .unwrap();
        assert!(change.created);
        assert_eq!(shard.swarms[&InfoHash::new([2; 20])].creator, 0);
        assert_eq!(claimed.len(), 2);
    }

    #[test]
    fn peers_per_client_are_capped_in_a_swarm() {
        let mut shard = Shard::default();
        let capped = Limits {
            max_peers_per_ip: 2,
            ..OPEN
        };
        for port in 1..50u16 {
            let a = ann(&format!("10.0.0.66:{port}"), Event::Started, 5);
            shard
                .announce(&a, capped, 0, 0, &mut |_| true, &mut vec![], &mut vec![])
                .unwrap();
        }
        let honest = ann("10.0.0.1:1", Event::Started, 5);
        let (mut p4, mut p6) = (vec![], vec![]);
        let (c, _) = shard
            .announce(&honest, capped, 0, 0, &mut |_| true, &mut p4, &mut p6)
            .unwrap();
        assert_eq!(c.incomplete, 3);
        assert_eq!(p4.len(), 2 * 6);
    }
}
