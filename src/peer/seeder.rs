//! The seeder: a registry of published torrents (wire info hash → torrent) and the accept loop
//! that serves them all on one listener, with connection caps, the choker and the rate limit.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::choker::{Changes, Choker, PeerKey};
use super::rate::TokenBucket;
use super::super_seed::SuperSeed;
use super::{PeerConfig, Published};
use crate::ip_limit::IpLimit;

/// Round length of the choker (BEP 3's ten seconds).
const ROUND: Duration = Duration::from_secs(10);
/// Bytes queued for peers (and being read for them) over all connections, past which no
/// connection starts a disk read or takes more requests until some drains.
pub(super) const QUEUED_MAX: usize = 128 << 20;
/// Bytes per second the seeder reads and hashes to answer BEP 52 block-layer hash requests,
/// over all peers: each such request makes us read up to 512 blocks, so it is paid for here
/// before it starts (a legitimate client asks for them only to find a bad block).
const HASH_WORK_RATE: u64 = 64 << 20;

/// Where the seeder tells a tracker it is seeding: `serve` implements it over the built-in
/// tracker's `set_own_seed`, with no HTTP round trip.
pub trait SeedAnnouncer: Send + Sync {
    fn seeding(&self, info_hash: [u8; 20], addr: SocketAddr);
    fn stopped(&self, info_hash: [u8; 20]);
}

/// A torrent being served and the connections it has.
pub(super) struct Entry {
    pub torrent: Arc<Published>,
    pub connections: AtomicUsize,
    /// Cancelled when the torrent is removed or retired: its connections close.
    pub retired: CancellationToken,
    /// The torrent-wide piece picker when super-seeding (std lock: never held across `.await`).
    pub super_seed: Option<Mutex<SuperSeed>>,
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
    torrents: RwLock<HashMap<[u8; 20], Arc<Entry>>>,
    choke: Mutex<ChokeState>,
    limiter: Option<Mutex<TokenBucket>>,
    /// The budget of block-layer hashing (HASH_WORK_RATE).
    hash_work: Mutex<TokenBucket>,
    /// Bytes queued for peers and being read for them, over all connections.
    pub queued: AtomicUsize,
    next_key: AtomicU64,
    pub uploaded: AtomicU64,
    announcer: Mutex<Option<(Arc<dyn SeedAnnouncer>, SocketAddr)>>,
}

/// The seeder as `serve` and `seed` use it. Cheap to clone.
#[derive(Clone)]
pub struct Seeder {
    inner: Arc<Inner>,
}

fn random_u64() -> u64 {
    // RandomState is seeded from the OS per instance: enough for a peer id and optimistic picks.
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl Seeder {
    pub fn new(config: PeerConfig) -> Self {
        let mut peer_id = *b"-BS0100-000000000000";
        let r = random_u64().to_be_bytes();
        for (i, b) in r
            .iter()
            .chain(&random_u64().to_be_bytes())
            .take(12)
            .enumerate()
        {
            peer_id[8 + i] = b"0123456789abcdefghijklmnopqrstuvwxyz"[(*b % 36) as usize];
        }
        let limiter = (config.max_upload_rate > 0)
            .then(|| Mutex::new(TokenBucket::new(config.max_upload_rate, Instant::now())));
        Seeder {
            inner: Arc::new(Inner {
                choke: Mutex::new(ChokeState {
                    choker: Choker::new(config.upload_slots),
                    slots: HashMap::new(),
                }),
                config,
                peer_id,
                torrents: RwLock::new(HashMap::new()),
                limiter,
                hash_work: Mutex::new(TokenBucket::new(HASH_WORK_RATE, Instant::now())),
                queued: AtomicUsize::new(0),
                next_key: AtomicU64::new(1),
                uploaded: AtomicU64::new(0),
                announcer: Mutex::new(None),
            }),
        }
    }

    /// The peer id this seeder sends in handshakes (and announces with).
    pub fn peer_id(&self) -> [u8; 20] {
        self.inner.peer_id
    }

    pub fn config(&self) -> &PeerConfig {
        &self.inner.config
    }

    /// Tells `announcer` about every torrent served now and later, with `addr` as our address.
    pub fn set_announcer(&self, announcer: Arc<dyn SeedAnnouncer>, addr: SocketAddr) {
        for entry in self.inner.entries() {
            for h in entry.torrent.wire_hashes() {
                announcer.seeding(h, addr);
            }
        }
        *lock(&self.inner.announcer) = Some((announcer, addr));
    }

    /// Starts serving a torrent under each of its wire hashes (v1, truncated v2). Replaces a
    /// torrent with the same hash.
    pub fn add(&self, torrent: Arc<Published>) {
        let entry = Arc::new(Entry {
            torrent: torrent.clone(),
            connections: AtomicUsize::new(0),
            retired: CancellationToken::new(),
            super_seed: self
                .inner
                .config
                .super_seed
                .then(|| Mutex::new(SuperSeed::new(torrent.piece_count()))),
        });
        let hashes = torrent.wire_hashes();
        {
            let mut map = self
                .inner
                .torrents
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for h in &hashes {
                if let Some(old) = map.insert(*h, entry.clone()) {
                    old.retired.cancel();
                }
            }
        }
        if let Some((a, addr)) = lock(&self.inner.announcer).as_ref() {
            for h in &hashes {
                a.seeding(*h, *addr);
            }
        }
        info!(
            torrent = %torrent.metainfo.name,
            info_hash = %hex::encode(torrent.info_hash()),
            "serving"
        );
    }

    /// Stops serving the torrent known by `info_hash` (any of its wire hashes); its connections
    /// close. Returns whether it was served.
    pub fn remove(&self, info_hash: &[u8; 20]) -> bool {
        self.inner.retire(info_hash, "removed")
    }

    /// The torrents served now.
    pub fn published(&self) -> Vec<Arc<Published>> {
        self.inner
            .entries()
            .into_iter()
            .map(|e| e.torrent.clone())
            .collect()
    }

    /// Bytes of block data sent so far.
    pub fn uploaded(&self) -> u64 {
        self.inner.uploaded.load(Ordering::Relaxed)
    }

    /// Accepts peers on `listener` until `shutdown` is cancelled, then closes every connection
    /// and returns once they are gone.
    pub async fn run(&self, listener: TcpListener, shutdown: CancellationToken) {
        let connections = Arc::new(Semaphore::new(self.inner.config.max_connections.max(1)));
        let per_ip = IpLimit::new(self.inner.config.max_connections_per_ip);
        let mut tasks = JoinSet::new();
        let mut rounds = tokio::time::interval(ROUND);
        rounds.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = rounds.tick() => self.inner.rechoke(),
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let Ok(permit) = connections.clone().try_acquire_owned() else {
                            debug!(%addr, "connection refused: max_connections reached");
                            continue;
                        };
                        let Some(ip_slot) = per_ip.admit(addr.ip()) else {
                            debug!(%addr, "connection refused: max_connections_per_ip reached");
                            continue;
                        };
                        let inner = self.inner.clone();
                        let stop = shutdown.child_token();
                        tasks.spawn(async move {
                            // Latency matters more than packet count: a request answered late
                            // stalls the peer's pipeline.
                            let _ = stream.set_nodelay(true);
                            let (rd, wr) = stream.into_split();
                            super::session::run(inner, rd, wr, addr, stop).await;
                            drop((permit, ip_slot));
                        });
                    }
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn entries(&self) -> Vec<Arc<Entry>> {
        let map = self.torrents.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<Entry>> = Vec::new();
        for e in map.values() {
            if !out.iter().any(|o| Arc::ptr_eq(o, e)) {
                out.push(e.clone());
            }
        }
        out
    }

    pub fn lookup(&self, info_hash: &[u8; 20]) -> Option<Arc<Entry>> {
        self.torrents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(info_hash)
            .cloned()
    }

    /// Stops serving a torrent and says why in the log.
    pub fn retire(&self, info_hash: &[u8; 20], why: &str) -> bool {
        let removed: Option<Arc<Entry>> = {
            let mut map = self.torrents.write().unwrap_or_else(|e| e.into_inner());
            let entry = map.get(info_hash).cloned();
            if let Some(entry) = &entry {
                map.retain(|_, e| !Arc::ptr_eq(e, entry));
            }
            entry
        };
        let Some(entry) = removed else {
            return false;
        };
        entry.retired.cancel();
        let t = &entry.torrent;
        if why == "removed" {
            info!(torrent = %t.metainfo.name, info_hash = %hex::encode(t.info_hash()), "no longer served");
        } else {
            warn!(torrent = %t.metainfo.name, info_hash = %hex::encode(t.info_hash()), "no longer served: {why}");
        }
        if let Some((a, _)) = lock(&self.announcer).as_ref() {
            for h in t.wire_hashes() {
                a.stopped(h);
            }
        }
        true
    }

    pub fn register(&self) -> (PeerKey, Arc<Slot>) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
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

    fn rechoke(&self) {
        let mut st = lock(&self.choke);
        let changes = st.choker.rechoke(random_u64());
        st.apply(changes);
    }

    /// Asks the global rate limit for `bytes`: `Err(wait)` when over it.
    pub fn take_upload(&self, bytes: u64) -> Result<(), Duration> {
        match &self.limiter {
            Some(l) => lock(l).take(bytes, Instant::now()),
            None => Ok(()),
        }
    }

    /// Counts `bytes` already committed to a peer (metadata and hash answers) against the
    /// global rate limit: later block reads wait for them.
    pub fn charge_upload(&self, bytes: u64) {
        if let Some(l) = &self.limiter {
            lock(l).charge(bytes, Instant::now());
        }
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
        self.limiter.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(bool, [u8; 20])>>);

    impl SeedAnnouncer for Recorder {
        fn seeding(&self, info_hash: [u8; 20], _addr: SocketAddr) {
            lock(&self.0).push((true, info_hash));
        }
        fn stopped(&self, info_hash: [u8; 20]) {
            lock(&self.0).push((false, info_hash));
        }
    }

    #[test]
    fn the_tracker_hook_hears_of_every_torrent_added_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let t = Arc::new(crate::peer::test_support::v1_torrent(dir.path()));
        let ih = t.info_hash();
        let seeder = Seeder::new(PeerConfig::default());
        let rec = Arc::new(Recorder::default());
        seeder.set_announcer(rec.clone(), "127.0.0.1:6881".parse().unwrap());
        seeder.add(t.clone());
        assert_eq!(seeder.published().len(), 1);
        assert!(seeder.inner.lookup(&ih).is_some());
        assert!(seeder.remove(&ih));
        assert!(!seeder.remove(&ih));
        assert!(seeder.inner.lookup(&ih).is_none());
        assert_eq!(*lock(&rec.0), vec![(true, ih), (false, ih)]);
    }
}
