//! `GET /`: every torrent with its numbers and three links. Plain HTML that reads without
//! JavaScript; a small script refreshes the numbers from the API when JavaScript is on.

use actix_web::{web, HttpRequest, HttpResponse};

use super::api::{entry_json, query_encode, ListQuery};
use super::WebState;
use crate::units::human_size;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{padding:.4em .6em;border-bottom:1px solid #ddd;\
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}a{margin-right:.6em}\
.muted{color:#888}";

/// Copies delivered per copy the publisher sent, as "3.4x".
fn offload_cell(t: &super::api::TorrentJson) -> String {
    t.offload.map_or("-".into(), |o| format!("{o:.1}x"))
}

fn offload_title(t: &super::api::TorrentJson) -> String {
    format!(
        "publisher sent {:.2} copies: {} over the peer wire, {} as web seed, {} direct",
        t.copies_sent,
        human_size(t.sent_peer),
        human_size(t.sent_web_seed),
        human_size(t.sent_direct)
    )
}

/// What a queued row says: its place, or that its copy is still being written (the script has
/// the same words).
fn queued_text(t: &super::api::TorrentJson) -> String {
    if t.being_written {
        "waiting for the copy to finish".into()
    } else {
        match t.queue_position {
            Some(n) => format!("queued #{n}"),
            None => "queued".into(),
        }
    }
}

/// Refreshes the numbers of the rows shown, by polling the same page of the API with its ETag:
/// while nothing changes, each poll is a 304 of a few hundred bytes.
const SCRIPT: &str = r#"
const queued = t => t.being_written ? 'waiting for the copy to finish'
  : 'queued' + (t.queue_position ? ' #' + t.queue_position : '');
let etag = null;
setInterval(async () => {
  try {
    const r = await fetch('api/torrents' + location.search, etag ? {headers: {'If-None-Match': etag}} : {});
    if (r.status === 304 || !r.ok) return;
    etag = r.headers.get('ETag');
    const list = await r.json();
    const byName = new Map(list.map(t => [t.path, t]));
    const rows = document.querySelectorAll('tr[data-path]');
    for (const row of rows) {
      const t = byName.get(row.dataset.path);
      if (!t) { location.reload(); return; }
      for (const k of ['seeders', 'leechers']) {
        const cell = row.querySelector('.' + k);
        if (cell) cell.textContent = t[k];
      }
      const c = row.querySelector('.completed');
      if (c) c.textContent = t.completed + t.direct_completed;
      const o = row.querySelector('.offload');
      if (o && t.offload !== null) o.textContent = t.offload.toFixed(1) + 'x';
      const bar = row.querySelector('progress');
      if (bar && t.status === 'hashing') {
        bar.value = t.progress;
        row.querySelector('.pct').textContent = Math.floor(t.progress * 100) + '%';
      }
      const q = row.querySelector('.queued');
      if (q && t.status === 'queued') q.textContent = queued(t);
      if (t.status !== row.dataset.status) { location.reload(); return; }
    }
    if (list.length !== rows.length) location.reload();
  } catch (e) {}
}, 5000);
"#;

/// The page: one page of the catalog (`?after=`, `?q=` as the API takes them) with a search
/// box and a link to the next page.
pub async fn index(
    state: web::Data<WebState>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    let page = query.page(&state.registry);
    let total = page.total;
    let mut rows = String::new();
    for (name, status) in &page.entries {
        let t = entry_json(&state, &req, name, status);
        let links = match (&t.torrent_url, &t.magnet, &t.download_url) {
            (Some(tu), Some(m), Some(d)) => format!(
                "<a href=\"{}\">.torrent</a><a href=\"{}\">magnet</a><a href=\"{}\">direct</a>",
                escape(tu),
                escape(m),
                escape(&download_link(d))
            ),
            _ => match t.status {
                "failed" => format!(
                    "<span class=muted>{}</span>",
                    escape(t.error.as_deref().unwrap_or("failed"))
                ),
                "queued" => format!("<span class=\"queued muted\">{}</span>", queued_text(&t)),
                _ => format!(
                    "<progress max=1 value=\"{:.3}\" aria-label=\"hashing\"></progress> \
                     <span class=\"pct muted\">{}%</span>",
                    t.progress,
                    (t.progress * 100.0).floor()
                ),
            },
        };
        rows.push_str(&format!(
            "<tr data-path=\"{}\" data-status=\"{}\"><td>{}</td><td class=n>{}</td><td class=n>{}</td>\
             <td>{}</td><td class=\"n seeders\">{}</td><td class=\"n leechers\">{}</td>\
             <td class=\"n completed\">{}</td><td class=\"n offload\" title=\"{}\">{}</td>\
             <td>{}</td></tr>\n",
            escape(&t.path),
            t.status,
            escape(&t.name),
            human_size(t.size),
            t.files,
            t.format.as_deref().unwrap_or("-"),
            t.seeders,
            t.leechers,
            t.completed + t.direct_completed,
            offload_title(&t),
            offload_cell(&t),
            links
        ));
    }
    if rows.is_empty() {
        rows = if query.q.is_some() || query.after.is_some() {
            "<tr><td colspan=9 class=muted>Nothing matches.</td></tr>".into()
        } else {
            "<tr><td colspan=9 class=muted>Nothing published yet: drop files into the content \
             folder.</td></tr>"
                .into()
        };
    }
    let q = query.q.as_deref().unwrap_or("");
    let search = format!(
        "<form method=get><input type=search name=q value=\"{}\" placeholder=\"Search names\" \
         aria-label=\"Search names\"> <button>Search</button> <span class=muted>{total} \
         {}</span></form>",
        escape(q),
        if total == 1 { "entry" } else { "entries" }
    );
    let more = match page.next {
        Some(last) => format!(
            "<p><a href=\"?after={}{}\">More…</a></p>",
            escape(&query_encode(&last)),
            escape(&query.filter_params())
        ),
        None => String::new(),
    };
    let html = format!(
        "<!doctype html><html lang=en><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>bitseed</title><style>{STYLE}</style>\
         <h1>Downloads</h1><p class=muted>Download with BitTorrent (.torrent or magnet) to help \
         share the load, or directly over HTTP.</p>{search}\
         <table><thead><tr><th>Name</th><th>Size</th><th>Files</th><th>Format</th><th>Seeders</th>\
         <th>Leechers</th><th>Completed</th><th>Offload</th><th>Get it</th></tr></thead>\
         <tbody>\n{rows}</tbody>\
         </table>{more}<script>{SCRIPT}</script></html>"
    );
    let mut builder = HttpResponse::Ok();
    state.link_headers(&mut builder, super::PAGE_MAX_AGE);
    super::respond_with_etag(&req, builder, "text/html; charset=utf-8", html.into(), true)
}

/// The page's direct link: a file is saved (`?download`: attachment) rather than opened in the
/// tab; a folder's link leads to its listing.
fn download_link(download_url: &str) -> String {
    if download_url.ends_with('/') {
        download_url.to_owned()
    } else {
        format!("{download_url}?download")
    }
}
