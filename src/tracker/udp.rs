//! The UDP face of the tracker (BEP 15): one socket, receive loops, answers written into
//! reused buffers. Malformed datagrams are answered with an error when they carry a transaction ID
//! and dropped otherwise; nothing a datagram holds can stop the loop.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;

use super::http_request::{Event, InfoHash};
use super::state::Tracker;
use super::swarm::Announce;
#[cfg(target_os = "linux")]
use super::udp_batch::{self, RecvBatch, BATCH};
use super::udp_protocol::{self, Request};

/// Most peers in one answer, so a reply stays near 1,200 bytes: 20 + 200 × 6 or 20 + 66 × 18.
const MAX_PEERS_V4: usize = 200;
const MAX_PEERS_V6: usize = 66;

/// Answers datagrams on `socket` until `shutdown` resolves, with one receive loop per CPU this
/// process may use (at most 8), all on the same socket.
pub async fn run_udp(
    socket: UdpSocket,
    tracker: Arc<Tracker>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let loops = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let socket = Arc::new(socket);
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..loops {
        let mut stopped = stopped.clone();
        let stop = async move {
            let _ = stopped.changed().await;
        };
        tasks.spawn(receive_loop(socket.clone(), tracker.clone(), stop));
    }
    shutdown.await;
    let _ = stop.send(());
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Receives in batches of up to 32 datagrams per system call and answers in batches.
#[cfg(target_os = "linux")]
async fn receive_loop(
    socket: Arc<UdpSocket>,
    tracker: Arc<Tracker>,
    stop: impl Future<Output = ()>,
) {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    let mut stop = std::pin::pin!(stop);
    let fd = socket.as_raw_fd();
    let mut batch = RecvBatch::new();
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1280)).collect();
    let mut peers = Vec::with_capacity(2048);
    loop {
        tokio::select! {
            r = socket.readable() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "udp socket not readable");
                    continue;
                }
            }
            () = &mut stop => return,
        }
        let n = match socket.try_io(Interest::READABLE, || batch.recv(fd)) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let now = unix_secs();
        let mut replies: Vec<(&[u8], SocketAddr)> = Vec::with_capacity(n);
        for (i, out) in outs.iter_mut().enumerate().take(n) {
            out.clear();
            if let Some(from) = batch.from[i] {
                answer(
                    &tracker,
                    &batch.bufs[i][..batch.lens[i]],
                    from,
                    now,
                    &mut peers,
                    out,
                );
                if !out.is_empty() {
                    replies.push((out, from));
                }
            }
        }
        let mut sent = 0;
        while sent < replies.len() {
            match socket.try_io(Interest::WRITABLE, || udp_batch::send(fd, &replies[sent..])) {
                Ok(k) => sent += k.max(1),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    // One bad destination (e.g. unreachable): skip it, send the rest.
                    tracing::debug!(error = %e, to = %replies[sent].1, "udp send failed");
                    sent += 1;
                }
            }
        }
    }
}

/// One datagram at a time, where batched system calls are not available.
#[cfg(not(target_os = "linux"))]
async fn receive_loop(
    socket: Arc<UdpSocket>,
    tracker: Arc<Tracker>,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(2048);
    let mut peers = Vec::with_capacity(2048);
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
            () = &mut stop => return,
        };
        out.clear();
        answer(&tracker, &buf[..n], from, unix_secs(), &mut peers, &mut out);
        if !out.is_empty() {
            if let Err(e) = socket.send_to(&out, from).await {
                tracing::debug!(error = %e, %from, "udp send failed");
            }
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An error answer no larger than the request it answers (its message cut short if need be),
/// so a spoofed source address gains nothing by sending us junk.
fn error_reply(transaction_id: u32, message: &str, request_len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    udp_protocol::write_error(transaction_id, message, out);
    out.truncate(start + request_len.max(8));
}

/// Answers one datagram from `from` into `out` (left empty when it is dropped).
pub fn answer(
    tracker: &Tracker,
    packet: &[u8],
    from: SocketAddr,
    now_unix: u64,
    peers: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    let from = SocketAddr::new(from.ip().to_canonical(), from.port());
    let ids = tracker.connection_ids();
    let request = match udp_protocol::parse(packet) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%from, error = %e, "bad udp datagram");
            if let Some(tx) = e.transaction_id {
                error_reply(tx, e.message, packet.len(), out);
            }
            return;
        }
    };
    match request {
        Request::Connect { transaction_id } => {
            udp_protocol::write_connect(transaction_id, ids.issue(from, now_unix), out);
        }
        Request::Announce(a) => {
            if !ids.check(a.connection_id, from, now_unix) {
                tracing::debug!(%from, "udp announce with a bad connection id");
                error_reply(a.transaction_id, "bad connection id", packet.len(), out);
                return;
            }
            let config = tracker.config();
            let ip = match (from.ip(), a.ip) {
                (IpAddr::V4(_), ip) if ip != 0 && config.accept_ip_param => {
                    IpAddr::V4(Ipv4Addr::from(ip))
                }
                (ip, _) => ip,
            };
            let family_max = if ip.is_ipv4() {
                MAX_PEERS_V4
            } else {
                MAX_PEERS_V6
            };
            let numwant = if a.event == Event::Stopped {
                0
            } else {
                (a.num_want
                    .unwrap_or(config.numwant_default)
                    .min(config.numwant_max) as usize)
                    .min(family_max)
            };
            let announce = Announce {
                info_hash: a.info_hash,
                peer: SocketAddr::new(ip, a.port),
                event: a.event,
                left: a.left,
                numwant,
                both_families: false,
                // Unknown on a socket bound to 0.0.0.0: an own seed without an IP (no
                // `peer.public_ip`) is then listed over HTTP only.
                local_ip: None,
            };
            peers.clear();
            // Only the packet's family is asked for, so both buffers can be the same one.
            let mut other = Vec::new();
            let result = if ip.is_ipv4() {
                tracker.announce(&announce, peers, &mut other)
            } else {
                tracker.announce(&announce, &mut other, peers)
            };
            match result {
                Ok(c) => udp_protocol::write_announce(
                    a.transaction_id,
                    config.interval,
                    c.incomplete,
                    c.complete,
                    peers,
                    out,
                ),
                Err(refusal) => {
                    tracing::debug!(%from, %refusal, "refused udp announce");
                    error_reply(a.transaction_id, &refusal.to_string(), packet.len(), out);
                }
            }
        }
        Request::Scrape {
            connection_id,
            transaction_id,
            info_hashes,
        } => {
            if !ids.check(connection_id, from, now_unix) {
                error_reply(transaction_id, "bad connection id", packet.len(), out);
                return;
            }
            let mut entries = [(0u32, 0u32, 0u32); udp_protocol::MAX_SCRAPE_HASHES];
            let mut n = 0;
            // Whole 20-byte hashes (the parser cut the list to them).
            for hash in info_hashes
                .chunks_exact(20)
                .filter_map(InfoHash::from_slice)
            {
                let c = tracker.torrent(&hash);
                let completed = u32::try_from(c.downloaded).unwrap_or(u32::MAX);
                entries[n] = (c.complete, completed, c.incomplete);
                n += 1;
            }
            udp_protocol::write_scrape(transaction_id, &entries[..n], out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{Mode, TrackerConfig};

    const NOW: u64 = 1_700_000_000;

    fn connect(t: &Tracker, from: SocketAddr) -> u64 {
        let mut p = udp_protocol::PROTOCOL_ID.to_be_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42]);
        let mut out = Vec::new();
        answer(t, &p, from, NOW, &mut Vec::new(), &mut out);
        assert_eq!(&out[..8], [0, 0, 0, 0, 0, 0, 0, 42]);
        u64::from_be_bytes(out[8..16].try_into().unwrap())
    }

    fn announce(conn: u64, port: u16, left: u64) -> Vec<u8> {
        let mut p = conn.to_be_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 7]);
        p.extend_from_slice(&[0x5a; 20]);
        p.extend_from_slice(&[0x11; 20]);
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&left.to_be_bytes());
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&(-1i32).to_be_bytes());
        p.extend_from_slice(&port.to_be_bytes());
        p
    }

    #[test]
    fn connect_announce_scrape_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracker::new(
            TrackerConfig {
                mode: Mode::Open,
                ..TrackerConfig::default()
            },
            dir.path(),
        )
        .unwrap();
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let (ca, cb) = (connect(&t, a), connect(&t, b));
        let mut out = Vec::new();
        answer(
            &t,
            &announce(ca, 6881, 0),
            a,
            NOW,
            &mut Vec::new(),
            &mut out,
        );
        // Only ever `left=0`: counted as a leecher (issue 15).
        assert_eq!(
            out,
            [0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 0]
        );
        out.clear();
        answer(
            &t,
            &announce(cb, 6882, 9),
            b,
            NOW,
            &mut Vec::new(),
            &mut out,
        );
        assert_eq!(
            out,
            [0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 7, 8, 0, 0, 0, 2, 0, 0, 0, 0, 10, 0, 0, 1, 0x1a, 0xe1]
        );
        // A connection ID is bound to the address it was issued to.
        out.clear();
        answer(
            &t,
            &announce(ca, 6881, 0),
            b,
            NOW,
            &mut Vec::new(),
            &mut out,
        );
        assert_eq!(&out[..8], [0, 0, 0, 3, 0, 0, 0, 7]);
        assert_eq!(&out[8..], b"bad connection id");
        let mut p = ca.to_be_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 8]);
        p.extend_from_slice(&[0x5a; 20]);
        p.extend_from_slice(&[0x00; 20]);
        out.clear();
        answer(&t, &p, a, NOW, &mut Vec::new(), &mut out);
        assert_eq!(
            out,
            [
                0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn junk_is_dropped_or_answered_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracker::new(TrackerConfig::default(), dir.path()).unwrap();
        let from: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut out = Vec::new();
        answer(&t, &[1, 2, 3], from, NOW, &mut Vec::new(), &mut out);
        assert!(out.is_empty());
        let conn = connect(&t, from);
        out.clear();
        answer(
            &t,
            &announce(conn, 1, 0),
            from,
            NOW,
            &mut Vec::new(),
            &mut out,
        );
        assert_eq!(&out[8..], b"unregistered torrent");

        // Every error answer is at most as long as what it answers, whatever the packet.
        for len in 16..120 {
            for action in [0u32, 1, 2, 3, 7] {
                let mut p = vec![0x41u8; len];
                p[8..12].copy_from_slice(&action.to_be_bytes());
                out.clear();
                answer(&t, &p, from, NOW, &mut Vec::new(), &mut out);
                if out.get(..4) == Some(&[0, 0, 0, 3]) {
                    assert!(
                        out.len() <= len,
                        "{len}-byte action {action}: {} back",
                        out.len()
                    );
                }
            }
        }
    }
}
