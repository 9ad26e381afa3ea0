//! The tracker: shards of swarms, the published set, connection IDs and the completed store,
//! with the small API `bitseed serve` uses. Protocol shells (`http`, `udp`) call `announce` and
//! `scrape`; the maintenance task expires peers, saves counts and samples the announce rate.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::completed_store::{CompletedStore, StoreError};
use super::config::{ConfigError, Mode, TrackerConfig};
use super::connection_id::ConnectionIds;
use super::http_request::{Event, InfoHash};
use super::http_response::Counts;
use super::peer_list::TICK_MASK;
use super::remote::PeerDelta;
use super::rtc_swarm::{Relay, RtcLimits, RtcOutcome, Sender};
use super::swarm::{Announce, Limits, Refusal, Shard, SwarmChange};
use super::twins::Twins;
use super::ws::Hub;
use super::ws_protocol::{answer_message, PeerId, WsAnnounce};
use crate::proxy::Proxies;

/// Shards by the info hash's first byte: an announce locks 1/256th of the store.
const SHARDS: usize = 256;

/// A torrent's shard: its hash's first byte (hashes are uniform; `SHARDS` is 256).
fn shard_of(info_hash: &InfoHash) -> usize {
    usize::from(info_hash.as_bytes()[0])
}

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("state folder {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Totals for the `/stats` page and the web UI.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrackerStats {
    pub torrents: usize,
    pub seeders: usize,
    pub leechers: usize,
    /// Over the last few seconds.
    pub announces_per_second: f64,
}

/// bitseed's own seeder as a WebRTC peer of browsers, as the WebSocket tracker hands it
/// offers: one offer of a browser's announce is kept for it when it `wants` one, and its
/// answer goes back to the browser as an `answer` from `peer_id`.
pub trait BrowserSeed: Send + Sync {
    fn peer_id(&self) -> PeerId;
    /// Whether an offer from `from` (at `client`) for `info_hash` would be answered now.
    fn wants(&self, info_hash: &InfoHash, from: &PeerId, client: std::net::IpAddr) -> bool;
    /// The answer's SDP for the offer `sdp`, or `None` if it is not answered.
    fn answer(
        &self,
        info_hash: &InfoHash,
        from: &PeerId,
        client: std::net::IpAddr,
        sdp: &str,
    ) -> Option<String>;
}

pub struct Tracker {
    config: TrackerConfig,
    proxies: Proxies,
    // Std mutexes: held for microseconds, never across an `.await`.
    shards: Box<[Mutex<Shard>]>,
    /// Live swarms, for the `max_torrents` cap.
    torrents: AtomicUsize,
    ids: ConnectionIds,
    store: CompletedStore,
    start: Instant,
    tick_secs: u64,
    max_age_ticks: u16,
    rate_bits: AtomicU64,
    /// The two hashes of each hybrid torrent (one swarm, under the v1 hash), and which one each
    /// client got our seed under.
    twins: Twins,
    /// Open mode: live swarms per creating client (`swarm::client_key`), for
    /// `max_torrents_per_ip`. Touched only when a swarm is created or removed; its lock is
    /// taken inside a shard's, never the other way round.
    creators: Mutex<HashMap<u64, u32>>,
    /// The open WebSocket connections, for relaying offers and answers between browsers.
    hub: Hub,
    /// Our seeder's WebRTC side, when it answers browsers.
    browser_seed: std::sync::OnceLock<std::sync::Arc<dyn BrowserSeed>>,
}

impl Tracker {
    /// Opens the tracker's state in `state_dir` (created if missing): the UDP key and the
    /// completed counts.
    pub fn new(config: TrackerConfig, state_dir: &Path) -> Result<Tracker, TrackerError> {
        config.validate()?;
        let dir_err = |source| TrackerError::StateDir {
            path: state_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(dir_err)?;
        let ids = ConnectionIds::load_or_create(state_dir).map_err(dir_err)?;
        let store = CompletedStore::open(state_dir)?;
        let shards: Box<[Mutex<Shard>]> = (0..SHARDS).map(|_| Mutex::default()).collect();
        for (hash, count) in store.load()? {
            let mut shard = lock(&shards[shard_of(&hash)]);
            shard.completed.insert(hash, count);
        }
        // Peer timestamps are 15-bit ticks (`peer_list`): ticks grow with the interval so that
        // twice the interval stays below a quarter of the wrap-around.
        let max_age_secs = u64::from(config.interval) * 2;
        let tick_secs = max_age_secs.div_ceil(8_192).max(1);
        let max_age_ticks = max_age_secs.div_ceil(tick_secs) as u16;
        Ok(Tracker {
            proxies: config.proxies(),
            config,
            shards,
            torrents: AtomicUsize::new(0),
            ids,
            store,
            start: Instant::now(),
            tick_secs,
            max_age_ticks,
            rate_bits: AtomicU64::new(0),
            twins: Twins::default(),
            creators: Mutex::new(HashMap::new()),
            hub: Hub::default(),
            browser_seed: std::sync::OnceLock::new(),
        })
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Who is believed about the client's address.
    pub fn proxies(&self) -> &Proxies {
        &self.proxies
    }

    /// Browsers' offers are answered by `seed` too (once; later calls are ignored).
    pub fn set_browser_seed(&self, seed: std::sync::Arc<dyn BrowserSeed>) {
        let _ = self.browser_seed.set(seed);
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Open WebSocket tracker connections.
    pub fn ws_connections(&self) -> usize {
        self.hub.connections()
    }

    pub(crate) fn connection_ids(&self) -> &ConnectionIds {
        &self.ids
    }

    /// Published mode: start tracking `info_hash`.
    pub fn register(&self, info_hash: InfoHash) {
        self.shard(&info_hash).published.insert(info_hash);
    }

    /// Published mode: stop tracking `info_hash`; its peers and own seed are forgotten (its
    /// completed count is kept).
    pub fn unregister(&self, info_hash: InfoHash) {
        let mut shard = self.shard(&info_hash);
        shard.published.remove(&info_hash);
        shard.own_seeds.remove(&info_hash);
        self.twins.unlink(&info_hash);
        if let Some(swarm) = shard.swarms.remove(&info_hash) {
            self.torrents.fetch_sub(1, Ordering::Relaxed);
            self.release(&[swarm.creator]);
        }
        if let Some(swarm) = shard.rtc.remove(&info_hash) {
            self.torrents.fetch_sub(1, Ordering::Relaxed);
            self.release(&[swarm.creator]);
        }
    }

    /// Takes one more live swarm for `client`, if it is under `max_torrents_per_ip`.
    /// The bounds an announce to one swarm works under.
    fn limits(&self, own_seed: bool) -> Limits {
        let open = self.config.mode == Mode::Open;
        Limits {
            own_seed,
            open,
            max_peers: self.config.max_peers_per_torrent as usize,
            max_peers_per_ip: self.config.max_peers_per_ip as usize,
            // Read without a lock: concurrent announces in other shards may overshoot the cap
            // by a few swarms, which is fine for a memory bound.
            may_create: !open
                || self.torrents.load(Ordering::Relaxed) < self.config.max_torrents as usize,
        }
    }

    /// Counts a swarm an announce created or emptied, and gives its creator's claim back.
    fn account(&self, change: SwarmChange) {
        if change.created {
            self.torrents.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(creator) = change.removed {
            self.torrents.fetch_sub(1, Ordering::Relaxed);
            self.release(&[creator]);
        }
    }

    fn claim(&self, client: u64) -> bool {
        let cap = self.config.max_torrents_per_ip;
        if cap == 0 {
            return true;
        }
        let mut creators = self.creators.lock().unwrap_or_else(|e| e.into_inner());
        let n = creators.entry(client).or_default();
        if *n >= cap {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives back the swarms of these creators (0: none).
    fn release(&self, creators: &[u64]) {
        if self.config.max_torrents_per_ip == 0 || creators.iter().all(|&c| c == 0) {
            return;
        }
        let mut map = self.creators.lock().unwrap_or_else(|e| e.into_inner());
        for c in creators.iter().filter(|&&c| c != 0) {
            if let std::collections::hash_map::Entry::Occupied(mut e) = map.entry(*c) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
    }

    /// Lists `addr` (bitseed's own seeder) as a seed of `info_hash` in every answer to a
    /// leecher, even one at the same IP; it never expires. In published mode the hash must also
    /// be [`register`](Self::register)ed to be answered at all.
    pub fn set_own_seed(&self, info_hash: InfoHash, addr: SocketAddr) {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        self.shard(&info_hash).own_seeds.insert(info_hash, addr);
    }

    pub fn clear_own_seed(&self, info_hash: InfoHash) {
        self.shard(&info_hash).own_seeds.remove(&info_hash);
    }

    /// `v1` and `v2_truncated` are one hybrid torrent: one swarm (kept under `v1`) with one
    /// count, whichever hash is announced or scraped, and a client is given the own seed under
    /// one of them only (see `twins`). Undone by [`unregister`](Self::unregister). Only `serve`
    /// knows which hashes are twins: the standalone tracker never links any.
    pub fn link_hybrid(&self, v1: InfoHash, v2_truncated: InfoHash) {
        if v1 == v2_truncated {
            return;
        }
        self.twins.link(v1, v2_truncated);
        // What was kept under the v2 hash before (announces in open mode, the completed count
        // loaded from the store) joins the v1 swarm. Only in memory: the store keeps a row per
        // hash, and adding the v2 row in again here after each start gives the same total.
        let (swarm, completed) = {
            let mut shard = self.shard(&v2_truncated);
            let completed = shard.completed.remove(&v2_truncated);
            (shard.swarms.remove(&v2_truncated), completed)
        };
        if swarm.is_none() && completed.is_none() {
            return;
        }
        let mut shard = self.shard(&v1);
        if let Some(n) = completed {
            *shard.completed.entry(v1).or_default() += n;
        }
        let Some(swarm) = swarm else {
            return;
        };
        match shard.swarms.get_mut(&v1) {
            Some(ours) => {
                let creator = swarm.creator;
                ours.absorb(swarm, self.config.max_peers_per_torrent as usize);
                drop(shard);
                self.torrents.fetch_sub(1, Ordering::Relaxed);
                self.release(&[creator]);
            }
            None => {
                shard.swarms.insert(v1, swarm);
            }
        }
    }

    /// Up to `want` peers announced for `info_hash` (its hybrid twin's swarm included).
    pub fn sample_peers(&self, info_hash: &InfoHash, want: usize) -> Vec<SocketAddr> {
        let key = self.twins.swarm_key(info_hash);
        self.shard(&key).sample(&key, want, random())
    }

    /// Seeders (own seed included), leechers and completed count of one torrent.
    pub fn torrent(&self, info_hash: &InfoHash) -> Counts {
        let key = self.twins.swarm_key(info_hash);
        self.shard(&key).counts(&key)
    }

    /// Totals over every swarm.
    pub fn stats(&self) -> TrackerStats {
        let mut stats = TrackerStats {
            announces_per_second: f64::from_bits(self.rate_bits.load(Ordering::Relaxed)),
            ..TrackerStats::default()
        };
        for shard in self.shards.iter() {
            let shard = lock(shard);
            stats.torrents += shard.swarms.len();
            for swarm in shard.swarms.values() {
                stats.seeders += swarm.seeders();
                stats.leechers += swarm.leechers();
            }
            for (hash, swarm) in &shard.rtc {
                stats.torrents += usize::from(!shard.swarms.contains_key(hash));
                stats.seeders += swarm.seeders();
                stats.leechers += swarm.leechers();
            }
        }
        stats
    }

    /// Records an announce and appends the peers to return (compact form) to the buffers.
    pub fn announce(
        &self,
        a: &Announce,
        peers4: &mut Vec<u8>,
        peers6: &mut Vec<u8>,
    ) -> Result<Counts, Refusal> {
        // With no hybrid torrent linked, one atomic load and nothing else.
        let pair = self.twins.pair(&a.info_hash);
        let own_seed = match &pair {
            None => true,
            Some(pair) if a.event == Event::Stopped => {
                self.twins.forget(pair, a.peer);
                true
            }
            Some(pair) => self
                .twins
                .may_list_own_seed(pair, &a.info_hash, a.peer, Instant::now()),
        };
        // Both hashes of a hybrid torrent are one swarm, kept under the v1 hash.
        let under_v1;
        let a = match pair {
            Some(pair) if pair.v1 != a.info_hash => {
                under_v1 = Announce {
                    info_hash: pair.v1,
                    ..*a
                };
                &under_v1
            }
            _ => a,
        };
        let limits = self.limits(own_seed);
        let now = self.tick();
        let (counts, change): (Counts, SwarmChange) = self.shard(&a.info_hash).announce(
            a,
            limits,
            now,
            random(),
            &mut |client| self.claim(client),
            peers4,
            peers6,
        )?;
        self.account(change);
        Ok(counts)
    }

    /// Records a browser's announce from tracker connection `conn` (client at `ip`) and
    /// appends the offers and answer to relay to `out`.
    pub fn rtc_announce(
        &self,
        a: &WsAnnounce,
        conn: u64,
        ip: std::net::IpAddr,
        out: &mut Vec<Relay>,
    ) -> Result<RtcOutcome, Refusal> {
        let key = self.twins.swarm_key(&a.info_hash);
        let limits = self.limits(false);
        let rtc = RtcLimits {
            max_peers: limits.max_peers,
            max_peers_per_ip: limits.max_peers_per_ip,
            offer_ttl: self.config.websocket.offer_ttl,
        };
        let from = Sender {
            conn,
            client: super::swarm::client_key(ip),
            hash: a.info_hash,
        };
        // A leecher's last offer goes to our seeder when it has room for this browser and
        // answers it (made before the shard's lock is taken: SDP and key work); the others go
        // to browsers as before, so browsers still find each other. An offer the seeder cannot
        // answer goes to browsers too.
        let ours = match (self.browser_seed.get(), a.offers.last()) {
            (Some(seed), Some(offer))
                if a.event != Event::Stopped
                    && a.left != Some(0)
                    && seed.wants(&a.info_hash, &a.peer_id, ip) =>
            {
                seed.answer(&a.info_hash, &a.peer_id, ip, &offer.sdp)
                    .map(|sdp| answer_message(&a.info_hash, &seed.peer_id(), &offer.offer_id, &sdp))
            }
            _ => None,
        };
        let trimmed;
        let to_swarm = match ours {
            Some(_) => {
                trimmed = WsAnnounce {
                    offers: a.offers[..a.offers.len() - 1].to_vec(),
                    answer: a.answer.clone(),
                    ..*a
                };
                &trimmed
            }
            None => a,
        };
        let now = self.secs();
        let outcome = self.shard(&key).rtc_announce(
            key,
            to_swarm,
            from,
            limits,
            rtc,
            now,
            random(),
            &mut |client| self.claim(client),
            out,
        )?;
        self.account(outcome.change);
        // (Refused: the seeder's session waits for a browser that never comes, until its
        // connect timeout.)
        if let Some(message) = ours {
            out.push(Relay { conn, message });
        }
        Ok(outcome)
    }

    /// The browser peers that tracker connection `conn` announced (hash, peer id) leave: the
    /// connection closed.
    pub fn rtc_leave(&self, joined: &[(InfoHash, PeerId)], conn: u64) {
        let mut removed = Vec::new();
        for (hash, id) in joined {
            let key = self.twins.swarm_key(hash);
            self.shard(&key).rtc_leave(&key, id, conn, &mut removed);
        }
        self.torrents.fetch_sub(removed.len(), Ordering::Relaxed);
        self.release(&removed);
    }

    /// Seconds since the tracker started (browser peers' clock).
    fn secs(&self) -> u32 {
        self.start.elapsed().as_secs().min(u64::from(u32::MAX)) as u32
    }

    /// Counts for each info hash (all tracked ones when `info_hashes` is empty and full scrape is
    /// on), sorted by info hash without repeats.
    pub fn scrape(&self, info_hashes: &[InfoHash]) -> Vec<(InfoHash, Counts)> {
        let mut out: Vec<(InfoHash, Counts)> = if info_hashes.is_empty() {
            if !self.config.full_scrape {
                return Vec::new();
            }
            let mut all = Vec::new();
            for shard in self.shards.iter() {
                let shard = lock(shard);
                let hashes = shard
                    .swarms
                    .keys()
                    .chain(shard.rtc.keys())
                    .chain(shard.published.iter());
                all.extend(hashes.map(|h| (*h, shard.counts(h))));
            }
            // A hybrid torrent's v2 hash is counted in its v1 hash's swarm, which may be in
            // another shard: counted again, outside the shard locks.
            for (hash, counts) in &mut all {
                if self.twins.swarm_key(hash) != *hash {
                    *counts = self.torrent(hash);
                }
            }
            all
        } else {
            info_hashes.iter().map(|h| (*h, self.torrent(h))).collect()
        };
        out.sort_unstable_by_key(|e| e.0);
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// Expires silent peers and prunes empty swarms, one shard lock at a time.
    pub fn sweep(&self) -> usize {
        let now = self.tick();
        let mut removed = 0;
        let mut creators = Vec::new();
        let rtc_oldest = self
            .secs()
            .saturating_sub(self.config.websocket.interval.saturating_mul(2));
        for shard in self.shards.iter() {
            creators.clear();
            {
                let mut shard = lock(shard);
                shard.sweep(now, self.max_age_ticks, &mut creators);
                shard.rtc_sweep(rtc_oldest, &mut creators);
            }
            removed += creators.len();
            self.release(&creators);
        }
        self.torrents.fetch_sub(removed, Ordering::Relaxed);
        let max_age = std::time::Duration::from_secs(u64::from(self.config.interval) * 2);
        self.twins.sweep(Instant::now(), max_age);
        removed
    }

    /// Writes completions not yet saved, in one transaction. Blocking (disk): call it off the
    /// async runtime's workers.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut batch = Vec::new();
        for shard in self.shards.iter() {
            batch.extend(std::mem::take(&mut lock(shard).unsaved));
        }
        if let Err(e) = self.store.add(&batch) {
            // Keep them for the next try.
            for (hash, n) in batch {
                *self.shard(&hash).unsaved.entry(hash).or_default() += n;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Cluster mode: from now on each announce is kept for [`take_outbox`](Self::take_outbox).
    pub fn replicate(&self) {
        for shard in self.shards.iter() {
            lock(shard).outbox.get_or_insert_with(Vec::new);
        }
    }

    /// Cluster mode: the announces since the last call (at most `OUTBOX_MAX` per shard).
    pub fn take_outbox(&self) -> Vec<PeerDelta> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            if let Some(out) = lock(shard).outbox.as_mut() {
                all.append(out);
            }
        }
        all
    }

    /// Cluster mode: other nodes' peers join (or leave) the swarms.
    pub fn apply_remote(&self, deltas: &[PeerDelta]) {
        let now = self.tick();
        for d in deltas {
            let limits = self.limits(false);
            let ticks = (u64::from(d.age_secs) / self.tick_secs) as u16;
            let at = now.wrapping_sub(ticks) & TICK_MASK;
            let change = self.shard(&d.info_hash).apply_remote(d, limits, at);
            self.account(change);
        }
    }

    /// Cluster mode: the other live nodes' seeders, listed with the own seed.
    pub fn set_cluster_seeds(&self, seeds: &[SocketAddr]) {
        let seeds: std::sync::Arc<[SocketAddr]> = seeds.into();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            if shard.cluster_seeds != seeds {
                shard.cluster_seeds = seeds.clone();
            }
        }
    }

    /// This node's own completed counts, per swarm (cluster mode shares them).
    pub fn local_completed(&self) -> Vec<(InfoHash, u64)> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            all.extend(lock(shard).completed.iter().map(|(h, n)| (*h, *n)));
        }
        all
    }

    /// Cluster mode: what the other nodes counted, added to this node's counts.
    pub fn set_remote_completed(&self, totals: &HashMap<InfoHash, u64>) {
        let mut by_shard: Vec<HashMap<InfoHash, u64>> = vec![HashMap::new(); SHARDS];
        for (h, n) in totals {
            by_shard[shard_of(h)].insert(*h, *n);
        }
        for (shard, mine) in self.shards.iter().zip(by_shard) {
            lock(shard).remote_completed = mine;
        }
    }

    /// Announces handled so far (for the rate).
    pub fn announce_count(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).announces).sum()
    }

    pub(crate) fn set_rate(&self, per_second: f64) {
        self.rate_bits
            .store(per_second.to_bits(), Ordering::Relaxed);
    }

    /// Seconds between sweeps: often enough that expiry is close to `interval × 2`.
    pub(crate) fn sweep_every_secs(&self) -> u64 {
        (u64::from(self.config.interval) / 4).clamp(1, 60)
    }

    fn tick(&self) -> u16 {
        (self.start.elapsed().as_secs() / self.tick_secs) as u16 & TICK_MASK
    }

    fn shard(&self, info_hash: &InfoHash) -> MutexGuard<'_, Shard> {
        lock(&self.shards[shard_of(info_hash)])
    }
}

/// A poisoned shard still holds consistent data (every update is a few field writes), so carry on
/// rather than take the whole tracker down.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fast per-thread generator (xorshift64*) for picking which peers to return; not for secrets.
fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64) | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::http_request::Event;

    fn open() -> TrackerConfig {
        TrackerConfig {
            mode: Mode::Open,
            ..TrackerConfig::default()
        }
    }

    fn ann(hash: u8, peer: &str, event: Event, left: u64) -> Announce {
        Announce {
            info_hash: InfoHash::new([hash; 20]),
            peer: peer.parse().unwrap(),
            event,
            left,
            numwant: 50,
            both_families: true,
            local_ip: None,
        }
    }

    #[test]
    fn completed_counts_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracker::new(open(), dir.path()).unwrap();
        t.announce(
            &ann(1, "10.0.0.1:1", Event::Completed, 0),
            &mut vec![],
            &mut vec![],
        )
        .unwrap();
        t.flush().unwrap();
        drop(t);
        let t = Tracker::new(open(), dir.path()).unwrap();
        assert_eq!(t.torrent(&InfoHash::new([1; 20])).downloaded, 1);
        assert_eq!(t.torrent(&InfoHash::new([1; 20])).complete, 0);
    }

    #[test]
    fn max_torrents_caps_new_swarms_in_open_mode() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracker::new(
            TrackerConfig {
                max_torrents: 2,
                ..open()
            },
            dir.path(),
        )
        .unwrap();
        for h in 1..=2 {
            t.announce(
                &ann(h, "10.0.0.1:1", Event::Started, 1),
                &mut vec![],
                &mut vec![],
            )
            .unwrap();
        }
        let r = t.announce(
            &ann(3, "10.0.0.1:1", Event::Started, 1),
            &mut vec![],
            &mut vec![],
        );
        assert_eq!(r, Err(Refusal::TooManyTorrents));
        t.announce(
            &ann(1, "10.0.0.1:1", Event::Stopped, 1),
            &mut vec![],
            &mut vec![],
        )
        .unwrap();
        t.announce(
            &ann(3, "10.0.0.1:1", Event::Started, 1),
            &mut vec![],
            &mut vec![],
        )
        .unwrap();
        assert_eq!(t.stats().torrents, 2);
    }

    #[test]
    fn scrape_sorts_dedups_and_full_scrape_is_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracker::new(
            TrackerConfig {
                full_scrape: true,
                ..open()
            },
            dir.path(),
        )
        .unwrap();
        t.announce(
            &ann(2, "10.0.0.1:1", Event::Completed, 0),
            &mut vec![],
            &mut vec![],
        )
        .unwrap();
        let s = t.scrape(&[
            InfoHash::new([9; 20]),
            InfoHash::new([2; 20]),
            InfoHash::new([9; 20]),
        ]);
        assert_eq!(
            s.iter().map(|e| e.0.as_bytes()[0]).collect::<Vec<_>>(),
            vec![2, 9]
        );
        assert_eq!(s[0].1.complete, 1);
        assert_eq!(t.scrape(&[]).len(), 1);
        let t2 = Tracker::new(open(), tempfile::tempdir().unwrap().path()).unwrap();
        assert!(t2.scrape(&[]).is_empty());
    }

    #[test]
    fn register_unregister_and_own_seed() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracker::new(TrackerConfig::default(), dir.path()).unwrap();
        let a = ann(4, "10.0.0.1:1", Event::Started, 1);
        assert_eq!(
            t.announce(&a, &mut vec![], &mut vec![]),
            Err(Refusal::Unregistered)
        );
        t.register(InfoHash::new([4; 20]));
        t.set_own_seed(
            InfoHash::new([4; 20]),
            "[::ffff:10.0.0.1]:7000".parse().unwrap(),
        );
        let mut p4 = vec![];
        let c = t.announce(&a, &mut p4, &mut vec![]).unwrap();
        assert_eq!((c.complete, c.incomplete), (1, 1));
        assert_eq!(p4, [10, 0, 0, 1, 0x1b, 0x58]);
        t.unregister(InfoHash::new([4; 20]));
        assert_eq!(
            t.announce(&a, &mut vec![], &mut vec![]),
            Err(Refusal::Unregistered)
        );
        assert_eq!(t.stats().torrents, 0);
    }

    /// A published hybrid torrent as `serve` sets it up: both hashes linked, registered, and
    /// the own seed set under both.
    fn hybrid(v1: u8, v2: u8) -> (Tracker, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracker::new(TrackerConfig::default(), dir.path()).unwrap();
        t.link_hybrid(InfoHash::new([v1; 20]), InfoHash::new([v2; 20]));
        for h in [v1, v2] {
            t.register(InfoHash::new([h; 20]));
            t.set_own_seed(InfoHash::new([h; 20]), "10.0.0.99:7000".parse().unwrap());
        }
        (t, dir)
    }

    const OWN: [u8; 6] = [10, 0, 0, 99, 0x1b, 0x58];

    fn peers(t: &Tracker, a: &Announce) -> (Counts, Vec<[u8; 6]>) {
        let mut p4 = vec![];
        let c = t.announce(a, &mut p4, &mut vec![]).unwrap();
        let list = p4.chunks(6).map(|c| c.try_into().unwrap()).collect();
        (c, list)
    }

    fn compact(peer: &str) -> [u8; 6] {
        let a: SocketAddr = peer.parse().unwrap();
        let SocketAddr::V4(a) = a else { panic!() };
        let mut c = [0; 6];
        c[..4].copy_from_slice(&a.ip().octets());
        c[4..].copy_from_slice(&a.port().to_be_bytes());
        c
    }

    /// Issue 15: the two hashes of a hybrid torrent were two swarms.
    #[test]
    fn a_hybrid_torrent_is_one_swarm_under_both_hashes() {
        // v2 in another shard than v1, to cross shards.
        let (t, _d) = hybrid(1, 2);
        let (c, list) = peers(&t, &ann(1, "10.0.0.1:1", Event::Started, 5));
        assert_eq!((c.complete, c.incomplete), (1, 1));
        assert_eq!(list, [OWN]);
        // A v2 announcer is given the v1 leecher, and the own seed.
        let (c, list) = peers(&t, &ann(2, "10.0.0.2:1", Event::Started, 5));
        assert_eq!((c.complete, c.incomplete), (1, 2));
        assert_eq!(list, [OWN, compact("10.0.0.1:1")]);
        // And the other way round.
        let (_, list) = peers(&t, &ann(1, "10.0.0.1:1", Event::None, 5));
        assert_eq!(list, [OWN, compact("10.0.0.2:1")]);
        // One completed count, whichever hash it came under; one scrape answer for both.
        peers(&t, &ann(2, "10.0.0.1:1", Event::Completed, 0));
        let s = t.scrape(&[InfoHash::new([1; 20]), InfoHash::new([2; 20])]);
        assert_eq!(s[0].1, s[1].1);
        assert_eq!(
            (s[0].1.complete, s[0].1.incomplete, s[0].1.downloaded),
            (2, 1, 1)
        );
        assert_eq!(
            t.torrent(&InfoHash::new([2; 20])),
            t.torrent(&InfoHash::new([1; 20]))
        );
        assert_eq!(t.stats().torrents, 1);
        assert_eq!((t.stats().seeders, t.stats().leechers), (1, 1));
        // `stopped` under the other hash removes the peer.
        peers(&t, &ann(2, "10.0.0.1:1", Event::Stopped, 0));
        peers(&t, &ann(1, "10.0.0.2:1", Event::Stopped, 5));
        assert_eq!(
            (
                t.torrent(&InfoHash::new([2; 20])).complete,
                t.torrent(&InfoHash::new([2; 20])).incomplete
            ),
            (1, 0)
        );
        assert_eq!(t.stats().torrents, 0);
        // The same torrent scraped whole: both hashes, the same counts.
        let dir = tempfile::tempdir().unwrap();
        let full = Tracker::new(
            TrackerConfig {
                full_scrape: true,
                ..TrackerConfig::default()
            },
            dir.path(),
        )
        .unwrap();
        full.link_hybrid(InfoHash::new([1; 20]), InfoHash::new([2; 20]));
        full.register(InfoHash::new([1; 20]));
        full.register(InfoHash::new([2; 20]));
        full.announce(
            &ann(2, "10.0.0.1:1", Event::Started, 5),
            &mut vec![],
            &mut vec![],
        )
        .unwrap();
        let s = full.scrape(&[]);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].1.incomplete, s[1].1.incomplete), (1, 1));
    }

    /// Issue 15: a client that announced v1, stopped, and came back from the same address
    /// with the v2 hash only was given no peer at all, not even the own seed, for an hour.
    #[test]
    fn back_under_the_other_hash_after_stopping_gets_the_own_seed() {
        let (t, _d) = hybrid(3, 4);
        peers(&t, &ann(3, "10.0.0.5:1", Event::Started, 5));
        // Announcing both hashes at once (libtorrent): the seed under the first one only.
        let (_, list) = peers(&t, &ann(4, "10.0.0.5:1", Event::Started, 5));
        assert!(list.is_empty(), "{list:?}");
        peers(&t, &ann(3, "10.0.0.5:1", Event::Stopped, 5));
        let (_, list) = peers(&t, &ann(4, "10.0.0.5:1", Event::Started, 5));
        assert_eq!(list, [OWN]);
    }

    #[test]
    fn linking_takes_in_what_was_kept_under_the_v2_hash() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracker::new(open(), dir.path()).unwrap();
        // Before the link (open mode): a swarm and a completion under each hash.
        for (h, peer) in [(5, "10.0.0.1:1"), (6, "10.0.0.2:1")] {
            t.announce(&ann(h, peer, Event::Completed, 0), &mut vec![], &mut vec![])
                .unwrap();
        }
        t.announce(
            &ann(6, "10.0.0.3:1", Event::Started, 5),
            &mut vec![],
            &mut vec![],
        )
        .unwrap();
        assert_eq!(t.stats().torrents, 2);
        t.link_hybrid(InfoHash::new([5; 20]), InfoHash::new([6; 20]));
        assert_eq!(t.stats().torrents, 1);
        let c = t.torrent(&InfoHash::new([6; 20]));
        assert_eq!((c.complete, c.incomplete, c.downloaded), (2, 1, 2));
        let (_, list) = peers(&t, &ann(5, "10.0.0.4:1", Event::Started, 5));
        assert_eq!(list.len(), 3);
        // The store still has a row per hash: after a restart and the link again, the same.
        t.flush().unwrap();
        drop(t);
        let t = Tracker::new(open(), dir.path()).unwrap();
        t.link_hybrid(InfoHash::new([5; 20]), InfoHash::new([6; 20]));
        assert_eq!(t.torrent(&InfoHash::new([5; 20])).downloaded, 2);
    }

    /// `bitseed tracker` alone links nothing: every hash is its own swarm.
    #[test]
    fn unlinked_hashes_stay_separate() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracker::new(open(), dir.path()).unwrap();
        t.announce(
            &ann(7, "10.0.0.1:1", Event::Started, 5),
            &mut vec![],
            &mut vec![],
        )
        .unwrap();
        let (c, list) = peers(&t, &ann(8, "10.0.0.2:1", Event::Started, 5));
        assert_eq!((c.incomplete, list.len()), (1, 0));
    }
}

#[cfg(test)]
mod browser_seed_tests {
    use super::*;
    use crate::tracker::ws_protocol::Offer;
    use std::net::IpAddr;
    use std::sync::Arc;

    /// Answers every offer for hash 1 with `answer:<sdp>` and records what it was handed.
    #[derive(Default)]
    struct Seed(Mutex<Vec<String>>);

    impl BrowserSeed for Seed {
        fn peer_id(&self) -> PeerId {
            *b"-bS0100-seedseedseed"
        }
        fn wants(&self, info_hash: &InfoHash, _: &PeerId, _: IpAddr) -> bool {
            *info_hash == InfoHash::new([1; 20])
        }
        fn answer(&self, _: &InfoHash, _: &PeerId, _: IpAddr, sdp: &str) -> Option<String> {
            self.0.lock().unwrap().push(sdp.to_owned());
            (!sdp.contains("bad")).then(|| format!("answer:{sdp}"))
        }
    }

    fn announce(hash: u8, peer: u8, left: u64, offers: u8) -> WsAnnounce {
        WsAnnounce {
            info_hash: InfoHash::new([hash; 20]),
            peer_id: [peer; 20],
            left: Some(left),
            event: Event::Started,
            numwant: Some(5),
            offers: (0..offers)
                .map(|i| Offer {
                    offer_id: [i; 20],
                    sdp: format!("offer{i}"),
                })
                .collect(),
            answer: None,
        }
    }

    #[test]
    fn a_leechers_last_offer_goes_to_our_seed_and_the_rest_to_browsers() {
        let dir = tempfile::tempdir().unwrap();
        let config = TrackerConfig {
            mode: Mode::Open,
            ..TrackerConfig::default()
        };
        let t = Tracker::new(config, dir.path()).unwrap();
        let seed = Arc::new(Seed::default());
        t.set_browser_seed(seed.clone());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // A browser already there (a leecher) to take offers.
        let mut out = Vec::new();
        t.rtc_announce(&announce(1, 9, 10, 0), 9, ip, &mut out)
            .unwrap();
        assert!(out.is_empty());
        let counts = t
            .rtc_announce(&announce(1, 2, 10, 3), 2, ip, &mut out)
            .unwrap()
            .counts;
        assert_eq!(*seed.0.lock().unwrap(), ["offer2"]);
        // One offer relayed to the other browser; our answer to the offerer's connection,
        // from our peer id, for the offer it answers.
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out
            .iter()
            .any(|r| r.conn == 9 && !r.message.contains("offer2")));
        let ours = out.iter().find(|r| r.conn == 2).unwrap();
        let v: serde_json::Value = serde_json::from_str(&ours.message).unwrap();
        assert_eq!(v["answer"]["sdp"], "answer:offer2");
        assert_eq!(v["peer_id"], "-bS0100-seedseedseed");
        assert_eq!(v["offer_id"], "\u{2}".repeat(20));
        // We are not counted as a browser peer.
        assert_eq!((counts.complete, counts.incomplete), (0, 2));
        // A seeding browser, another torrent, or no offers: nothing for our seed.
        out.clear();
        t.rtc_announce(&announce(1, 3, 0, 2), 3, ip, &mut out)
            .unwrap();
        t.rtc_announce(&announce(4, 4, 10, 2), 4, ip, &mut out)
            .unwrap();
        t.rtc_announce(&announce(1, 5, 10, 0), 5, ip, &mut out)
            .unwrap();
        assert_eq!(seed.0.lock().unwrap().len(), 1);
        assert!(out.iter().all(|r| !r.message.contains("answer:")));
        // An offer our seed cannot answer goes to a browser as any other.
        out.clear();
        let mut bad = announce(1, 6, 10, 1);
        bad.offers[0].sdp = "bad".into();
        t.rtc_announce(&bad, 6, ip, &mut out).unwrap();
        assert_eq!(seed.0.lock().unwrap().len(), 2);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].message.contains("\"sdp\":\"bad\""), "{out:?}");
    }
}
