//! `bitseed serve`: the whole product in one process — catalog, web face, tracker and seeder.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use bitseed::catalog::{Catalog, Event, Published, Registry, TorrentOptions};
use bitseed::cluster::{Cluster, NodeInfo};
use bitseed::config::{parse_listen, Overrides, Settings};
use bitseed::dht::{Dht, DhtAnnouncer};
use bitseed::egress::Egress;
use bitseed::lsd::{Lsd, LsdAnnouncer};
use bitseed::metainfo::InfoHash;
use bitseed::peer::{self, SeedAnnouncer, Seeder};
use bitseed::tracker::{self, Tracker};
use bitseed::web::{self as face, SwarmCounts, SwarmView, WebState};
use tokio_util::sync::CancellationToken;

/// Publish the content folder: every top-level file or folder in it becomes a torrent that is
/// listed on the web page, tracked and seeded, with HTTP as a web seed.
///
/// Settings come from defaults, then bitseed.toml (or --config), then BITSEED_* environment
/// variables (BITSEED_CONTENT, BITSEED_HTTP__LISTEN, ...), then these flags. Every key is
/// documented in deploy/bitseed.example.toml.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file [default: ./bitseed.toml if present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The folder to publish [default: ./content].
    #[arg(long, value_name = "DIR")]
    content: Option<PathBuf>,
    /// State folder for the catalog and counters [default: ./.bitseed].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// HTTP address for the page, API, tracker and web seed: an IP address and a port
    /// [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    http: Option<SocketAddr>,
    /// Peer wire (seeding) address, TCP and uTP [default: 0.0.0.0:6881].
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    peer: Option<SocketAddr>,
    /// UDP tracker address [default: 0.0.0.0:6969].
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    udp: Option<SocketAddr>,
    /// The public URL of this server, used in served torrents [default: the request's Host].
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Torrent format for published entries [default: v1].
    #[arg(long, value_parser = ["v1", "merkle", "v2", "hybrid"])]
    format: Option<String>,
    /// Seconds an entry must stay unchanged before it is hashed [default: 2].
    #[arg(long, value_name = "SECS")]
    settle: Option<f64>,
    /// Log as JSON lines instead of text (the level comes from RUST_LOG, default info).
    #[arg(long)]
    log_json: bool,
    /// Load and validate the configuration, print the effective settings, and exit.
    #[arg(long)]
    check: bool,
}

impl Args {
    fn overrides(&self) -> Overrides {
        let mut o: Overrides = Vec::new();
        let mut set = |key, v: Option<String>| {
            if let Some(v) = v {
                o.push((key, v));
            }
        };
        set(
            "content",
            self.content.as_ref().map(|p| p.display().to_string()),
        );
        set(
            "state",
            self.state.as_ref().map(|p| p.display().to_string()),
        );
        set("http.listen", self.http.map(|a| a.to_string()));
        set("udp.listen", self.udp.map(|a| a.to_string()));
        set("peer.listen", self.peer.map(|a| a.to_string()));
        set("public_url", self.public_url.clone());
        set("torrent.format", self.format.clone());
        set("catalog.settle_secs", self.settle.map(|s| s.to_string()));
        o
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let settings = Settings::load(args.config.as_deref(), &args.overrides())?;
    if args.check {
        // The settings as loaded, but never the Redis password.
        let mut shown = settings.clone();
        if let Some(url) = shown.cluster.redis_url.as_mut() {
            *url = bitseed::cluster::redacted(url);
        }
        println!("{}", toml::to_string_pretty(&shown)?);
        return Ok(0);
    }
    super::init_logging(args.log_json);
    check_state_folder(&settings.state)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bitseed")
        .build()?;
    runtime.block_on(serve(settings))?;
    Ok(0)
}

/// The state folder exists (made when missing) and this user can write in it. Checked before
/// any store opens, so a wrong owner is reported as such, not as SQLite's "unable to open
/// database file (code 14)".
fn check_state_folder(dir: &Path) -> anyhow::Result<()> {
    let tried = std::fs::create_dir_all(dir).and_then(|()| tempfile::tempfile_in(dir).map(drop));
    let Err(e) = tried else {
        return Ok(());
    };
    let shown = dir.display();
    let why = match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => format!(
            "the state folder `{shown}` cannot be created or written by this user (permission \
             denied): give the user bitseed runs as write access (e.g. `chown -R USER {shown}`), \
             or choose another folder with --state"
        ),
        std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists => format!(
            "the state folder `{shown}` is not a folder (a file is in the way): remove it, or \
             choose another folder with --state"
        ),
        _ => format!("cannot use the state folder `{shown}`: {e}"),
    };
    Err(anyhow::anyhow!(why))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let signalled = super::wait_for_signal();
    match super::raise_open_files_limit() {
        Some(n) => tracing::info!("open files limit: {n}"),
        None => tracing::info!("open files limit: unlimited"),
    }
    let shutdown = CancellationToken::new();
    let registry = Registry::new();
    let catalog = Catalog::open(
        settings.content.clone(),
        &settings.state,
        settings.settle(),
        TorrentOptions {
            format: settings.torrent.format,
            piece_size: settings.torrent.piece_size,
            private: settings.torrent.private,
            hash_threads: settings.catalog.hash_threads,
            hash_jobs: settings.catalog.hash_jobs,
        },
        settings.catalog.follow_symlinks,
        registry.clone(),
    )?;

    let tracker = Arc::new(
        Tracker::new(settings.tracker.clone(), &settings.state)
            .context("cannot start the tracker")?,
    );
    let egress = Arc::new(Egress::new(&settings.egress));
    let seeder = Arc::new(Seeder::with_egress(settings.peer.clone(), egress.clone()));
    let mut peer_listener = peer::PeerListener::bind_with_dht(&settings.peer, settings.dht.enabled)
        .await
        .with_context(|| format!("cannot listen on peer.listen {}", settings.peer.listen))?;
    let peer_addr = peer_listener.local_addr();
    tracing::info!(
        "peer listening on {peer_addr} (TCP{})",
        if settings.peer.utp { " and uTP" } else { "" }
    );
    // The address the tracker lists for our seeder: peer.public_ip, else the listen address
    // (an unspecified one is replaced by the address each client reached the tracker on).
    let own = SocketAddr::new(
        settings.peer.public_ip.unwrap_or(peer_addr.ip()),
        peer_addr.port(),
    );
    let own_seeds = Arc::new(Mutex::new(HashSet::new()));
    seeder.set_announcer(
        Arc::new(OwnSeed {
            tracker: tracker.clone(),
            seeding: own_seeds.clone(),
        }),
        own,
    );

    // Browsers' WebRTC offers reach the seeder through the WebSocket tracker.
    let webrtc = if settings.peer.webrtc.enabled && settings.tracker.websocket.enabled {
        let rtc = seeder
            .start_webrtc(peer_addr.ip(), shutdown.child_token())
            .await
            .context("cannot start the WebRTC side of the seeder (peer.webrtc)")?;
        tracing::info!("webrtc (browser peers) on udp {}", rtc.local_addr());
        tracker.set_browser_seed(Arc::new(BrowserPeer {
            rtc: rtc.clone(),
            peer_id: seeder.peer_id(),
        }));
        Some(rtc)
    } else {
        None
    };

    // PEX tells peers of the tracker's peers too.
    seeder.set_swarm_peers(Arc::new(TrackerPeers(tracker.clone())));
    // The DHT node shares the peer port's UDP socket; it hears of every torrent that is not
    // private, as the tracker does.
    let dht = match peer_listener.take_dht() {
        Some(port) => {
            let (dht, task) = Dht::start(
                &settings.dht,
                port.socket,
                port.incoming,
                Some(&settings.state),
                settings.peer.public_ip,
                shutdown.child_token(),
            )
            .context("cannot start the DHT node")?;
            seeder.set_dht(peer_addr.port(), Arc::new(dht.clone()));
            seeder.set_announcer(Arc::new(DhtAnnouncer(dht.clone())), own);
            Some((dht, task))
        }
        None => None,
    };

    // BEP 14 announces on the LAN, when asked for.
    let lsd_task = if settings.lsd.enabled {
        let (lsd, task) = Lsd::start(&settings.lsd, peer_addr.port(), shutdown.child_token())
            .await
            .context("cannot start local service discovery")?;
        seeder.set_announcer(Arc::new(LsdAnnouncer(lsd)), own);
        Some(task)
    } else {
        None
    };

    // Listeners run on a blocking-capable thread (the catalog publishes from one), so building
    // the seeder's view (which hashes a Merkle torrent's content) may block. The seeder comes
    // first: by the time the tracker accepts announces, it lists a seeder that is serving.
    let t = tracker.clone();
    let s = seeder.clone();
    registry.listen(move |event| match event {
        Event::Published(p) => {
            match seedable(p) {
                Ok(torrent) => s.add(Arc::new(torrent)),
                Err(e) => tracing::error!("cannot seed `{}`: {e}", p.name),
            }
            let hashes = p.meta.info_hash.wire_hashes();
            // Linked first: no announce under the v2 hash makes a swarm of its own meanwhile.
            if let [v1, v2] = hashes[..] {
                t.link_hybrid(v1, v2);
            }
            for h in &hashes {
                t.register(*h);
            }
        }
        Event::Retired(p) => {
            for h in p.meta.info_hash.wire_hashes() {
                s.remove(&h);
                t.unregister(h);
            }
        }
    });
    let seeder_task = {
        let s = seeder.clone();
        let token = shutdown.child_token();
        tokio::spawn(async move { s.run(peer_listener, token).await })
    };
    let udp = tokio::net::UdpSocket::bind(settings.udp.listen)
        .await
        .with_context(|| format!("cannot listen on udp.listen {}", settings.udp.listen))?;
    tracing::info!("udp tracker listening on {}", udp.local_addr()?);
    let udp_port = udp.local_addr()?.port();
    let udp_task = tokio::spawn(tracker::run_udp(
        udp,
        tracker.clone(),
        shutdown.clone().cancelled_owned(),
    ));
    let cluster = match &settings.cluster.redis_url {
        Some(_) => {
            let me = node_info(&settings, own, udp_port)?;
            let cluster = Cluster::new(settings.cluster.clone(), me, tracker.clone())?;
            catalog.set_shared_hashing(Arc::new(cluster.hash_share(shutdown.child_token())));
            let task = tokio::spawn(cluster.clone().run(shutdown.child_token()));
            Some((cluster, task))
        }
        None => None,
    };
    let maintenance_task = tokio::spawn(tracker::run_maintenance(
        tracker.clone(),
        shutdown.clone().cancelled_owned(),
    ));

    let requests = Arc::new(face::access::Requests::default());
    let downloads = Arc::new(
        face::downloads::Downloads::open(&settings.state)
            .context("cannot open the download counts")?,
    );
    let downloads_task = tokio::spawn(save_downloads(
        downloads.clone(),
        shutdown.clone().cancelled_owned(),
    ));
    let state = web::Data::new(WebState {
        registry: registry.clone(),
        swarm: Arc::new(TrackerView(
            tracker.clone(),
            seeder.clone(),
            own_seeds,
            dht.as_ref().map(|(d, _)| d.clone()),
            cluster.as_ref().map(|(c, _)| c.clone()),
        )),
        dht_port: dht.as_ref().map(|(d, _)| d.local_addr().port()),
        public_url: settings.public_url.clone(),
        proxies: settings.tracker.proxies(),
        egress: egress.clone(),
        requests: requests.clone(),
        downloads,
        title: settings.page.title.clone(),
        intro: settings.page.intro.clone(),
        admin: settings
            .page
            .admin_token
            .as_deref()
            .map(face::admin::AdminToken::new),
        ws_tracker: settings.tracker.websocket.enabled,
        browser: (!settings.page.webtorrent_url.is_empty()).then(|| face::BrowserDownload {
            script_url: settings.page.webtorrent_url.clone(),
            integrity: settings.page.webtorrent_integrity.clone(),
            max_bytes: settings.page.browser_max_bytes,
        }),
        cluster: cluster.as_ref().map(|(c, _)| c.clone()),
    });
    let access = web::Data::new(face::access::Access {
        log: settings.http.access_log,
        proxies: settings.tracker.proxies(),
        requests,
    });
    let listener = std::net::TcpListener::bind(settings.http.listen)
        .with_context(|| format!("cannot listen on http.listen {}", settings.http.listen))?;
    tracing::info!("http listening on {}", listener.local_addr()?);
    if settings.public_url.is_none() {
        tracing::warn!(
            "public_url is not set: links in the page, API and served torrents follow each \
             request's Host header; set public_url (or --public-url) to the address clients use"
        );
    }
    let app_tracker = tracker.clone();
    let head_limits = settings.http.head_limits();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(access.clone())
            .app_data(head_limits)
            .wrap(face::cors())
            .wrap(from_fn(face::limits::refuse_big_heads))
            // Outermost: it sees every answer, refusals and CORS preflights included.
            .wrap(from_fn(face::access::observe))
            .configure(tracker::configure(app_tracker.clone()))
            .configure(face::tracker_methods)
            .configure(face::configure)
            .default_service(web::to(face::unknown_path))
    });
    // Request heads are further bounded by actix itself: 32 KiB and 96 headers, else 431.
    let server = face::limits::bound(server, &settings.http, &settings.tracker.trusted_proxies)
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(3)
        .run();
    let http = server.handle();
    let http_task = tokio::spawn(server);

    let catalog_task = tokio::spawn(catalog.clone().run(shutdown.child_token()));
    tracing::info!(
        "publishing {} (state in {})",
        settings.content.display(),
        settings.state.display()
    );

    signalled.await;
    tracing::info!("stopping");
    shutdown.cancel();
    http.stop(true).await;
    let _ = http_task.await;
    let _ = seeder_task.await;
    if let Some(rtc) = &webrtc {
        rtc.closed().await;
    }
    if let Some((_, task)) = dht {
        let _ = task.await;
    }
    if let Some(task) = lsd_task {
        let _ = task.await;
    }
    let _ = udp_task.await;
    if let Some((_, task)) = cluster {
        let _ = task.await;
    }
    let _ = maintenance_task.await;
    let _ = downloads_task.await;
    if let Err(e) = tracker.flush() {
        tracing::error!("cannot save tracker counts: {e}");
    }
    match catalog_task.await {
        Ok(Err(e)) => tracing::error!("catalog: {e:#}"),
        Err(e) => tracing::error!("catalog task: {e}"),
        Ok(Ok(())) => {}
    }
    tracing::info!("stopped");
    Ok(())
}

/// This node as the other nodes of its cluster list it (`[cluster]`).
fn node_info(settings: &Settings, own: SocketAddr, udp_port: u16) -> anyhow::Result<NodeInfo> {
    let c = &settings.cluster;
    let base_url = c
        .node_url
        .as_deref()
        .context("cluster.node_url is required with cluster.redis_url")?
        .trim_end_matches('/')
        .to_owned();
    let host = host_of_url(&base_url).context("cluster.node_url: not an http(s) URL")?;
    let peer = match c.peer_addr {
        Some(a) => a,
        None => {
            let ip = match settings.peer.public_ip {
                Some(ip) => ip,
                None => host.trim_matches(['[', ']']).parse().context(
                    "cluster.peer_addr (or peer.public_ip) is needed when cluster.node_url's \
                     host is a name",
                )?,
            };
            SocketAddr::new(ip, own.port())
        }
    };
    let id = if c.node_id.is_empty() {
        base_url
            .split_once("://")
            .map_or(base_url.as_str(), |(_, r)| r)
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || ch == '.' {
                    ch
                } else {
                    '-'
                }
            })
            .collect()
    } else {
        c.node_id.clone()
    };
    Ok(NodeInfo {
        id,
        udp_announce: c
            .udp_tracker
            .then(|| format!("udp://{host}:{udp_port}/announce")),
        base_url,
        peer,
    })
}

/// The host of `http(s)://host[:port][/…]` (IPv6 in brackets, kept).
fn host_of_url(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split('/').next()?;
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then_some(host)
}

/// Writes the download counts once a minute, and once more at `stop`.
async fn save_downloads(
    downloads: Arc<face::downloads::Downloads>,
    stop: tokio_util::sync::WaitForCancellationFutureOwned,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    tokio::pin!(stop);
    loop {
        let stopping = tokio::select! {
            _ = every.tick() => false,
            _ = &mut stop => true,
        };
        let d = downloads.clone();
        match tokio::task::spawn_blocking(move || d.flush()).await {
            Ok(Err(e)) => tracing::error!("cannot save download counts: {e}"),
            Err(e) => tracing::error!("saving download counts: {e}"),
            Ok(Ok(())) => {}
        }
        if stopping {
            return;
        }
    }
}

/// The seeder's view of a published entry: the same files (and descriptor pool) as the web seed,
/// each checked against the identity it had when hashed.
fn seedable(p: &Published) -> Result<peer::Published, peer::PublishError> {
    peer::Published::with_content(
        p.meta.clone(),
        p.content.clone(),
        p.offload.clone(),
        p.merkle_pieces.as_deref().map(Vec::as_slice),
    )
}

/// Info hashes bitseed's own seeder is listed for (the tracker counts it as a seeder; the page
/// counts people).
type OwnSeeds = Arc<Mutex<HashSet<InfoHash>>>;

/// The seeder tells the tracker about itself directly, without an HTTP round trip.
struct OwnSeed {
    tracker: Arc<Tracker>,
    seeding: OwnSeeds,
}

impl SeedAnnouncer for OwnSeed {
    fn seeding(&self, info_hash: InfoHash, addr: SocketAddr) {
        self.tracker.set_own_seed(info_hash, addr);
        self.seeding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info_hash);
    }
    fn stopped(&self, info_hash: InfoHash) {
        self.tracker.clear_own_seed(info_hash);
        self.seeding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&info_hash);
    }
}

/// The seeder's WebRTC side as the tracker hands it browsers' offers.
struct BrowserPeer {
    rtc: peer::WebRtc,
    peer_id: [u8; 20],
}

impl tracker::BrowserSeed for BrowserPeer {
    fn peer_id(&self) -> [u8; 20] {
        self.peer_id
    }

    fn wants(&self, info_hash: &InfoHash, from: &[u8; 20], client: std::net::IpAddr) -> bool {
        self.rtc.wants(info_hash, from, client)
    }

    fn answer(
        &self,
        info_hash: &InfoHash,
        from: &[u8; 20],
        client: std::net::IpAddr,
        sdp: &str,
    ) -> Option<String> {
        self.rtc.answer(info_hash, from, client, sdp).ok()
    }
}

/// The tracker's swarms as PEX's source of peers.
struct TrackerPeers(Arc<Tracker>);

impl peer::SwarmPeers for TrackerPeers {
    fn peers(&self, info_hash: &InfoHash, max: usize) -> Vec<SocketAddr> {
        self.0.sample_peers(info_hash, max)
    }
}

/// The web face's view of the tracker's swarms.
struct TrackerView(
    Arc<Tracker>,
    Arc<Seeder>,
    OwnSeeds,
    Option<Dht>,
    Option<Arc<Cluster>>,
);

impl SwarmView for TrackerView {
    fn counts(&self, info_hash: &InfoHash) -> SwarmCounts {
        let c = self.0.torrent(info_hash);
        let own_seed = self
            .2
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(info_hash);
        // The tracker counts the other nodes' seeders with the own seed (see `Shard::counts`).
        let node_seeds = match (&self.4, own_seed) {
            (Some(cluster), true) => cluster.nodes().len().saturating_sub(1) as u64,
            _ => 0,
        };
        SwarmCounts {
            seeders: u64::from(c.complete),
            leechers: u64::from(c.incomplete),
            completed: c.downloaded,
            own_seed,
            node_seeds,
        }
    }

    fn metrics(&self) -> String {
        let s = self.0.stats();
        format!(
            "# HELP bitseed_tracker_torrents Swarms with peers.\n# TYPE bitseed_tracker_torrents gauge\nbitseed_tracker_torrents {}\n\
             # HELP bitseed_tracker_seeders Seeders in all swarms.\n# TYPE bitseed_tracker_seeders gauge\nbitseed_tracker_seeders {}\n\
             # HELP bitseed_tracker_leechers Leechers in all swarms.\n# TYPE bitseed_tracker_leechers gauge\nbitseed_tracker_leechers {}\n\
             # HELP bitseed_tracker_announces_total Announces handled (HTTP, UDP and WebSocket) since start.\n# TYPE bitseed_tracker_announces_total counter\nbitseed_tracker_announces_total {}\n\
             # HELP bitseed_tracker_websocket_connections Open WebSocket tracker connections (browsers).\n# TYPE bitseed_tracker_websocket_connections gauge\nbitseed_tracker_websocket_connections {}\n",
            s.torrents, s.seeders, s.leechers, self.0.announce_count(), self.0.ws_connections()
        ) + &format!(
            "# HELP bitseed_peer_uploaded_bytes_total Bytes of pieces sent over the peer wire.\n# TYPE bitseed_peer_uploaded_bytes_total counter\nbitseed_peer_uploaded_bytes_total {}\n",
            self.1.uploaded()
        ) + &self.1.metrics()
            + &self.1.egress().metrics()
            + &self.3.as_ref().map(Dht::metrics).unwrap_or_default()
            + &self.4.as_ref().map(|c| c.metrics()).unwrap_or_default()
    }
}
