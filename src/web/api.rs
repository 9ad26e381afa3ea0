//! `GET /api/torrents` and `GET /api/torrents/{info_hash}`.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::WebState;
use crate::catalog::Status;

#[derive(Serialize)]
pub struct TorrentJson {
    pub name: String,
    pub path: String,
    /// "hashing", "published" or "failed".
    pub status: &'static str,
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
}

pub fn entry_json(state: &WebState, req: &HttpRequest, name: &str, status: &Status) -> TorrentJson {
    let mut j = TorrentJson {
        name: name.to_owned(),
        path: name.to_owned(),
        status: "hashing",
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
    };
    match status {
        Status::Hashing { total, done } => {
            j.size = *total;
            j.progress = done.load(Ordering::Relaxed) as f64 / (*total).max(1) as f64;
        }
        Status::Failed(why) => {
            j.status = "failed";
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
        }
    }
    j
}

pub async fn list(state: web::Data<WebState>, req: HttpRequest) -> HttpResponse {
    let list: Vec<TorrentJson> = state
        .registry
        .entries()
        .iter()
        .map(|(name, status)| entry_json(&state, &req, name, status))
        .collect();
    let mut builder = HttpResponse::Ok();
    state.link_headers(&mut builder);
    builder.json(list)
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
            state.link_headers(&mut builder);
            builder.json(entry_json(
                &state,
                &req,
                &p.name,
                &Status::Published(p.clone()),
            ))
        }
        None => HttpResponse::NotFound().json(serde_json::json!({"error": "unknown info hash"})),
    }
}
