//! `GET /feed.atom`: the published entries, newest first, as an Atom feed (RFC 4287), so people
//! can follow releases in a feed reader. Each version of an entry is an entry of its own (its id
//! is its info hash), with the .torrent as its enclosure and the magnet, direct download and
//! stable links beside it.

use actix_web::{web, HttpRequest, HttpResponse};

use super::api::{ListQuery, Sort};
use super::WebState;
use crate::catalog::Status;
use crate::units::{count, human_size, rfc3339};

/// Entries in the feed: the newest.
const ENTRIES: usize = 50;

/// Text for XML: escaped, and with the characters XML 1.0 cannot hold at all (controls but
/// tab and line breaks, which a file name may have) replaced, so the feed always parses.
pub fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

pub async fn atom(state: web::Data<WebState>, req: HttpRequest) -> HttpResponse {
    let query = ListQuery {
        limit: Some(ENTRIES),
        sort: Some(Sort::Date),
        ..ListQuery::default()
    };
    let page = query.page(&state.registry, false);
    let base = state.base_url(&req);
    let mut newest = 0;
    let mut entries = String::new();
    for (name, status) in &page.entries {
        let Status::Published(p) = status else {
            continue;
        };
        newest = newest.max(p.published_at);
        let links = state.links(&req, p);
        let stable = super::encode_path(name);
        let id = match (p.meta.info_hash.v1, p.meta.info_hash.v2) {
            (Some(v1), _) => format!("urn:btih:{}", hex::encode(v1)),
            (None, Some(v2)) => format!("urn:btmh:1220{}", hex::encode(v2)),
            (None, None) => format!("{base}/latest/{stable}.torrent"),
        };
        let files = p.meta.files.iter().filter(|f| !f.pad).count();
        let mut summary = format!(
            "{}, {}",
            human_size(p.meta.total_size()),
            count(files as u64, "file", "files")
        );
        if let Some(d) = p.file_sha256.get().filter(|_| p.meta.single_file) {
            if let Some(first) = d.first() {
                summary.push_str(&format!(", SHA-256 {}", hex::encode(first)));
            }
        }
        let direct = if p.meta.single_file {
            format!("{}?download", links.download_url)
        } else {
            links.download_url.clone()
        };
        entries.push_str(&format!(
            "<entry><title>{title}</title><id>{id}</id><updated>{updated}</updated>\
             <published>{updated}</published>\
             <link rel=\"alternate\" type=\"text/html\" href=\"{page}\"/>\
             <link rel=\"enclosure\" type=\"application/x-bittorrent\" title=\".torrent\" \
             href=\"{torrent}\"/>\
             <link rel=\"related\" title=\"magnet\" href=\"{magnet}\"/>\
             <link rel=\"related\" title=\"direct download\" href=\"{direct}\"/>\
             <link rel=\"related\" title=\"latest version\" type=\"application/x-bittorrent\" \
             href=\"{latest}\"/>\
             <summary>{summary}</summary></entry>\n",
            title = xml_text(&p.meta.name),
            id = xml_text(&id),
            updated = rfc3339(p.published_at),
            page = xml_text(&format!("{base}/?q={}", super::api::query_encode(name))),
            torrent = xml_text(&links.torrent_url),
            magnet = xml_text(&links.magnet),
            direct = xml_text(&direct),
            latest = xml_text(&format!("{base}/latest/{stable}.torrent")),
            summary = xml_text(&summary),
        ));
    }
    let subtitle = if state.intro.is_empty() {
        String::new()
    } else {
        format!("<subtitle>{}</subtitle>", xml_text(&state.intro))
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <feed xmlns=\"http://www.w3.org/2005/Atom\">\
         <title>{title}</title>{subtitle}<id>{self_url}</id>\
         <link rel=\"self\" type=\"application/atom+xml\" href=\"{self_url}\"/>\
         <link rel=\"alternate\" type=\"text/html\" href=\"{home}\"/>\
         <updated>{updated}</updated><author><name>{title}</name></author>\
         <generator version=\"{version}\">bitseed</generator>\n\
         {entries}</feed>\n",
        title = xml_text(&state.title),
        self_url = xml_text(&format!("{base}/feed.atom")),
        home = xml_text(&format!("{base}/")),
        updated = rfc3339(newest),
        version = env!("CARGO_PKG_VERSION"),
    );
    let mut builder = HttpResponse::Ok();
    state.view_headers(&mut builder, false);
    super::respond_with_etag(
        &req,
        builder,
        "application/atom+xml; charset=utf-8",
        body.into_bytes(),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::xml_text;

    #[test]
    fn text_is_escaped_and_what_xml_cannot_hold_is_replaced() {
        assert_eq!(
            xml_text("<a href=\"x\">&'\u{1}\t\u{FFFF}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;\u{FFFD}\t\u{FFFD}"
        );
    }
}
