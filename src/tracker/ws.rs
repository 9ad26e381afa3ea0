//! The WebSocket tracker's I/O: `GET /announce` with `Upgrade: websocket` becomes a connection
//! (actix-ws) on which a browser announces, scrapes, and sends and receives WebRTC offers and
//! answers (`ws_protocol`). The [`Hub`] maps each open connection to a bounded queue, so an
//! offer from one browser reaches the connection of the peer it was handed to.
//!
//! Bounds per connection: message size (frames and continuations alike), swarms joined,
//! messages per second (a token bucket; messages beyond it are dropped unanswered), the queue
//! of relayed messages (full: dropped; WebTorrent's offers time out and it tries again), and
//! silence (no message or pong for `idle_timeout`: closed; pings keep a quiet browser's
//! connection alive).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, Session};
use tokio::sync::mpsc;

use super::config::WsConfig;
use super::http_request::{Event, InfoHash};
use super::rtc_swarm::Relay;
use super::state::Tracker;
use super::ws_protocol::{self as proto, PeerId, WsLimits, WsRequest};

/// Relayed messages waiting to be sent on one connection.
const QUEUE: usize = 64;

/// The open WebSocket connections by id.
#[derive(Debug, Default)]
pub struct Hub {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, mpsc::Sender<String>>>,
}

impl Hub {
    fn register(&self) -> (u64, mpsc::Receiver<String>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lock().insert(id, tx);
        (id, rx)
    }

    fn unregister(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Queues each relay on its connection; a relay for a connection that is gone or whose
    /// queue is full is dropped.
    fn deliver(&self, relays: Vec<Relay>) {
        if relays.is_empty() {
            return;
        }
        let conns = self.lock();
        for r in relays {
            if let Some(tx) = conns.get(&r.conn) {
                if tx.try_send(r.message).is_err() {
                    tracing::debug!(conn = r.conn, "websocket relay dropped: queue full");
                }
            }
        }
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<String>>> {
        // Held for a map lookup or insert, never across an `.await`.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `req` asks for a WebSocket.
pub fn is_upgrade(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Accepts the upgrade and runs the connection on this worker.
pub fn accept(
    req: &HttpRequest,
    body: web::Payload,
    tracker: web::Data<Tracker>,
    client: IpAddr,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(req, body)?;
    let max = tracker.config().websocket.max_message_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    actix_web::rt::spawn(run(tracker.into_inner(), session, stream, client));
    Ok(response)
}

/// A token bucket: `rate` per second, `rate × 5` at once.
struct Bucket {
    tokens: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let burst = self.rate * 5.0;
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One connection's state.
struct Conn {
    tracker: Arc<Tracker>,
    id: u64,
    client: IpAddr,
    /// The (hash, peer id) pairs it announced, to leave when it closes.
    joined: Vec<(InfoHash, PeerId)>,
    bucket: Bucket,
    /// Whether a dropped message was logged already (once per connection).
    told_rate: bool,
}

async fn run(
    tracker: Arc<Tracker>,
    mut session: Session,
    mut stream: AggregatedMessageStream,
    client: IpAddr,
) {
    let config: WsConfig = tracker.config().websocket.clone();
    let (id, mut queue) = tracker.hub().register();
    let mut conn = Conn {
        tracker: tracker.clone(),
        id,
        client,
        joined: Vec::new(),
        bucket: Bucket {
            tokens: f64::from(config.messages_per_second) * 5.0,
            rate: f64::from(config.messages_per_second),
            at: Instant::now(),
        },
        told_rate: false,
    };
    let idle = Duration::from_secs(u64::from(config.idle_timeout));
    // Often enough for a proxy's read timeout (nginx: 60 s by default) not to cut it.
    let mut ping =
        tokio::time::interval((idle / 3).clamp(Duration::from_secs(1), Duration::from_secs(30)));
    ping.tick().await;
    let mut heard = Instant::now();
    tracing::debug!(%client, conn = id, "websocket tracker connection");
    loop {
        let out = tokio::select! {
            msg = stream.recv() => {
                let Some(Ok(msg)) = msg else { break };
                heard = Instant::now();
                match msg {
                    AggregatedMessage::Text(text) => conn.handle(text.as_bytes()),
                    AggregatedMessage::Binary(bytes) => conn.handle(&bytes),
                    AggregatedMessage::Ping(p) => {
                        if session.pong(&p).await.is_err() {
                            break;
                        }
                        Vec::new()
                    }
                    AggregatedMessage::Pong(_) => Vec::new(),
                    AggregatedMessage::Close(_) => break,
                }
            }
            Some(relayed) = queue.recv() => vec![relayed],
            _ = ping.tick() => {
                if heard.elapsed() > idle {
                    tracing::debug!(%client, conn = id, "websocket tracker connection idle");
                    break;
                }
                if session.ping(b"").await.is_err() {
                    break;
                }
                Vec::new()
            }
        };
        let mut closed = false;
        for text in out {
            // A client that reads nothing holds the send; it is cut off after the idle time.
            match tokio::time::timeout(idle, session.text(text)).await {
                Ok(Ok(())) => {}
                _ => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            break;
        }
    }
    tracker.rtc_leave(&conn.joined, id);
    tracker.hub().unregister(id);
    let _ = session.close(None).await;
}

impl Conn {
    /// Answers one message: what to send back on this connection. Relays to other connections
    /// go through the hub.
    fn handle(&mut self, msg: &[u8]) -> Vec<String> {
        if !self.bucket.take(Instant::now()) {
            if !self.told_rate {
                tracing::debug!(client = %self.client, "websocket messages over the rate dropped");
                self.told_rate = true;
            }
            return Vec::new();
        }
        let config = &self.tracker.config().websocket;
        let limits = WsLimits {
            max_message_bytes: config.max_message_bytes,
            max_offers: config.max_offers,
            max_sdp_bytes: config.max_sdp_bytes,
            max_scrape_hashes: super::http_request::MAX_SCRAPE_HASHES,
        };
        let request = match proto::parse(msg, &limits) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(client = %self.client, error = %e, "refused websocket message");
                return vec![proto::parse_failure(msg, &e)];
            }
        };
        let a = match request {
            WsRequest::Scrape(hashes) => {
                return vec![proto::scrape_answer(&self.tracker.scrape(&hashes))];
            }
            WsRequest::Announce(a) => a,
        };
        let pair = (a.info_hash, a.peer_id);
        let known = self.joined.contains(&pair);
        let joins = a.updates_peer() && a.event != Event::Stopped && !known;
        if joins && self.joined.len() >= config.max_swarms_per_connection {
            return vec![proto::failure(
                "announce",
                Some(&a.info_hash),
                "too many torrents on this connection",
            )];
        }
        let mut relays = Vec::new();
        let outcome = match self
            .tracker
            .rtc_announce(&a, self.id, self.client, &mut relays)
        {
            Ok(o) => o,
            Err(refusal) => {
                tracing::debug!(client = %self.client, %refusal, "refused websocket announce");
                return vec![proto::failure(
                    "announce",
                    Some(&a.info_hash),
                    &refusal.to_string(),
                )];
            }
        };
        self.tracker.hub().deliver(relays);
        if joins {
            self.joined.push(pair);
        } else if known && a.event == Event::Stopped {
            self.joined.retain(|p| *p != pair);
        }
        let mut out = vec![proto::announce_answer(
            &a.info_hash,
            outcome.counts,
            config.interval,
        )];
        if let Some(notice) = outcome.notice {
            out.push(proto::failure("announce", Some(&a.info_hash), notice));
        }
        out
    }
}
