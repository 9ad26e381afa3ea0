//! The HTTP face: the index page, the JSON API, .torrent downloads with announce and web-seed URLs
//! filled in per request, the published files themselves (a BEP 19 web seed with Range), metrics.
//! The tracker's routes are mounted beside these by `serve`.

mod api;
mod files;
pub mod limits;
mod metrics;
mod page;
mod torrent_file;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use actix_web::{web, HttpRequest};

use crate::catalog::{Published, Registry};

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
    /// Bytes sent from /files (the web seed).
    pub file_bytes: AtomicU64,
}

impl WebState {
    /// The base URL for links: `public_url`, or what the client used to reach us.
    pub fn base_url(&self, req: &HttpRequest) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let info = req.connection_info();
                format!("{}://{}", info.scheme(), info.host())
            }
        }
    }

    pub fn links(&self, req: &HttpRequest, p: &Published) -> Links {
        let base = self.base_url(req);
        let name = encode_path(&p.name);
        let mut magnet = p.meta.magnet();
        magnet.trackers = vec![format!("{base}/announce")];
        if p.meta.format != crate::metainfo::Format::Merkle {
            magnet.web_seeds = vec![format!("{base}/files/")];
        }
        Links {
            torrent_url: format!("{base}/torrents/{name}.torrent"),
            magnet: magnet.to_uri(),
            download_url: if p.meta.single_file {
                format!("{base}/files/{name}")
            } else {
                format!("{base}/files/{name}/")
            },
            announce: format!("{base}/announce"),
            web_seed: format!("{base}/files/"),
        }
    }
}

pub struct Links {
    pub torrent_url: String,
    pub magnet: String,
    pub download_url: String,
    pub announce: String,
    pub web_seed: String,
}

/// Percent-encodes each path segment, keeping the slashes.
pub fn encode_path(path: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    path.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Mounts the page, API, torrents, files and metrics routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(page::index))
        .route("/api/torrents", web::get().to(api::list))
        .route("/api/torrents/{info_hash}", web::get().to(api::one))
        .route("/torrents/{name}.torrent", web::get().to(torrent_file::get))
        .route("/files/{path:.*}", web::get().to(files::get))
        .route("/files/{path:.*}", web::head().to(files::get))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/healthz", web::get().to(metrics::healthz));
}

/// CORS for browser clients of the web seed: any origin may read, send `Range`, and see
/// `Content-Range`.
pub fn cors() -> actix_cors::Cors {
    actix_cors::Cors::default()
        .allow_any_origin()
        .allowed_methods(["GET", "HEAD", "OPTIONS"])
        .allowed_headers(["Range", "If-Range", "If-None-Match", "If-Modified-Since"])
        .expose_headers(["Content-Range", "Content-Length", "Accept-Ranges", "ETag"])
        .max_age(86400)
}
