//! Issue 13, "The page and the API, for a publisher's visitors": the page in a real browser at
//! phone and desktop widths, the publisher's view behind its token, each file's SHA-256, sorting,
//! links by name that follow new versions, the Atom feed and the download counts, each through
//! the real binary over a socket.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const TOKEN: &str = "publisher-token-0123456789";

/// Names a visitor's browser must show as text, never run.
const HOSTILE_FILE: &str = "<img src=x onerror=alert(1)>.bin";
/// A file name cannot hold `/`: a folder `<script>alert(1)<` with a file `script>.bin` in it is
/// the path `<script>alert(1)</script>.bin`.
const HOSTILE_DIR: &str = "<script>alert(1)<";
const LONG_NAME: &str =
    "a-very-long-release-name-without-any-spaces-that-would-overflow-a-phone-screen-2026.11.tar.gz";

fn config(extra: &str) -> String {
    format!(
        "[page]\ntitle = \"Example <Project> & downloads\"\n\
         intro = \"Release images of Example.\\n\\nMail <releases@example.org>.\"\n\
         admin_token = \"{TOKEN}\"\n{extra}"
    )
}

fn json(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).expect("JSON")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Waits for `check` to hold of the publisher's list.
fn wait_admin(server: &Server, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let list = server.publisher_torrents(TOKEN);
        if check(&list) {
            return Ok(list);
        }
        Err(format!(
            "never {what}: {list:#?}\nlog:\n{}",
            server.log.lock().unwrap()
        ))
    })
}

/// What the page looks like to a script: the viewport, how wide the document is, and every
/// card with its name, its links and whichever of those links or texts stick out of the
/// viewport on either side.
const LAYOUT: &str = r#"(() => {
  const W = innerWidth;
  const out = e => { const r = e.getBoundingClientRect(); return r.width > 0 && (r.right > W + 0.5 || r.left < -0.5); };
  return {
    width: W,
    scroll_width: document.documentElement.scrollWidth,
    title: document.querySelector('h1').textContent,
    intro: document.querySelector('.intro').innerText,
    scripts: document.scripts.length,
    images: document.images.length,
    entries: [...document.querySelectorAll('li.entry')].map(li => ({
      name: li.querySelector('h2').textContent,
      status: li.dataset.status,
      links: [...li.querySelectorAll('.get a')].map(a => ({text: a.textContent, href: a.href})),
      sha256: [...li.querySelectorAll('code.sha256')].map(c => c.textContent),
      outside: [...li.querySelectorAll('a, h2, code, .stats li, .facts')]
        .filter(out).map(e => e.outerHTML.slice(0, 80)),
    })),
    outside: [...document.querySelectorAll('a, button, input, select, h1, p')]
      .filter(out).map(e => e.outerHTML.slice(0, 80)),
  };
})()"#;

/// Where the screenshots go: `target/tmp/page/`, kept after the test to be looked at.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The page in headless Chromium at a phone's width (390 px) and a desktop's: every card's
/// three links are inside the viewport and nothing makes the page scroll sideways; hostile
/// names are text (no element, no script, no dialog); the title, intro and each file's SHA-256
/// are shown; the publisher's view (after `?token=`) also shows the entry that failed.
/// Screenshots of each are kept in `target/tmp/page/`.
#[test]
fn the_page_fits_a_phone_and_a_desktop_in_chromium() {
    if !have_client("chromium", &["--version"]) {
        return;
    }
    let d = dirs();
    std::fs::write(d.content.join(HOSTILE_FILE), data(7000, 1)).unwrap();
    std::fs::create_dir_all(d.content.join(HOSTILE_DIR)).unwrap();
    std::fs::write(
        d.content.join(HOSTILE_DIR).join("script>.bin"),
        data(5000, 2),
    )
    .unwrap();
    std::fs::write(d.content.join(LONG_NAME), data(150_000, 3)).unwrap();
    std::fs::write(
        d.content.join("debian-13.2.0-amd64-netinst.iso"),
        data(3_000_000, 4),
    )
    .unwrap();
    write_tree(
        &d.content,
        &[
            ("Photos 2026/beach.jpg", 200_000),
            ("Photos 2026/hills.jpg", 300_000),
        ],
    );
    std::fs::write(d.content.join("empty.bin"), b"").unwrap();
    let server = Server::with_config(&d, &config("[torrent]\nformat = \"hybrid\"\n"));
    for name in [
        HOSTILE_FILE,
        HOSTILE_DIR,
        LONG_NAME,
        "debian-13.2.0-amd64-netinst.iso",
        "Photos 2026",
    ] {
        server.wait_published(name, None);
    }
    wait_admin(&server, "failed empty.bin", |l| {
        l.iter()
            .any(|t| t["name"] == "empty.bin" && t["status"] == "failed")
    });
    let want_sha = sha256_hex(&data(3_000_000, 4));

    let shots = screenshot_dir();
    let mut browser = Browser::start();
    for (width, height, label) in [(390, 844, "phone"), (1280, 800, "desktop")] {
        browser.open(&server.url("/"), &server.url("/"), width, height);
        let page = browser.eval(LAYOUT);
        let (png_w, png_h) = browser.screenshot(&shots.join(format!("{label}.png")));
        let trouble = browser.trouble();
        assert!(trouble.is_empty(), "{label}: {trouble:#?}");
        assert_eq!(page["width"], width, "{label}");
        assert_eq!(
            page["scroll_width"], width,
            "{label}: the page scrolls sideways: {page:#}"
        );
        assert_eq!(png_w, width, "{label}: screenshot {png_w}×{png_h}");
        assert!(png_h >= height, "{label}: screenshot {png_w}×{png_h}");
        assert_eq!(page["outside"], json!([]), "{label}: {page:#}");
        assert_eq!(page["title"], "Example <Project> & downloads", "{label}");
        assert!(
            page["intro"]
                .as_str()
                .unwrap()
                .contains("Mail <releases@example.org>."),
            "{label}: {page:#}"
        );
        // The only script is the page's own; the hostile names made no element.
        assert_eq!(page["scripts"], 1, "{label}");
        assert_eq!(page["images"], 0, "{label}");
        let entries = page["entries"].as_array().unwrap();
        let names: Vec<&str> = entries
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                HOSTILE_FILE,
                HOSTILE_DIR,
                "Photos 2026",
                LONG_NAME,
                "debian-13.2.0-amd64-netinst.iso"
            ],
            "{label}: visitors see published entries only"
        );
        for e in entries {
            assert_eq!(e["outside"], json!([]), "{label}: {e:#}");
            let links: Vec<&str> = e["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["text"].as_str().unwrap())
                .collect();
            assert_eq!(links.len(), 3, "{label}: {e:#}");
            assert_eq!(&links[1..], [".torrent", "Magnet"], "{label}");
        }
        let iso = &entries[4];
        assert_eq!(iso["sha256"], json!([want_sha]), "{label}");
        // A folder's files each have theirs.
        assert_eq!(entries[2]["sha256"].as_array().unwrap().len(), 2, "{label}");
    }

    // The publisher's view: the token once, then the cookie it set; the failed entry shows.
    browser.open(
        &server.url(&format!("/?token={TOKEN}")),
        &server.url("/"),
        390,
        844,
    );
    let page = browser.eval(LAYOUT);
    browser.screenshot(&shots.join("publisher-phone.png"));
    let url = browser.eval("location.href");
    assert_eq!(
        url,
        server.url("/"),
        "the token is dropped from the address"
    );
    let failed: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{page:#}");
    assert_eq!(failed[0]["name"], "empty.bin");
    assert_eq!(page["outside"], json!([]), "{page:#}");
    assert_eq!(page["scroll_width"], 390);
    eprintln!("screenshots in {}", shots.display());
}

/// Without the token, the page and the API list published entries only (a file still being
/// written, and one that failed, are not there, nor countable); with it (bearer header for the
/// API; `?token=` once for the page, then its cookie) they are, with why. A wrong token is a
/// 403, `?logout` clears the cookie, and the publisher's answers are never for shared caches.
#[test]
fn entries_not_published_are_for_the_publisher_only() {
    let d = dirs();
    std::fs::write(d.content.join("ready.bin"), data(5000, 1)).unwrap();
    std::fs::write(d.content.join("empty.bin"), b"").unwrap();
    let server = Server::with_config(&d, &config(""));
    server.wait_published("ready.bin", None);
    // A copy in progress: written to and still open.
    let mut writing = std::fs::File::create(d.content.join("copying.iso")).unwrap();
    writing.write_all(&data(10_000, 2)).unwrap();
    writing.flush().unwrap();
    wait_admin(&server, "queued and failed", |l| {
        l.iter()
            .any(|t| t["name"] == "copying.iso" && t["status"] == "queued")
            && l.iter()
                .any(|t| t["name"] == "empty.bin" && t["status"] == "failed")
    });

    let public = json(&server.get("/api/torrents"));
    let names: Vec<&str> = public
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ready.bin"]);
    let r = server.get("/api/torrents?status=failed");
    assert_eq!(json(&r), json!([]));
    assert_eq!(r.header("x-total-count"), Some("0"));
    assert_eq!(server.get("/api/torrents/by-name/empty.bin").status, 404);
    let page = text(&server.get("/"));
    assert!(page.contains("ready.bin"));
    assert!(!page.contains("copying.iso") && !page.contains("empty.bin"));
    assert!(page.contains("1 download<"), "{page}");

    // The API with the bearer token.
    let bearer = format!("Bearer {TOKEN}");
    let r = http_get(
        server.http,
        "/api/torrents/by-name/empty.bin",
        &[("Authorization", &bearer)],
    );
    let failed = json(&r);
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("zero bytes"));
    assert!(r.header("cache-control").unwrap().starts_with("private"));
    let wrong = http_get(
        server.http,
        "/api/torrents",
        &[("Authorization", "Bearer publisher-token-0123456780")],
    );
    assert_eq!(json(&wrong).as_array().unwrap().len(), 1);

    // The page: a wrong token is refused; the right one sets the cookie and leaves the URL.
    let r = server.get("/?token=not-the-token");
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());
    let r = server.get(&format!("/?q=i&token={TOKEN}"));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/?q=i"));
    let cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is not the token: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let r = http_get(server.http, "/", &[("Cookie", &pair)]);
    let page = text(&r);
    assert!(page.contains("Publisher view"), "{page}");
    assert!(page.contains("copying.iso") && page.contains("waiting for the copy to finish"));
    assert!(
        page.contains("empty.bin") && page.contains("zero bytes"),
        "{page}"
    );
    assert_eq!(r.header("cache-control"), Some("private, no-cache"));
    assert!(r.header("vary").unwrap().contains("Cookie"));
    // The API reads the same cookie (the page's script polls it).
    let r = http_get(server.http, "/api/torrents", &[("Cookie", &pair)]);
    assert_eq!(json(&r).as_array().unwrap().len(), 3);
    let r = http_get(server.http, "/?logout", &[("Cookie", &pair)]);
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));

    // Once the copy is closed it is published, for everyone.
    drop(writing);
    server.wait_published("copying.iso", None);
    assert!(text(&server.get("/")).contains("copying.iso"));
}

/// The SHA-256 of every file (not a v2 Merkle root) is computed while hashing, shown in the API
/// (`sha256`, and `file_list` for one entry) and on the page, and kept in the store: a restart
/// hashes nothing and still has them. A store row without them (written by an older bitseed) has
/// them read again in the background.
#[test]
fn every_files_sha256_is_shown_and_kept() {
    let d = dirs();
    let one = data(1_500_000, 1);
    std::fs::write(d.content.join("one.iso"), &one).unwrap();
    write_tree(&d.content, &[("set/a.txt", 100), ("set/sub/b.bin", 70_000)]);
    write_tree(&d.content, &[("set/empty", 0)]);
    let want_set: Vec<(String, String)> = [("a.txt", 100, 1), ("sub/b.bin", 70_000, 2)]
        .iter()
        .map(|(p, len, seed)| (p.to_string(), sha256_hex(&data(*len, *seed))))
        .chain([("empty".to_string(), sha256_hex(b""))])
        .collect();
    let check = |server: &Server| {
        let t = server.wait_published("one.iso", None);
        assert_eq!(t["sha256"], sha256_hex(&one));
        assert_ne!(t["sha256"], t["info_hash_v2"]);
        let set = json(&server.get("/api/torrents/by-name/set"));
        assert_eq!(set["sha256"], Value::Null, "a folder has one per file");
        let mut got: Vec<(String, String)> = set["file_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_owned(),
                    f["sha256"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        got.sort();
        let mut want = want_set.clone();
        want.sort();
        assert_eq!(got, want);
        let page = text(&server.get("/"));
        assert!(page.contains(&sha256_hex(&one)));
        for (_, sum) in &want_set {
            assert!(page.contains(sum.as_str()), "{sum} on the page");
        }
    };
    let server = Server::start(&d.content, &d.state, &["--format", "hybrid"]);
    server.wait_published("set", None);
    check(&server);
    server.stop();

    let server = Server::start(&d.content, &d.state, &["--format", "hybrid"]);
    let line = server.wait_log("to hash", Duration::from_secs(20));
    assert!(
        line.contains("2 entries unchanged") && line.contains(" 0 to hash"),
        "{line}"
    );
    check(&server);
    server.stop();

    // As an older bitseed left the store: no digests.
    let db = rusqlite::Connection::open(d.state.join("catalog.sqlite")).unwrap();
    db.execute("UPDATE entries SET sha256 = NULL", []).unwrap();
    drop(db);
    let server = Server::start(&d.content, &d.state, &["--format", "hybrid"]);
    server.wait_log("reading the SHA-256 of 2 entries", Duration::from_secs(20));
    eventually(Duration::from_secs(30), "never read", || {
        !server.wait_published("one.iso", None)["sha256"].is_null()
    });
    check(&server);
    assert!(!server.log.lock().unwrap().contains("hashing `one.iso`"));
    server.stop();
    let db = rusqlite::Connection::open(d.state.join("catalog.sqlite")).unwrap();
    let kept: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM entries WHERE sha256 IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 2);
}

/// Stops `server`, sets each entry's publication time in the store, and starts it again: dates
/// that differ, without waiting for the clock.
fn with_dates(server: Server, d: &Dirs, dates: &[(&str, i64)], extra: &str) -> Server {
    server.stop();
    let db = rusqlite::Connection::open(d.state.join("catalog.sqlite")).unwrap();
    for (name, at) in dates {
        let n = db
            .execute(
                "UPDATE entries SET updated_at = ?2 WHERE name = ?1",
                rusqlite::params![name, at],
            )
            .unwrap();
        assert_eq!(n, 1, "{name}");
    }
    drop(db);
    Server::with_config(d, &config(extra))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The list sorts by name (A to Z), date (newest first) and size (largest first), a page at a
/// time with the `next` cursor; the page shows the sort chosen and each entry's date.
#[test]
fn entries_sort_by_name_date_and_size() {
    let d = dirs();
    for (name, len) in [
        ("b.bin", 3000),
        ("a.bin", 1000),
        ("d.bin", 4000),
        ("c.bin", 2000),
    ] {
        std::fs::write(d.content.join(name), data(len, len as u64)).unwrap();
    }
    let server = Server::with_config(&d, &config(""));
    for name in ["a.bin", "b.bin", "c.bin", "d.bin"] {
        server.wait_published(name, None);
    }
    // 2026-01-0X, c newest.
    let dates = [
        ("a.bin", 1_767_225_600 + 86_400),
        ("b.bin", 1_767_225_600),
        ("c.bin", 1_767_225_600 + 3 * 86_400),
        ("d.bin", 1_767_225_600 + 2 * 86_400),
    ];
    let server = with_dates(server, &d, &dates, "");
    server.wait_published("d.bin", None);
    let list = |q: &str| json(&server.get(&format!("/api/torrents?{q}")));
    assert_eq!(names(&list("")), ["a.bin", "b.bin", "c.bin", "d.bin"]);
    assert_eq!(
        names(&list("sort=name")),
        ["a.bin", "b.bin", "c.bin", "d.bin"]
    );
    assert_eq!(
        names(&list("sort=date")),
        ["c.bin", "d.bin", "a.bin", "b.bin"]
    );
    assert_eq!(
        names(&list("sort=size")),
        ["d.bin", "b.bin", "c.bin", "a.bin"]
    );
    assert_eq!(list("sort=date")[0]["published_at"], "2026-01-04T00:00:00Z");
    assert_eq!(server.get("/api/torrents?sort=colour").status, 400);

    // Page by page, following `next`.
    for (sort, want) in [
        ("date", ["c.bin", "d.bin", "a.bin", "b.bin"]),
        ("size", ["d.bin", "b.bin", "c.bin", "a.bin"]),
        ("name", ["a.bin", "b.bin", "c.bin", "d.bin"]),
    ] {
        let mut got = Vec::new();
        let mut path = format!("/api/torrents?limit=3&sort={sort}");
        loop {
            let r = server.get(&path);
            got.extend(names(&json(&r)));
            match r.header("link") {
                Some(l) => {
                    let url = l.split(';').next().unwrap();
                    path = url.trim_matches(['<', '>', ' ']).to_owned();
                    assert!(path.contains(&format!("sort={sort}")) || sort == "name");
                }
                None => break,
            }
        }
        assert_eq!(got, want, "{sort}");
    }

    let page = text(&server.get("/?sort=size"));
    assert!(page.contains("<option value=size selected>"), "{page}");
    let order: Vec<usize> = ["d.bin", "b.bin", "c.bin", "a.bin"]
        .iter()
        .map(|n| page.find(&format!("<h2>{n}</h2>")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(page.contains("<time datetime=\"2026-01-04T00:00:00Z\">4 Jan 2026</time>"));
    let page = text(&server.get("/?sort=date&limit=2"));
    assert!(
        page.contains("?after=") && page.contains("sort=date"),
        "{page}"
    );

    // Touched, not changed: hashed again to the same torrent, it keeps its date.
    let f = std::fs::File::options()
        .write(true)
        .open(d.content.join("b.bin"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    eventually(Duration::from_secs(30), "b.bin never hashed again", || {
        server.log.lock().unwrap().contains("published `b.bin`")
    });
    let b = server.wait_published("b.bin", None);
    assert_eq!(b["published_at"], "2026-01-01T00:00:00Z");
}

/// Links by name outlive new versions: `/api/torrents/by-name/{name}`, `/latest/{name}.torrent`
/// (served, not redirected) and `/latest/{name}.magnet` (a redirect to the magnet) give the
/// current info hash after the file changes; names that need escaping work at the URLs the API
/// gives; an unknown name is a 404.
#[test]
fn links_by_name_follow_new_versions() {
    let d = dirs();
    let name = "release 1+1 100%.iso";
    let enc = "release%201%2B1%20100%25.iso";
    std::fs::write(d.content.join(name), data(50_000, 1)).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    let first = server.wait_published(name, None);
    let first_hash = first["info_hash"].as_str().unwrap().to_owned();

    let check = |hash: &str| {
        let t = json(&server.get(&format!("/api/torrents/by-name/{enc}")));
        assert_eq!(t["info_hash"], hash);
        assert_eq!(t["file_list"][0]["path"], name);
        let r = server.get(&format!("/latest/{enc}.torrent"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/x-bittorrent"));
        assert_eq!(r.header("cache-control"), Some("private, no-cache"));
        let meta = bitseed::metainfo::Metainfo::from_bytes(&r.body).unwrap();
        assert_eq!(hex::encode(meta.info_hash.v1.unwrap()), hash);
        let r = server.get(&format!("/latest/{enc}.magnet"));
        assert_eq!(r.status, 302);
        let to = r.header("location").unwrap();
        assert!(
            to.starts_with(&format!("magnet:?xt=urn:btih:{hash}")),
            "{to}"
        );
        assert_eq!(to, t["magnet"]);
        let head = http_request(server.http, "HEAD", &format!("/latest/{enc}.torrent"), &[]);
        assert_eq!(head.status, 200);
    };
    check(&first_hash);
    std::fs::write(d.content.join(name), data(60_000, 2)).unwrap();
    let second = server.wait_published(name, Some(&first_hash));
    let second_hash = second["info_hash"].as_str().unwrap();
    assert_ne!(second_hash, first_hash);
    check(second_hash);

    for path in [
        "/latest/nothing.torrent",
        "/latest/nothing.magnet",
        &format!("/latest/{enc}"),
        "/api/torrents/by-name/nothing",
    ] {
        assert_eq!(server.get(path).status, 404, "{path}");
    }
    let page = text(&server.get("/"));
    assert!(
        page.contains(&format!("href=\"latest/{enc}.torrent\"")),
        "{page}"
    );
}

/// `/feed.atom` is Atom that Python's XML parser reads, with the published entries newest
/// first (each version its own entry), names that XML cannot hold as they are (a control
/// character, markup) made safe, and links that work.
#[test]
fn the_atom_feed_lists_releases_newest_first() {
    if !have_client("python3", &["--version"]) {
        return;
    }
    let d = dirs();
    let odd = "odd \u{1} <name> & more.bin";
    for (name, len) in [("old.iso", 1000), ("new.iso", 2000), (odd, 3000)] {
        std::fs::write(d.content.join(name), data(len, len as u64)).unwrap();
    }
    std::fs::write(d.content.join("empty.bin"), b"").unwrap();
    let server = Server::with_config(&d, &config(""));
    for name in ["old.iso", "new.iso", odd] {
        server.wait_published(name, None);
    }
    let server = with_dates(
        server,
        &d,
        &[
            ("old.iso", 1_767_225_600),
            ("new.iso", 1_767_225_600 + 86_400),
            (odd, 1_767_225_600 + 3600),
        ],
        "",
    );
    server.wait_published("new.iso", None);
    let r = server.get("/feed.atom");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/atom+xml; charset=utf-8")
    );
    let script = r#"
import json, sys
import xml.etree.ElementTree as ET
ns = {'a': 'http://www.w3.org/2005/Atom'}
feed = ET.fromstring(sys.stdin.buffer.read())
def links(e):
    return [{'rel': l.get('rel'), 'title': l.get('title'), 'href': l.get('href')} for l in e.findall('a:link', ns)]
print(json.dumps({
    'title': feed.findtext('a:title', namespaces=ns),
    'id': feed.findtext('a:id', namespaces=ns),
    'updated': feed.findtext('a:updated', namespaces=ns),
    'author': feed.findtext('a:author/a:name', namespaces=ns),
    'links': links(feed),
    'entries': [{
        'title': e.findtext('a:title', namespaces=ns),
        'id': e.findtext('a:id', namespaces=ns),
        'updated': e.findtext('a:updated', namespaces=ns),
        'summary': e.findtext('a:summary', namespaces=ns),
        'links': links(e),
    } for e in feed.findall('a:entry', ns)],
}))
"#;
    let mut py = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the feed does not parse: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        text(&r)
    );
    let feed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(feed["title"], "Example <Project> & downloads");
    assert_eq!(feed["author"], "Example <Project> & downloads");
    assert_eq!(feed["updated"], "2026-01-02T00:00:00Z");
    assert_eq!(feed["id"], server.url("/feed.atom"));
    let entries = feed["entries"].as_array().unwrap();
    let titles: Vec<&str> = entries
        .iter()
        .map(|e| e["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["new.iso", "odd \u{FFFD} <name> & more.bin", "old.iso"]
    );
    let new = server.wait_published("new.iso", None);
    assert_eq!(
        entries[0]["id"],
        format!("urn:btih:{}", new["info_hash"].as_str().unwrap())
    );
    assert_eq!(entries[0]["updated"], "2026-01-02T00:00:00Z");
    assert!(entries[0]["summary"]
        .as_str()
        .unwrap()
        .contains(&sha256_hex(&data(2000, 2000))));
    // Every link works: the page, the .torrent, the direct download, the latest version.
    let mut followed = 0;
    for e in entries.iter().chain(std::iter::once(&feed)) {
        for l in e["links"].as_array().unwrap() {
            let href = l["href"].as_str().unwrap();
            if let Some(path) = href.strip_prefix(&server.url("")) {
                let r = server.get(path);
                assert_eq!(r.status, 200, "{href}");
                followed += 1;
            } else {
                assert!(href.starts_with("magnet:?xt=urn:btih:"), "{href}");
            }
        }
    }
    assert_eq!(followed, 3 * 4 + 2);
    let torrent = entries[0]["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "enclosure")
        .unwrap();
    let body = server.get(
        torrent["href"]
            .as_str()
            .unwrap()
            .strip_prefix(&server.url(""))
            .unwrap(),
    );
    bitseed::metainfo::Metainfo::from_bytes(&body.body).expect("the enclosure is the torrent");
    // The page names its feed.
    assert!(text(&server.get("/")).contains("type=application/atom+xml"));
}

/// .torrent fetches and direct downloads are counted per entry (a HEAD, a 304, a range and a
/// BitTorrent client's web seed request are not), shown in the API and on the page, and kept
/// across a restart.
#[test]
fn downloads_and_torrent_fetches_are_counted_and_kept() {
    let d = dirs();
    let body = data(200_000, 1);
    std::fs::write(d.content.join("f.bin"), &body).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    server.wait_published("f.bin", None);
    let r = server.get("/torrents/f.bin.torrent");
    assert_eq!(r.status, 200);
    let etag = r.header("etag").unwrap().to_owned();
    assert_eq!(server.get("/latest/f.bin.torrent").status, 200);
    assert_eq!(server.get("/files/f.bin?torrent").status, 200);
    assert_eq!(
        http_request(server.http, "HEAD", "/torrents/f.bin.torrent", &[]).status,
        200
    );
    let r = http_get(
        server.http,
        "/torrents/f.bin.torrent",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 304);
    for _ in 0..2 {
        let r = server.get("/files/f.bin?download");
        assert_eq!(r.body, body);
    }
    let r = http_get(server.http, "/files/f.bin", &[("Range", "bytes=0-999")]);
    assert_eq!(r.status, 206);
    let r = http_get(
        server.http,
        "/files/f.bin",
        &[("User-Agent", "qBittorrent/4.6")],
    );
    assert_eq!(r.body.len(), body.len());

    let counted = |server: &Server| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Counted as the stream ends: the server may take a moment after the client read.
            let t = server.wait_published("f.bin", None);
            if t["direct_downloads"] == 2 || Instant::now() >= deadline {
                return t;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let t = counted(&server);
    assert_eq!(
        (&t["torrent_fetches"], &t["direct_downloads"]),
        (&json!(3), &json!(2))
    );
    let page = text(&server.get("/"));
    assert!(page.contains("<b class=fetches>3</b>"), "{page}");
    assert!(page.contains("<b class=direct>2</b>"), "{page}");
    assert_eq!(server.stop(), Some(0));

    let server = Server::start(&d.content, &d.state, &[]);
    let t = counted(&server);
    assert_eq!(
        (&t["torrent_fetches"], &t["direct_downloads"]),
        (&json!(3), &json!(2))
    );
}

/// The tracker's announces are a counter (`rate()` makes the rate), not a pre-computed gauge.
#[test]
fn announces_are_a_counter_in_metrics() {
    let d = dirs();
    std::fs::write(d.content.join("a.bin"), data(1000, 1)).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    let t = server.wait_published("a.bin", None);
    let before = server.metric("bitseed_tracker_announces_total").unwrap();
    for _ in 0..3 {
        let r = server.get(&crate::common::leecher_announce(
            t["info_hash"].as_str().unwrap(),
        ));
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        server.metric("bitseed_tracker_announces_total"),
        Some(before + 3)
    );
    let m = text(&server.get("/metrics"));
    assert!(m.contains("# TYPE bitseed_tracker_announces_total counter"));
    assert!(!m.contains("announces_per_second"), "{m}");
}
