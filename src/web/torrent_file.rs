//! .torrent downloads. The announce URL and the BEP 19 web seed are outside the info dict, so
//! they are filled in per request (from `public_url` or the Host; in cluster mode every live
//! node's, see `WebState::mirrors`) without changing the info hash.
//! `/latest/{name}.torrent` and `/latest/{name}.magnet` are the links to give out for good: by
//! name, they follow each new version of the file.

use std::sync::atomic::Ordering;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::WebState;
use crate::catalog::Published;
use crate::metainfo::Format;

pub async fn get(
    state: web::Data<WebState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    match state.registry.published(&name) {
        Some(p) => respond(&state, &req, &p),
        None => super::error::not_found(&req, "no published torrent has this name"),
    }
}

/// `/latest/{name}.torrent`: the current torrent of `name`, served here rather than redirected
/// (one request, and no client has to follow a redirect; it is cached and revalidated as every
/// .torrent is). `/latest/{name}.magnet`: a redirect to its magnet link, the only way a URL can
/// lead to one.
pub async fn latest(state: web::Data<WebState>, req: HttpRequest) -> HttpResponse {
    let torrent = super::raw_tail(&req, "/latest/", ".torrent");
    let magnet = super::raw_tail(&req, "/latest/", ".magnet");
    let published =
        |name: &Option<String>| name.as_deref().and_then(|n| state.registry.published(n));
    if let Some(p) = published(&torrent) {
        return respond(&state, &req, &p);
    }
    if let Some(p) = published(&magnet) {
        let mut builder = HttpResponse::Found();
        // The magnet names this version: a cache must ask again each time.
        state.link_headers(&mut builder, super::BY_NAME);
        return builder
            .insert_header((header::LOCATION, state.links(&req, &p).magnet))
            .finish();
    }
    super::error::not_found(
        &req,
        "nothing is published under this name (links here are /latest/NAME.torrent and \
         /latest/NAME.magnet)",
    )
}

/// The torrent file for `p` as this request should see it; a GET answered in full counts as a
/// fetch of it.
pub fn respond(state: &WebState, req: &HttpRequest, p: &Published) -> HttpResponse {
    let links = state.links(req, p);
    let web_seeds = if p.meta.format == Format::Merkle {
        Vec::new()
    } else {
        links.web_seeds
    };
    // The WebSocket tracker in a tier of its own: a client that cannot speak it tries it
    // only after the HTTP tracker (BEP 12), WebTorrent announces to both.
    let mut tiers = vec![links.trackers];
    tiers.extend(links.ws_announce.map(|ws| vec![ws]));
    // BEP 27: a private torrent names no DHT node.
    let nodes: Vec<(String, u16)> = match state.dht_port {
        Some(port) if !p.meta.private => host_of(&state.base_url(req))
            .map(|h| vec![(h, port)])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let bytes = p.meta.to_bytes_with_nodes(&tiers, &web_seeds, &nodes);
    let mut builder = HttpResponse::Ok();
    state.link_headers(&mut builder, super::BY_NAME);
    builder.insert_header((
        header::CONTENT_DISPOSITION,
        super::attachment(&format!("{}.torrent", p.meta.name)),
    ));
    let res = super::respond_with_etag(req, builder, "application/x-bittorrent", bytes, false);
    if res.status() == StatusCode::OK && req.method() == Method::GET {
        state
            .downloads
            .of(&p.name)
            .torrent_fetches
            .fetch_add(1, Ordering::Relaxed);
    }
    res
}

/// The host of a base URL (`http://host:port`), without brackets for IPv6.
fn host_of(base: &str) -> Option<String> {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts_of_base_urls() {
        assert_eq!(
            host_of("http://127.0.0.1:8080").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            host_of("https://example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_of("http://[::1]:80").as_deref(), Some("::1"));
        assert_eq!(host_of("http://:80"), None);
    }
}
