//! `GET /files/{path}`: the published files themselves, the BEP 19 web seed of every v1, v2 and
//! hybrid torrent. Only files listed in a published torrent are served, from the disk path the
//! catalog recorded, so no request path can reach outside the content folder (`..`, encoded
//! dots, absolute paths, hidden files and symlinks never match a listed file).

use std::sync::atomic::Ordering;

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::{torrent_file, WebState};
use crate::catalog::{Published, PublishedFile};

pub async fn get(state: web::Data<WebState>, req: HttpRequest) -> HttpResponse {
    let rel = req.match_info().query("path").to_owned();
    let wants_torrent = req
        .query_string()
        .split('&')
        .any(|kv| kv == "torrent" || kv.starts_with("torrent="));
    let (entry, rest) = match rel.split_once('/') {
        Some((e, r)) => (e, Some(r)),
        None => (rel.as_str(), None),
    };
    let Some(p) = state.registry.published(entry) else {
        return not_found();
    };
    if wants_torrent {
        return torrent_file::respond(&state, &req, &p);
    }
    match rest {
        None if p.meta.single_file => serve_file(&state, &req, &p, 0).await,
        None | Some("") if !p.meta.single_file => listing(&state, &req, &p),
        Some(rest) if !p.meta.single_file => {
            let wanted: Vec<&str> = rest.split('/').collect();
            let Some(i) = p.meta.files.iter().position(|f| f.path == wanted) else {
                return not_found();
            };
            if p.meta.files[i].pad {
                // BEP 47 pad files: aria2 and Transmission fetch them from web seeds as if real.
                zeros(&req, p.meta.files[i].length)
            } else {
                serve_file(&state, &req, &p, i).await
            }
        }
        _ => not_found(),
    }
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().body("not found\n")
}

async fn serve_file(
    state: &WebState,
    req: &HttpRequest,
    p: &Published,
    index: usize,
) -> HttpResponse {
    let Some(Some(file)) = p.files.get(index) else {
        return not_found();
    };
    let file: PublishedFile = file.clone();
    let root = p.disk.clone();
    let single = p.meta.single_file;
    let disk = file.disk.clone();
    let checked = web::block(move || -> Option<std::fs::Metadata> {
        // The bytes must still be the ones the torrent was made from, and still inside the entry.
        let meta = std::fs::symlink_metadata(&file.disk).ok()?;
        if !meta.file_type().is_file()
            || meta.len() != file.length
            || meta.modified().ok() != file.mtime
        {
            return None;
        }
        if !single {
            let canon_root = std::fs::canonicalize(&root).ok()?;
            let canon = std::fs::canonicalize(&file.disk).ok()?;
            if !canon.starts_with(&canon_root) {
                return None;
            }
        }
        Some(meta)
    })
    .await
    .ok()
    .flatten();
    let Some(meta) = checked else {
        return not_found();
    };
    let len = meta.len();
    let modified = meta.modified().ok();
    let etag = {
        use std::os::unix::fs::MetadataExt;
        format!(
            "\"{:x}-{:x}-{:x}\"",
            meta.ino(),
            len,
            meta.mtime_nsec() ^ meta.mtime()
        )
    };
    let last_modified = modified.map(|m| header::HttpDate::from(m).to_string());

    // Validators: If-None-Match first, then If-Modified-Since (RFC 9110 section 13.2.2).
    let h = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let not_modified = match h(header::IF_NONE_MATCH) {
        Some(v) => v.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
        None => h(header::IF_MODIFIED_SINCE).is_some_and(|v| Some(v) == last_modified.as_deref()),
    };
    let mut builder = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    builder
        .insert_header((header::ETAG, etag.clone()))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    if let Some(lm) = &last_modified {
        builder.insert_header((header::LAST_MODIFIED, lm.clone()));
    }
    if not_modified {
        return builder.finish();
    }
    // A Range counts only if If-Range (when sent) still names this version of the file.
    let if_range_ok =
        h(header::IF_RANGE).is_none_or(|v| v == etag || Some(v) == last_modified.as_deref());
    let range = h(header::RANGE)
        .filter(|_| if_range_ok)
        .and_then(|v| parse_range(v, len));
    let (start, end) = match range {
        Some((s, e)) => {
            builder
                .status(actix_web::http::StatusCode::PARTIAL_CONTENT)
                .insert_header((header::CONTENT_RANGE, format!("bytes {s}-{}/{len}", e - 1)));
            (s, e)
        }
        None => (0, len),
    };
    builder
        .content_type("application/octet-stream")
        .no_chunking(end - start);
    if req.method() == Method::HEAD {
        return builder.finish();
    }
    let mut f = match tokio::fs::File::open(&disk).await {
        Ok(f) => f,
        Err(_) => return not_found(),
    };
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    if f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return not_found();
    }
    state.file_bytes.fetch_add(end - start, Ordering::Relaxed);
    let body = tokio_util::io::ReaderStream::with_capacity(f.take(end - start), 256 * 1024);
    builder.streaming(body)
}

/// `len` zero bytes, honouring one `Range`.
fn zeros(req: &HttpRequest, len: u64) -> HttpResponse {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len));
    let (start, end, mut builder) = match range {
        Some((s, e)) => {
            let mut b = HttpResponse::PartialContent();
            b.insert_header((header::CONTENT_RANGE, format!("bytes {s}-{}/{len}", e - 1)));
            (s, e, b)
        }
        None => (0, len, HttpResponse::Ok()),
    };
    builder
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .content_type("application/octet-stream")
        .no_chunking(end - start);
    if req.method() == Method::HEAD {
        return builder.finish();
    }
    let mut left = end - start;
    let chunks = std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(ZEROS.len() as u64) as usize;
        left -= n as u64;
        Some(Ok::<_, std::convert::Infallible>(Bytes::from_static(
            &ZEROS[..n],
        )))
    });
    builder.streaming(futures_util::stream::iter(chunks))
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range within `len`, as a half-open range.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len)
        }
        (a, "") => (a.parse().ok()?, len),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.saturating_add(1).min(len),
        ),
    };
    (start < end && start < len).then_some((start, end))
}

fn listing(state: &WebState, req: &HttpRequest, p: &Published) -> HttpResponse {
    let base = state.base_url(req);
    let mut html = format!(
        "<!doctype html><meta charset=utf-8><title>{0}</title><h1>{0}</h1><ul>",
        super::page::escape(&p.meta.name)
    );
    for f in p.meta.files.iter().filter(|f| !f.pad) {
        let rel = f.display_path();
        html.push_str(&format!(
            "<li><a href=\"{base}/files/{}/{}\">{}</a> ({} bytes)</li>",
            super::encode_path(&p.name),
            super::encode_path(&rel),
            super::page::escape(&rel),
            f.length
        ));
    }
    html.push_str("</ul>");
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
