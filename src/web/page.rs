//! `GET /`: the download page. Every published entry as a card with its size, date, SHA-256,
//! how many people share it, and three ways to get it; a search box and a sort. Plain HTML that
//! reads without JavaScript and fits a phone's width; a small script refreshes the numbers from
//! the API when JavaScript is on. The publisher (`page.admin_token`) also sees the entries that
//! are not published, and the upload figures.
//!
//! Everything that comes from a file name, the settings or the catalog goes through `escape`.

use std::fmt::Write;

use actix_web::{web, HttpRequest, HttpResponse};

use super::api::{entry_json, query_encode, ListQuery, Sort, TorrentJson};
use super::WebState;
use crate::catalog::{Published, Status};
use crate::units::{count, human_date, human_size};

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Files of a folder listed with their SHA-256 on the page; the rest are in the API.
const FILES_SHOWN: usize = 20;

/// The look: one column of cards, mobile first; a card's buttons go beside its name when there
/// is room and under it, full width, on a phone. Light and dark from the system's setting.
pub const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#f4f6f8;--card:#fff;--fg:#1c2430;--muted:#5d6978;\
--line:#dde3ea;--accent:#0a5cc2;--on-accent:#fff;--soft:#eaf1fb;--bad:#b3261e}\
@media (prefers-color-scheme:dark){:root{--bg:#0f1318;--card:#181e26;--fg:#e4e8ee;\
--muted:#9aa6b4;--line:#2a323d;--accent:#5aa2ff;--on-accent:#06182f;--soft:#1d2a3a;--bad:#ff8a80}}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--fg);\
font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',sans-serif;\
-webkit-text-size-adjust:100%}\
main{max-width:58rem;margin:0 auto;padding:1.5rem 1rem 3rem}\
a{color:var(--accent)}\
h1{font-size:1.9rem;line-height:1.2;margin:.25rem 0 .5rem;overflow-wrap:anywhere}\
.intro p{margin:.25rem 0;color:var(--muted);max-width:40rem;overflow-wrap:anywhere}\
.admin{background:var(--soft);border-radius:.5rem;padding:.5rem .75rem;margin:1rem 0 0;\
font-size:.9rem}\
form.find{display:grid;grid-template-columns:minmax(0,1fr) auto auto;gap:.5rem;\
margin:1.25rem 0 .25rem}\
form.find input,form.find select,form.find button{font:inherit;font-size:1rem;\
padding:.5rem .7rem;border:1px solid var(--line);border-radius:.5rem;background:var(--card);\
color:var(--fg);min-width:0}\
form.find button{background:var(--fg);color:var(--bg);border-color:var(--fg);font-weight:600}\
.count{color:var(--muted);font-size:.9rem;margin:.5rem 0 .75rem}\
.count a{margin-left:.5rem}\
ul.entries{list-style:none;margin:0;padding:0;display:grid;gap:.75rem}\
.entry{background:var(--card);border:1px solid var(--line);border-radius:.75rem;\
padding:1rem 1.1rem;min-width:0}\
.top{display:flex;flex-wrap:wrap;align-items:flex-start;justify-content:space-between;\
gap:.75rem 1.25rem}\
.what{flex:1 1 18rem;min-width:0}\
.entry h2{font-size:1.15rem;line-height:1.3;margin:0;overflow-wrap:anywhere}\
.facts{margin:.2rem 0 0;color:var(--muted);font-size:.92rem}\
.facts>*+*::before{content:'\\00b7';margin:0 .45em}\
.get{display:flex;flex-wrap:wrap;gap:.5rem}\
.btn{display:inline-block;padding:.5rem .95rem;border:1px solid var(--line);border-radius:.5rem;\
color:var(--fg);text-decoration:none;font-weight:600;font-size:.95rem;text-align:center;\
white-space:nowrap;background:var(--card)}\
.btn:hover{border-color:var(--accent)}\
.btn.main{background:var(--accent);border-color:var(--accent);color:var(--on-accent)}\
.stats{display:grid;grid-template-columns:repeat(4,minmax(0,10rem));gap:.5rem;margin:.8rem 0 0;\
padding:0;list-style:none}\
.stats li{display:flex;flex-direction:column;min-width:0}\
.stats b{font-size:1.1rem;line-height:1.2;font-variant-numeric:tabular-nums}\
.stats span{color:var(--muted);font-size:.8rem;line-height:1.25}\
.sum{margin:.6rem 0 0;font-size:.85rem;color:var(--muted)}\
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em;\
color:var(--fg);overflow-wrap:anywhere;word-break:break-all}\
details{margin:.6rem 0 0;font-size:.9rem}\
summary{cursor:pointer;color:var(--accent)}\
dl.more{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.25rem .9rem;\
margin:.6rem 0 0}\
dl.more dt{color:var(--muted)}dl.more dd{margin:0;min-width:0;overflow-wrap:anywhere}\
ul.files{list-style:none;margin:.6rem 0 0;padding:0;display:grid;gap:.4rem}\
ul.files li{min-width:0;overflow-wrap:anywhere}\
.state{margin:.6rem 0 0;color:var(--muted);font-size:.92rem}\
.state.failed{color:var(--bad)}\
progress{width:12rem;max-width:60%;vertical-align:middle}\
.empty{color:var(--muted);padding:2rem 0;text-align:center}\
.inbrowser{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem .75rem;margin:.6rem 0 0;\
font-size:.9rem;color:var(--muted)}\
.inbrowser button{font:inherit;font-weight:600;cursor:pointer}\
.inbrowser button:disabled{cursor:default;opacity:.6}\
.wt-state{min-width:0;overflow-wrap:anywhere}\
nav.more{margin:1rem 0;text-align:center}\
footer{margin:2rem 0 0;color:var(--muted);font-size:.85rem}\
@media (max-width:36rem){main{padding-top:1rem}h1{font-size:1.6rem}\
.get{width:100%}.get .btn{flex:1 1 0;padding-left:.5rem;padding-right:.5rem}\
.stats{grid-template-columns:repeat(4,minmax(0,1fr))}\
dl.more{grid-template-columns:minmax(0,1fr);gap:0}dl.more dd{margin-bottom:.4rem}}";

/// Refreshes the numbers of the cards shown, by polling the same page of the API with its
/// ETag: while nothing changes, each poll is a 304 of a few hundred bytes. The sort list
/// applies itself when changed. Its words are the page's own.
const SCRIPT: &str = r#"
const sharingWords = n => (n === 1 ? 'person' : 'people') + ' sharing';
const queued = t => t.being_written ? 'waiting for the copy to finish'
  : 'queued' + (t.queue_position ? ' #' + t.queue_position : '');
const set = (row, sel, text) => { const e = row.querySelector(sel); if (e) e.textContent = text; };
for (const s of document.querySelectorAll('select[name=sort]'))
  s.addEventListener('change', () => s.form.submit());
let etag = null;
setInterval(async () => {
  try {
    const r = await fetch('api/torrents' + location.search, etag ? {headers: {'If-None-Match': etag}} : {});
    if (r.status === 304 || !r.ok) return;
    etag = r.headers.get('ETag');
    const list = await r.json();
    const byName = new Map(list.map(t => [t.path, t]));
    const rows = document.querySelectorAll('li[data-path]');
    for (const row of rows) {
      const t = byName.get(row.dataset.path);
      if (!t || t.status !== row.dataset.status) { location.reload(); return; }
      set(row, '.sharing', t.people_sharing);
      set(row, '.sharing-words', sharingWords(t.people_sharing));
      set(row, '.finished', t.completed);
      set(row, '.direct', t.direct_downloads);
      set(row, '.fetches', t.torrent_fetches);
      if (t.offload !== null) set(row, '.offload', t.offload.toFixed(1) + 'x');
      const bar = row.querySelector('progress');
      if (bar && t.status === 'hashing') {
        bar.value = t.progress;
        set(row, '.pct', Math.floor(t.progress * 100) + '%');
      }
      if (t.status === 'queued') set(row, '.queued', queued(t));
    }
    if (list.length !== rows.length) location.reload();
  } catch (e) {}
}, 5000);
"#;

/// "Download in browser": loads WebTorrent (from `page.webtorrent_url`, checked against its
/// integrity hash, on the first click only), joins the swarm through the torrent's trackers
/// (the WebSocket one among them) and its web seed, shows progress, peers and speed, checks
/// the SHA-256 against the page's, and saves the file: into the file the visitor picks where
/// the browser has the File System Access API, else through a Blob URL. A folder's files are
/// checked against the API's SHA-256s and written into a folder the visitor picks (only where
/// the browser has `showDirectoryPicker`). The bytes from other
/// browsers, from the web seed and from bitseed's own seeder over WebRTC (a wire whose peer id
/// has our prefix, `data-seed-peer-id` on the body) are kept on the card (`data-peer-bytes`,
/// `data-web-bytes`, `data-seed-bytes`), and said in words when done: the last two are what
/// the publisher sent, "from this server". The tab keeps sharing the file while it stays open.
const BROWSER_SCRIPT: &str = r#"
let client = null;
const loadWebTorrent = async () => {
  if (client) return client;
  const b = document.body.dataset;
  const r = await fetch(b.webtorrent, b.integrity ? {integrity: b.integrity} : {});
  if (!r.ok) throw new Error('WebTorrent did not load (' + r.status + ')');
  const url = URL.createObjectURL(new Blob([await r.text()], {type: 'text/javascript'}));
  const WebTorrent = (await import(url)).default;
  client = new WebTorrent();
  return client;
};
const size = n => n < 1e6 ? (n / 1e3).toFixed(0) + ' kB' : (n / 1e6).toFixed(1) + ' MB';
const hex = buf => [...new Uint8Array(buf)].map(b => b.toString(16).padStart(2, '0')).join('');
// A folder's files, checked against the API's SHA-256s, then written under `name` in `dir`
// (a directory handle the visitor picked); padding files (BEP 47) are not files. Returns how
// many were written and whether every one was checked.
const saveFolder = async (torrent, d, dir) => {
  const r = await fetch(new URL(d.api, location.href).href);
  const sums = {};
  if (r.ok) for (const f of (await r.json()).file_list || []) sums[f.path] = f.sha256;
  const files = [];
  let checked = !!crypto.subtle;
  for (const f of torrent.files) {
    const parts = f.path.split('/').slice(1);
    if (parts.length === 0 || parts.includes('.pad')) continue;
    const buf = await f.arrayBuffer();
    const rel = parts.join('/');
    if (crypto.subtle && sums[rel]) {
      if (hex(await crypto.subtle.digest('SHA-256', buf)) !== sums[rel])
        throw new Error(rel + ': its SHA-256 is not the published one: nothing saved');
    } else checked = false;
    files.push([parts, buf]);
  }
  const top = await dir.getDirectoryHandle(d.name, {create: true});
  for (const [parts, buf] of files) {
    let at = top;
    for (const p of parts.slice(0, -1)) at = await at.getDirectoryHandle(p, {create: true});
    const w = await (await at.getFileHandle(parts[parts.length - 1], {create: true})).createWritable();
    await w.write(new Blob([buf]));
    await w.close();
  }
  return [files.length, checked];
};
for (const button of document.querySelectorAll('button.wt')) {
  const folder = button.dataset.folder === '1';
  // A folder needs a folder to write into: the File System Access API (Chromium).
  if (folder && !window.showDirectoryPicker) {
    button.closest('.inbrowser').querySelector('.wt-state').textContent =
      'This browser cannot save a folder: use the .torrent.';
    continue;
  }
  button.hidden = false;
  button.addEventListener('click', async () => {
    const box = button.closest('.inbrowser');
    const say = text => { box.querySelector('.wt-state').textContent = text; };
    const d = button.dataset;
    button.disabled = true;
    let handle = null;
    if (folder) {
      try { handle = await showDirectoryPicker({mode: 'readwrite'}); }
      catch (e) { button.disabled = false; return; }
    } else if (window.showSaveFilePicker) {
      try { handle = await showSaveFilePicker({suggestedName: d.name}); }
      catch (e) { button.disabled = false; return; }
    }
    let timer = null, torrent = null;
    try {
      say('Loading WebTorrent…');
      const wt = await loadWebTorrent();
      torrent = wt.add(new URL(d.torrent, location.href).href);
      let fromPeers = 0, fromWeb = 0, fromSeed = 0;
      const seedId = document.body.dataset.seedPeerId || '';
      torrent.on('wire', wire => wire.on('download', n => {
        if (wire.type === 'webSeed') fromWeb += n;
        else if (seedId && (wire.peerId || '').startsWith(seedId)) fromSeed += n;
        else fromPeers += n;
        box.dataset.peerBytes = fromPeers;
        box.dataset.webBytes = fromWeb;
        box.dataset.seedBytes = fromSeed;
      }));
      timer = setInterval(() => say(Math.floor(torrent.progress * 100) + '% · ' + torrent.numPeers
        + (torrent.numPeers === 1 ? ' source' : ' sources') + ' · ' + size(torrent.downloadSpeed) + '/s'), 500);
      await new Promise((done, fail) => { torrent.once('done', done); torrent.once('error', fail); });
      clearInterval(timer);
      say('Checking…');
      if (folder) {
        const [n, checked] = await saveFolder(torrent, d, handle);
        box.dataset.files = n;
        box.dataset.state = 'done';
        say('Done' + (checked ? ', SHA-256 checked' : '') + ': ' + n + (n === 1 ? ' file, ' : ' files, ')
          + size(fromPeers) + ' from other browsers, ' + size(fromWeb + fromSeed)
          + ' from this server. Sharing it while this tab is open.');
        return;
      }
      const buf = await torrent.files[0].arrayBuffer();
      if (crypto.subtle && d.sha256) {
        const sum = hex(await crypto.subtle.digest('SHA-256', buf));
        box.dataset.sha256 = sum;
        if (sum !== d.sha256) throw new Error('its SHA-256 is not the published one: not saved');
      }
      const blob = new Blob([buf]);
      if (handle) {
        const w = await handle.createWritable();
        await w.write(blob);
        await w.close();
      } else {
        const a = Object.assign(document.createElement('a'), {href: URL.createObjectURL(blob), download: d.name, textContent: 'Save again'});
        box.append(a);
        a.click();
      }
      box.dataset.state = 'done';
      say('Done' + (d.sha256 && crypto.subtle ? ', SHA-256 checked' : '') + ': ' + size(fromPeers)
        + ' from other browsers, ' + size(fromWeb + fromSeed) + ' from this server. Sharing it while this tab is open.');
    } catch (e) {
      clearInterval(timer);
      if (torrent) torrent.destroy();
      box.dataset.state = 'failed';
      say('Failed: ' + (e.message || e) + '. The .torrent and the direct download still work.');
      button.disabled = false;
    }
  });
}
"#;

/// What a queued card says: its place, or that its copy is still being written (the script has
/// the same words).
fn queued_text(t: &TorrentJson) -> String {
    if t.being_written {
        "waiting for the copy to finish".into()
    } else {
        match t.queue_position {
            Some(n) => format!("queued #{n}"),
            None => "queued".into(),
        }
    }
}

/// The words under the number of people in a swarm (the script has the same).
fn sharing_words(n: u64) -> &'static str {
    if n == 1 {
        "person sharing"
    } else {
        "people sharing"
    }
}

/// The format in words a downloader can use: which clients take it.
fn format_words(format: &str) -> &'static str {
    match format {
        "v1" => "BitTorrent v1 (every client)",
        "v2" => "BitTorrent v2 (recent clients only)",
        "hybrid" => "BitTorrent v1 and v2 (every client)",
        "merkle" => "BitTorrent Merkle, BEP 30 (few clients)",
        _ => "BitTorrent",
    }
}

/// The intro: plain text, a blank line between paragraphs.
fn intro_html(intro: &str) -> String {
    intro
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>", escape(p).replace('\n', "<br>")))
        .collect()
}

/// The page: one page of the catalog (`?after=`, `?q=`, `?sort=` as the API takes them).
/// `?token=…` and `?logout` switch the publisher's view on and off.
pub async fn index(
    state: web::Data<WebState>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    if let Some(answer) = super::admin::sign_in_or_out(&state, &req) {
        return answer;
    }
    let admin = super::admin::is_admin(&state, &req);
    let page = query.page(&state.registry, admin);
    let mut cards = String::new();
    for (name, status) in &page.entries {
        let t = entry_json(&state, &req, name, status);
        match status {
            Status::Published(p) => {
                published_card(&mut cards, &t, p, admin, state.browser.as_ref())
            }
            _ => pending_card(&mut cards, &t),
        }
    }
    let sort = query.sort.unwrap_or_default();
    let body = if cards.is_empty() {
        let words = if query.q.is_some() || query.after.is_some() {
            "Nothing matches."
        } else if admin {
            "Nothing published yet: drop files into the content folder."
        } else {
            "Nothing here yet."
        };
        format!("<p class=empty>{words}</p>")
    } else {
        format!("<ul class=entries>\n{cards}</ul>")
    };
    let q = query.q.as_deref().unwrap_or("");
    let options: String = [
        (Sort::Name, "By name"),
        (Sort::Date, "Newest"),
        (Sort::Size, "Largest"),
    ]
    .iter()
    .map(|(s, label)| {
        format!(
            "<option value={}{}>{label}</option>",
            s.param(),
            if *s == sort { " selected" } else { "" }
        )
    })
    .collect();
    let find = format!(
        "<form class=find method=get role=search>\
         <input type=search name=q value=\"{}\" placeholder=\"Search\" \
         aria-label=\"Search by name\">\
         <select name=sort aria-label=\"Sort by\">{options}</select>\
         <button>Search</button></form>",
        escape(q)
    );
    let total = page.total;
    // The publisher's view lists entries that are not downloads (yet).
    let (one, many) = if admin {
        ("entry", "entries")
    } else {
        ("download", "downloads")
    };
    let shown = if q.is_empty() {
        count(total as u64, one, many)
    } else {
        format!(
            "{} matching “{}”<a href=\"./\">Show all</a>",
            count(total as u64, one, many),
            escape(q)
        )
    };
    let more = match page.next {
        Some(last) => format!(
            "<nav class=more><a class=btn href=\"?after={}{}\">More</a></nav>",
            escape(&query_encode(&last)),
            escape(&query.filter_params())
        ),
        None => String::new(),
    };
    let banner = if admin {
        "<p class=admin>Publisher view: entries not published yet are listed too, with the \
         upload figures. <a href=\"?logout\">Leave</a></p>"
    } else {
        ""
    };
    let title = escape(&state.title);
    let (body_data, browser_script) = match &state.browser {
        Some(b) => (
            format!(
                " data-webtorrent=\"{}\" data-integrity=\"{}\" data-seed-peer-id=\"{}\"",
                escape(&b.script_url),
                escape(&b.integrity),
                hex::encode(crate::peer::PEER_ID_PREFIX)
            ),
            BROWSER_SCRIPT,
        ),
        None => (String::new(), ""),
    };
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <meta name=color-scheme content=\"light dark\">\
         <title>{title}</title>\
         <link rel=alternate type=application/atom+xml title=\"{title}\" href=\"feed.atom\">\
         <style>{STYLE}</style></head><body{body_data}><main>\
         <header><h1>{title}</h1><div class=intro>{intro}</div></header>{banner}\
         {find}<p class=count>{shown}</p>{body}{more}\
         <footer><p>A .torrent or magnet link opens in a BitTorrent client (qBittorrent, \
         Transmission, …): everyone downloading also shares, so downloads stay fast. \
         Compare a download's SHA-256 with the one shown (<code>sha256sum FILE</code>). \
         New releases: <a href=\"feed.atom\">Atom feed</a> · \
         <a href=\"api/torrents\">JSON API</a>.</p></footer>\
         </main><script>{SCRIPT}{browser_script}</script></body></html>",
        intro = intro_html(&state.intro),
    );
    let mut builder = HttpResponse::Ok();
    state.view_headers(&mut builder, admin);
    super::respond_with_etag(&req, builder, "text/html; charset=utf-8", html.into(), true)
}

/// A published entry's card.
fn published_card(
    out: &mut String,
    t: &TorrentJson,
    p: &Published,
    admin: bool,
    browser: Option<&super::BrowserDownload>,
) {
    let (Some(torrent), Some(magnet), Some(direct)) = (&t.torrent_url, &t.magnet, &t.download_url)
    else {
        return;
    };
    let files = if t.files == 1 {
        String::new()
    } else {
        format!("<span>{}</span>", count(t.files as u64, "file", "files"))
    };
    let date = format!(
        "<time datetime=\"{}\">{}</time>",
        t.published_at.as_deref().unwrap_or(""),
        human_date(p.published_at)
    );
    // A file is saved rather than opened in the tab; a folder's link leads to its files.
    let direct_button = if p.meta.single_file {
        format!(
            "<a class=\"btn main\" href=\"{}\">Download</a>",
            escape(&format!("{direct}?download"))
        )
    } else {
        format!(
            "<a class=\"btn main\" href=\"{}\">Files</a>",
            escape(direct)
        )
    };
    let digests = p.file_sha256.get();
    let sum = if p.meta.single_file {
        match digests.and_then(|d| d.first()) {
            Some(d) => format!(
                "<p class=sum>SHA-256 <code class=sha256>{}</code></p>",
                hex::encode(d)
            ),
            None => "<p class=sum>SHA-256 being computed</p>".into(),
        }
    } else {
        let mut list = String::new();
        let real = p.meta.files.iter().filter(|f| !f.pad);
        for (i, f) in real.clone().enumerate().take(FILES_SHOWN) {
            let digest = digests
                .and_then(|d| d.get(i))
                .map_or("being computed".into(), |d| {
                    format!("<code class=sha256>{}</code>", hex::encode(d))
                });
            let _ = write!(
                list,
                "<li>{} <span class=facts>{}</span><br>SHA-256 {digest}</li>",
                escape(&f.display_path()),
                human_size(f.length)
            );
        }
        let rest = real.count().saturating_sub(FILES_SHOWN);
        if rest > 0 {
            let _ = write!(
                list,
                "<li>… and {} more: every file's SHA-256 is in <a href=\"{}\">the API</a></li>",
                count(rest as u64, "file", "files"),
                escape(&format!(
                    "api/torrents/by-name/{}",
                    super::encode_path(&t.path)
                ))
            );
        }
        format!(
            "<details class=sum><summary>Files and their SHA-256</summary>\
             <ul class=files>{list}</ul></details>"
        )
    };
    let in_browser = match browser {
        // One file, held in the browser's memory: up to the configured size.
        Some(b) if p.meta.single_file && t.size <= b.max_bytes => format!(
            "<div class=inbrowser><button type=button class=\"btn wt\" hidden \
             data-torrent=\"{}\" data-name=\"{}\" data-sha256=\"{}\">Download in browser\
             </button><span class=wt-state role=status></span></div>",
            escape(torrent),
            escape(&p.meta.name),
            t.sha256.as_deref().unwrap_or("")
        ),
        // A folder: its files checked against the API's SHA-256s and written into a folder
        // the visitor picks (the script shows the button only where the browser can).
        Some(b) if t.size <= b.max_bytes => format!(
            "<div class=inbrowser><button type=button class=\"btn wt\" hidden data-folder=1 \
             data-torrent=\"{}\" data-name=\"{}\" data-api=\"{}\">Download in browser\
             </button><span class=wt-state role=status></span></div>",
            escape(torrent),
            escape(&p.meta.name),
            escape(&format!(
                "api/torrents/by-name/{}",
                super::encode_path(&t.path)
            ))
        ),
        Some(b) => format!(
            "<p class=inbrowser>Over {} is too large to download in the browser: use the \
             .torrent.</p>",
            human_size(b.max_bytes)
        ),
        _ => String::new(),
    };
    let stable = super::encode_path(&t.path);
    let mut more = String::new();
    if let Some(h) = &t.info_hash {
        let _ = write!(more, "<dt>Info hash</dt><dd><code>{h}</code></dd>");
    }
    if let Some(h) = &t.info_hash_v2 {
        let _ = write!(more, "<dt>Info hash v2</dt><dd><code>{h}</code></dd>");
    }
    let _ = write!(
        more,
        "<dt>Format</dt><dd>{}</dd>\
         <dt title=\"These links lead to the newest version, whenever the file is updated\">\
         Stable links</dt><dd><a href=\"latest/{s}.torrent\">.torrent</a> · \
         <a href=\"latest/{s}.magnet\">magnet</a> · \
         <a href=\"api/torrents/by-name/{s}\">JSON</a></dd>",
        format_words(t.format.as_deref().unwrap_or("")),
        s = escape(&stable)
    );
    if admin {
        let _ = write!(
            more,
            "<dt>Upload</dt><dd>sent {:.2} copies: {} over the peer wire, {} as web seed, {} \
             direct; <b class=offload>{}</b> copies delivered per copy sent</dd>",
            t.copies_sent,
            human_size(t.sent_peer),
            human_size(t.sent_web_seed),
            human_size(t.sent_direct),
            t.offload.map_or("-".into(), |o| format!("{o:.1}x"))
        );
    }
    let seeders = t
        .seeders
        .saturating_sub(t.seeders + t.leechers - t.people_sharing);
    let _ = writeln!(
        out,
        "<li class=entry data-path=\"{path}\" data-status=published>\
         <div class=top><div class=what><h2>{name}</h2>\
         <p class=facts><span>{size}</span>{files}{date}</p></div>\
         <div class=get>{direct_button}\
         <a class=btn href=\"{torrent}\" title=\"For a BitTorrent client\">.torrent</a>\
         <a class=btn href=\"{magnet}\" title=\"Opens your BitTorrent client\">Magnet</a></div>\
         </div>\
         <ul class=stats>\
         <li title=\"{seeders} with the whole file, {leechers} still downloading (this \
         server not counted)\"><b class=sharing>{people}</b>\
         <span class=sharing-words>{people_words}</span></li>\
         <li title=\"Downloads finished by BitTorrent clients\"><b class=finished>{finished}</b>\
         <span>BitTorrent downloads</span></li>\
         <li title=\"Downloaded whole over HTTP\"><b class=direct>{direct_n}</b>\
         <span>direct downloads</span></li>\
         <li title=\".torrent files handed out\"><b class=fetches>{fetches}</b>\
         <span>.torrent fetches</span></li></ul>\
         {in_browser}{sum}<details><summary>Details</summary><dl class=more>{more}</dl></details></li>",
        path = escape(&t.path),
        name = escape(&t.name),
        size = human_size(t.size),
        torrent = escape(torrent),
        magnet = escape(magnet),
        leechers = t.leechers,
        people = t.people_sharing,
        people_words = sharing_words(t.people_sharing),
        finished = t.completed,
        direct_n = t.direct_downloads,
        fetches = t.torrent_fetches,
    );
}

/// A card for an entry that is not published (the publisher's view only): queued, being
/// hashed, or failed with why.
fn pending_card(out: &mut String, t: &TorrentJson) {
    let state = match t.status {
        "failed" => format!(
            "<p class=\"state failed\">Not published: {}</p>",
            escape(t.error.as_deref().unwrap_or("failed"))
        ),
        "queued" => {
            let why = t
                .error
                .as_deref()
                .map(|e| format!(" (last try: {})", escape(e)))
                .unwrap_or_default();
            format!(
                "<p class=state><span class=queued>{}</span>{why}</p>",
                queued_text(t)
            )
        }
        _ => format!(
            "<p class=state>Hashing <progress max=1 value=\"{:.3}\" aria-label=\"hashing\">\
             </progress> <span class=pct>{}%</span></p>",
            t.progress,
            (t.progress * 100.0).floor()
        ),
    };
    let size = if t.size > 0 {
        format!("<p class=facts><span>{}</span></p>", human_size(t.size))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<li class=entry data-path=\"{path}\" data-status=\"{status}\">\
         <div class=what><h2>{name}</h2>{size}</div>{state}</li>",
        path = escape(&t.path),
        status = t.status,
        name = escape(&t.name),
    );
}
