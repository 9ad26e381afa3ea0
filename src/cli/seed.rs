//! `bitseed seed`: seed one torrent from disk, announcing to its own HTTP trackers.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bitseed::announce::{self, Announce, Event};
use bitseed::dht::{Dht, DhtAnnouncer, DhtConfig};
use bitseed::metainfo::Metainfo;
use bitseed::peer::mse::Encryption;
use bitseed::peer::{PeerConfig, PeerListener, Published, Seeder, SuperSeedMode, UtpCongestion};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Seed a torrent: serve PATH to peers over the peer wire protocol until SIGINT or SIGTERM.
///
/// The torrent's HTTP and UDP trackers are told (event=started, then at the interval each asks for,
/// event=stopped on exit). The bound address is printed on stdout as `listening on ADDR`.
#[derive(clap::Args)]
pub struct Args {
    /// The .torrent file.
    torrent: PathBuf,
    /// The content: the file, or the folder named by the torrent (or the folder that holds it).
    path: PathBuf,
    /// Address to listen on for peers (port 0 picks a free port).
    #[arg(short, long, default_value = "0.0.0.0:6881")]
    listen: SocketAddr,
    /// Address to announce to trackers (default: the listen address unless it is 0.0.0.0).
    #[arg(long)]
    public_ip: Option<IpAddr>,
    /// Peers unchoked at once.
    #[arg(long, default_value_t = PeerConfig::default().upload_slots)]
    upload_slots: usize,
    /// Upload limit in bytes per second over all peers (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    max_upload_rate: u64,
    /// BEP 16 super-seeding: show each peer one piece at a time, the least handed out first
    /// (default: only while --max-upload-rate caps the upload).
    #[arg(long)]
    super_seed: bool,
    /// Do not announce to the torrent's trackers.
    #[arg(long)]
    no_announce: bool,
    /// Do not take uTP connections on the UDP side of the listen port (TCP only).
    #[arg(long)]
    no_utp: bool,
    /// uTP congestion control: ledbat yields to the downloader's other traffic (BEP 29),
    /// cubic competes as TCP does.
    #[arg(long, value_enum, default_value = "ledbat")]
    utp_congestion: UtpCongestion,
    /// Encrypted handshakes (MSE/PE): prefer takes plaintext and encrypted ones (RC4 only for
    /// peers that offer nothing else), require only RC4-encrypted ones, disable only plaintext
    /// ones.
    #[arg(long, value_enum, default_value = "prefer")]
    encryption: Encryption,
    /// Run a DHT node (BEP 5) on the listen port's UDP side and announce the torrent to it
    /// (not for a private torrent).
    #[arg(long)]
    dht: bool,
    /// A node to join the DHT through, host:port (repeat for more) [default: the well-known
    /// routers].
    #[arg(long, value_name = "HOST:PORT", requires = "dht")]
    dht_bootstrap: Vec<String>,
    /// Folder to keep the DHT node's id and routing table in (dht.dat) across runs.
    #[arg(long, value_name = "DIR", requires = "dht")]
    dht_state: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    super::init_logging(false);
    // A torrent of many files keeps each of them open.
    super::raise_open_files_limit();

    let bytes = std::fs::read(&args.torrent)
        .with_context(|| format!("cannot read `{}`", args.torrent.display()))?;
    let meta = Metainfo::from_bytes(&bytes)
        .with_context(|| format!("`{}` is not a valid torrent", args.torrent.display()))?;
    let published = Published::open(meta, &args.path)
        .with_context(|| format!("cannot serve `{}`", args.path.display()))?;
    let config = PeerConfig {
        listen: args.listen,
        public_ip: args.public_ip,
        upload_slots: args.upload_slots,
        max_upload_rate: args.max_upload_rate,
        super_seed: if args.super_seed {
            SuperSeedMode::On
        } else {
            SuperSeedMode::Auto
        },
        utp: !args.no_utp,
        utp_congestion: args.utp_congestion,
        encryption: args.encryption,
        ..PeerConfig::default()
    };
    let dht = args.dht.then(|| {
        let mut c = DhtConfig::default();
        if !args.dht_bootstrap.is_empty() {
            c.bootstrap = args.dht_bootstrap.clone();
        }
        (c, args.dht_state.clone())
    });
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(seed(config, Arc::new(published), !args.no_announce, dht))?;
    Ok(0)
}

async fn seed(
    config: PeerConfig,
    torrent: Arc<Published>,
    announce: bool,
    dht: Option<(DhtConfig, Option<PathBuf>)>,
) -> anyhow::Result<()> {
    let mut listener = PeerListener::bind_with_dht(&config, dht.is_some())
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr();
    println!("listening on {local}");
    let seeder = Seeder::new(config.clone());
    let shutdown = CancellationToken::new();
    let mut dht_task = None;
    if let (Some((dht_config, state)), Some(port)) = (dht, listener.take_dht()) {
        if let Some(dir) = &state {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        let (node, task) = Dht::start(
            &dht_config,
            port.socket,
            port.incoming,
            state.as_deref(),
            config.public_ip,
            shutdown.child_token(),
        )
        .context("cannot start the DHT node")?;
        seeder.set_dht(local.port(), Arc::new(node.clone()));
        seeder.set_announcer(Arc::new(DhtAnnouncer(node)), local);
        dht_task = Some(task);
    }
    seeder.add(torrent.clone());

    let server = tokio::spawn({
        let seeder = seeder.clone();
        let shutdown = shutdown.clone();
        async move { seeder.run(listener, shutdown).await }
    });
    let announcer = announce.then(|| {
        tokio::spawn(announce_loop(
            seeder.clone(),
            torrent.clone(),
            local.port(),
            announce::advertised(config.public_ip, config.listen),
            shutdown.clone(),
        ))
    });

    super::wait_for_signal().await;
    info!("stopping");
    shutdown.cancel();
    if let Some(a) = announcer {
        let _ = a.await;
    }
    let _ = server.await;
    if let Some(t) = dht_task {
        let _ = t.await;
    }
    Ok(())
}

/// Announces every wire hash of the torrent to every HTTP and UDP tracker, each at its own interval,
/// and sends `stopped` to each on shutdown.
async fn announce_loop(
    seeder: Seeder,
    torrent: Arc<Published>,
    port: u16,
    ip: Option<IpAddr>,
    shutdown: CancellationToken,
) {
    let urls: Vec<String> = torrent
        .metainfo
        .trackers
        .iter()
        .flatten()
        .cloned()
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for url in urls {
        if !url.starts_with("http://") && !url.starts_with("udp://") {
            warn!(tracker = %url, "not announcing: only http:// and udp:// trackers are spoken");
            continue;
        }
        for info_hash in torrent.wire_hashes() {
            let (url, seeder, shutdown) = (url.clone(), seeder.clone(), shutdown.clone());
            tasks.spawn(async move {
                let mut a = Announce {
                    info_hash,
                    peer_id: seeder.peer_id(),
                    port,
                    uploaded: 0,
                    event: Event::Started,
                    ip,
                };
                loop {
                    a.uploaded = seeder.uploaded();
                    let wait = match announce::announce(&url, &a).await {
                        Ok(interval) => {
                            info!(tracker = %url, "announced; next in {}s", interval.as_secs());
                            a.event = Event::None;
                            interval
                        }
                        Err(e) => {
                            warn!("{e}");
                            Duration::from_secs(60)
                        }
                    };
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                a.event = Event::Stopped;
                a.uploaded = seeder.uploaded();
                if let Err(e) = announce::announce(&url, &a).await {
                    warn!("{e}");
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
}
