//! The seeder as a WebRTC peer of browsers (issue 17): a browser that announces to our
//! WebSocket tracker with WebRTC offers gets an answer from the seeder for one of them, opens
//! a data channel to us, and speaks the BitTorrent wire in it, which the same session code
//! as TCP and uTP serves (choking, v1/v2, the egress budget and its counters unchanged).
//!
//! str0m does the WebRTC (ICE, DTLS, SCTP): sans-IO, one `Rtc` per browser, driven from our
//! own tokio UDP socket. One task reads the socket and hands each datagram to its browser's
//! task (`demux`); each browser's task (`conn`) feeds its `Rtc`, sends what it says to send,
//! and moves the data channel's bytes to and from the session (`pipe`).
//!
//! Signalling goes through our tracker in process: `answer` takes a browser's offer (the
//! tracker has bounded its size already; it is checked again here, `sdp`), makes the answer
//! SDP with our host candidate, and the tracker sends that to the browser as an `answer` from
//! our peer id. `stats` counts it all for `/metrics`.
//!
//! Bounds: sessions in total and per client address, one session per (torrent, browser peer
//! id), the offer's size, the time to open the data channel, the datagrams queued per
//! session and the bytes a browser sends ahead of the session (`pipe`).

mod config;
mod conn;
mod demux;
#[cfg(test)]
mod loopback_tests;
mod pipe;
mod sdp;
mod stats;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub use config::WebRtcConfig;
pub use sdp::MAX_OFFER_BYTES;
pub use stats::{Refused, Stats};

use super::shared::Inner;
use crate::ip_limit::client_key;
use crate::metainfo::InfoHash;
use demux::Demux;
use sdp::{accept_offer, parse_offer};

/// Datagrams waiting for a browser's task at most; past this they are dropped (UDP: ICE,
/// DTLS and SCTP retransmit).
const DATAGRAM_QUEUE: usize = 256;
/// The WebRTC socket's receive buffer.
const RCVBUF: usize = 1 << 20;
/// Largest datagram read (the WebRTC MTU is about 1200 bytes).
const MAX_DATAGRAM: usize = 2048;

/// A datagram for one browser's task.
struct Datagram {
    at: Instant,
    from: SocketAddr,
    data: Vec<u8>,
}

/// One browser session's place in the table.
struct Live {
    /// `ip_limit::client_key` of its address: an IPv6 client counts per /64.
    client: u64,
    key: (InfoHash, [u8; 20]),
}

#[derive(Default)]
struct Table {
    demux: Demux<mpsc::Sender<Datagram>>,
    live: HashMap<u64, Live>,
    per_ip: HashMap<u64, usize>,
    keys: HashSet<(InfoHash, [u8; 20])>,
}

struct Shared {
    config: WebRtcConfig,
    inner: Arc<Inner>,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    table: Mutex<Table>,
    next_id: AtomicU64,
    stats: Arc<Stats>,
    runtime: tokio::runtime::Handle,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Held for map updates only, never across an `.await`.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `client` holds `max_sessions_per_ip` sessions already (0: no limit).
    fn over_per_ip(&self, t: &Table, client: IpAddr) -> bool {
        let max = self.config.max_sessions_per_ip;
        max > 0 && t.per_ip.get(&client_key(client)).copied().unwrap_or(0) >= max
    }

    /// A session ended: it leaves the table.
    fn forget(&self, id: u64) {
        let mut t = self.table();
        t.demux.remove(id);
        if let Some(live) = t.live.remove(&id) {
            t.keys.remove(&live.key);
            if let Some(n) = t.per_ip.get_mut(&live.client) {
                *n -= 1;
                if *n == 0 {
                    t.per_ip.remove(&live.client);
                }
            }
        }
        self.stats
            .sessions
            .store(t.live.len() as u64, Ordering::Relaxed);
    }
}

/// A session's place in the table, given up when dropped.
struct Leave(Arc<Shared>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

/// The seeder's WebRTC side. Cheap to clone.
#[derive(Clone)]
pub struct WebRtc {
    shared: Arc<Shared>,
}

impl WebRtc {
    /// Binds the UDP socket (`config.bind`, else `default_ip` on an ephemeral port) and
    /// starts reading it on the current runtime, until `shutdown`.
    pub(super) async fn start(
        inner: Arc<Inner>,
        default_ip: IpAddr,
        shutdown: CancellationToken,
    ) -> io::Result<WebRtc> {
        let config = inner.config.webrtc.clone();
        let bind = config.bind.unwrap_or(SocketAddr::new(default_ip, 0));
        let socket = Arc::new(bind_udp(bind).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind peer.webrtc.bind {bind}: {e}"),
            )
        })?);
        let local = socket.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            inner,
            socket,
            local,
            table: Mutex::default(),
            next_id: AtomicU64::new(1),
            stats: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
            tasks: TaskTracker::new(),
            stop: shutdown,
        });
        let reader = shared.clone();
        shared.tasks.spawn(async move { read_socket(reader).await });
        Ok(WebRtc { shared })
    }

    /// The UDP address browsers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Waits for every browser session and the socket reader to end (after `shutdown`).
    pub async fn closed(&self) {
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// Whether an offer from browser `from` for `info_hash` would be answered now (cheap: no
    /// SDP work), so the tracker keeps one of its offers for us.
    pub fn wants(&self, info_hash: &InfoHash, from: &[u8; 20], client: IpAddr) -> bool {
        self.admit(info_hash, from, client).is_ok()
    }

    fn admit(&self, info_hash: &InfoHash, from: &[u8; 20], client: IpAddr) -> Result<(), Refused> {
        let s = &self.shared;
        if s.stop.is_cancelled() {
            return Err(Refused::MaxSessions);
        }
        match s.inner.lookup(info_hash) {
            Some(e) if !e.torrent.metainfo.private => {}
            _ => return Err(Refused::UnknownTorrent),
        }
        let t = s.table();
        if t.keys.contains(&(*info_hash, *from)) {
            return Err(Refused::AlreadyConnected);
        }
        if t.live.len() >= s.config.max_sessions {
            return Err(Refused::MaxSessions);
        }
        if s.over_per_ip(&t, client) {
            return Err(Refused::MaxSessionsPerIp);
        }
        Ok(())
    }

    /// Answers browser `from`'s offer (`sdp`) for `info_hash`, the browser being at `client`
    /// (as the tracker saw it): the answer's SDP, and a session waiting for the browser to
    /// connect.
    pub fn answer(
        &self,
        info_hash: &InfoHash,
        from: &[u8; 20],
        client: IpAddr,
        sdp: &str,
    ) -> Result<String, Refused> {
        let r = self.try_answer(info_hash, from, client, sdp);
        let stats = &self.shared.stats;
        match &r {
            Ok(_) => stats.answered.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                debug!(%client, "webrtc offer not answered: {e}");
                stats.refused[e.index()].fetch_add(1, Ordering::Relaxed)
            }
        };
        r
    }

    fn try_answer(
        &self,
        info_hash: &InfoHash,
        from: &[u8; 20],
        client: IpAddr,
        sdp: &str,
    ) -> Result<String, Refused> {
        self.admit(info_hash, from, client)?;
        let offer = parse_offer(sdp)?;
        let s = &self.shared;
        let candidate = self.candidate_for(client)?;
        let (rtc, ufrag, answer) = accept_offer(offer, candidate, Instant::now())?;
        let (tx, rx) = mpsc::channel(DATAGRAM_QUEUE);
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        {
            // Checked again under the lock the admission is taken in: two offers at once
            // must not both take the last place.
            let mut t = s.table();
            let key = (*info_hash, *from);
            if t.keys.contains(&key) {
                return Err(Refused::AlreadyConnected);
            }
            if t.live.len() >= s.config.max_sessions {
                return Err(Refused::MaxSessions);
            }
            if s.over_per_ip(&t, client) {
                return Err(Refused::MaxSessionsPerIp);
            }
            if !t.demux.insert(id, ufrag.as_bytes(), tx) {
                return Err(Refused::BadOffer("ICE ufrag collision".into()));
            }
            let client = client_key(client);
            t.live.insert(id, Live { client, key });
            t.keys.insert(key);
            *t.per_ip.entry(client).or_default() += 1;
            s.stats
                .sessions
                .store(t.live.len() as u64, Ordering::Relaxed);
        }
        let conn = conn::Conn {
            id,
            rtc,
            rx,
            candidate,
            client,
        };
        let shared = s.clone();
        let task = s.tasks.track_future(async move {
            // Leaves the table however the task ends, a panic in the WebRTC stack included.
            let _leave = Leave(shared.clone(), id);
            conn::run(&shared, conn).await;
        });
        s.runtime.spawn(task);
        Ok(answer)
    }

    /// Our ICE host candidate for a browser at `client`: `public_addr`, else the bound
    /// address, else (bound to 0.0.0.0 or ::) the local address the system routes to it from
    /// (`route_target`; a lookup, nothing is sent). An unspecified address is no candidate.
    fn candidate_for(&self, client: IpAddr) -> Result<SocketAddr, Refused> {
        let s = &self.shared;
        if let Some(a) = s.config.public_addr {
            return Ok(a);
        }
        if !s.local.ip().is_unspecified() {
            return Ok(s.local);
        }
        let target = route_target(s.local, client);
        let any: IpAddr = match target {
            IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        let routed = std::net::UdpSocket::bind(SocketAddr::new(any, 0))
            .and_then(|u| u.connect(SocketAddr::new(target, 9)).map(|()| u))
            .and_then(|u| u.local_addr());
        match routed {
            Ok(a) if !a.ip().is_unspecified() => Ok(SocketAddr::new(a.ip(), s.local.port())),
            _ => Err(Refused::NoCandidate(client)),
        }
    }

    /// Prometheus lines.
    pub fn metrics(&self) -> String {
        self.shared.stats.metrics()
    }
}

/// Where to look up the local address for a browser at `client` on a socket bound to the
/// unspecified `local`: the browser itself when the socket can reach its family (IPv4-mapped
/// counts as IPv4; an IPv6 socket is dual-stack), else a documentation address of the
/// socket's family (RFC 5737, 3849), whose route is the default one: a browser with both
/// families reaches us on ours.
fn route_target(local: SocketAddr, client: IpAddr) -> IpAddr {
    match (local, client.to_canonical()) {
        (SocketAddr::V4(_), c @ IpAddr::V4(_)) | (SocketAddr::V6(_), c) => c,
        (SocketAddr::V4(_), IpAddr::V6(_)) => std::net::Ipv4Addr::new(192, 0, 2, 1).into(),
    }
}

/// The UDP socket: dual-stack when bound to `::`, with room for bursts from many browsers
/// (acknowledgements and requests; the kernel caps it at net.core.rmem_max).
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    let _ = socket.set_recv_buffer_size(RCVBUF);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Where to send to `to` on a socket bound to `local`: an IPv4 address as IPv4-mapped on an
/// IPv6 (dual-stack) socket, which takes no other form.
fn send_addr(local: SocketAddr, to: SocketAddr) -> SocketAddr {
    match (local, to) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        _ => to,
    }
}

/// Reads the socket and hands each datagram to the session it belongs to.
async fn read_socket(s: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let got = tokio::select! {
            _ = s.stop.cancelled() => return,
            got = s.socket.recv_from(&mut buf) => got,
        };
        match got {
            Ok((n, from)) => {
                // An IPv4 browser on a dual-stack socket: as the IPv4 address it is.
                let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                let mut t = s.table();
                match t.demux.route(from, &buf[..n]) {
                    Some((_, tx)) => {
                        let d = Datagram {
                            at: Instant::now(),
                            from,
                            data: buf[..n].to_vec(),
                        };
                        // Full: dropped, as the network may.
                        let _ = tx.try_send(d);
                    }
                    None => {
                        s.stats.unrouted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // ICMP errors and the like: read on.
            Err(e) => {
                debug!("webrtc socket: {e}");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_browsers_are_sent_to_as_mapped_addresses_on_a_dual_stack_socket() {
        let v4: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let dual: SocketAddr = "[::]:6000".parse().unwrap();
        let four: SocketAddr = "0.0.0.0:6000".parse().unwrap();
        assert_eq!(
            send_addr(dual, v4),
            "[::ffff:192.0.2.1]:5000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(send_addr(dual, v6), v6);
        assert_eq!(send_addr(four, v4), v4);
    }

    #[test]
    fn the_route_is_looked_up_in_a_family_the_socket_has() {
        let v4: SocketAddr = "0.0.0.0:6000".parse().unwrap();
        let dual: SocketAddr = "[::]:6000".parse().unwrap();
        let b4: IpAddr = "198.51.100.7".parse().unwrap();
        let b6: IpAddr = "2001:db8::7".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(route_target(v4, b4), b4);
        assert_eq!(route_target(v4, mapped), b4);
        assert_eq!(route_target(v4, b6), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(route_target(dual, b6), b6);
        assert_eq!(route_target(dual, b4), b4);
    }
}
