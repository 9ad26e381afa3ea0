//! Local Service Discovery (BEP 14): the published torrents that are not private are announced
//! on the local network by multicast (`lsd.enabled`, off by default), for office and LAN
//! distribution: clients on the LAN find the seed without any tracker or DHT.
//!
//! One announce a minute at most (BEP 14), each carrying as many info hashes as fit in 1,400
//! bytes, round-robin; every torrent is announced again at least every 5 minutes while it fits
//! (up to about 125 torrents). We only send: a seed needs no peers from the LAN.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::metainfo::InfoHash;
use crate::peer::SeedAnnouncer;

/// BEP 14's IPv4 group.
pub const GROUP: &str = "239.192.152.143:6771";
/// At most one announce this often (BEP 14).
const EVERY: Duration = Duration::from_secs(60);
/// A torrent is announced again after this (BEP 14's 5 minutes).
const ROUND: Duration = Duration::from_secs(5 * 60);
/// Longest announce (BEP 14: keep under 1,400 bytes).
const MAX_PACKET: usize = 1400;

/// `[lsd]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LsdConfig {
    /// Announce published torrents that are not private on the local network (BEP 14).
    pub enabled: bool,
    /// Where announces go: BEP 14's multicast group (an address and port).
    pub group: SocketAddr,
}

impl Default for LsdConfig {
    fn default() -> Self {
        LsdConfig {
            enabled: false,
            group: GROUP
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([239, 192, 152, 143], 6771))),
        }
    }
}

/// Announces for `hashes` (in order) to `host`, each at most MAX_PACKET bytes.
pub fn packets(host: &str, port: u16, cookie: &str, hashes: &[[u8; 20]]) -> Vec<Vec<u8>> {
    let head = format!("BT-SEARCH * HTTP/1.1\r\nHost: {host}\r\nPort: {port}\r\n");
    let tail = format!("cookie: {cookie}\r\n\r\n\r\n");
    let per_hash = "Infohash: \r\n".len() + 40;
    let room = MAX_PACKET.saturating_sub(head.len() + tail.len());
    let per_packet = (room / per_hash).max(1);
    hashes
        .chunks(per_packet)
        .map(|chunk| {
            let mut p = head.clone();
            for h in chunk {
                p.push_str("Infohash: ");
                p.push_str(&hex::encode(h));
                p.push_str("\r\n");
            }
            p.push_str(&tail);
            p.into_bytes()
        })
        .collect()
}

/// The announcer: the seeder tells it which torrents are served; a task sends.
#[derive(Clone)]
pub struct Lsd {
    hashes: Arc<Mutex<BTreeSet<[u8; 20]>>>,
    wake: Arc<tokio::sync::Notify>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Lsd {
    /// Starts announcing, for peers on `port`, until `shutdown`.
    pub async fn start(
        config: &LsdConfig,
        port: u16,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Lsd, JoinHandle<()>)> {
        let bind: SocketAddr = if config.group.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).await?;
        // The LAN only: routers do not pass it on.
        let _ = socket.set_multicast_ttl_v4(1);
        let lsd = Lsd {
            hashes: Arc::default(),
            wake: Arc::default(),
        };
        let mut cookie = [0u8; 4];
        let _ = getrandom::fill(&mut cookie);
        info!("local service discovery: announcing to {}", config.group);
        let task = tokio::spawn(lsd.clone().run(
            socket,
            config.group,
            port,
            hex::encode(cookie),
            shutdown,
        ));
        Ok((lsd, task))
    }

    async fn run(
        self,
        socket: UdpSocket,
        group: SocketAddr,
        port: u16,
        cookie: String,
        shutdown: CancellationToken,
    ) {
        let host = group.to_string();
        // Hashes still to announce this round, and when the round started.
        let mut queue: Vec<[u8; 20]> = Vec::new();
        let mut round_started: Option<tokio::time::Instant> = None;
        let mut last_sent: Option<tokio::time::Instant> = None;
        loop {
            let now = tokio::time::Instant::now();
            if queue.is_empty() && round_started.is_none_or(|t| now >= t + ROUND) {
                queue = lock(&self.hashes).iter().copied().collect();
                if !queue.is_empty() {
                    round_started = Some(now);
                }
            }
            let may_send = last_sent.is_none_or(|t| now >= t + EVERY);
            if may_send && !queue.is_empty() {
                if let Some(p) = packets(&host, port, &cookie, &queue).into_iter().next() {
                    let sent = p.windows(10).filter(|w| w == b"Infohash: ").count();
                    queue.drain(..sent.min(queue.len()));
                    if let Err(e) = socket.send_to(&p, group).await {
                        debug!("LSD announce to {group}: {e}");
                    }
                    last_sent = Some(now);
                }
            }
            // Wake for the next send, the next round, or a newly published torrent.
            let next = match (last_sent, round_started) {
                (Some(t), _) if !queue.is_empty() => t + EVERY,
                (_, Some(t)) => (t + ROUND).max(last_sent.map_or(now, |l| l + EVERY)),
                _ => now + ROUND,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
                _ = self.wake.notified() => {
                    // A new torrent starts a new round (within the one-a-minute limit).
                    queue.clear();
                    round_started = None;
                }
            }
        }
    }
}

/// The seeder's hook: torrents that are not private.
pub struct LsdAnnouncer(pub Lsd);

impl SeedAnnouncer for LsdAnnouncer {
    fn seeding(&self, info_hash: InfoHash, _addr: SocketAddr) {
        if lock(&self.0.hashes).insert(info_hash.into()) {
            self.0.wake.notify_one();
        }
    }
    fn stopped(&self, info_hash: InfoHash) {
        lock(&self.0.hashes).remove(info_hash.as_bytes());
    }
    fn public_only(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bep14_format_and_packet_size() {
        let p = packets(GROUP, 6881, "abcd", &[[0xab; 20]]);
        assert_eq!(
            String::from_utf8(p[0].clone()).unwrap(),
            format!(
                "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: {}\r\ncookie: abcd\r\n\r\n\r\n",
                "ab".repeat(20)
            )
        );
        let many: Vec<[u8; 20]> = (0..100u8).map(|i| [i; 20]).collect();
        let ps = packets(GROUP, 6881, "abcd", &many);
        assert!(ps.len() > 1);
        assert!(ps.iter().all(|p| p.len() <= MAX_PACKET));
        let total: usize = ps
            .iter()
            .map(|p| p.windows(10).filter(|w| w == b"Infohash: ").count())
            .sum();
        assert_eq!(total, 100);
    }
}
