//! The HTTP face: the index page, the JSON API, .torrent downloads with announce and web-seed URLs
//! filled in per request, the published files themselves (a BEP 19 web seed with Range), links by
//! name that follow new versions (`/latest/…`), the Atom feed, metrics. The tracker's routes are
//! mounted beside these by `serve`.

pub mod access;
pub mod admin;
mod api;
pub mod downloads;
pub mod error;
mod feed;
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
use crate::metainfo::InfoHash;
use crate::proxy::{valid_host, Proxies};
use crate::tracker::LocalAddr;

pub use limits::HeadLimits;

/// Swarm numbers for one torrent, from the tracker.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SwarmCounts {
    /// Seeders as a scrape counts them: bitseed's own seed among them.
    pub seeders: u64,
    pub leechers: u64,
    pub completed: u64,
    /// Whether bitseed's own seeder is one of `seeders`.
    pub own_seed: bool,
    /// Cluster mode: the other nodes' seeders among `seeders` (not people either).
    pub node_seeds: u64,
}

/// Where the web face gets swarm numbers; `serve` plugs the tracker in.
pub trait SwarmView: Send + Sync {
    fn counts(&self, info_hash: &InfoHash) -> SwarmCounts;
    /// Extra Prometheus lines (tracker and seeder metrics).
    fn metrics(&self) -> String {
        String::new()
    }
}

/// No tracker: every count is zero.
pub struct NoSwarm;
impl SwarmView for NoSwarm {
    fn counts(&self, _: &InfoHash) -> SwarmCounts {
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
    /// HTTP requests by route and status (counted by `access::observe`).
    pub requests: Arc<access::Requests>,
    /// .torrent fetches and direct downloads by entry name.
    pub downloads: Arc<downloads::Downloads>,
    /// The page's title and intro, plain text.
    pub title: String,
    pub intro: String,
    /// The publisher's token (`page.admin_token`), when set.
    pub admin: Option<admin::AdminToken>,
    /// The DHT node's UDP port (the peer port) when one runs: served torrents name it in
    /// `nodes` (BEP 5), at the host the client reached us by.
    pub dht_port: Option<u16>,
    /// Whether the WebSocket tracker runs: links then name `ws(s)://…/announce` too.
    pub ws_tracker: bool,
    /// The page's "Download in browser" (WebTorrent), when `page.webtorrent_url` is set.
    pub browser: Option<BrowserDownload>,
    /// Cluster mode: every live node is named as a tracker and a web seed.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Where the page loads WebTorrent from, and up to what size it offers it.
#[derive(Debug, Clone)]
pub struct BrowserDownload {
    pub script_url: String,
    /// Subresource Integrity of the script (`sha384-…`); empty: not checked.
    pub integrity: String,
    /// Largest single file offered (the browser holds it in memory).
    pub max_bytes: u64,
}

/// How long the page and the API may be reused without asking: a few seconds, the page's own
/// polling interval, so a burst of visitors behind a shared cache costs one answer, while
/// nothing shown is older than a poll.
pub const PAGE_MAX_AGE: &str = "max-age=5";

/// For content addressed by name (`/files`, `.torrent`): caches may keep it as long as they
/// like but must check it with its ETag before each use (a 304 of a few hundred bytes). A file
/// replaced under the same name gets a new ETag at once, so no cache hands out the old bytes
/// under the new torrent (a web seed client would fail every piece). `immutable` would need
/// the torrent's hash in the URL, which a BEP 19 web seed URL (base + name) cannot carry.
pub const BY_NAME: &str = "no-cache";

/// The client's address, through the trusted proxy when the request came from one.
pub fn client_ip(req: &HttpRequest, proxies: &Proxies) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr()?.ip();
    let headers = req.headers();
    Some(proxies.client_ip(peer, |n| headers.get_all(n).map(|v| v.as_bytes())))
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

    /// Caching headers for a response with links in it, `policy` being `PAGE_MAX_AGE` or
    /// `BY_NAME`. Links follow the request when `public_url` is unset: then no shared cache may
    /// hand one client's links to another. `Accept-Encoding` is named here, in the one `Vary`
    /// value, because the CORS middleware rewrites `Vary` from its first value alone and would
    /// drop the one `Compress` appends.
    pub fn link_headers(&self, builder: &mut HttpResponseBuilder, policy: &str) {
        self.cache_headers(builder, policy, "");
    }

    /// `link_headers` with `vary` (ending in `, `) first in the `Vary` value.
    fn cache_headers(&self, builder: &mut HttpResponseBuilder, policy: &str, vary: &str) {
        if self.public_url.is_none() {
            builder
                .insert_header((header::CACHE_CONTROL, format!("private, {policy}")))
                .insert_header((
                    header::VARY,
                    format!(
                        "{vary}Host, X-Forwarded-Host, X-Forwarded-Proto, Forwarded, \
                         Accept-Encoding"
                    ),
                ));
        } else {
            builder
                .insert_header((header::CACHE_CONTROL, format!("public, {policy}")))
                .insert_header((header::VARY, format!("{vary}Accept-Encoding")));
        }
    }

    /// Caching headers for the page, the API and the feed: the publisher's view is never kept
    /// by a shared cache (`private`), and when there is a publisher's view the others vary on
    /// what would carry the token.
    pub fn view_headers(&self, builder: &mut HttpResponseBuilder, admin: bool) {
        if admin {
            builder
                .insert_header((header::CACHE_CONTROL, "private, no-cache"))
                .insert_header((
                    header::VARY,
                    "Cookie, Authorization, Host, X-Forwarded-Host, X-Forwarded-Proto, \
                     Forwarded, Accept-Encoding",
                ));
            return;
        }
        let vary = if self.admin.is_some() {
            "Cookie, Authorization, "
        } else {
            ""
        };
        self.cache_headers(builder, PAGE_MAX_AGE, vary);
    }

    pub fn links(&self, req: &HttpRequest, p: &Published) -> Links {
        let base = self.base_url(req);
        let (download_url, _) = file_urls(&base, &p.name, p.meta.single_file);
        let ws_announce = self.ws_tracker.then(|| ws_url(&base));
        let (trackers, web_seeds) = self.mirrors(&base, &p.name, p.meta.single_file);
        let mut magnet = p.meta.magnet();
        magnet.trackers = trackers.clone();
        magnet.trackers.extend(ws_announce.clone());
        if p.meta.format != crate::metainfo::Format::Merkle {
            magnet.web_seeds = web_seeds.clone();
        }
        Links {
            trackers,
            web_seeds,
            torrent_url: format!("{base}/torrents/{}.torrent", encode_path(&p.name)),
            magnet: magnet.to_uri(),
            download_url,
            ws_announce,
        }
    }
}

impl WebState {
    /// The trackers (one BEP 12 tier) and web seeds to name: this base's alone on one node; in
    /// cluster mode every live node's (or `public_url`'s tracker alone, when it is set),
    /// shuffled per request so that clients spread over the nodes.
    fn mirrors(&self, base: &str, name: &str, single_file: bool) -> (Vec<String>, Vec<String>) {
        let (_, web_seed) = file_urls(base, name, single_file);
        let mut trackers = vec![format!("{base}/announce")];
        let mut web_seeds = vec![web_seed];
        let Some(cluster) = &self.cluster else {
            return (trackers, web_seeds);
        };
        let nodes = cluster.nodes();
        if self.public_url.is_none() {
            trackers.clear();
            web_seeds.clear();
            for n in nodes.iter() {
                trackers.push(format!("{}/announce", n.base_url));
                trackers.extend(n.udp_announce.clone());
            }
            shuffle(&mut trackers);
        } else {
            // The public name first, then the nodes by their own names.
            web_seeds.truncate(1);
        }
        let mut nodes_seeds: Vec<String> = nodes
            .iter()
            .map(|n| file_urls(&n.base_url, name, single_file).1)
            .filter(|w| !web_seeds.contains(w))
            .collect();
        shuffle(&mut nodes_seeds);
        web_seeds.extend(nodes_seeds);
        (trackers, web_seeds)
    }
}

/// Fisher–Yates with the standard library's random keys (not for secrets).
fn shuffle<T>(items: &mut [T]) {
    use std::hash::BuildHasher;
    let keys = std::collections::hash_map::RandomState::new();
    for i in (1..items.len()).rev() {
        let j = (keys.hash_one(i) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// The WebSocket tracker under `base` (`http://h` → `ws://h/announce`, `https` → `wss`).
fn ws_url(base: &str) -> String {
    let rest = base
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .unwrap_or_else(|| base.to_owned());
    format!("{rest}/announce")
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
/// `weak` for bodies that may be compressed on the way out: a strong tag names exact bytes
/// (RFC 9110 section 8.8.1), and nginx weakens its tags when it gzips for the same reason.
pub fn respond_with_etag(
    req: &HttpRequest,
    mut builder: HttpResponseBuilder,
    content_type: &str,
    body: Vec<u8>,
    weak: bool,
) -> actix_web::HttpResponse {
    use sha1::Digest;
    let etag = format!(
        "{}\"{}\"",
        if weak { "W/" } else { "" },
        hex::encode(&sha1::Sha1::digest(&body)[..12])
    );
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
    /// Every tracker to name, in one tier (cluster mode: every node's).
    pub trackers: Vec<String>,
    /// Every web seed to name (cluster mode: every node's).
    pub web_seeds: Vec<String>,
    pub torrent_url: String,
    pub magnet: String,
    pub download_url: String,
    /// The WebSocket tracker, when it runs.
    pub ws_announce: Option<String>,
}

/// Everything percent-encoded but RFC 3986's unreserved characters: for path segments and query
/// values alike.
pub const UNRESERVED_KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The part of the request's raw path between `prefix` and `suffix`, percent-decoded once (as
/// `/files` does, so a name with `%` or `+` in it is found at the URL the API gives).
pub fn raw_tail(req: &HttpRequest, prefix: &str, suffix: &str) -> Option<String> {
    let raw = req
        .uri()
        .path()
        .strip_prefix(prefix)?
        .strip_suffix(suffix)?;
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
        .filter(|s| !s.is_empty())
}

/// Percent-encodes each path segment, keeping the slashes.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, UNRESERVED_KEPT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// `Content-Disposition` that saves as `filename`: a quoted ASCII fallback (quotes, controls and
/// non-ASCII replaced) and the exact name in RFC 5987 form.
pub fn attachment(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if !c.is_ascii() || c.is_ascii_control() || c == '"' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        encode_path(filename)
    )
}

/// GET, and HEAD with the same headers (actix sends no body for HEAD).
pub fn get_or_head() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// A GET (and HEAD) resource: any other method gets a 405 with `Allow`, as nginx answers.
fn get_resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|req: HttpRequest| async move {
        error::method_not_allowed(&req, "GET, HEAD")
    }))
}

/// Mounts the page, API, torrents, files and metrics routes. The page, the API and the metrics
/// are compressed when the client asks (gzip, br or zstd: 112 KB of JSON is a few KB); .torrent
/// files (mostly hashes) and `/files` (ranges of content that is usually compressed already,
/// byte-exact for web seeds) are not.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use actix_web::middleware::Compress;
    cfg.app_data(web::QueryConfig::default().error_handler(|e, req| {
        let res = error::respond(
            req,
            actix_web::http::StatusCode::BAD_REQUEST,
            &e.to_string(),
        );
        actix_web::error::InternalError::from_response(e, res).into()
    }))
    .service(
        get_resource("/")
            .wrap(Compress::default())
            .route(get_or_head().to(page::index)),
    )
    .service(
        get_resource("/api/torrents")
            .wrap(Compress::default())
            .route(get_or_head().to(api::list)),
    )
    .service(
        get_resource("/api/torrents/by-name/{name:.*}")
            .wrap(Compress::default())
            .route(get_or_head().to(api::by_name)),
    )
    .service(
        get_resource("/api/torrents/{info_hash}")
            .wrap(Compress::default())
            .route(get_or_head().to(api::one)),
    )
    .service(get_resource("/torrents/{name}.torrent").route(get_or_head().to(torrent_file::get)))
    .service(get_resource("/latest/{name:.*}").route(get_or_head().to(torrent_file::latest)))
    .service(
        get_resource("/feed.atom")
            .wrap(Compress::default())
            .route(get_or_head().to(feed::atom)),
    )
    .service(get_resource("/files/{path:.*}").route(get_or_head().to(files::get)))
    .service(
        get_resource("/metrics")
            .wrap(Compress::default())
            .route(get_or_head().to(metrics::metrics)),
    )
    .service(get_resource("/healthz").route(get_or_head().to(metrics::healthz)));
}

/// 405 for other methods on the tracker's paths. Mounted after the tracker's own routes (which
/// take GET alone, with their method guard on the resource, so any other method would find no
/// route and get a 404): a GET still reaches the tracker first.
pub fn tracker_methods(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/announce", "/scrape", "/stats"])
            .to(|req: HttpRequest| async move { error::method_not_allowed(&req, "GET") }),
    );
}

/// The app's default service: a path nothing is mounted at.
pub async fn unknown_path(req: HttpRequest) -> actix_web::HttpResponse {
    error::not_found(&req, "nothing is published at this address")
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

    #[test]
    fn the_websocket_tracker_follows_the_scheme() {
        assert_eq!(
            ws_url("http://10.0.0.1:8080"),
            "ws://10.0.0.1:8080/announce"
        );
        assert_eq!(
            ws_url("https://example.com/downloads"),
            "wss://example.com/downloads/announce"
        );
    }

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
