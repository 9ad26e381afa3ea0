//! The seeder: what `serve` and `seed` hold to publish torrents to peers, and the accept loop
//! that serves them all on one peer port (TCP and uTP), under the caps and the choker of
//! `shared`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::shared::{lock, DhtNodes, Inner, SeedAnnouncer, SwarmPeers};
use super::{PeerConfig, PeerListener, Published};
use crate::egress::Egress;
use crate::ip_limit::IpLimit;
use crate::metainfo::InfoHash;

/// Round length of the choker (BEP 3's ten seconds).
const ROUND: Duration = Duration::from_secs(10);

/// The seeder as `serve` and `seed` use it. Cheap to clone.
#[derive(Clone)]
pub struct Seeder {
    inner: Arc<Inner>,
}

impl Seeder {
    pub fn new(config: PeerConfig) -> Self {
        Seeder::with_egress(config, Arc::new(Egress::unlimited()))
    }

    /// A seeder whose sends draw from `egress` (shared with the web seed) besides its own
    /// `peer.max_upload_rate`.
    pub fn with_egress(config: PeerConfig, egress: Arc<Egress>) -> Self {
        Seeder {
            inner: Arc::new(Inner::new(config, egress)),
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
        self.inner.set_announcer(announcer, addr);
    }

    /// A DHT node runs on `port` (the peer port): handshakes set the DHT bit and peers that
    /// set it are sent a PORT message (BEP 5); the PORT messages peers send go to `nodes`.
    /// `nodes` hears of the DHT nodes peers announce with PORT.
    pub fn set_dht(&self, port: u16, nodes: Arc<dyn DhtNodes>) {
        *lock(&self.inner.dht_port) = Some(port);
        *lock(&self.inner.dht_nodes) = Some(nodes);
    }

    /// Where PEX learns the peers of a swarm besides those connected (the tracker's).
    pub fn set_swarm_peers(&self, source: Arc<dyn SwarmPeers>) {
        *lock(&self.inner.swarm_peers) = Some(source);
    }

    /// Starts serving a torrent under each of its wire hashes (v1, truncated v2). Replaces a
    /// torrent with the same hash.
    pub fn add(&self, torrent: Arc<Published>) {
        self.inner.add(torrent);
    }

    /// Stops serving the torrent known by `info_hash` (any of its wire hashes); its connections
    /// close. Returns whether it was served.
    pub fn remove(&self, info_hash: &InfoHash) -> bool {
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

    /// The publisher's budget and byte counts this seeder draws from.
    pub fn egress(&self) -> &Arc<Egress> {
        &self.inner.egress
    }

    /// Bytes of block data sent so far.
    pub fn uploaded(&self) -> u64 {
        self.inner.uploaded.load(Ordering::Relaxed)
    }

    /// Accepts peers on `listener` (TCP and uTP) until `shutdown` is cancelled, then closes
    /// every connection and returns once they are gone.
    pub async fn run(&self, mut listener: PeerListener, shutdown: CancellationToken) {
        *lock(&self.inner.udp_counts) = Some(listener.udp_counts());
        let per_ip = IpLimit::new(self.inner.config.max_connections_per_ip);
        let mut tasks = JoinSet::new();
        let mut rounds = tokio::time::interval(ROUND);
        rounds.tick().await;
        let mut last_accept_warning: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = rounds.tick() => {
                    self.inner.rechoke();
                    self.inner.refusals.summarize();
                }
                accepted = listener.accept() => match accepted {
                    Ok(incoming) => {
                        let addr = incoming.addr;
                        self.inner.refusals.accepted(incoming.via);
                        let Some(ip_slot) = per_ip.admit(addr.ip()) else {
                            self.inner.refusals.per_ip.fetch_add(1, Ordering::Relaxed);
                            debug!(%addr, "connection refused: max_connections_per_ip reached");
                            continue;
                        };
                        let inner = self.inner.clone();
                        let stop = shutdown.child_token();
                        tasks.spawn(async move {
                            super::session::run(inner, incoming, stop).await;
                            drop(ip_slot);
                        });
                    }
                    Err(e) => {
                        // Out of descriptors and the like: count it, say so once a minute, and
                        // back off instead of spinning; the loop goes on.
                        self.inner.refusals.accept_errors.fetch_add(1, Ordering::Relaxed);
                        if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                            warn!("peer connections cannot be accepted: {e} (retrying)");
                            last_accept_warning = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(listener);
        while tasks.join_next().await.is_some() {}
    }

    /// Starts answering browsers' WebRTC offers (`peer.webrtc`), on a UDP socket bound to
    /// `peer.webrtc.bind` or else `default_ip` (the peer port's address), until `shutdown`.
    pub async fn start_webrtc(
        &self,
        default_ip: std::net::IpAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<super::WebRtc> {
        let rtc = super::WebRtc::start(self.inner.clone(), default_ip, shutdown).await?;
        *lock(&self.inner.webrtc_stats) = Some(rtc.stats());
        Ok(rtc)
    }

    /// Prometheus lines for the seeder's connections: accepted by transport, refused by
    /// reason, and the peer port's datagrams.
    pub fn metrics(&self) -> String {
        let udp = lock(&self.inner.udp_counts).clone();
        let webrtc = lock(&self.inner.webrtc_stats).clone();
        self.inner
            .refusals
            .metrics(self.inner.open_sessions(), udp.as_deref())
            + &webrtc.map(|w| w.metrics()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(bool, InfoHash)>>);

    impl SeedAnnouncer for Recorder {
        fn seeding(&self, info_hash: InfoHash, _addr: SocketAddr) {
            lock(&self.0).push((true, info_hash));
        }
        fn stopped(&self, info_hash: InfoHash) {
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

    struct PublicOnly(Recorder);

    impl SeedAnnouncer for PublicOnly {
        fn seeding(&self, info_hash: InfoHash, addr: SocketAddr) {
            self.0.seeding(info_hash, addr);
        }
        fn stopped(&self, info_hash: InfoHash) {
            self.0.stopped(info_hash);
        }
        fn public_only(&self) -> bool {
            true
        }
    }

    /// BEP 27: the DHT and LSD announcers hear of public torrents only, whether added before
    /// or after they were set; the tracker's hears of both.
    #[test]
    fn public_only_announcers_never_hear_of_private_torrents() {
        let dir = tempfile::tempdir().unwrap();
        let public = crate::peer::test_support::v1_torrent(dir.path());
        let mut meta = (*public.metainfo).clone();
        meta.private = true;
        let private = Arc::new(Published::open(meta, &dir.path().join("data.bin")).unwrap());
        let seeder = Seeder::new(PeerConfig::default());
        seeder.add(private.clone());
        let (dht, tracker) = (
            Arc::new(PublicOnly(Recorder::default())),
            Arc::new(Recorder::default()),
        );
        let addr: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        seeder.set_announcer(dht.clone(), addr);
        seeder.set_announcer(tracker.clone(), addr);
        let public = Arc::new(public);
        seeder.add(public.clone());
        assert_eq!(*lock(&dht.0 .0), vec![(true, public.info_hash())]);
        assert_eq!(lock(&tracker.0).len(), 2);
    }
}
