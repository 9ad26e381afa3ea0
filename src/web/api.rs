//! `GET /api/torrents`, `GET /api/torrents/{info_hash}` and `GET /api/torrents/by-name/{name}`.
//! Visitors see published entries only; the publisher (`admin::is_admin`) sees every entry.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::WebState;
use crate::catalog::{Published, Registry, Status};
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
    /// As a scrape counts them: bitseed's own seed is one of the seeders.
    pub seeders: u64,
    pub leechers: u64,
    pub completed: u64,
    /// People in the swarm now (downloading or seeding), bitseed's own seed left out.
    pub people_sharing: u64,
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
    /// The SHA-256 of the file, for an entry that is one file (`file_list` has a folder's),
    /// once known.
    pub sha256: Option<String>,
    /// When this version was published (RFC 3339, UTC).
    pub published_at: Option<String>,
    /// .torrent files sent for this name, and files of it downloaded whole over HTTP (not by
    /// BitTorrent clients), over every version and across restarts.
    pub torrent_fetches: u64,
    pub direct_downloads: u64,
    /// Every file with its size and SHA-256: in the answers about one entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_list: Option<Vec<FileJson>>,
}

#[derive(Serialize)]
pub struct FileJson {
    /// The path under the torrent's folder (a single file: its name).
    pub path: String,
    pub size: u64,
    /// `null` until known.
    pub sha256: Option<String>,
}

pub fn entry_json(state: &WebState, req: &HttpRequest, name: &str, status: &Status) -> TorrentJson {
    let place = state.registry.queue_place(name);
    let (torrent_fetches, direct_downloads) = state.downloads.get(name);
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
        people_sharing: 0,
        progress: 0.0,
        error: None,
        sent_peer: 0,
        sent_web_seed: 0,
        sent_direct: 0,
        direct_completed: 0,
        copies_sent: 0.0,
        offload: None,
        sha256: None,
        published_at: None,
        torrent_fetches,
        direct_downloads,
        file_list: None,
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
            j.people_sharing = (counts.seeders + counts.leechers)
                .saturating_sub(u64::from(counts.own_seed) + counts.node_seeds);
            j.progress = 1.0;
            let o = &p.offload;
            j.sent_peer = o.sent_on(Channel::Peer);
            j.sent_web_seed = o.sent_on(Channel::WebSeed);
            j.sent_direct = o.sent_on(Channel::Direct);
            j.direct_completed = o.direct_completed.load(Ordering::Relaxed);
            j.copies_sent = o.total() as f64 / j.size.max(1) as f64;
            j.offload =
                (o.total() > 0).then(|| (j.completed + j.direct_completed) as f64 / j.copies_sent);
            j.published_at = Some(crate::units::rfc3339(p.published_at));
            if p.meta.single_file {
                j.sha256 = p.file_sha256.get().and_then(|d| d.first()).map(hex::encode);
            }
        }
    }
    j
}

/// Every file of `p` with its size and SHA-256 (when known), pad files left out.
pub fn file_list(p: &Published) -> Vec<FileJson> {
    let digests = p.file_sha256.get();
    p.meta
        .files
        .iter()
        .filter(|f| !f.pad)
        .enumerate()
        .map(|(i, f)| FileJson {
            path: f.display_path(),
            size: f.length,
            sha256: digests.and_then(|d| d.get(i)).map(hex::encode),
        })
        .collect()
}

/// How a list is ordered: by name (A to Z), by date (newest first) or by size (largest first).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    #[default]
    Name,
    Date,
    Size,
}

impl Sort {
    pub fn param(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Date => "date",
            Sort::Size => "size",
        }
    }

    /// The entry's place in a date or size order (smallest first): newest and largest first.
    /// Entries not published yet (the publisher's view) come before all by date: they are
    /// newer than anything published.
    fn key(self, status: &Status) -> Reverse<u64> {
        Reverse(match (self, status) {
            (Sort::Date, Status::Published(p)) => p.published_at.max(0) as u64,
            (Sort::Date, _) => u64::MAX,
            (_, Status::Published(p)) => p.meta.total_size(),
            (_, Status::Hashing { total, .. }) => *total,
            _ => 0,
        })
    }
}

/// `GET /api/torrents` query (the page's too): a page of the catalog, by name unless `sort`
/// says otherwise.
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
    /// Only entries with this status: `published`, `queued`, `hashing` or `failed` (all but
    /// `published` only in the publisher's view).
    pub status: Option<String>,
    /// `name` (the default), `date` (newest first) or `size` (largest first). Ordered by date or
    /// size, `after` is the `next` cursor the previous page gave.
    pub sort: Option<Sort>,
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
    /// the next page when there may be one. Published entries only, unless `everything` (the
    /// publisher's view).
    pub fn page(&self, registry: &Registry, everything: bool) -> Page {
        let limit = self.limit();
        // Lowered once, not once per entry scanned.
        let q = self
            .q
            .as_deref()
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase);
        let keeps = |name: &str, status: &Status| {
            (everything || matches!(status, Status::Published(_)))
                && self.prefix.as_deref().is_none_or(|p| name.starts_with(p))
                && q.as_deref().is_none_or(|q| name.to_lowercase().contains(q))
                && self
                    .status
                    .as_deref()
                    .is_none_or(|want| status_name(status) == want)
        };
        let sort = self.sort.unwrap_or_default();
        let (entries, total) = match sort {
            Sort::Name => registry.page(self.after.as_deref(), limit, keeps),
            _ => {
                // The cursor is `KEY:NAME`; one that does not parse starts from the top.
                let after = self.after.as_deref().and_then(|a| {
                    let (k, name) = a.split_once(':')?;
                    Some((Reverse(k.parse::<u64>().ok()?), name))
                });
                registry.page_by(|s| sort.key(s), after, limit, keeps)
            }
        };
        let next = (entries.len() == limit)
            .then(|| entries.last())
            .flatten()
            .map(|(n, s)| match sort {
                Sort::Name => n.clone(),
                _ => format!("{}:{n}", sort.key(s).0),
            });
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
        if let Some(sort) = self.sort.filter(|s| *s != Sort::Name) {
            out.push_str(&format!("&sort={}", sort.param()));
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
    let admin = super::admin::is_admin(&state, &req);
    let page = query.page(&state.registry, admin);
    let list: Vec<TorrentJson> = page
        .entries
        .iter()
        .map(|(name, status)| entry_json(&state, &req, name, status))
        .collect();
    let body = serde_json::to_vec(&list).unwrap_or_default();
    let mut builder = HttpResponse::Ok();
    state.view_headers(&mut builder, admin);
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
        Some(p) => one_entry(&state, &req, &p.name, &Status::Published(p.clone())),
        None => super::error::not_found(&req, "no published torrent has this info hash"),
    }
}

/// `GET /api/torrents/by-name/{name}`: the entry published under `name`, whatever its info hash
/// is now: what a link that must survive new versions of a file asks for.
pub async fn by_name(state: web::Data<WebState>, req: HttpRequest) -> HttpResponse {
    let name = super::raw_tail(&req, "/api/torrents/by-name/", "");
    let admin = super::admin::is_admin(&state, &req);
    match name.and_then(|n| state.registry.status(&n).map(|s| (n, s))) {
        Some((name, status)) if admin || matches!(status, Status::Published(_)) => {
            one_entry(&state, &req, &name, &status)
        }
        _ => super::error::not_found(&req, "nothing is published under this name"),
    }
}

/// One entry as JSON, with its file list.
fn one_entry(state: &WebState, req: &HttpRequest, name: &str, status: &Status) -> HttpResponse {
    let mut entry = entry_json(state, req, name, status);
    if let Status::Published(p) = status {
        entry.file_list = Some(file_list(p));
    }
    let body = serde_json::to_vec(&entry).unwrap_or_default();
    let mut builder = HttpResponse::Ok();
    // An entry not published is the publisher's to see alone.
    let private = !matches!(status, Status::Published(_));
    state.view_headers(&mut builder, private);
    super::respond_with_etag(req, builder, "application/json", body, true)
}
