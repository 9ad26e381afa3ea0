//! The HTTP face: the index page, the JSON API, .torrent downloads with announce and web-seed URLs
//! filled in per request, the published files themselves (a BEP 19 web seed with Range), metrics.
//! The tracker's routes are mounted beside these by `serve`.

mod api;
mod files;
pub mod limits;
mod metrics;
mod page;
pub mod range;
mod torrent_file;

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponseBuilder};

use crate::catalog::{Published, Registry};
use crate::proxy::{valid_host, Proxies};
use crate::tracker::LocalAddr;

pub use limits::HeadLimits;

/// Swarm numbers for one torrent, from the tracker.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SwarmCounts {
    pub seeders: u64,
    pub leechers: u64,
    pub completed: u64,
}

/// Where the web face gets swarm numbers; `serve` plugs the tracker in.
pub trait SwarmView: Send + Sync {
    fn counts(&self, info_hash: &[u8; 20]) -> SwarmCounts;
    /// Extra Prometheus lines (tracker and seeder metrics).
    fn metrics(&self) -> String {
        String::new()
    }
}

/// No tracker: every count is zero.
pub struct NoSwarm;
impl SwarmView for NoSwarm {
    fn counts(&self, _: &[u8; 20]) -> SwarmCounts {
        SwarmCounts::default()
    }
}

pub struct WebState {
    pub registry: Arc<Registry>,
    pub swarm: Arc<dyn SwarmView>,
    /// `public_url` without a trailing slash, when configured.
    pub public_url: Option<String>,
    /// Proxies believed about the host and scheme a client used (when `public_url` is unset).
    pub proxies: Proxies,
    /// The publisher's budget (shared with the seeder) and its byte counts by channel.
    pub egress: Arc<crate::egress::Egress>,
}

impl WebState {
    /// The base URL for links: `public_url`, or what the client used to reach us: the host and
    /// scheme a trusted proxy forwarded, else the `Host` header, else our own address. Only
    /// host characters pass and only `http`/`https`, so a link can neither leave its quotes in
    /// HTML nor become a `javascript:` URL.
    pub fn base_url(&self, req: &HttpRequest) -> String {
        if let Some(u) = &self.public_url {
            return u.trim_end_matches('/').to_owned();
        }
        let headers = req.headers();
        let forwarded = req
            .peer_addr()
            .map(|peer| {
                self.proxies
                    .forwarded(peer.ip(), |n| headers.get_all(n).map(|v| v.as_bytes()))
            })
            .unwrap_or_default();
        let host = forwarded
            .host
            .or_else(|| {
                headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(valid_host)
            })
            .or_else(|| req.conn_data::<LocalAddr>().map(|l| l.0.to_string()))
            .unwrap_or_else(|| "localhost".into());
        format!("{}://{host}", forwarded.proto.unwrap_or("http"))
    }

    /// Headers for a response whose links depend on the request (no `public_url`): no shared
    /// cache may hand one client's links to another.
    pub fn link_headers(&self, builder: &mut HttpResponseBuilder) {
        if self.public_url.is_none() {
            builder
                .insert_header((header::CACHE_CONTROL, "private, no-cache"))
                .insert_header((
                    header::VARY,
                    "Host, X-Forwarded-Host, X-Forwarded-Proto, Forwarded",
                ));
        } else {
            builder.insert_header((header::CACHE_CONTROL, "no-cache"));
        }
    }

    pub fn links(&self, req: &HttpRequest, p: &Published) -> Links {
        let base = self.base_url(req);
        let (download_url, web_seed) = file_urls(&base, &p.name, p.meta.single_file);
        let mut magnet = p.meta.magnet();
        magnet.trackers = vec![format!("{base}/announce")];
        if p.meta.format != crate::metainfo::Format::Merkle {
            magnet.web_seeds = vec![web_seed.clone()];
        }
        Links {
            torrent_url: format!("{base}/torrents/{}.torrent", encode_path(&p.name)),
            magnet: magnet.to_uri(),
            download_url,
            announce: format!("{base}/announce"),
            web_seed,
        }
    }
}

/// The direct download URL and the BEP 19 web seed (`url-list`, magnet `ws`) of the entry `name`
/// under `base`. A folder's web seed is the `/files/` root, to which clients append the torrent's
/// name and each file's path. A single file's is its own URL: BEP 19 also allows the root there
/// (ending in `/`, the client appends the name), but WebTorrent requests that URL as it is.
fn file_urls(base: &str, name: &str, single_file: bool) -> (String, String) {
    let name = encode_path(name);
    if single_file {
        let file = format!("{base}/files/{name}");
        (file.clone(), file)
    } else {
        (format!("{base}/files/{name}/"), format!("{base}/files/"))
    }
}

/// Sends `body` with an ETag of its bytes, or a 304 when the client's `If-None-Match` has it:
/// a page polling the API every few seconds costs a few hundred bytes while nothing changes.
pub fn respond_with_etag(
    req: &HttpRequest,
    mut builder: HttpResponseBuilder,
    content_type: &str,
    body: Vec<u8>,
) -> actix_web::HttpResponse {
    use sha1::Digest;
    let etag = format!("\"{}\"", hex::encode(&sha1::Sha1::digest(&body)[..12]));
    builder.insert_header((header::ETAG, etag.clone()));
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| range::none_match(v, &etag));
    if fresh {
        return builder
            .status(actix_web::http::StatusCode::NOT_MODIFIED)
            .finish();
    }
    builder.content_type(content_type).body(body)
}

pub struct Links {
    pub torrent_url: String,
    pub magnet: String,
    pub download_url: String,
    pub announce: String,
    pub web_seed: String,
}

/// Everything percent-encoded but RFC 3986's unreserved characters: for path segments and query
/// values alike.
pub const UNRESERVED_KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes each path segment, keeping the slashes.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, UNRESERVED_KEPT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// GET, and HEAD with the same headers (actix sends no body for HEAD).
pub fn get_or_head() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Mounts the page, API, torrents, files and metrics routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", get_or_head().to(page::index))
        .route("/api/torrents", get_or_head().to(api::list))
        .route("/api/torrents/{info_hash}", get_or_head().to(api::one))
        .route(
            "/torrents/{name}.torrent",
            get_or_head().to(torrent_file::get),
        )
        .route("/files/{path:.*}", get_or_head().to(files::get))
        .route("/metrics", get_or_head().to(metrics::metrics))
        .route("/healthz", get_or_head().to(metrics::healthz));
}

/// CORS for browser clients of the web seed: any origin may read, send `Range`, and see
/// `Content-Range`.
pub fn cors() -> actix_cors::Cors {
    actix_cors::Cors::default()
        .allow_any_origin()
        .allowed_methods(["GET", "HEAD", "OPTIONS"])
        .allowed_headers(["Range", "If-Range", "If-None-Match", "If-Modified-Since"])
        .expose_headers([
            "Content-Range",
            "Content-Length",
            "Accept-Ranges",
            "ETag",
            "Link",
            "X-Total-Count",
        ])
        .max_age(86400)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (WebTorrent 3 fetched a single-file torrent's `url-list` `.../files/` as it is
    /// and got 404): a single file's web seed is its own URL, a folder's the `/files/` root.
    #[test]
    fn a_single_file_web_seed_names_the_file_and_a_folder_the_root() {
        let base = "http://10.0.0.1:8080";
        assert_eq!(
            file_urls(base, "big file.bin", true),
            (
                "http://10.0.0.1:8080/files/big%20file.bin".to_owned(),
                "http://10.0.0.1:8080/files/big%20file.bin".to_owned()
            )
        );
        assert_eq!(
            file_urls(base, "pack", false),
            (
                "http://10.0.0.1:8080/files/pack/".to_owned(),
                "http://10.0.0.1:8080/files/".to_owned()
            )
        );
    }
}
