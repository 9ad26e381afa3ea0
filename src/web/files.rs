//! `GET /files/{path}`: the published files themselves, the BEP 19 web seed of every v1, v2 and
//! hybrid torrent. Only files listed in a published torrent are served, through the torrent's
//! `Content`: opened beneath the content folder with no link followed, checked against the
//! identity each file had when hashed, and checked again after every chunk read, so a file
//! swapped for a link, replaced or rewritten is never streamed (a download in progress is cut
//! off instead). No request path reaches the file system: it only selects a listed file.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::body::SizedStream;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::range::{if_range_holds, none_match, parse_range, Ranged};
use super::{torrent_file, WebState};
use crate::catalog::Published;
use crate::egress::{is_bittorrent_client, Channel};
use crate::storage::StorageError;

/// One read from disk and one piece of a response body: small, so a download that stalls holds
/// little memory.
const CHUNK: usize = 64 * 1024;
/// File bytes read for HTTP clients and not yet taken by their sockets, over all downloads:
/// past it, downloads wait for others to drain instead of reading more.
const BUFFERED_MAX: usize = 64 << 20;

/// Whether the query has the flag `name` (`?name`, `?name=…`, among other parameters).
fn has_flag(req: &HttpRequest, name: &str) -> bool {
    req.query_string()
        .split('&')
        .any(|kv| kv == name || kv.strip_prefix(name).is_some_and(|r| r.starts_with('=')))
}

pub async fn get(state: web::Data<WebState>, req: HttpRequest) -> HttpResponse {
    let not_found = || super::error::not_found(&req, "nothing is published at this address");
    let wants_torrent = has_flag(&req, "torrent");
    // Segments from the raw path, each percent-decoded once, so a name with `%` (or any byte
    // that needs escaping) matches at the URL the API gives.
    let raw = req.uri().path().strip_prefix("/files/").unwrap_or("");
    let mut segments = Vec::new();
    for s in raw.split('/') {
        match percent_encoding::percent_decode_str(s).decode_utf8() {
            Ok(s) => segments.push(s.into_owned()),
            Err(_) => return not_found(),
        }
    }
    let Some(entry) = segments.first() else {
        return not_found();
    };
    let Some(p) = state.registry.published(entry) else {
        return not_found();
    };
    if wants_torrent {
        return torrent_file::respond(&state, &req, &p);
    }
    let rest = &segments[1..];
    if p.meta.single_file {
        return match rest {
            [] => serve_file(state, &req, p, 0).await,
            _ => not_found(),
        };
    }
    match rest {
        [] | [_] if rest.first().is_none_or(|s| s.is_empty()) => listing(&state, &req, &p),
        wanted => {
            let Some(i) = p.meta.files.iter().position(|f| f.path == wanted) else {
                return not_found();
            };
            serve_file(state, &req, p, i).await
        }
    }
}

/// The `Content-Type` of a served file, from its name as nginx's `mime.types` does; unknown
/// names are `application/octet-stream`.
fn content_type(name: &str) -> mime_guess::Mime {
    mime_guess::from_path(name).first_or_octet_stream()
}

/// Types a browser would run script in (HTML, SVG, XML): served in a sandbox, so a published
/// page cannot act as this site (read the API, or the admin view) in a visitor's browser.
fn is_active(mime: &mime_guess::Mime) -> bool {
    let essence = mime.essence_str();
    essence == "text/html"
        || essence == "image/svg+xml"
        || essence.ends_with("/xml")
        || essence.ends_with("+xml")
}

/// The whole file, a range of it, or a 304/416, with validators that name the torrent's version
/// of the file (not its inode).
async fn serve_file(
    state: web::Data<WebState>,
    req: &HttpRequest,
    p: Arc<Published>,
    index: usize,
) -> HttpResponse {
    let not_found = || super::error::not_found(req, "nothing is published at this address");
    let Some(lf) = p.content.layout().files.get(index) else {
        return not_found();
    };
    let len = lf.length;
    let pad = lf.pad || len == 0;
    // BitTorrent clients fetching the web seed come after the peer wire in the budget; people
    // downloading directly have a share of their own (see `egress`).
    let channel = channel_of(req);
    // A web seed client under a limited budget: its address, to see whether it is (or joins)
    // the torrent's peer wire.
    let wire_ip = (channel == Channel::WebSeed && state.egress.limited())
        .then(|| super::client_ip(req, &state.proxies))
        .flatten();
    // Such a client's address if it asks for the file: when it is on the peer wire, the swarm
    // serves it (`swarm_serves`).
    let wire_get = wire_ip.filter(|_| req.method() == Method::GET);
    if let Some(ip) = wire_get {
        if let Some(pieces) = requested_pieces(req, p.content.layout().piece_length, lf) {
            p.offload
                .claim_web_seed(ip, pieces, std::time::Instant::now());
        }
        // A client not there yet is given a moment to arrive (`Offload::on_wire_soon`).
        if p.offload.on_wire_soon(ip, crate::egress::WIRE_GRACE).await {
            return swarm_serves(req, &p.name, ip);
        }
    }
    // The file must still be the one hashed: checked on the descriptor that will be read.
    if !pad {
        let content = p.content.clone();
        match web::block(move || content.check_file(index)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!("not serving `{}` over HTTP: {e}", p.name);
                return super::error::not_found(
                    req,
                    "this file changed since it was published; its new version is being hashed",
                );
            }
            Err(_) => {
                return super::error::respond(
                    req,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the file could not be checked; try again",
                )
            }
        }
    }
    let modified = p.content.file(index).and_then(|(_, id)| id.mtime);
    let etag = format!(
        "\"{}-{index}\"",
        hex::encode(&p.wire_hash().as_bytes()[..8])
    );
    let last_modified = modified.map(|m| header::HttpDate::from(m).to_string());

    let h = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    // If-None-Match first, then If-Modified-Since (RFC 9110 section 13.2.2).
    let not_modified = match h(header::IF_NONE_MATCH) {
        Some(v) => none_match(v, &etag),
        None => h(header::IF_MODIFIED_SINCE).is_some_and(|v| Some(v) == last_modified.as_deref()),
    };
    let mut builder = HttpResponse::Ok();
    builder
        .insert_header((header::ETAG, etag.clone()))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CACHE_CONTROL, format!("public, {}", super::BY_NAME)));
    if let Some(lm) = &last_modified {
        builder.insert_header((header::LAST_MODIFIED, lm.clone()));
    }
    if not_modified {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    // A Range counts only if If-Range (when sent) still names this version of the file.
    let ranged = match h(header::RANGE) {
        Some(r)
            if h(header::IF_RANGE)
                .is_none_or(|v| if_range_holds(v, &etag, last_modified.as_deref())) =>
        {
            parse_range(r, len)
        }
        _ => Ranged::Whole,
    };
    let (start, end) = match ranged {
        Ranged::Whole => (0, len),
        Ranged::Part(s, e) => {
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .insert_header((header::CONTENT_RANGE, format!("bytes {s}-{}/{len}", e - 1)));
            (s, e)
        }
        Ranged::Unsatisfiable => {
            let accept = h(header::ACCEPT);
            builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")));
            return super::error::render(
                &mut builder,
                super::error::Form::of(req.path(), accept),
                StatusCode::RANGE_NOT_SATISFIABLE,
                &format!("the range starts at or past the end of this {len}-byte file"),
            );
        }
    };
    // The file's own name gives its type, so a PDF or a video opens in the browser; `?download`
    // (the page's link) saves it instead.
    let file_name = match p.meta.files.get(index) {
        Some(f) if !p.meta.single_file => f.path.last().cloned().unwrap_or_default(),
        _ => p.meta.name.clone(),
    };
    let mime = content_type(&file_name);
    builder
        .content_type(mime.as_ref())
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if is_active(&mime) {
        builder.insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"));
    }
    if has_flag(req, "download") {
        builder.insert_header((header::CONTENT_DISPOSITION, super::attachment(&file_name)));
    }
    // libtorrent opens its web seed and its peer connection at once: the client may have
    // reached the peer wire while the file was checked. Turned away now, it waits out
    // `Retry-After`; an answer cut later makes it ask again at once, for another 16 MiB.
    if let Some(ip) = wire_get.filter(|ip| p.offload.on_wire(*ip)) {
        return swarm_serves(req, &p.name, ip);
    }
    if req.method() == Method::HEAD {
        // A sized empty stream: actix sends the length GET would, and no body.
        return sized(&mut builder, end - start, futures_util::stream::empty());
    }
    tracing::debug!(
        file = %p.name,
        start,
        end,
        channel = channel.name(),
        user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        "file download"
    );
    let whole = start == 0 && end == len;
    let body = file_stream(Reader {
        state: state.clone(),
        published: p,
        index,
        pos: start,
        end,
        channel,
        whole,
        wire_ip,
        handed: 0,
    });
    sized(&mut builder, end - start, body)
}

/// The answer to a web seed request from a client on the torrent's peer wire while the
/// publisher's budget is limited: it reaches the seeder's peer port, where every piece it gets
/// is passed on, so the web seed would only spend the budget twice. Not a slowed answer: a
/// web seed client holds the pieces it asked for (libtorrent: up to 16 MiB at once) and asks
/// no one else for them. libtorrent stops asking this web seed for the file (it has the peer
/// wire); clients that cannot reach the peer port are never on it, and get the web seed.
fn swarm_serves(req: &HttpRequest, name: &str, ip: std::net::IpAddr) -> HttpResponse {
    tracing::debug!(%ip, file = name, "web seed request from a peer on the wire: 503");
    let mut res = super::error::respond(
        req,
        StatusCode::SERVICE_UNAVAILABLE,
        "this client is connected to the seeder's peer port: the swarm serves it this file",
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("120"));
    res
}

/// The torrent's pieces a web-seed request covers: its byte range of the file (the whole file
/// without one), placed at the file's offset in the torrent.
fn requested_pieces(
    req: &HttpRequest,
    piece_length: u64,
    lf: &crate::storage::LayoutFile,
) -> Option<std::ops::Range<u32>> {
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Ranged::Whole, |v| parse_range(v, lf.length));
    let (start, end) = match range {
        Ranged::Whole => (0, lf.length),
        Ranged::Part(s, e) => (s, e),
        Ranged::Unsatisfiable => return None,
    };
    if end <= start || piece_length == 0 {
        return None;
    }
    let first = (lf.offset + start) / piece_length;
    let last = (lf.offset + end).div_ceil(piece_length);
    Some(u32::try_from(first).ok()?..u32::try_from(last).unwrap_or(u32::MAX))
}

/// Whether a request is a BitTorrent client's (the web seed) or anyone else's (a direct
/// download): by its User-Agent, or by what the connection's first request said (clients may
/// send it only once per connection).
fn channel_of(req: &HttpRequest) -> Channel {
    use super::limits::ConnClient;
    use std::sync::atomic::Ordering::Relaxed;
    let remembered = req.conn_data::<ConnClient>();
    let said = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| {
            if is_bittorrent_client(ua) {
                ConnClient::BITTORRENT
            } else {
                ConnClient::OTHER
            }
        });
    let class = match (said, remembered) {
        (Some(c), Some(r)) => {
            r.0.store(c, Relaxed);
            c
        }
        (Some(c), None) => c,
        (None, Some(r)) => r.0.load(Relaxed),
        (None, None) => ConnClient::UNKNOWN,
    };
    if class == ConnClient::BITTORRENT {
        Channel::WebSeed
    } else {
        Channel::Direct
    }
}

fn sized<S>(builder: &mut HttpResponseBuilder, len: u64, body: S) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<Bytes, StorageError>> + 'static,
{
    builder.body(SizedStream::new(len, body))
}

/// Budget of buffered file bytes (in KiB permits) shared by every download.
fn buffered() -> Arc<Semaphore> {
    static BUDGET: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    BUDGET
        .get_or_init(|| Arc::new(Semaphore::new(BUFFERED_MAX / 1024)))
        .clone()
}

/// A chunk of file data that gives its share of the budget back once the socket has taken it.
struct Chunk {
    data: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

struct Reader {
    state: web::Data<WebState>,
    published: Arc<Published>,
    index: usize,
    pos: u64,
    end: u64,
    channel: Channel,
    /// The whole file was asked for: its end is a completed direct download.
    whole: bool,
    /// A web seed client's address while the budget is limited: the answer ends if it joins
    /// the torrent's peer wire (`swarm_serves`).
    wire_ip: Option<std::net::IpAddr>,
    /// Bytes of the last chunk handed out: counted as sent when the next one is asked for (the
    /// socket took it), so an aborted download counts what left, not what was asked.
    handed: u64,
}

impl Reader {
    fn count_handed(&mut self) {
        let n = std::mem::take(&mut self.handed);
        if n > 0 {
            self.state.egress.sent(self.channel, n);
            self.published.offload.sent(self.channel, n);
        }
    }
}

/// The reader's `pos..end` of its file, read a chunk at a time on the blocking pool, each chunk
/// checked against the file's identity after it is read and granted by the publisher's budget
/// on its channel before it is read.
fn file_stream(reader: Reader) -> impl futures_util::Stream<Item = Result<Bytes, StorageError>> {
    futures_util::stream::unfold(reader, |mut r| async move {
        r.count_handed();
        if r.pos >= r.end {
            if r.whole && r.channel == Channel::Direct {
                r.published
                    .offload
                    .direct_completed
                    .fetch_add(1, Ordering::Relaxed);
                r.state
                    .downloads
                    .of(&r.published.name)
                    .direct_downloads
                    .fetch_add(1, Ordering::Relaxed);
            }
            return None;
        }
        let n = (r.end - r.pos).min(CHUNK as u64) as usize;
        if let Some(ip) = r.wire_ip.filter(|ip| r.published.offload.on_wire(*ip)) {
            // The client joined the peer wire since it asked: what it has is kept (clients
            // resume a cut piece), the rest comes from the swarm.
            tracing::debug!(%ip, file = %r.published.name, at = r.pos, "web seed answer ended: the client is on the peer wire");
            r.pos = r.end;
            r.whole = false;
            let source = std::io::Error::other("the client joined the peer wire");
            let path = r.published.name.clone().into();
            return Some((Err(StorageError::Io { path, source }), r));
        }
        r.state.egress.wait_for(r.channel, n as u64).await;
        let permit = buffered()
            .acquire_many_owned(n.div_ceil(1024) as u32)
            .await
            .ok()?;
        let (content, index, pos) = (r.published.content.clone(), r.index, r.pos);
        let read = tokio::task::spawn_blocking(move || {
            let mut data = vec![0u8; n];
            content.read_file_at(index, pos, &mut data).map(|()| data)
        })
        .await;
        match read {
            Ok(Ok(data)) => {
                r.pos += n as u64;
                r.handed = n as u64;
                let chunk = Chunk {
                    data,
                    _permit: permit,
                };
                Some((Ok(Bytes::from_owner(chunk)), r))
            }
            Ok(Err(e)) => {
                tracing::warn!("download cut off: {e}");
                r.pos = r.end;
                r.whole = false;
                Some((Err(e), r))
            }
            Err(_) => None,
        }
    })
}

/// A folder's page: its files, each with its size, SHA-256 and a download link, in the page's
/// look.
fn listing(state: &WebState, req: &HttpRequest, p: &Published) -> HttpResponse {
    use super::page::{escape, STYLE};
    use crate::units::{count, human_size};
    let base = state.base_url(req);
    let digests = p.file_sha256.get();
    let mut items = String::new();
    for (i, f) in p.meta.files.iter().filter(|f| !f.pad).enumerate() {
        let rel = f.display_path();
        let href = format!(
            "{base}/files/{}/{}?download",
            super::encode_path(&p.name),
            super::encode_path(&rel)
        );
        let sum = digests
            .and_then(|d| d.get(i))
            .map_or("being computed".into(), |d| {
                format!("<code class=sha256>{}</code>", hex::encode(d))
            });
        items.push_str(&format!(
            "<li class=entry><div class=top><div class=what><h2>{}</h2>\
             <p class=facts><span>{}</span></p></div>\
             <div class=get><a class=\"btn main\" href=\"{}\">Download</a></div></div>\
             <p class=sum>SHA-256 {sum}</p></li>",
            escape(&rel),
            human_size(f.length),
            escape(&href),
        ));
    }
    let files = p.meta.files.iter().filter(|f| !f.pad).count();
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <meta name=color-scheme content=\"light dark\"><title>{name}</title>\
         <style>{STYLE}</style></head><body><main><p><a href=\"{home}\">← {title}</a></p>\
         <h1>{name}</h1><p class=count>{files}, {size}: the whole folder in one download with \
         <a href=\"{torrent}\">its .torrent</a></p><ul class=entries>{items}</ul></main>\
         </body></html>",
        name = escape(&p.meta.name),
        home = escape(&format!("{base}/")),
        title = escape(&state.title),
        files = count(files as u64, "file", "files"),
        size = human_size(p.meta.total_size()),
        torrent = escape(&state.links(req, p).torrent_url),
    );
    let mut builder = HttpResponse::Ok();
    state.link_headers(&mut builder, super::PAGE_MAX_AGE);
    builder.content_type("text/html; charset=utf-8").body(html)
}
