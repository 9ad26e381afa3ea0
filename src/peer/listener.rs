//! The peer port: a TCP listener and a UDP socket on the same port number, one front that hands
//! every connection, TCP or uTP (BEP 29), to the same session code as a pair of byte-stream
//! halves.
//!
//! uTP is librqbit-utp's (rqbit's): it takes its datagrams through `PeerUdp`, which reads the
//! socket itself and sorts datagrams by their first bytes, so the port can carry other UDP
//! protocols later (the DHT's bencoded messages start with `d`, never a uTP header).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use librqbit_dualstack_sockets::PollSendToVectored;
use librqbit_utp::{SocketOpts, Transport, UtpSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::PeerConfig;

pub type PeerRead = Box<dyn AsyncRead + Send + Unpin>;
pub type PeerWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// The transport a connection came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Tcp,
    Utp,
    /// A browser's WebRTC data channel (`peer::webrtc`).
    WebRtc,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Tcp => "tcp",
            Via::Utp => "utp",
            Via::WebRtc => "webrtc",
        }
    }
}

/// A connection the front accepted.
pub struct Incoming {
    pub rd: PeerRead,
    pub wr: PeerWrite,
    pub addr: SocketAddr,
    pub via: Via,
}

/// uTP connections accepted but not yet taken by the seeder.
const UTP_BACKLOG: usize = 64;
/// The UDP socket's receive buffer: room for bursts from many uTP senders (requests and acks
/// are small, but a client's window of acks arrives at once).
const UDP_RCVBUF: usize = 4 << 20;
/// Each uTP connection's receive buffer: a seeder is sent requests and haves, not data.
const UTP_RX_BUF: usize = 256 * 1024;
/// Each uTP connection's send buffer at most: the window of block data in flight.
const UTP_TX_BUF: usize = 2 << 20;

/// Datagrams seen on the peer port, by kind, for `/metrics`.
#[derive(Default)]
pub struct UdpCounts {
    pub utp: AtomicU64,
    /// KRPC handed to the DHT node.
    pub dht: AtomicU64,
    /// Neither (or KRPC with no DHT node, or more than it can take): dropped.
    pub other: AtomicU64,
    pub errors: AtomicU64,
}

/// What a datagram on the peer port is, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram {
    Utp,
    Krpc,
    Other,
}

/// uTP's first byte is its type (0 data … 4 syn) in the high nibble and version 1 in the low;
/// its header is 20 bytes. A bencoded message (DHT) starts with `d` (0x64): type 6, version 4.
pub fn classify(datagram: &[u8]) -> Datagram {
    match datagram.first() {
        Some(b) if datagram.len() >= 20 && b & 0x0f == 1 && b >> 4 <= 4 => Datagram::Utp,
        Some(b'd') if datagram.len() <= crate::dht::krpc::MAX_DATAGRAM => Datagram::Krpc,
        _ => Datagram::Other,
    }
}

/// KRPC datagrams queued for the DHT node at most; past this they are dropped (and counted).
const KRPC_BACKLOG: usize = 1024;

/// The DHT's share of the peer port: the socket to send on, and the KRPC datagrams sorted out.
pub struct DhtPort {
    pub socket: Arc<UdpSocket>,
    pub incoming: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
}

/// Where a datagram that is not uTP goes.
struct Sorter {
    counts: Arc<UdpCounts>,
    krpc: Option<mpsc::Sender<(Vec<u8>, SocketAddr)>>,
}

impl Sorter {
    fn other(&self, datagram: &[u8], from: SocketAddr) {
        if classify(datagram) == Datagram::Krpc {
            if let Some(tx) = &self.krpc {
                if tx.try_send((datagram.to_vec(), from)).is_ok() {
                    self.counts.dht.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        self.counts.other.fetch_add(1, Ordering::Relaxed);
    }
}

/// The UDP side of the peer port as librqbit-utp's transport.
struct PeerUdp {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    counts: Arc<UdpCounts>,
    sorter: Sorter,
}

impl PollSendToVectored for PeerUdp {
    fn poll_send_to_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_send_to_vectored(cx, bufs, target)
    }
}

impl Transport for PeerUdp {
    async fn recv_from<'a>(&'a self, buf: &'a mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            match self.socket.recv_from(buf).await {
                Ok((n, from)) => match classify(&buf[..n]) {
                    Datagram::Utp => {
                        self.counts.utp.fetch_add(1, Ordering::Relaxed);
                        return Ok((n, from));
                    }
                    _ => self.sorter.other(&buf[..n], from),
                },
                // An error here would stop uTP altogether (the dispatcher ends on one): ICMP
                // errors and the like are counted and the socket read again.
                Err(e) => {
                    self.counts.errors.fetch_add(1, Ordering::Relaxed);
                    debug!("peer port UDP: {e}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + Sync + 'a {
        self.socket.send_to(buf, target)
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_send_to(cx, buf, target)
    }

    fn bind_addr(&self) -> SocketAddr {
        self.local
    }
}

/// librqbit-utp's default environment (clock, randomness) is not exported by name, only as
/// the second parameter of its `UtpSocketUdp` alias.
trait EnvOf {
    type Env: Default;
}
impl<T, E: Default> EnvOf for UtpSocket<T, E> {
    type Env = E;
}
type DefaultEnv = <librqbit_utp::UtpSocketUdp as EnvOf>::Env;

/// The peer port: TCP and, unless `peer.utp` is off, uTP.
pub struct PeerListener {
    tcp: TcpListener,
    utp: Option<mpsc::Receiver<librqbit_utp::UtpStream>>,
    local: SocketAddr,
    udp_counts: Arc<UdpCounts>,
    /// Stops the uTP socket and its accept task when the listener goes.
    stop: CancellationToken,
    /// The DHT's share of the UDP side, until `take_dht` takes it.
    dht: Option<DhtPort>,
}

impl PeerListener {
    /// Binds TCP on `config.listen` and UDP on the same address and port (with port 0, a port
    /// free for both).
    pub async fn bind(config: &PeerConfig) -> io::Result<PeerListener> {
        PeerListener::bind_with_dht(config, false).await
    }

    /// `bind`, with the UDP side also taking KRPC datagrams for a DHT node (`take_dht`) when
    /// `dht` is set (UDP is bound for it even when uTP is off).
    pub async fn bind_with_dht(config: &PeerConfig, dht: bool) -> io::Result<PeerListener> {
        let mut tries = 0;
        loop {
            let tcp = TcpListener::bind(config.listen).await?;
            let local = tcp.local_addr()?;
            if !config.utp && !dht {
                return Ok(PeerListener::tcp_only(tcp, local));
            }
            match bind_udp(local) {
                Ok(udp) if !config.utp => return Ok(PeerListener::udp_for_dht(tcp, udp, local)),
                Ok(udp) => return PeerListener::with_utp(tcp, udp, local, config, dht),
                // An ephemeral TCP port whose UDP twin is taken: try another.
                Err(e) if config.listen.port() == 0 && tries < 16 => {
                    debug!("UDP port {} taken ({e}), trying another", local.port());
                    tries += 1;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "cannot bind UDP {local} for uTP and the DHT: {e} (or set \
                             peer.utp = false and dht.enabled = false)"
                        ),
                    ))
                }
            }
        }
    }

    fn tcp_only(tcp: TcpListener, local: SocketAddr) -> PeerListener {
        PeerListener {
            tcp,
            utp: None,
            local,
            udp_counts: Arc::default(),
            stop: CancellationToken::new(),
            dht: None,
        }
    }

    /// The KRPC channel for a DHT node, if `dht`.
    fn dht_channel(
        udp: &Arc<UdpSocket>,
        counts: &Arc<UdpCounts>,
        dht: bool,
    ) -> (Sorter, Option<DhtPort>) {
        let (tx, port) = if dht {
            let (tx, rx) = mpsc::channel(KRPC_BACKLOG);
            let port = DhtPort {
                socket: udp.clone(),
                incoming: rx,
            };
            (Some(tx), Some(port))
        } else {
            (None, None)
        };
        let sorter = Sorter {
            counts: counts.clone(),
            krpc: tx,
        };
        (sorter, port)
    }

    /// TCP, and UDP for the DHT alone (uTP off): a task reads the socket.
    fn udp_for_dht(tcp: TcpListener, udp: UdpSocket, local: SocketAddr) -> PeerListener {
        let stop = CancellationToken::new();
        let udp = Arc::new(udp);
        let udp_counts = Arc::new(UdpCounts::default());
        let (sorter, dht) = PeerListener::dht_channel(&udp, &udp_counts, true);
        let (socket, token) = (udp.clone(), stop.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let got = tokio::select! {
                    _ = token.cancelled() => return,
                    got = socket.recv_from(&mut buf) => got,
                };
                match got {
                    Ok((n, from)) => sorter.other(&buf[..n], from),
                    Err(e) => {
                        sorter.counts.errors.fetch_add(1, Ordering::Relaxed);
                        debug!("peer port UDP: {e}");
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        });
        PeerListener {
            tcp,
            utp: None,
            local,
            udp_counts,
            stop,
            dht,
        }
    }

    fn with_utp(
        tcp: TcpListener,
        udp: UdpSocket,
        local: SocketAddr,
        config: &PeerConfig,
        dht: bool,
    ) -> io::Result<PeerListener> {
        let stop = CancellationToken::new();
        let udp = Arc::new(udp);
        let udp_counts = Arc::new(UdpCounts::default());
        let (sorter, dht) = PeerListener::dht_channel(&udp, &udp_counts, dht);
        let transport = PeerUdp {
            socket: udp,
            local,
            counts: udp_counts.clone(),
            sorter,
        };
        let opts = SocketOpts {
            vsock_rx_bufsize_bytes: NonZeroUsize::new(UTP_RX_BUF),
            vsock_tx_bufsize_bytes_max: NonZeroUsize::new(UTP_TX_BUF),
            // Requests answered late stall the peer's pipeline (as TCP_NODELAY on TCP).
            disable_nagle: true,
            congestion: librqbit_utp::CongestionConfig {
                kind: config.utp_congestion.kind(),
                tracing: false,
            },
            // Each uTP connection is a task and buffers: room for every slot and the pending
            // ones, no more.
            max_live_vsocks: NonZeroUsize::new(config.max_connections + super::shared::PENDING_MAX),
            remote_inactivity_timeout: Some(PeerConfig::secs(config.idle_timeout)),
            cancellation_token: stop.clone(),
            ..SocketOpts::default()
        };
        let socket = UtpSocket::new_with_opts(transport, DefaultEnv::default(), opts)
            .map_err(|e| io::Error::other(format!("cannot start uTP on {local}: {e}")))?;
        let (tx, rx) = mpsc::channel(UTP_BACKLOG);
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = socket.accept() => a,
                };
                match accepted {
                    Ok(stream) => {
                        if tx.send(stream).await.is_err() {
                            return;
                        }
                    }
                    // Stopping ends the uTP dispatcher too, sometimes before this task sees
                    // the token: not worth a warning then.
                    Err(_) if token.is_cancelled() => return,
                    Err(e) => {
                        warn!("uTP stopped accepting on {local}: {e}; TCP goes on");
                        return;
                    }
                }
            }
        });
        Ok(PeerListener {
            tcp,
            utp: Some(rx),
            local,
            udp_counts,
            stop,
            dht,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The DHT's share of the UDP side (once; `None` unless bound with `bind_with_dht`).
    pub fn take_dht(&mut self) -> Option<DhtPort> {
        self.dht.take()
    }

    pub fn udp_counts(&self) -> Arc<UdpCounts> {
        self.udp_counts.clone()
    }

    /// The next connection, TCP or uTP.
    pub async fn accept(&mut self) -> io::Result<Incoming> {
        // Nobody took the KRPC channel before accepting: its datagrams are dropped, not queued.
        self.dht = None;
        let utp = async {
            match &mut self.utp {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            tcp = self.tcp.accept() => {
                let (stream, addr) = tcp?;
                // Latency matters more than packet count: a request answered late stalls the
                // peer's pipeline.
                let _ = stream.set_nodelay(true);
                let (rd, wr) = stream.into_split();
                Ok(Incoming { rd: Box::new(rd), wr: Box::new(wr), addr, via: Via::Tcp })
            }
            Some(stream) = utp => {
                let addr = stream.remote_addr();
                let (rd, wr) = stream.split();
                Ok(Incoming { rd: Box::new(rd), wr: Box::new(wr), addr, via: Via::Utp })
            }
        }
    }
}

impl Drop for PeerListener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn bind_udp(local: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(local);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if local.is_ipv6() {
        // As the TCP listener: [::] takes IPv4 as well.
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RCVBUF);
    socket.bind(&local.into())?;
    let udp = UdpSocket::from_std(socket.into())?;
    // uTP finds the path MTU by probing: its packets must not be fragmented on the way.
    use dontfrag::UdpSocketExt;
    let _ = if local.is_ipv4() {
        udp.set_dontfrag_v4(true)
    } else {
        udp.set_dontfrag_v6(true)
    };
    Ok(udp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_sorted_by_their_first_bytes() {
        let mut syn = [0u8; 20];
        syn[0] = 0x41;
        assert_eq!(classify(&syn), Datagram::Utp);
        for t in 0..=4u8 {
            syn[0] = t << 4 | 1;
            assert_eq!(classify(&syn), Datagram::Utp);
        }
        syn[0] = 0x51;
        assert_eq!(classify(&syn), Datagram::Other);
        syn[0] = b'd';
        assert_eq!(classify(&syn), Datagram::Krpc);
        syn[0] = 0x42;
        assert_eq!(classify(&syn), Datagram::Other);
        assert_eq!(classify(&syn[..19]), Datagram::Other);
        assert_eq!(
            classify(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"),
            Datagram::Krpc
        );
        assert_eq!(classify(&[b'd'; 1501]), Datagram::Other);
        assert_eq!(classify(b""), Datagram::Other);
    }
}
