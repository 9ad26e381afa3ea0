//! `GET /api/torrents` and `GET /api/torrents/{info_hash}`.

use std::sync::atomic::Ordering;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::WebState;
use crate::catalog::{Registry, Status};
use crate::egress::Channel;

#[derive(Serialize)]
pub struct TorrentJson {
    pub name: String,
    pub path: String,
    /// "queued", "hashing", "published" or "failed".
    pub status: &'static str,
    /// Place in the queue of entries waiting to be hashed (1 is next), while one waits: a new
    /// entry, a failed one that changed, or a published one that changed (still served as it
    /// was until its turn).
    pub queue_position: Option<usize>,
    /// A process still has one of its files open for writing: it waits for the close.
    pub being_written: bool,
    pub format: Option<String>,
    pub size: u64,
    pub files: usize,
    pub piece_length: Option<u64>,
    pub info_hash: Option<String>,
    pub info_hash_v2: Option<String>,
    pub torrent_url: Option<String>,
    pub magnet: Option<String>,
    pub download_url: Option<String>,
    pub seeders: u64,
    pub leechers: u64,
    pub completed: u64,
    /// Hashing progress, 0 to 1.
    pub progress: f64,
    pub error: Option<String>,
    /// Bytes the publisher sent of this torrent since start, by channel.
    pub sent_peer: u64,
    pub sent_web_seed: u64,
    pub sent_direct: u64,
    /// Whole-file direct downloads completed since start.
    pub direct_completed: u64,
    /// The publisher's egress in copies of the torrent.
    pub copies_sent: f64,
    /// Copies delivered (completed downloads, BitTorrent and direct) per copy the publisher
    /// sent: above 1, the swarm carried the rest. `null` until something was sent.
    pub offload: Option<f64>,
}

pub fn entry_json(state: &WebState, req: &HttpRequest, name: &str, status: &Status) -> TorrentJson {
    let place = state.registry.queue_place(name);
    let mut j = TorrentJson {
        name: name.to_owned(),
        path: name.to_owned(),
        status: "hashing",
        queue_position: place.map(|p| p.position),
        being_written: place.is_some_and(|p| p.being_written),
        format: None,
        size: 0,
        files: 0,
        piece_length: None,
        info_hash: None,
        info_hash_v2: None,
        torrent_url: None,
        magnet: None,
        download_url: None,
        seeders: 0,
        leechers: 0,
        completed: 0,
        progress: 0.0,
        error: None,
        sent_peer: 0,
        sent_web_seed: 0,
        sent_direct: 0,
        direct_completed: 0,
        copies_sent: 0.0,
        offload: None,
    };
    match status {
        Status::Queued => j.status = "queued",
        Status::Hashing { total, done } => {
            j.queue_position = None;
            j.size = *total;
            j.progress = done.load(Ordering::Relaxed) as f64 / (*total).max(1) as f64;
        }
        Status::Failed(why) => {
            j.status = if place.is_some() { "queued" } else { "failed" };
            j.error = Some(why.clone());
        }
        Status::Published(p) => {
            let links = state.links(req, p);
            let counts = state.swarm.counts(&p.wire_hash());
            j.status = "published";
            j.name = p.meta.name.clone();
            j.format = Some(p.meta.format.to_string());
            j.size = p.meta.total_size();
            j.files = p.meta.files.iter().filter(|f| !f.pad).count();
            j.piece_length = Some(p.meta.piece_length);
            j.info_hash = p.meta.info_hash.v1.map(hex::encode);
            j.info_hash_v2 = p.meta.info_hash.v2.map(hex::encode);
            j.torrent_url = Some(links.torrent_url);
            j.magnet = Some(links.magnet);
            j.download_url = Some(links.download_url);
            j.seeders = counts.seeders;
            j.leechers = counts.leechers;
            j.completed = counts.completed;
            j.progress = 1.0;
            let o = &p.offload;
            j.sent_peer = o.sent_on(Channel::Peer);
            j.sent_web_seed = o.sent_on(Channel::WebSeed);
            j.sent_direct = o.sent_on(Channel::Direct);
            j.direct_completed = o.direct_completed.load(Ordering::Relaxed);
            j.copies_sent = o.total() as f64 / j.size.max(1) as f64;
            j.offload =
                (o.total() > 0).then(|| (j.completed + j.direct_completed) as f64 / j.copies_sent);
        }
    }
    j
}

/// `GET /api/torrents` query: a page of the catalog in name order.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    /// Entries in the page: default 100, at most 1,000.
    pub limit: Option<usize>,
    /// The last name of the previous page (the `next` link carries it).
    pub after: Option<String>,
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Only names containing this, in any case.
    pub q: Option<String>,
    /// Only entries with this status: `published`, `queued`, `hashing` or `failed`.
    pub status: Option<String>,
}

/// One page of the catalog, as `ListQuery::page` found it.
pub struct Page {
    pub entries: Vec<(String, Status)>,
    /// Entries matching the filters, in all.
    pub total: usize,
    /// The last name of this page, when a next page may follow.
    pub next: Option<String>,
}

pub const PAGE_DEFAULT: usize = 100;
pub const PAGE_MAX: usize = 1000;

impl ListQuery {
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX)
    }

    /// This query's page of `registry`: its entries, how many match in all, and the cursor of
    /// the next page when there may be one.
    pub fn page(&self, registry: &Registry) -> Page {
        let limit = self.limit();
        // Lowered once, not once per entry scanned.
        let q = self
            .q
            .as_deref()
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase);
        let keeps = |name: &str, status: &Status| {
            self.prefix.as_deref().is_none_or(|p| name.starts_with(p))
                && q.as_deref().is_none_or(|q| name.to_lowercase().contains(q))
                && self
                    .status
                    .as_deref()
                    .is_none_or(|want| status_name(status) == want)
        };
        let (entries, total) = registry.page(self.after.as_deref(), limit, keeps);
        let next = (entries.len() == limit)
            .then(|| entries.last().map(|(n, _)| n.clone()))
            .flatten();
        Page {
            entries,
            total,
            next,
        }
    }

    /// This query's filters as URL parameters (for the next page's link), `&`-prefixed.
    pub fn filter_params(&self) -> String {
        let mut out = String::new();
        for (k, v) in [
            ("prefix", &self.prefix),
            ("q", &self.q),
            ("status", &self.status),
        ] {
            if let Some(v) = v {
                out.push_str(&format!("&{k}={}", query_encode(v)));
            }
        }
        out
    }
}

pub fn status_name(status: &Status) -> &'static str {
    match status {
        Status::Published(_) => "published",
        Status::Queued => "queued",
        Status::Hashing { .. } => "hashing",
        Status::Failed(_) => "failed",
    }
}

/// A query parameter value, percent-encoded but for RFC 3986's unreserved characters.
pub fn query_encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, super::UNRESERVED_KEPT).to_string()
}

/// One page of the catalog as JSON (an array, in name order), with `X-Total-Count` (entries
/// matching the filters), a `Link: <…>; rel="next"` while there are more, and an ETag, so a page
/// polling for changes gets a 304 when nothing changed.
pub async fn list(
    state: web::Data<WebState>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    let page = query.page(&state.registry);
    let list: Vec<TorrentJson> = page
        .entries
        .iter()
        .map(|(name, status)| entry_json(&state, &req, name, status))
        .collect();
    let body = serde_json::to_vec(&list).unwrap_or_default();
    let mut builder = HttpResponse::Ok();
    state.link_headers(&mut builder, super::PAGE_MAX_AGE);
    builder.insert_header(("X-Total-Count", page.total.to_string()));
    if let Some(last) = page.next {
        builder.insert_header((
            header::LINK,
            format!(
                "</api/torrents?limit={}&after={}{}>; rel=\"next\"",
                query.limit(),
                query_encode(&last),
                query.filter_params()
            ),
        ));
    }
    super::respond_with_etag(&req, builder, "application/json", body, true)
}

pub async fn one(
    state: web::Data<WebState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    match state
        .registry
        .by_hex(&path.into_inner().to_ascii_lowercase())
    {
        Some(p) => {
            let mut builder = HttpResponse::Ok();
            state.link_headers(&mut builder, super::PAGE_MAX_AGE);
            let entry = entry_json(&state, &req, &p.name, &Status::Published(p.clone()));
            let body = serde_json::to_vec(&entry).unwrap_or_default();
            super::respond_with_etag(&req, builder, "application/json", body, true)
        }
        None => super::error::not_found(&req, "no published torrent has this info hash"),
    }
}
