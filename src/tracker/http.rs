//! The HTTP face of the tracker on actix-web: `GET /announce`, `GET /scrape` and `GET /stats`.
//! Every answer is HTTP 200 with a bencoded body; errors are a `failure reason`.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use super::http_request::{parse_announce, parse_scrape, Event};
use super::http_response::{
    write_compact, write_dictionary, write_failure, write_scrape, AnnounceAnswer, DictPeer,
};
use super::state::Tracker;
use super::swarm::Announce;

/// Adds the tracker's routes to an actix app: `App::new().configure(tracker::configure(t))`.
pub fn configure(tracker: Arc<Tracker>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(tracker))
            .route("/announce", web::get().to(announce))
            .route("/scrape", web::get().to(scrape))
            .route("/stats", web::get().to(stats));
    }
}

/// Our address on an HTTP connection, recorded when it is accepted (`web::limits::bound`).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub std::net::SocketAddr);

async fn announce(
    req: HttpRequest,
    payload: web::Payload,
    tracker: web::Data<Tracker>,
) -> HttpResponse {
    // A browser's WebTorrent tracker connection (`ws://…/announce`): the same path.
    if tracker.config().websocket.enabled && super::ws::is_upgrade(&req) {
        let Some(ip) = client_ip(&req, &tracker) else {
            return bencoded(failure("no client address"));
        };
        return match super::ws::accept(&req, payload, tracker, ip) {
            Ok(res) => res,
            Err(e) => e.error_response(),
        };
    }
    let body = match client_ip(&req, &tracker) {
        Some(ip) => answer_announce(
            &tracker,
            req.query_string().as_bytes(),
            ip,
            req.conn_data::<LocalAddr>().map(|l| l.0.ip()),
        ),
        None => failure("no client address"),
    };
    bencoded(body)
}

async fn scrape(req: HttpRequest, tracker: web::Data<Tracker>) -> HttpResponse {
    bencoded(answer_scrape(&tracker, req.query_string().as_bytes()))
}

async fn stats(tracker: web::Data<Tracker>) -> HttpResponse {
    let s = tracker.stats();
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!(
            "torrents: {}\nseeders: {}\nleechers: {}\nannounces per second: {:.1}\n",
            s.torrents, s.seeders, s.leechers, s.announces_per_second
        ))
}

fn bencoded(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body(body)
}

fn failure(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + message.len());
    write_failure(message, &mut out);
    out
}

/// The whole announce exchange over a raw query string, from the client at `client_ip`.
pub fn answer_announce(
    tracker: &Tracker,
    query: &[u8],
    client_ip: IpAddr,
    local_ip: Option<IpAddr>,
) -> Vec<u8> {
    let req = match parse_announce(query) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%client_ip, error = %e, "refused announce");
            return failure(&e.to_string());
        }
    };
    let config = tracker.config();
    let ip = match req.ip {
        Some(ip) if config.accept_ip_param => ip,
        _ => client_ip,
    }
    .to_canonical();
    let numwant = if req.event == Event::Stopped {
        0
    } else {
        req.numwant
            .unwrap_or(config.numwant_default)
            .min(config.numwant_max) as usize
    };
    let a = Announce {
        info_hash: req.info_hash,
        peer: SocketAddr::new(ip, req.port),
        event: req.event,
        left: req.left,
        numwant,
        both_families: true,
        local_ip,
    };
    thread_local! {
        // Reused across requests so the peer lists cost no allocation per announce.
        static BUFS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }
    BUFS.with(|bufs| {
        let (p4, p6) = &mut *bufs.borrow_mut();
        p4.clear();
        p6.clear();
        let counts = match tracker.announce(&a, p4, p6) {
            Ok(c) => c,
            Err(refusal) => {
                tracing::debug!(%client_ip, %refusal, "refused announce");
                return failure(&refusal.to_string());
            }
        };
        let answer = AnnounceAnswer {
            counts,
            interval: config.interval,
            min_interval: config.min_interval,
            external_ip: Some(client_ip.to_canonical()),
        };
        let mut out = Vec::with_capacity(160 + p4.len() + p6.len());
        if req.compact {
            write_compact(&answer, p4, p6, &mut out);
        } else {
            let peers: Vec<DictPeer> = p4
                .chunks_exact(6)
                .map(|c| DictPeer {
                    addr: socket_addr(c),
                    peer_id: None,
                })
                .chain(p6.chunks_exact(18).map(|c| DictPeer {
                    addr: socket_addr(c),
                    peer_id: None,
                }))
                .collect();
            write_dictionary(&answer, &peers, req.no_peer_id, &mut out);
        }
        out
    })
}

/// The whole scrape exchange over a raw query string.
pub fn answer_scrape(tracker: &Tracker, query: &[u8]) -> Vec<u8> {
    match parse_scrape(query) {
        Ok(hashes) => {
            let files = tracker.scrape(&hashes);
            let mut out = Vec::with_capacity(16 + files.len() * 80);
            write_scrape(&files, &mut out);
            out
        }
        Err(e) => failure(&e.to_string()),
    }
}

fn socket_addr(compact: &[u8]) -> SocketAddr {
    let (ip, port) = compact.split_at(compact.len() - 2);
    let port = u16::from_be_bytes([port[0], port[1]]);
    let ip = match <[u8; 4]>::try_from(ip) {
        Ok(v4) => IpAddr::from(v4),
        Err(_) => IpAddr::from(<[u8; 16]>::try_from(ip).unwrap_or([0; 16])),
    };
    SocketAddr::new(ip, port)
}

/// The client's IP: the socket's, unless the socket peer is a trusted proxy that names the
/// client in the configured header (the last hop it added).
fn client_ip(req: &HttpRequest, tracker: &Tracker) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let headers = req.headers();
    Some(
        tracker
            .proxies()
            .client_ip(peer, |name| headers.get_all(name).map(|v| v.as_bytes())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{Mode, TrackerConfig};
    use actix_web::test::TestRequest;

    fn tracker(config: TrackerConfig) -> (Tracker, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Tracker::new(config, dir.path()).unwrap(), dir)
    }

    fn open() -> TrackerConfig {
        TrackerConfig {
            mode: Mode::Open,
            ..TrackerConfig::default()
        }
    }

    fn q(peer_id: char, port: u16, left: u64, extra: &str) -> String {
        format!(
            "info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}{extra}",
            "%AA".repeat(20),
            peer_id.to_string().repeat(20)
        )
    }

    #[test]
    fn announce_answers_compact_and_dictionary() {
        let (t, _d) = tracker(open());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        // `left=0` alone is not counted as a seeder (issue 15).
        let first = answer_announce(&t, q('a', 6881, 0, "").as_bytes(), ip, None);
        assert_eq!(
            first,
            b"d8:completei0e10:downloadedi0e11:external ip4:\x0a\x00\x00\x0110:incompletei1e\
              8:intervali1800e12:min intervali900e5:peers0:e"
        );
        let second = answer_announce(
            &t,
            q('b', 6882, 5, "&compact=0&no_peer_id=1").as_bytes(),
            ip,
            None,
        );
        assert!(
            second.ends_with(b"5:peersld2:ip8:10.0.0.14:porti6881eeee"),
            "{second:?}"
        );
    }

    #[test]
    fn errors_are_failure_reasons() {
        let (t, _d) = tracker(TrackerConfig::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            answer_announce(&t, b"", ip, None),
            b"d14:failure reason17:missing info_hashe"
        );
        assert_eq!(
            answer_announce(&t, q('a', 1, 0, "").as_bytes(), ip, None),
            b"d14:failure reason20:unregistered torrente"
        );
        assert_eq!(
            answer_scrape(&t, b"info_hash=x"),
            b"d14:failure reason19:malformed info_hashe"
        );
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let proxy: IpAddr = "192.0.2.1".parse().unwrap();
        let (t, _d) = tracker(TrackerConfig {
            trusted_proxies: vec![proxy],
            ..open()
        });
        let req = TestRequest::default()
            .peer_addr("192.0.2.1:5000".parse().unwrap())
            .insert_header(("X-Forwarded-For", "203.0.113.9, 198.51.100.7"))
            .to_http_request();
        assert_eq!(client_ip(&req, &t), Some("198.51.100.7".parse().unwrap()));
        let req = TestRequest::default()
            .peer_addr("192.0.2.1:5000".parse().unwrap())
            .insert_header((
                "Forwarded",
                "for=1.1.1.1, for=\"[2001:db8::7]:443\";proto=https",
            ))
            .to_http_request();
        // Not the configured header: the proxy's own address (a client's `Forwarded` passed
        // through by a proxy that sets X-Forwarded-For must not name anyone).
        assert_eq!(client_ip(&req, &t), Some(proxy));
        let (t2, _d2) = tracker(TrackerConfig {
            trusted_proxies: vec![proxy],
            proxy_header: crate::proxy::ProxyHeader::Forwarded,
            ..open()
        });
        assert_eq!(client_ip(&req, &t2), Some("2001:db8::7".parse().unwrap()));
        let req = TestRequest::default()
            .peer_addr("192.0.2.2:5000".parse().unwrap())
            .insert_header(("X-Forwarded-For", "203.0.113.9"))
            .to_http_request();
        assert_eq!(client_ip(&req, &t), Some("192.0.2.2".parse().unwrap()));
    }
}
