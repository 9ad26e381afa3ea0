//! What every peer session shares: the table of published torrents (wire info hash → entry),
//! the connection caps and pending list, the choker, the rate limits and the refusal counts.
//! `session` works on it; `seeder` owns it and feeds it connections.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::choker::{Changes, Choker, PeerKey};
use super::counts::Refusals;
use super::eviction;
use super::listener::UdpCounts;
use super::standing::{Place, Standing};
use super::super_seed::SuperSeed;
use super::{PeerConfig, Published};
use crate::egress::{Channel, Egress};
use crate::metainfo::InfoHash;
use crate::rate::TokenBucket;

/// Connections not yet holding a slot (in their handshake, or waiting for room): past this, the
/// oldest of them is closed for each newcomer, so connections that never show what they want
/// cannot keep a new peer out.
pub(super) const PENDING_MAX: usize = 256;
/// Bytes queued for peers (and being read for them) over all connections, past which no
/// connection starts a disk read or takes more requests until some drains.
pub(super) const QUEUED_MAX: usize = 128 << 20;
/// Bytes per second the seeder reads and hashes to answer BEP 52 block-layer hash requests,
/// over all peers: each such request makes us read up to 512 blocks, so it is paid for here
/// before it starts (a legitimate client asks for them only to find a bad block).
const HASH_WORK_RATE: u64 = 64 << 20;
/// How soon a peer that let one behind it go first asks the budget again.
const YIELD: Duration = Duration::from_millis(10);

/// Where the seeder tells a tracker it is seeding: `serve` implements it over the built-in
/// tracker's `set_own_seed`, with no HTTP round trip.
pub trait SeedAnnouncer: Send + Sync {
    fn seeding(&self, info_hash: InfoHash, addr: SocketAddr);
    fn stopped(&self, info_hash: InfoHash);
    /// Told only of torrents that are not private (BEP 27: the DHT, not the tracker).
    fn public_only(&self) -> bool {
        false
    }
}

/// Where the seeder learns more peers of a swarm for peer exchange: `serve` implements it
/// over the built-in tracker's swarms.
pub trait SwarmPeers: Send + Sync {
    /// Up to `max` peers announced for `info_hash`.
    fn peers(&self, info_hash: &InfoHash, max: usize) -> Vec<SocketAddr>;
}

/// Where the seeder passes the DHT nodes peers tell it of (BEP 5 PORT): the DHT node pings
/// them and takes them into its table if they answer.
pub trait DhtNodes: Send + Sync {
    fn heard_of(&self, node: SocketAddr);
}

/// A torrent being served and the connections it has.
pub(super) struct Entry {
    pub torrent: Arc<Published>,
    pub connections: AtomicUsize,
    /// Cancelled when the torrent is removed or retired: its connections close.
    pub retired: CancellationToken,
    /// The torrent-wide piece picker when super-seeding (std lock: never held across `.await`).
    pub super_seed: Option<Mutex<SuperSeed>>,
    /// Where its downloading peers stand, for the order they draw on a contended budget.
    pub standing: Standing,
    /// The listen addresses of the peers connected for this torrent, by session (for PEX;
    /// bounded by the connection caps).
    pub swarm: Mutex<HashMap<usize, SocketAddr>>,
}

/// What the seeder sees of one open session, for caps and eviction. The session keeps it up to
/// date with atomics; the seeder reads it only when a cap is full.
pub(super) struct SessionView {
    /// The torrent's entry (by address: one entry per torrent, whatever hash it was reached by).
    pub entry: usize,
    /// The peer's address (for the web-seed claims super-seeding steers around).
    pub ip: std::net::IpAddr,
    pub connected: Instant,
    pub interested: AtomicBool,
    pub seed: AtomicBool,
    /// Milliseconds after `connected` of the last useful message (interest, a request).
    pub last_useful_ms: AtomicU64,
    /// Cancelled to close the session for a newcomer.
    pub evict: CancellationToken,
}

impl SessionView {
    pub fn touch(&self) {
        let ms = self.connected.elapsed().as_millis() as u64;
        self.last_useful_ms.store(ms, Ordering::Relaxed);
    }

    fn candidate(&self, key: PeerKey, now: Instant) -> eviction::Candidate {
        let connected_for = now.saturating_duration_since(self.connected);
        let last = Duration::from_millis(self.last_useful_ms.load(Ordering::Relaxed));
        eviction::Candidate {
            key,
            connected_for,
            idle_for: connected_for.saturating_sub(last),
            interested: self.interested.load(Ordering::Relaxed),
            seed: self.seed.load(Ordering::Relaxed),
        }
    }
}

/// A peer's choke state as the choker set it; the session applies it when notified.
pub(super) struct Slot {
    pub unchoked: AtomicBool,
    pub notify: Notify,
}

struct ChokeState {
    choker: Choker,
    slots: HashMap<PeerKey, Arc<Slot>>,
}

impl ChokeState {
    fn apply(&self, changes: Changes) {
        for (key, on) in changes {
            if let Some(slot) = self.slots.get(&key) {
                slot.unchoked.store(on, Ordering::Release);
                slot.notify.notify_one();
            }
        }
    }
}

pub(super) struct Inner {
    pub config: PeerConfig,
    pub peer_id: [u8; 20],
    /// std locks: held for map lookups only, never across `.await`.
    torrents: RwLock<HashMap<InfoHash, Arc<Entry>>>,
    /// MSE's key for each wire hash (`mse::req2_key`) → the hash, so an encrypted handshake
    /// finds its torrent in one probe.
    skeys: RwLock<HashMap<[u8; 20], InfoHash>>,
    choke: Mutex<ChokeState>,
    limiter: Option<Mutex<TokenBucket>>,
    /// The publisher's budget over every channel, and its byte counts.
    pub egress: Arc<Egress>,
    /// The budget of block-layer hashing (HASH_WORK_RATE).
    hash_work: Mutex<TokenBucket>,
    /// Bytes queued for peers and being read for them, over all connections.
    pub queued: AtomicUsize,
    next_key: AtomicU64,
    pub uploaded: AtomicU64,
    /// Every session holding a slot (std lock: map updates only).
    sessions: Mutex<HashMap<PeerKey, Arc<SessionView>>>,
    /// Connections without a slot yet, oldest first, each with its token to close it.
    pending: Mutex<VecDeque<(u64, u64, CancellationToken)>>,
    pub refusals: Refusals,
    /// The peer port's datagram counts, once the seeder runs on a listener.
    pub udp_counts: Mutex<Option<Arc<UdpCounts>>>,
    /// The WebRTC side's counts, once it runs.
    pub webrtc_stats: Mutex<Option<Arc<super::webrtc::Stats>>>,
    announcers: Mutex<Vec<(Arc<dyn SeedAnnouncer>, SocketAddr)>>,
    /// The DHT's port (the peer port) when a DHT node runs: the handshake's DHT bit and the
    /// PORT message (BEP 5).
    pub dht_port: Mutex<Option<u16>>,
    /// The DHT node, told of the nodes peers announce with PORT.
    pub dht_nodes: Mutex<Option<Arc<dyn DhtNodes>>>,
    /// More peers for PEX than those connected (the tracker's), when set.
    pub swarm_peers: Mutex<Option<Arc<dyn SwarmPeers>>>,
}

/// Our peer id's client prefix, Azureus style: `bS` is taken by no client we know of (`-BS`
/// is BTSlave's, as Transmission names it).
pub const PEER_ID_PREFIX: &[u8; 8] = b"-bS0100-";

pub(super) fn random_u64() -> u64 {
    // RandomState is seeded from the OS per instance: enough for a peer id and optimistic picks.
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    pub fn new(config: PeerConfig, egress: Arc<Egress>) -> Self {
        let mut peer_id = [0u8; 20];
        peer_id[..8].copy_from_slice(PEER_ID_PREFIX);
        let random = [random_u64().to_be_bytes(), random_u64().to_be_bytes()];
        for (to, b) in peer_id[8..].iter_mut().zip(random.iter().flatten()) {
            *to = b"0123456789abcdefghijklmnopqrstuvwxyz"[(*b % 36) as usize];
        }
        let limiter = (config.max_upload_rate > 0)
            .then(|| Mutex::new(TokenBucket::new(config.max_upload_rate, Instant::now())));
        Inner {
            choke: Mutex::new(ChokeState {
                choker: Choker::new(config.upload_slots),
                slots: HashMap::new(),
            }),
            config,
            peer_id,
            torrents: RwLock::new(HashMap::new()),
            skeys: RwLock::new(HashMap::new()),
            limiter,
            egress,
            hash_work: Mutex::new(TokenBucket::new(HASH_WORK_RATE, Instant::now())),
            queued: AtomicUsize::new(0),
            next_key: AtomicU64::new(1),
            uploaded: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(VecDeque::new()),
            refusals: Refusals::default(),
            udp_counts: Mutex::new(None),
            webrtc_stats: Mutex::new(None),
            announcers: Mutex::new(Vec::new()),
            dht_port: Mutex::new(None),
            swarm_peers: Mutex::new(None),
            dht_nodes: Mutex::new(None),
        }
    }

    /// Serves `torrent` under each of its wire hashes (v1, truncated v2), replacing (and
    /// closing the connections of) a torrent with the same hash; tells the announcer.
    pub fn add(&self, torrent: Arc<Published>) {
        let entry = Arc::new(Entry {
            torrent: torrent.clone(),
            connections: AtomicUsize::new(0),
            retired: CancellationToken::new(),
            super_seed: self
                .config
                .super_seed
                .applies(self.limited())
                .then(|| Mutex::new(SuperSeed::new(torrent.piece_count()))),
            standing: Standing::default(),
            swarm: Mutex::new(HashMap::new()),
        });
        let hashes = torrent.wire_hashes();
        {
            let mut map = self.torrents.write().unwrap_or_else(|e| e.into_inner());
            let mut skeys = self.skeys.write().unwrap_or_else(|e| e.into_inner());
            for h in &hashes {
                if let Some(old) = map.insert(*h, entry.clone()) {
                    old.retired.cancel();
                }
                skeys.insert(super::mse::req2_key(h.as_bytes()), *h);
            }
        }
        for (a, addr) in lock(&self.announcers).iter() {
            if a.public_only() && torrent.metainfo.private {
                continue;
            }
            for h in &hashes {
                a.seeding(*h, *addr);
            }
        }
        info!(
            torrent = %torrent.metainfo.name,
            info_hash = %torrent.info_hash(),
            "serving"
        );
    }

    /// Tells `announcer` (besides any others) about every torrent served now and later, with
    /// `addr` as our address.
    pub fn set_announcer(&self, announcer: Arc<dyn SeedAnnouncer>, addr: SocketAddr) {
        for entry in self.entries() {
            if announcer.public_only() && entry.torrent.metainfo.private {
                continue;
            }
            for h in entry.torrent.wire_hashes() {
                announcer.seeding(h, addr);
            }
        }
        lock(&self.announcers).push((announcer, addr));
    }

    /// Sessions holding a slot now.
    pub fn open_sessions(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let map = self.torrents.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<Entry>> = Vec::new();
        for e in map.values() {
            if !out.iter().any(|o| Arc::ptr_eq(o, e)) {
                out.push(e.clone());
            }
        }
        out
    }

    /// The published wire hash whose MSE key is `req2`.
    pub fn skey(&self, req2: &[u8; 20]) -> Option<InfoHash> {
        self.skeys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(req2)
            .copied()
    }

    pub fn lookup(&self, info_hash: &InfoHash) -> Option<Arc<Entry>> {
        self.torrents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(info_hash)
            .cloned()
    }

    /// Stops serving a torrent and says why in the log.
    pub fn retire(&self, info_hash: &InfoHash, why: &str) -> bool {
        let removed: Option<Arc<Entry>> = {
            let mut map = self.torrents.write().unwrap_or_else(|e| e.into_inner());
            let entry = map.get(info_hash).cloned();
            if let Some(entry) = &entry {
                map.retain(|_, e| !Arc::ptr_eq(e, entry));
                let mut skeys = self.skeys.write().unwrap_or_else(|e| e.into_inner());
                for h in entry.torrent.wire_hashes() {
                    skeys.remove(&super::mse::req2_key(h.as_bytes()));
                }
            }
            entry
        };
        let Some(entry) = removed else {
            return false;
        };
        entry.retired.cancel();
        let t = &entry.torrent;
        if why == "removed" {
            info!(torrent = %t.metainfo.name, info_hash = %t.info_hash(), "no longer served");
        } else {
            warn!(torrent = %t.metainfo.name, info_hash = %t.info_hash(), "no longer served: {why}");
        }
        for (a, _) in lock(&self.announcers).iter() {
            for h in t.wire_hashes() {
                a.stopped(h);
            }
        }
        true
    }

    /// A new connection from `ip` without a slot yet: its id, and a token cancelled when it is
    /// pushed out. When the pending list is full, the oldest connection of the address with
    /// the most pending goes: a client that opens one connection is not crowded out by one
    /// that opens hundreds.
    pub fn pend(&self, ip: std::net::IpAddr) -> (u64, CancellationToken) {
        let id = self.next_key.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let client = crate::ip_limit::client_key(ip);
        let mut pending = lock(&self.pending);
        pending.push_back((id, client, token.clone()));
        if pending.len() > PENDING_MAX {
            let mut counts: HashMap<u64, usize> = HashMap::new();
            for (_, c, _) in pending.iter() {
                *counts.entry(*c).or_default() += 1;
            }
            let busiest = counts.iter().max_by_key(|(_, n)| **n).map(|(c, _)| *c);
            let at = pending
                .iter()
                .position(|(_, c, _)| Some(*c) == busiest)
                .unwrap_or(0);
            if let Some((_, _, oldest)) = pending.remove(at) {
                oldest.cancel();
                self.refusals.pushed_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        (id, token)
    }

    /// The connection `id` has a slot, or is gone: it leaves the pending list.
    pub fn unpend(&self, id: u64) {
        let mut pending = lock(&self.pending);
        if let Some(at) = pending.iter().position(|(i, _, _)| *i == id) {
            pending.remove(at);
        }
    }

    /// Takes a slot for a session of `entry`: under both caps (total and the torrent's), or,
    /// for a peer that has shown it wants something, the slot of the least useful session
    /// (told to close). False when there is no room for it yet.
    pub fn establish(&self, entry: &Arc<Entry>, wants: bool) -> bool {
        // Sessions holding a slot are the ones registered (`register` follows at once).
        let global_full = lock(&self.sessions).len() >= self.config.max_connections;
        let torrent_full =
            entry.connections.load(Ordering::Acquire) >= self.config.max_connections_per_torrent;
        if global_full || torrent_full {
            if !wants {
                return false;
            }
            // One session of this torrent frees both caps; otherwise any session frees the
            // total.
            let freed = if torrent_full {
                self.evict_one(Some(Arc::as_ptr(entry) as usize))
            } else {
                self.evict_one(None)
            };
            if !freed {
                let counter = if torrent_full {
                    &self.refusals.per_torrent
                } else {
                    &self.refusals.max_connections
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        // The evicted session gives its slot back as it ends, a moment later.
        entry.connections.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Gives back the slot `establish` took.
    pub fn release(&self, entry: &Entry) {
        entry.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Tells the least useful session (of one torrent's entry, or of all) to close; false when
    /// none may be evicted.
    pub fn evict_one(&self, entry: Option<usize>) -> bool {
        let sessions = lock(&self.sessions);
        let now = Instant::now();
        let candidates = sessions
            .iter()
            .filter(|(_, v)| entry.is_none_or(|e| v.entry == e) && !v.evict.is_cancelled())
            .map(|(k, v)| v.candidate(*k, now));
        match eviction::victim(candidates).and_then(|k| sessions.get(&k)) {
            Some(v) => {
                v.evict.cancel();
                self.refusals.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    pub fn register(&self, view: Arc<SessionView>) -> (PeerKey, Arc<Slot>) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        lock(&self.sessions).insert(key, view);
        let slot = Arc::new(Slot {
            unchoked: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let mut st = lock(&self.choke);
        st.choker.add(key);
        st.slots.insert(key, slot.clone());
        (key, slot)
    }

    pub fn unregister(&self, key: PeerKey) {
        lock(&self.sessions).remove(&key);
        let mut st = lock(&self.choke);
        st.slots.remove(&key);
        let changes = st.choker.remove(key);
        st.apply(changes);
    }

    pub fn set_interested(&self, key: PeerKey, interested: bool) {
        let mut st = lock(&self.choke);
        let changes = st.choker.set_interested(key, interested);
        st.apply(changes);
    }

    pub fn sent(&self, key: PeerKey, bytes: u64) {
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
        lock(&self.choke).choker.uploaded(key, bytes);
    }

    pub fn rechoke(&self) {
        let mut st = lock(&self.choke);
        let changes = st.choker.rechoke(random_u64());
        st.apply(changes);
    }

    /// Asks the peer-wire limit, then the publisher's budget, for `bytes` to the peer at
    /// `place`: `Err(wait)` when either says to wait (the first is refunded when only the
    /// second refuses). A peer ahead of its torrent's average waits while one behind does
    /// (see `standing`).
    pub fn take_upload(&self, bytes: u64, place: &Place<'_>) -> Result<(), Duration> {
        let now = Instant::now();
        if place.yields(now) {
            return Err(YIELD);
        }
        if let Some(l) = &self.limiter {
            lock(l)
                .take(bytes, now)
                .inspect_err(|_| place.refused(now))?;
        }
        self.egress.take(Channel::Peer, bytes).inspect_err(|_| {
            if let Some(l) = &self.limiter {
                lock(l).refund(bytes);
            }
            place.refused(now);
        })
    }

    /// Counts `bytes` already committed to a peer (metadata and hash answers) against the
    /// global rate limit: later block reads wait for them.
    pub fn charge_upload(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if let Some(l) = &self.limiter {
            lock(l).charge(bytes, Instant::now());
        }
        self.egress.charge(Channel::Peer, bytes);
    }

    /// Asks the hashing budget for `bytes` of block-layer work: `Err(wait)` when over it.
    pub fn take_hash_work(&self, bytes: u64) -> Result<(), Duration> {
        lock(&self.hash_work).take(bytes, Instant::now())
    }

    /// Whether the seeder as a whole has room for more queued output.
    pub fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < QUEUED_MAX
    }

    pub fn limited(&self) -> bool {
        self.limiter.is_some() || self.egress.limited()
    }
}
