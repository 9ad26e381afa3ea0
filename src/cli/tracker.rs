//! `bitseed tracker`: the built-in tracker alone (open mode by default), over HTTP and/or UDP.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use bitseed::config::HttpSettings;
use bitseed::tracker::{self, Mode, Tracker, TrackerConfig, TrackerError};
use bitseed::web::limits;

use super::UsageError;

/// Run a BitTorrent tracker (HTTP and UDP announce and scrape) until SIGINT or SIGTERM.
///
/// Prints `http listening on ADDR` / `udp listening on ADDR` once bound (port 0 picks a free
/// port). Logs go to stderr; set RUST_LOG (e.g. `debug`) for more.
#[derive(clap::Args)]
pub struct Args {
    /// Address for HTTP announce, scrape and /stats, e.g. 0.0.0.0:6969.
    #[arg(long, value_name = "ADDR", value_parser = bitseed::config::parse_listen)]
    http: Option<SocketAddr>,
    /// Address for UDP (BEP 15) announce and scrape, e.g. 0.0.0.0:6969.
    #[arg(long, value_name = "ADDR", value_parser = bitseed::config::parse_listen)]
    udp: Option<SocketAddr>,
    /// Folder for the tracker's state (completed counts, UDP connection-ID key).
    #[arg(long, value_name = "DIR", default_value = ".bitseed")]
    state: PathBuf,
    /// `open` tracks any info hash; `published` would track only registered ones (none here).
    #[arg(long, value_enum, default_value = "open")]
    mode: ModeArg,
    /// Seconds clients wait between announces; peers silent for twice this are dropped.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    interval: u32,
    /// Minimum seconds between announces (defaults to half the interval).
    #[arg(long, value_name = "SECS")]
    min_interval: Option<u32>,
    /// Peers returned by default.
    #[arg(long, default_value_t = 50)]
    numwant: u32,
    /// Most peers returned in one answer.
    #[arg(long, default_value_t = 200)]
    numwant_max: u32,
    /// Most peers stored per torrent.
    #[arg(long, default_value_t = 50_000)]
    max_peers_per_torrent: u32,
    /// Most peers stored per torrent from one address (IPv6: one /64); 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = TrackerConfig::default().max_peers_per_ip)]
    max_peers_per_ip: u32,
    /// Most torrents tracked at once.
    #[arg(long, default_value_t = 1_000_000)]
    max_torrents: u32,
    /// Most live torrents first announced from one address (IPv6: one /64); 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = TrackerConfig::default().max_torrents_per_ip)]
    max_torrents_per_ip: u32,
    /// Answer a scrape without info_hash with every torrent.
    #[arg(long)]
    full_scrape: bool,
    /// A proxy whose --proxy-header names the client (repeatable); other clients' forwarding
    /// headers are ignored.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    trusted_proxies: Vec<IpAddr>,
    /// The header trusted proxies name the client in: x-forwarded-for, forwarded or x-real-ip.
    #[arg(long, value_name = "HEADER", default_value = "x-forwarded-for")]
    proxy_header: bitseed::proxy::ProxyHeader,
    /// Believe the `ip` announce parameter.
    #[arg(long)]
    accept_ip_param: bool,
    /// Worker threads (default: the CPUs this process may use).
    #[arg(long)]
    workers: Option<usize>,
    /// Open HTTP connections per worker; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = HttpSettings::default().max_connections)]
    max_connections: usize,
    /// Open HTTP connections from one address (IPv6: one /64), trusted proxies exempt; 0 = no
    /// limit.
    #[arg(long, value_name = "N", default_value_t = HttpSettings::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Seconds a client has to send a whole request head.
    #[arg(long, value_name = "SECS", default_value_t = HttpSettings::default().request_timeout)]
    request_timeout: f64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, value_name = "SECS", default_value_t = HttpSettings::default().keep_alive)]
    keep_alive: f64,
    /// Longest request target in bytes (longer: 414).
    #[arg(long, value_name = "BYTES", default_value_t = HttpSettings::default().max_uri_bytes)]
    max_uri_bytes: usize,
    /// Most bytes over all request headers (more: 431).
    #[arg(long, value_name = "BYTES", default_value_t = HttpSettings::default().max_header_bytes)]
    max_header_bytes: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Open,
    Published,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.http.is_none() && args.udp.is_none() {
        return Err(UsageError("give --http ADDR, --udp ADDR or both".into()).into());
    }
    super::init_logging(false);
    let http = HttpSettings {
        listen: args.http.unwrap_or(HttpSettings::default().listen),
        // A tracker alone logs no line per announce: at thousands a second they would be the
        // load (`serve` has the setting).
        access_log: false,
        request_timeout: args.request_timeout,
        keep_alive: args.keep_alive,
        send_timeout: HttpSettings::default().send_timeout,
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        workers: 0,
        max_uri_bytes: args.max_uri_bytes,
        max_header_bytes: args.max_header_bytes,
    };
    if !(http.request_timeout > 0.0 && http.keep_alive >= 0.0) || http.max_connections == 0 {
        return Err(UsageError(
            "--request-timeout must be above 0, --keep-alive at least 0, --max-connections at least 1".into(),
        )
        .into());
    }
    let config = TrackerConfig {
        mode: match args.mode {
            ModeArg::Open => Mode::Open,
            ModeArg::Published => Mode::Published,
        },
        interval: args.interval,
        min_interval: args.min_interval.unwrap_or(args.interval / 2),
        numwant_default: args.numwant,
        numwant_max: args.numwant_max,
        max_peers_per_torrent: args.max_peers_per_torrent,
        max_peers_per_ip: args.max_peers_per_ip,
        max_torrents: args.max_torrents,
        max_torrents_per_ip: args.max_torrents_per_ip,
        full_scrape: args.full_scrape,
        trusted_proxies: args.trusted_proxies,
        proxy_header: args.proxy_header,
        accept_ip_param: args.accept_ip_param,
        websocket: bitseed::tracker::WsConfig::default(),
    };
    let tracker = match Tracker::new(config, &args.state) {
        Ok(t) => Arc::new(t),
        Err(TrackerError::Config(e)) => return Err(UsageError(e.to_string()).into()),
        Err(e) => return Err(e.into()),
    };
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let http = HttpSettings { workers, ..http };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(tracker, args.http.map(|_| http), args.udp))?;
    Ok(0)
}

async fn serve(
    tracker: Arc<Tracker>,
    http: Option<HttpSettings>,
    udp: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let signalled = super::wait_for_signal();
    let (stop, stopped) = tokio::sync::watch::channel(());
    let shutdown = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.changed().await;
        }
    };
    let http_listener = match http {
        Some(http) => {
            let l = std::net::TcpListener::bind(http.listen)
                .with_context(|| format!("binding HTTP {}", http.listen))?;
            println!("http listening on {}", l.local_addr()?);
            Some((l, http))
        }
        None => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = udp {
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding UDP {addr}"))?;
        println!("udp listening on {}", socket.local_addr()?);
        tasks.spawn(tracker::run_udp(socket, tracker.clone(), shutdown()));
    }
    let maintenance = tokio::spawn(tracker::run_maintenance(tracker.clone(), shutdown()));
    tracing::info!(mode = ?tracker.config().mode, interval = tracker.config().interval, "tracker started");
    let stop_on_signal = {
        let stop = stop.clone();
        async move {
            signalled.await;
            tracing::info!("stopping");
            let _ = stop.send(());
        }
    };
    let http_server = async {
        let Some((listener, http)) = http_listener else {
            return Ok(());
        };
        let r = run_http(listener, tracker.clone(), &http, shutdown()).await;
        // If the HTTP server ends on its own (an error), stop the rest too.
        let _ = stop.send(());
        r
    };
    let (http_result, ()) = tokio::join!(http_server, stop_on_signal);
    while let Some(r) = tasks.join_next().await {
        r.context("UDP task")?.context("UDP server")?;
    }
    maintenance.await.context("maintenance task")?;
    http_result.context("HTTP server")?;
    tracing::info!("stopped");
    Ok(())
}

/// Serves the tracker alone over HTTP on `listener`, with the same bounds as `serve`, until
/// `shutdown` resolves.
async fn run_http(
    listener: std::net::TcpListener,
    tracker: Arc<Tracker>,
    http: &HttpSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let head_limits = http.head_limits();
    let trusted = tracker.config().trusted_proxies.clone();
    let app = move || {
        App::new()
            .app_data(head_limits)
            .wrap(from_fn(limits::refuse_big_heads))
            .configure(tracker::configure(tracker.clone()))
            .configure(bitseed::web::tracker_methods)
            .default_service(web::to(bitseed::web::unknown_path))
    };
    let server = limits::bound(HttpServer::new(app), http, &trusted)
        .disable_signals()
        // Clients announce and leave; on stop, don't wait 30 s (the default) for stragglers.
        .shutdown_timeout(5)
        .listen(listener)?
        .run();
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    server.await
}
