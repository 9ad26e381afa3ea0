//! .torrent downloads. The announce URL and the BEP 19 web seed are outside the info dict, so
//! they are filled in per request (from `public_url` or the Host) without changing the info hash.

use actix_web::http::header;
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

/// The torrent file for `p` as this request should see it.
pub fn respond(state: &WebState, req: &HttpRequest, p: &Published) -> HttpResponse {
    let links = state.links(req, p);
    let web_seeds = if p.meta.format == Format::Merkle {
        Vec::new()
    } else {
        vec![links.web_seed]
    };
    let bytes = p.meta.to_bytes_with(&[vec![links.announce]], &web_seeds);
    let mut builder = HttpResponse::Ok();
    state.link_headers(&mut builder, super::BY_NAME);
    builder.insert_header((
        header::CONTENT_DISPOSITION,
        super::attachment(&format!("{}.torrent", p.meta.name)),
    ));
    super::respond_with_etag(req, builder, "application/x-bittorrent", bytes, false)
}
