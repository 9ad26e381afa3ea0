//! `/metrics` (Prometheus text) and `/healthz`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::WebState;
use crate::egress::Channel;

pub async fn metrics(state: web::Data<WebState>) -> HttpResponse {
    // Counted under the registry's lock, not by copying every entry out of it.
    let (published, hashing, _failed, queued) = state.registry.counts();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "bitseed_torrents",
        "gauge",
        "Published torrents.",
        published as u64,
    );
    metric(
        "bitseed_hashing_backlog",
        "gauge",
        "Entries being hashed.",
        hashing as u64,
    );
    metric(
        "bitseed_catalog_queued",
        "gauge",
        "New entries waiting for their turn to be hashed.",
        queued as u64,
    );
    metric(
        "bitseed_hashed_bytes_total",
        "counter",
        "Bytes hashed since start.",
        state.registry.hashed_bytes.load(Ordering::Relaxed),
    );
    metric(
        "bitseed_http_file_bytes_total",
        "counter",
        "Bytes sent over HTTP from /files (web seed and direct downloads).",
        state.egress.sent_on(Channel::WebSeed) + state.egress.sent_on(Channel::Direct),
    );
    // Descriptors in use against the limit: the seeder's accept errors are counted, but the HTTP
    // listener's are handled inside actix (a logged error and a half-second pause), so this is
    // how an operator sees the process nearing its limit.
    let open_files = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    metric(
        "bitseed_open_files",
        "gauge",
        "File descriptors open (sockets, content files, stores).",
        open_files,
    );
    metric(
        "bitseed_open_files_limit",
        "gauge",
        "The process's limit on open file descriptors.",
        crate::storage::open_files_limit(),
    );
    metric(
        "bitseed_content_files_open",
        "gauge",
        "Content files held open by the descriptor pool.",
        crate::storage::FilePool::global().len() as u64,
    );
    out.push_str(&state.requests.metrics());
    out.push_str(&state.swarm.metrics());
    // Live values: a scraper must never be handed a cached copy.
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::VARY, "Accept-Encoding"))
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain")
        .body("ok\n")
}
