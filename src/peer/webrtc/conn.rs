//! One browser's WebRTC connection: its `Rtc` fed with the datagrams the socket reader routes
//! here and with timeouts, what it says to send sent on the shared socket, and its data
//! channel's bytes moved to and from the session code through a `Pipe`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::mpsc;
use tracing::debug;

use super::pipe::{Pipe, Step};
use super::{Datagram, Shared};
use crate::peer::listener::{Incoming, Via};

/// A chunk of the byte stream per channel message: the size every WebRTC stack takes whole.
const CHUNK: usize = 16 * 1024;
/// Bytes a browser may send ahead of the session's reading (see `pipe`).
const MAX_INBOUND: usize = 1 << 20;
/// Datagrams fed to the Rtc, or chunks written into its channel, at most between two polls of
/// it (each poll walks SCTP's queue of unacknowledged chunks).
const BATCH: usize = 32;

pub(super) struct Conn {
    pub id: u64,
    pub rtc: Rtc,
    pub rx: mpsc::Receiver<Datagram>,
    /// Our host candidate in its answer: where its datagrams are addressed.
    pub candidate: SocketAddr,
    /// The browser's address as the tracker saw it.
    pub client: IpAddr,
}

/// Why a connection ended.
enum End {
    ConnectTimeout,
    Disconnected,
    ChannelClosed,
    SessionClosed,
    Overflow(super::pipe::Overflow),
    Rtc(str0m::RtcError),
    Shutdown,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ConnectTimeout => {
                f.write_str("no data channel within peer.webrtc.connect_timeout")
            }
            End::Disconnected => f.write_str("ICE disconnected or the connection closed"),
            End::ChannelClosed => f.write_str("the browser closed the data channel"),
            End::SessionClosed => f.write_str("the peer-wire session ended"),
            End::Overflow(e) => write!(f, "{e}"),
            End::Rtc(e) => write!(f, "WebRTC: {e}"),
            End::Shutdown => f.write_str("shutting down"),
        }
    }
}

/// Runs the connection until it ends; the session it started (if any) sees its stream close.
pub(super) async fn run(shared: &Arc<Shared>, mut conn: Conn) {
    let end = drive(shared, &mut conn).await;
    // Tells the browser (SCTP and DTLS close), best effort, then goes inert.
    if conn.rtc.close().is_ok() {
        for _ in 0..16 {
            match conn.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = shared
                        .socket
                        .send_to(&t.contents, super::send_addr(shared.local, t.destination))
                        .await;
                }
                Ok(Output::Event(_)) => {}
                Ok(Output::Timeout(_)) | Err(_) => break,
            }
        }
    }
    conn.rtc.disconnect();
    if matches!(end, End::ConnectTimeout) {
        shared.stats.timed_out.fetch_add(1, Ordering::Relaxed);
    }
    debug!(client = %conn.client, id = conn.id, "webrtc connection ended: {end}");
}

async fn drive(shared: &Arc<Shared>, conn: &mut Conn) -> End {
    let connect_by = Instant::now()
        + crate::peer::PeerConfig::secs(shared.config.connect_timeout)
            .min(Duration::from_secs(3600));
    let mut channel: Option<(ChannelId, Pipe)> = None;
    let mut remote: Option<SocketAddr> = None;
    loop {
        // Everything the Rtc has to say, until it names its next timeout.
        let next = loop {
            match conn.rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    // A send that fails is a datagram lost: ICE, DTLS and SCTP resend.
                    let _ = shared
                        .socket
                        .send_to(&t.contents, super::send_addr(shared.local, t.destination))
                        .await;
                }
                Ok(Output::Event(e)) => match e {
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        return End::Disconnected
                    }
                    // The browser ended the association (SCTP ABORT or SHUTDOWN).
                    Event::Closed => return End::ChannelClosed,
                    Event::ChannelOpen(id, _label) if channel.is_none() => {
                        let (pipe, stream) = Pipe::new(CHUNK, MAX_INBOUND);
                        channel = Some((id, pipe));
                        hand_over(shared, stream, remote.unwrap_or(conn.candidate), conn);
                    }
                    Event::ChannelData(d) => match &mut channel {
                        Some((id, pipe)) if *id == d.id => {
                            let n = d.data.len() as u64;
                            if let Err(e) = pipe.received(d.data) {
                                return End::Overflow(e);
                            }
                            shared.stats.received.fetch_add(n, Ordering::Relaxed);
                        }
                        _ => {}
                    },
                    Event::ChannelClose(id) if channel.as_ref().is_some_and(|c| c.0 == id) => {
                        return End::ChannelClosed
                    }
                    _ => {}
                },
                Err(e) => return End::Rtc(e),
            }
        };
        // Closed by what it received (a DTLS fingerprint that is not the offer's, …).
        if !conn.rtc.is_alive() {
            return End::Disconnected;
        }
        // What the session wrote, into the channel while SCTP has room (else it waits for
        // the browser's acknowledgements, which arrive as datagrams): the chunk waiting, and
        // those the session has ready, up to `BATCH` before the Rtc is polled again.
        if let Some((id, pipe)) = &mut channel {
            let mut wrote = false;
            for _ in 0..BATCH {
                if pipe.outgoing().is_none() {
                    // Only a chunk already there; a step that would wait is dropped unmade.
                    match pipe.step().now_or_never() {
                        Some(Step::Closed) => return End::SessionClosed,
                        Some(_) => {}
                        None => break,
                    }
                }
                let (Some(chunk), Some(mut ch)) = (pipe.outgoing(), conn.rtc.channel(*id)) else {
                    break;
                };
                match ch.write(true, chunk) {
                    Ok(true) => {
                        let n = chunk.len() as u64;
                        pipe.sent();
                        shared.stats.sent.fetch_add(n, Ordering::Relaxed);
                        wrote = true;
                    }
                    Ok(false) => break,
                    Err(e) => return End::Rtc(e),
                }
            }
            if wrote {
                // The Rtc has packets to send now.
                continue;
            }
        }
        let opened = channel.is_some();
        if !opened && Instant::now() >= connect_by {
            return End::ConnectTimeout;
        }
        let wake = if opened { next } else { next.min(connect_by) };
        let step = async {
            match &mut channel {
                Some((_, pipe)) => pipe.step().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.stop.cancelled() => return End::Shutdown,
            d = conn.rx.recv() => {
                let Some(d) = d else { return End::Shutdown };
                // The datagrams queued behind it too, before the Rtc is polled again: each
                // poll walks SCTP's queue of unacknowledged chunks, so one poll per batch of
                // acknowledgements, not per acknowledgement.
                let mut next = Some(d);
                let mut batch = 0;
                while let Some(d) = next.take() {
                    if let Err(e) = receive(conn, d, &mut remote) {
                        return e;
                    }
                    batch += 1;
                    if batch < BATCH {
                        next = conn.rx.try_recv().ok();
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                if let Err(e) = conn.rtc.handle_input(Input::Timeout(Instant::now())) {
                    return End::Rtc(e);
                }
            }
            step = step => {
                if step == Step::Closed {
                    return End::SessionClosed;
                }
            }
        }
    }
}

/// Feeds one datagram to the Rtc; the browser's address is where the datagrams it takes come
/// from.
fn receive(conn: &mut Conn, d: Datagram, remote: &mut Option<SocketAddr>) -> Result<(), End> {
    let Ok(r) = Receive::new(Protocol::Udp, d.from, conn.candidate, &d.data) else {
        // Not STUN, DTLS, RTP or RTCP: ignored.
        return Ok(());
    };
    let input = Input::Receive(d.at, r);
    if conn.rtc.accepts(&input) {
        *remote = Some(d.from);
    }
    // A datagram it cannot take (anyone can send one from the browser's address) ends the
    // connection only if the Rtc itself gave up.
    if let Err(e) = conn.rtc.handle_input(input) {
        if !conn.rtc.is_alive() {
            return Err(End::Rtc(e));
        }
        debug!(client = %conn.client, id = conn.id, "webrtc datagram refused: {e}");
    }
    Ok(())
}

/// Hands the data channel's stream to the seeder's session code, as the peer port's accept
/// loop hands a TCP or uTP stream.
fn hand_over(shared: &Arc<Shared>, stream: tokio::io::DuplexStream, addr: SocketAddr, conn: &Conn) {
    shared.stats.opened.fetch_add(1, Ordering::Relaxed);
    shared.inner.refusals.accepted(Via::WebRtc);
    debug!(client = %conn.client, %addr, id = conn.id, "webrtc data channel open");
    let (rd, wr) = tokio::io::split(stream);
    let incoming = Incoming {
        rd: Box::new(rd),
        wr: Box::new(wr),
        addr,
        via: Via::WebRtc,
    };
    let inner = shared.inner.clone();
    let stop = shared.stop.child_token();
    shared.tasks.spawn(async move {
        crate::peer::session::run(inner, incoming, stop).await;
    });
}
