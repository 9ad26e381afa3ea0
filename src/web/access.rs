//! What every HTTP response passes through, the tracker's included: a count by route pattern and
//! status for `/metrics`, `Cache-Control: no-store` where the route chose no caching of its own,
//! and an access log line once the body is done — so its byte count is what was handed to the
//! connection (an aborted download counts what left, not its length) and its duration runs to
//! the last byte, as nginx's `$body_bytes_sent` and `$request_time` do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web;
use bytes::Bytes;

use crate::proxy::Proxies;

/// Route label of a request no route matched (an unknown path, a refused head, a CORS
/// preflight): one label, so a scan of random paths adds no series.
pub const UNMATCHED: &str = "unmatched";

/// The middleware's settings, in the app's data.
pub struct Access {
    /// Log a line per request (`http.access_log`).
    pub log: bool,
    /// Who is believed about the client's address (the tracker's `trusted_proxies`).
    pub proxies: Proxies,
    pub requests: Arc<Requests>,
}

/// Requests answered, by route pattern and status. Patterns and statuses are few, so the map
/// stays small; a request takes the read lock and one atomic add, the write lock only the first
/// time a pair is seen (the tracker's announces pass here too).
#[derive(Debug, Default)]
pub struct Requests {
    counts: RwLock<HashMap<(String, u16), AtomicU64>>,
}

impl Requests {
    pub fn add(&self, route: String, status: StatusCode) {
        let key = (route, status.as_u16());
        if let Some(n) = self
            .counts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            n.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// `bitseed_http_requests_total{route,status}` in Prometheus text, in a stable order.
    pub fn metrics(&self) -> String {
        let counts = self.counts.read().unwrap_or_else(|p| p.into_inner());
        let mut lines: Vec<String> = counts
            .iter()
            .map(|((route, status), n)| {
                format!(
                    "bitseed_http_requests_total{{route=\"{}\",status=\"{status}\"}} {}\n",
                    label(route),
                    n.load(Ordering::Relaxed)
                )
            })
            .collect();
        lines.sort();
        let mut out = String::from(
            "# HELP bitseed_http_requests_total HTTP requests answered, by route pattern and \
             status.\n# TYPE bitseed_http_requests_total counter\n",
        );
        out.extend(lines);
        out
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware (`.wrap(from_fn(observe))`, outermost, with `web::Data<Access>` in the app data).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<Logged>, actix_web::Error> {
    let started = Instant::now();
    let access = req.app_data::<web::Data<Access>>().cloned();
    let mut line = access.as_ref().filter(|a| a.log).map(|a| Line {
        client: super::client_ip(req.request(), &a.proxies),
        method: req.method().clone(),
        // The path alone: a query can carry tokens and peer ids, and is long on announces.
        path: req.path().to_owned(),
        status: StatusCode::OK,
        sent: 0,
        started,
    });
    // (The request cannot be kept aside to answer an error here: routing needs it unshared.)
    let mut res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(e) => {
            let status = e.as_response_error().status_code();
            if let Some(a) = &access {
                a.requests.add(UNMATCHED.to_owned(), status);
            }
            if let Some(l) = &mut line {
                l.status = status;
            }
            return Err(e);
        }
    };
    let status = res.status();
    if let Some(a) = &access {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| UNMATCHED.to_owned());
        a.requests.add(route, status);
    }
    if !res.headers().contains_key(header::CACHE_CONTROL) {
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    if let Some(l) = &mut line {
        l.status = status;
    }
    Ok(res.map_body(|_, body| Logged { body, line }))
}

/// A response body that counts the bytes taken from it and logs its request when dropped (done,
/// or the connection gone).
pub struct Logged {
    body: BoxBody,
    line: Option<Line>,
}

impl MessageBody for Logged {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.body).poll_next(cx);
        if let (Poll::Ready(Some(Ok(chunk))), Some(line)) = (&next, &mut this.line) {
            line.sent += chunk.len() as u64;
        }
        next
    }
}

struct Line {
    client: Option<IpAddr>,
    method: Method,
    path: String,
    status: StatusCode,
    sent: u64,
    started: Instant,
}

impl Drop for Line {
    fn drop(&mut self) {
        let client = self
            .client
            .map_or_else(|| "-".to_owned(), |c| c.to_string());
        tracing::info!(
            target: "bitseed::access",
            "{client} \"{} {}\" {} {} {:.1}ms",
            self.method,
            self.path,
            self.status.as_u16(),
            self.sent,
            self.started.elapsed().as_secs_f64() * 1000.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status_in_prometheus_text() {
        let r = Requests::default();
        r.add("/files/{path:.*}".into(), StatusCode::OK);
        r.add("/files/{path:.*}".into(), StatusCode::OK);
        r.add(UNMATCHED.into(), StatusCode::NOT_FOUND);
        let m = r.metrics();
        assert!(
            m.contains("# TYPE bitseed_http_requests_total counter\n"),
            "{m}"
        );
        assert!(
            m.contains(
                "bitseed_http_requests_total{route=\"/files/{path:.*}\",status=\"200\"} 2\n"
            ),
            "{m}"
        );
        assert!(
            m.contains("bitseed_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"),
            "{m}"
        );
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
