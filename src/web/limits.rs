//! The HTTP bounds `serve` and the standalone `tracker` share: connections (total, per client
//! address), timeouts, and request-head sizes.
//!
//! actix refuses an unfinished head over 32 KiB or more than 96 headers, but a head that arrives
//! whole in one read is parsed at any size; [`HeadLimits`] holds whatever the read pattern,
//! before any handler (tracker, page, /files) sees the request.

use std::any::Any;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{Request, Response};
use actix_service::IntoServiceFactory;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{
    AppConfig, Extensions, Service, ServiceFactory, ServiceRequest, ServiceResponse,
};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::rt::net::TcpStream;
use actix_web::{HttpRequest, HttpServer};

use crate::config::HttpSettings;
use crate::ip_limit::IpLimit;
use crate::tracker::LocalAddr;

/// What the connection's client said it was, remembered for its later requests: libtorrent
/// sends its User-Agent only on the first request of a keep-alive connection.
#[derive(Debug, Clone, Default)]
pub struct ConnClient(pub Arc<std::sync::atomic::AtomicU8>);

impl ConnClient {
    pub const UNKNOWN: u8 = 0;
    pub const BITTORRENT: u8 = 1;
    pub const OTHER: u8 = 2;
}

#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest request target (path and query), in bytes: longer is answered 414.
    pub max_uri: usize,
    /// Most bytes over all header names and values: more is answered 431.
    pub max_headers: usize,
}

impl HeadLimits {
    /// The status to refuse `req` with, if it is over a bound.
    pub fn refusal(&self, req: &HttpRequest) -> Option<StatusCode> {
        let uri = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if uri > self.max_uri {
            return Some(StatusCode::URI_TOO_LONG);
        }
        let headers: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if headers > self.max_headers {
            return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        None
    }
}

/// Middleware (`.wrap(from_fn(refuse_big_heads))`, with the app's `HeadLimits` in `app_data`):
/// answers a request over a bound with 414 or 431 before any handler runs.
pub async fn refuse_big_heads<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let limits = req
        .app_data::<HeadLimits>()
        .copied()
        .unwrap_or_else(|| HttpSettings::default().head_limits());
    if let Some(status) = limits.refusal(req.request()) {
        tracing::debug!(%status, "request head over a bound refused");
        let detail = if status == StatusCode::URI_TOO_LONG {
            "the address is longer than this server takes"
        } else {
            "the request's headers are larger than this server takes"
        };
        let res = super::error::respond(req.request(), status, detail);
        return Ok(req.into_response(res).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

impl HttpSettings {
    pub fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            max_uri: self.max_uri_bytes,
            max_headers: self.max_header_bytes,
        }
    }
}

/// Applies the connection bounds of `http` to a server being built: total connections, timeouts,
/// workers, and at most `http.max_connections_per_ip` open connections per client address
/// (clients in `trusted_proxies` are exempt: every client behind a proxy shares its address).
pub fn bound<F, I, S, B>(
    server: HttpServer<F, I, S, B>,
    http: &HttpSettings,
    trusted_proxies: &[IpAddr],
) -> HttpServer<F, I, S, B>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let per_ip = IpLimit::new(http.max_connections_per_ip);
    let exempt = trusted_proxies.to_vec();
    let send_timeout = Duration::from_secs_f64(http.send_timeout);
    let server = server
        .on_connect(move |conn, data| on_connect(&per_ip, &exempt, send_timeout, conn, data))
        .client_request_timeout(Duration::from_secs_f64(http.request_timeout))
        .keep_alive(Duration::from_secs_f64(http.keep_alive))
        .max_connections(http.max_connections);
    match http.workers {
        0 => server,
        n => server.workers(n),
    }
}

/// Records the connection's local address (so an own seed on an unspecified address is listed
/// under the address the client reached) and takes its per-address slot, held in the
/// connection's data until it closes. A connection past the limit is shut down at once: actix
/// then reads end-of-stream and drops it before any request is read.
fn on_connect(
    per_ip: &Arc<IpLimit>,
    exempt: &[IpAddr],
    send_timeout: Duration,
    conn: &dyn Any,
    data: &mut Extensions,
) {
    let Some(sock) = conn.downcast_ref::<TcpStream>() else {
        return;
    };
    // A client that stops reading a download (or vanishes) holds its connection only this long:
    // the kernel closes it once data has waited unacknowledged, or unsent for a zero window.
    if let Err(e) = socket2::SockRef::from(sock).set_tcp_user_timeout(Some(send_timeout)) {
        tracing::debug!("cannot set TCP_USER_TIMEOUT: {e}");
    }
    if let Ok(addr) = sock.local_addr() {
        data.insert(LocalAddr(addr));
    }
    data.insert(ConnClient::default());
    let Ok(peer) = sock.peer_addr() else {
        return;
    };
    if exempt.contains(&peer.ip().to_canonical()) {
        return;
    }
    match per_ip.admit(peer.ip()) {
        Some(slot) => {
            data.insert(slot);
        }
        None => {
            tracing::debug!(%peer, "http connection refused: max_connections_per_ip reached");
            let _ = socket2::SockRef::from(sock).shutdown(std::net::Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn long_targets_and_big_headers_are_refused() {
        let limits = HeadLimits {
            max_uri: 20,
            max_headers: 30,
        };
        let ok = TestRequest::get().uri("/announce?a=b").to_http_request();
        assert_eq!(limits.refusal(&ok), None);
        let long = TestRequest::get()
            .uri("/announce?info_hash=xxxxxxxx")
            .to_http_request();
        assert_eq!(limits.refusal(&long), Some(StatusCode::URI_TOO_LONG));
        let big = TestRequest::get()
            .uri("/")
            .insert_header(("x-big", "y".repeat(40)))
            .to_http_request();
        assert_eq!(
            limits.refusal(&big),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }
}
