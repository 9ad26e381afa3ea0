//! The DHT node's I/O: datagrams the peer listener sorted out as KRPC come in on a channel,
//! answers and queries leave through the peer port's own UDP socket; a tick drives timeouts and
//! announces; the node id and table are saved in the state folder (`dht.dat`) so a restart
//! rejoins at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::id::{exempt, NodeId};
use super::krpc::{self, CompactNode};
use super::node::{Node, Out};
use super::DhtConfig;
use crate::bencode::{decode, Node as BNode, Value};
use crate::metainfo::InfoHash;
use crate::peer::SeedAnnouncer;

const TICK: Duration = Duration::from_millis(500);
const SAVE_EVERY: Duration = Duration::from_secs(5 * 60);
const STATE_FILE: &str = "dht.dat";

struct Shared {
    node: Mutex<Node>,
    wake: Notify,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    sent: AtomicU64,
    send_errors: AtomicU64,
}

fn lock(m: &Mutex<Node>) -> std::sync::MutexGuard<'_, Node> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running node. Cheap to clone.
#[derive(Clone)]
pub struct Dht {
    shared: Arc<Shared>,
}

/// What was saved: our id, the address others saw us at, the table's nodes.
#[derive(Default)]
struct Saved {
    id: Option<NodeId>,
    ip: Option<Ipv4Addr>,
    nodes: Vec<CompactNode>,
}

fn load(path: &Path) -> Saved {
    let Ok(bytes) = std::fs::read(path) else {
        return Saved::default();
    };
    let Ok(root) = decode(&bytes) else {
        warn!(
            "{} is not a saved DHT state: starting afresh",
            path.display()
        );
        return Saved::default();
    };
    Saved {
        id: root
            .get("id")
            .and_then(BNode::as_bytes)
            .and_then(|b| <[u8; 20]>::try_from(b).ok())
            .map(NodeId),
        ip: root
            .get("ip")
            .and_then(BNode::as_bytes)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(Ipv4Addr::from),
        nodes: root
            .get("nodes")
            .and_then(BNode::as_bytes)
            .map(|b| {
                b.chunks_exact(26)
                    .take(2000)
                    .filter_map(|c| krpc::parse_nodes(c).pop())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn save(path: &Path, node: &Node) {
    let mut d = Value::dict();
    d.insert("id", Value::Bytes(node.id().0.to_vec()));
    if let Some(ip) = node.learned_ip() {
        d.insert("ip", Value::Bytes(ip.octets().to_vec()));
    }
    let nodes: Vec<CompactNode> = node.table().iter().map(|e| e.compact()).collect();
    d.insert("nodes", Value::Bytes(krpc::write_nodes(&nodes)));
    // Written aside and renamed: a crash leaves the old file or the new one.
    let tmp = path.with_extension("dat.tmp");
    let result = std::fs::write(&tmp, d.encode()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        warn!("cannot save the DHT state in {}: {e}", path.display());
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0; N];
    // The OS has randomness or nothing works; a fixed fallback only weakens the id's spread.
    let _ = getrandom::fill(&mut b);
    b
}

/// The id to run with: the saved one if it still fits our address (BEP 42), else a new one.
fn choose_id(saved: &Saved, ip: Option<Ipv4Addr>) -> NodeId {
    let ip = ip.filter(|ip| !exempt(*ip));
    match (saved.id, ip) {
        (Some(id), Some(ip)) if id.valid_for(ip) => id,
        (Some(id), None) => id,
        (_, Some(ip)) => NodeId::for_ip(ip, random_bytes()),
        (None, None) => NodeId(random_bytes()),
    }
}

fn v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}

impl Dht {
    /// Starts the node on `socket` (the peer port's), reading `incoming` (KRPC datagrams the
    /// listener sorted out) until `shutdown`. `state`: where `dht.dat` lives (none for
    /// `bitseed seed`). `public_ip`: our address if known (`peer.public_ip`).
    pub fn start(
        config: &DhtConfig,
        socket: Arc<UdpSocket>,
        incoming: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
        state: Option<&Path>,
        public_ip: Option<IpAddr>,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Dht, JoinHandle<()>)> {
        let local = socket.local_addr()?;
        let path = state.map(|s| s.join(STATE_FILE));
        let saved = path.as_deref().map(load).unwrap_or_default();
        let configured = match public_ip {
            Some(IpAddr::V4(ip)) => Some(ip),
            _ => match local.ip() {
                IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
                _ => None,
            },
        };
        let id = choose_id(&saved, configured.or(saved.ip));
        let now = Instant::now();
        let seed = u64::from_le_bytes(random_bytes());
        let mut node = Node::new(
            id,
            config.limits(),
            local.port(),
            configured,
            saved.ip,
            Vec::new(),
            seed,
            now,
        );
        node.restore(&saved.nodes, now);
        info!(
            "DHT node {} on UDP {local}: {} saved nodes",
            hex::encode(id.0),
            node.table().len()
        );
        let dht = Dht {
            shared: Arc::new(Shared {
                node: Mutex::new(node),
                wake: Notify::new(),
                socket,
                local,
                sent: AtomicU64::new(0),
                send_errors: AtomicU64::new(0),
            }),
        };
        let task =
            tokio::spawn(
                dht.clone()
                    .run(incoming, config.bootstrap.clone(), path, shutdown),
            );
        Ok((dht, task))
    }

    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    pub fn seed(&self, info_hash: [u8; 20]) {
        lock(&self.shared.node).seed(info_hash, Instant::now());
        self.shared.wake.notify_one();
    }

    /// A node heard of outside the DHT (a peer's PORT message): pinged, and taken into the
    /// table if it answers.
    pub fn heard_of(&self, node: SocketAddr) {
        if let Some(node) = v4(node) {
            lock(&self.shared.node).heard_of(node, Instant::now());
            self.shared.wake.notify_one();
        }
    }

    pub fn unseed(&self, info_hash: [u8; 20]) {
        lock(&self.shared.node).unseed(info_hash);
    }

    async fn send(&self, out: Vec<Out>) {
        for o in out {
            let to = match self.shared.local {
                SocketAddr::V6(_) => {
                    SocketAddr::new(IpAddr::V6(o.to.ip().to_ipv6_mapped()), o.to.port())
                }
                SocketAddr::V4(_) => SocketAddr::V4(o.to),
            };
            match self.shared.socket.send_to(&o.bytes, to).await {
                Ok(_) => self.shared.sent.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    debug!("DHT send to {to}: {e}");
                    self.shared.send_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }

    async fn run(
        self,
        mut incoming: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
        bootstrap: Vec<String>,
        path: Option<PathBuf>,
        shutdown: CancellationToken,
    ) {
        // Resolved beside the loop: queries are answered meanwhile.
        let resolving = resolve(&bootstrap);
        tokio::pin!(resolving);
        let mut resolved = false;
        let mut tick = tokio::time::interval(TICK);
        let mut saving = tokio::time::interval(SAVE_EVERY);
        saving.tick().await;
        loop {
            let mut out = Vec::new();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                routers = &mut resolving, if !resolved => {
                    resolved = true;
                    let mut node = lock(&self.shared.node);
                    node.set_routers(routers);
                    node.tick(Instant::now(), &mut out);
                }
                got = incoming.recv() => {
                    let Some((bytes, from)) = got else { break };
                    // IPv4 only (BEP 32's IPv6 DHT is not spoken): others are dropped.
                    if let Some(from) = v4(from) {
                        lock(&self.shared.node).on_datagram(&bytes, from, Instant::now(), &mut out);
                    }
                }
                _ = tick.tick() => lock(&self.shared.node).tick(Instant::now(), &mut out),
                _ = self.shared.wake.notified() => lock(&self.shared.node).tick(Instant::now(), &mut out),
                _ = saving.tick() => {
                    if let Some(p) = &path {
                        save(p, &lock(&self.shared.node));
                    }
                }
            }
            self.send(out).await;
        }
        if let Some(p) = &path {
            save(p, &lock(&self.shared.node));
        }
    }

    /// Prometheus lines: nodes in the table, announces, queries answered and refused.
    pub fn metrics(&self) -> String {
        let (table, stored, seeding, s) = {
            let n = lock(&self.shared.node);
            (
                n.table().len(),
                n.stored_peers(),
                n.seeding_count(),
                n.stats.clone(),
            )
        };
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        line(
            "bitseed_dht_nodes",
            "gauge",
            "Nodes in the DHT routing table.",
            table as u64,
        );
        line(
            "bitseed_dht_torrents",
            "gauge",
            "Info hashes the DHT node announces.",
            seeding as u64,
        );
        line(
            "bitseed_dht_stored_peers",
            "gauge",
            "Peers other nodes announced to us, kept.",
            stored as u64,
        );
        line(
            "bitseed_dht_queries_answered_total",
            "counter",
            "DHT queries answered.",
            s.queries_answered,
        );
        line(
            "bitseed_dht_queries_limited_total",
            "counter",
            "DHT queries dropped by the rate limits.",
            s.queries_limited,
        );
        line(
            "bitseed_dht_bad_messages_total",
            "counter",
            "Datagrams on the DHT that were not KRPC.",
            s.bad_messages,
        );
        line(
            "bitseed_dht_announces_sent_total",
            "counter",
            "announce_peer queries sent for our torrents.",
            s.announces_sent,
        );
        line(
            "bitseed_dht_announces_acked_total",
            "counter",
            "announce_peer queries of ours answered.",
            s.announces_acked,
        );
        line(
            "bitseed_dht_announces_received_total",
            "counter",
            "announce_peer queries stored.",
            s.announces_received,
        );
        line(
            "bitseed_dht_datagrams_sent_total",
            "counter",
            "Datagrams the DHT node sent.",
            self.shared.sent.load(Ordering::Relaxed),
        );
        out
    }
}

/// The bootstrap routers' IPv4 addresses (names resolved once, at start).
async fn resolve(names: &[String]) -> Vec<SocketAddrV4> {
    let mut out = Vec::new();
    for name in names {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => out.extend(addrs.filter_map(v4)),
            Err(e) => warn!("DHT bootstrap {name}: {e}"),
        }
    }
    out
}

impl crate::peer::DhtNodes for Dht {
    fn heard_of(&self, node: SocketAddr) {
        Dht::heard_of(self, node);
    }
}

/// The seeder's hook: every torrent that is served and not private is announced.
pub struct DhtAnnouncer(pub Dht);

impl SeedAnnouncer for DhtAnnouncer {
    fn seeding(&self, info_hash: InfoHash, _addr: SocketAddr) {
        self.0.seed(info_hash.into());
    }
    fn stopped(&self, info_hash: InfoHash) {
        self.0.unseed(info_hash.into());
    }
    fn public_only(&self) -> bool {
        true
    }
}
