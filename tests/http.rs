//! Issue 13, "HTTP, as nginx does it": methods, types, caching, compression, error pages, the
//! access log and the request counters, each through the real binary over a socket.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// Lines of the server's log that contain `needle`, once there are at least `n` of them.
fn wait_lines(server: &Server, needle: &str, n: usize) -> Vec<String> {
    poll(Duration::from_secs(30), Duration::from_millis(50), || {
        let log = server.log.lock().unwrap();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect();
        if lines.len() >= n {
            return Ok(lines);
        }
        Err(format!("fewer than {n} lines with {needle:?}; log:\n{log}"))
    })
}

/// The body-bytes field of an access log line: `CLIENT "METHOD PATH" STATUS BYTES MSms`.
fn logged_bytes(line: &str) -> u64 {
    let after = line.rsplit_once('"').expect("a quoted request").1;
    after
        .split_whitespace()
        .nth(1)
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line:?}"))
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

/// Any method but GET and HEAD on a route that exists is a 405 naming the methods it takes
/// (the tracker's routes too); a path where nothing is stays a 404.
#[test]
fn other_methods_get_405_with_allow() {
    let d = dirs();
    std::fs::write(d.content.join("a.bin"), data(1000, 1)).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    server.wait_published("a.bin", None);
    for path in [
        "/",
        "/api/torrents",
        &format!("/api/torrents/{}", "0".repeat(40)),
        "/torrents/a.bin.torrent",
        "/files/a.bin",
        "/metrics",
        "/healthz",
    ] {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let r = http_request(server.http, method, path, &[("Content-Length", "0")]);
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method} {path}");
            let body = String::from_utf8_lossy(&r.body);
            assert!(body.contains(method), "{method} {path}: {body}");
        }
    }
    for path in ["/announce", "/scrape"] {
        let r = http_request(server.http, "POST", path, &[("Content-Length", "0")]);
        assert_eq!((r.status, r.header("allow")), (405, Some("GET")), "{path}");
    }
    // GET still reaches the tracker.
    let r = server.get(&crate::common::leecher_announce(&"ab".repeat(20)));
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with(b"d"), "a bencoded answer");
    let r = http_request(
        server.http,
        "POST",
        "/nothing/here",
        &[("Content-Length", "0")],
    );
    assert_eq!(r.status, 404);
}

/// `/files` sends the type the name says, so a PDF or a video opens in the browser; `?download`
/// (the page's link) saves it instead; pages and SVG run in a sandbox.
#[test]
fn files_are_typed_by_name_and_download_saves_them() {
    let d = dirs();
    std::fs::write(d.content.join("guide.pdf"), b"%PDF-1.4\n%%EOF\n").unwrap();
    std::fs::write(d.content.join("page.html"), b"<script>alert(1)</script>").unwrap();
    std::fs::write(d.content.join("noext"), data(100, 1)).unwrap();
    write_tree(
        &d.content,
        &[("pack/notes.txt", 100), ("pack/clip.mp4", 100)],
    );
    let server = Server::start(&d.content, &d.state, &[]);
    for name in ["guide.pdf", "page.html", "noext", "pack"] {
        server.wait_published(name, None);
    }
    let r = server.get("/files/guide.pdf");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/pdf"));
    assert_eq!(r.header("content-disposition"), None, "opens inline");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("content-security-policy"), None);
    for method in ["GET", "HEAD"] {
        let r = http_request(server.http, method, "/files/guide.pdf?download", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-disposition"),
            Some("attachment; filename=\"guide.pdf\"; filename*=UTF-8''guide.pdf"),
            "{method}"
        );
        assert_eq!(r.header("content-type"), Some("application/pdf"));
    }
    let r = server.get("/files/page.html");
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("content-security-policy"), Some("sandbox"));
    let r = server.get("/files/noext");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let r = server.get("/files/pack/notes.txt");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let r = server.get("/files/pack/clip.mp4?download");
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    assert!(r
        .header("content-disposition")
        .is_some_and(|v| v.contains("filename=\"clip.mp4\"")));
    // The page's direct link saves a file; a folder's leads to its listing.
    let html = String::from_utf8(server.get("/").body).unwrap();
    assert!(html.contains("/files/guide.pdf?download\""), "{html}");
    assert!(html.contains("/files/pack/\""), "{html}");
}

/// Every route says how it may be cached: content by name is kept but checked each time (a
/// file replaced under its name must never be served stale), the page and the API for a few
/// seconds, live numbers and errors never.
#[test]
fn every_route_says_how_to_cache() {
    let d = dirs();
    std::fs::write(d.content.join("a.bin"), data(1000, 1)).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    let t = server.wait_published("a.bin", None);
    let ih = t["info_hash"].as_str().unwrap().to_owned();
    let cases = [
        ("/".to_owned(), "private, max-age=5"),
        ("/api/torrents".to_owned(), "private, max-age=5"),
        (format!("/api/torrents/{ih}"), "private, max-age=5"),
        ("/torrents/a.bin.torrent".to_owned(), "private, no-cache"),
        ("/files/a.bin".to_owned(), "public, no-cache"),
        ("/metrics".to_owned(), "no-store"),
        ("/healthz".to_owned(), "no-store"),
        (crate::common::leecher_announce(&ih), "no-store"),
        ("/no/such/thing".to_owned(), "no-store"),
    ];
    for (path, want) in &cases {
        let r = server.get(path);
        assert_eq!(r.header("cache-control"), Some(*want), "{path}");
    }
    // A revalidation keeps the policy.
    let r = server.get("/files/a.bin");
    let etag = r.header("etag").unwrap().to_owned();
    let again = http_get(server.http, "/files/a.bin", &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert_eq!(again.header("cache-control"), Some("public, no-cache"));
    let r = http_request(server.http, "POST", "/", &[("Content-Length", "0")]);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    drop(server);

    // With public_url the links are the same for everyone: shared caches may keep them.
    let server = Server::start(
        &d.content,
        &d.state,
        &["--public-url", "https://dl.example.com"],
    );
    server.wait_published("a.bin", None);
    for (path, want) in [
        ("/", "public, max-age=5"),
        ("/api/torrents", "public, max-age=5"),
        ("/torrents/a.bin.torrent", "public, no-cache"),
    ] {
        assert_eq!(
            server.get(path).header("cache-control"),
            Some(want),
            "{path}"
        );
    }
}

/// The page, the API and /metrics are compressed when asked; their ETags are weak (the bytes
/// differ by encoding) and an unchanged poll is a 304 either way. .torrent files and /files are
/// sent as they are, ranges included.
#[test]
fn page_api_and_metrics_are_compressed_and_revalidated() {
    let d = dirs();
    for i in 0..20 {
        std::fs::write(d.content.join(format!("item{i:02}.bin")), data(100, i)).unwrap();
    }
    let server = Server::start(&d.content, &d.state, &[]);
    let t = server.wait_published("item19.bin", None);
    let ih = t["info_hash"].as_str().unwrap().to_owned();
    while server
        .torrents()
        .iter()
        .filter(|t| t["status"] == "published")
        .count()
        < 20
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let plain = server.get("/api/torrents");
    let gz = http_get(server.http, "/api/torrents", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(
        gz.header("vary")
            .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
        "{:?}",
        gz.headers
    );
    assert!(
        gz.body.len() < plain.body.len() / 3,
        "{} vs {}",
        gz.body.len(),
        plain.body.len()
    );
    let a: Value = serde_json::from_slice(&gunzip(&gz.body)).unwrap();
    let b: Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(a, b);
    let br = http_get(server.http, "/", &[("Accept-Encoding", "br")]);
    assert_eq!(
        (br.status, br.header("content-encoding")),
        (200, Some("br"))
    );

    for path in [
        "/".to_owned(),
        "/api/torrents".to_owned(),
        format!("/api/torrents/{ih}"),
    ] {
        let r = http_get(server.http, &path, &[("Accept-Encoding", "gzip")]);
        let etag = r.header("etag").unwrap().to_owned();
        assert!(etag.starts_with("W/\""), "{path}: {etag}");
        for encoding in ["gzip", "identity"] {
            let again = http_get(
                server.http,
                &path,
                &[("Accept-Encoding", encoding), ("If-None-Match", &etag)],
            );
            assert_eq!(
                (again.status, again.body.len()),
                (304, 0),
                "{path} {encoding}"
            );
        }
    }
    let m = http_get(server.http, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(m.header("content-encoding"), Some("gzip"));
    assert!(String::from_utf8(gunzip(&m.body))
        .unwrap()
        .contains("bitseed_http_requests_total"));

    for path in ["/torrents/item00.bin.torrent", "/files/item00.bin"] {
        let r = http_get(server.http, path, &[("Accept-Encoding", "gzip, br")]);
        assert_eq!(
            (r.status, r.header("content-encoding")),
            (200, None),
            "{path}"
        );
    }
    let r = http_get(
        server.http,
        "/files/item00.bin",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=10-19")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, data(100, 0)[10..20]);
}

/// Errors have a body a person can read, in the form asked: HTML for a browser, JSON under
/// /api, plain text for the rest.
#[test]
fn errors_are_readable_in_the_form_asked() {
    let d = dirs();
    std::fs::write(d.content.join("a.bin"), data(1000, 1)).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    server.wait_published("a.bin", None);
    let browser = [("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
    for path in [
        "/no/such/thing",
        "/files/nothing.iso",
        "/torrents/nothing.torrent",
    ] {
        let r = http_get(server.http, path, &browser);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.contains("<h1>Not Found</h1>") && body.contains("href=\"/\""),
            "{body}"
        );
        let r = server.get(path);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.starts_with("404 Not Found: "), "{body}");
    }
    let r = http_get(
        server.http,
        &format!("/api/torrents/{}", "0".repeat(40)),
        &browser,
    );
    assert_eq!(
        (r.status, r.header("content-type")),
        (404, Some("application/json"))
    );
    let j: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["status"], 404);
    assert!(j["error"].as_str().unwrap().contains("info hash"), "{j}");
    let r = server.get("/api/torrents?limit=lots");
    assert_eq!(r.status, 400);
    let j: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["status"], 400);
    // A range past the end: 416 with the length, and words.
    let r = http_get(server.http, "/files/a.bin", &[("Range", "bytes=5000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));
    assert!(String::from_utf8_lossy(&r.body).contains("1000-byte file"));
    // Refused heads too.
    let r = server.get(&format!("/{}", "x".repeat(9000)));
    assert_eq!(r.status, 414);
    assert!(String::from_utf8_lossy(&r.body).starts_with("414 URI Too Long: "));
}

/// An access log line per request (client through the trusted proxy, method, path without
/// the query, status, bytes sent, duration), and counters by route pattern and status whose
/// number does not grow with the paths asked for. `http.access_log = false` turns the lines off.
#[test]
fn access_log_lines_and_request_counters() {
    let d = dirs();
    std::fs::write(d.content.join("a.bin"), data(1000, 1)).unwrap();
    let server = Server::start_env(
        &d,
        &[],
        &[("BITSEED_TRACKER__TRUSTED_PROXIES", "127.0.0.1")],
    );
    server.wait_published("a.bin", None);
    assert_eq!(server.get("/files/a.bin").status, 200);
    let line = server.wait_log("\"GET /files/a.bin\" 200 1000 ", Duration::from_secs(20));
    assert!(
        line.contains("bitseed::access") && line.contains(" INFO "),
        "{line}"
    );
    assert!(line.contains("127.0.0.1 \"GET"), "{line}");
    assert!(line.trim_end().ends_with("ms"), "{line}");
    http_get(
        server.http,
        "/files/a.bin?token=secret",
        &[("X-Forwarded-For", "198.51.100.7")],
    );
    let line = server.wait_log(
        "198.51.100.7 \"GET /files/a.bin\" 200 1000",
        Duration::from_secs(20),
    );
    assert!(
        !line.contains("secret"),
        "the query stays out of the log: {line}"
    );
    http_request(server.http, "HEAD", "/files/a.bin", &[]);
    server.wait_log("\"HEAD /files/a.bin\" 200 0 ", Duration::from_secs(20));

    for i in 0..20 {
        assert_eq!(server.get(&format!("/random/{i}")).status, 404);
    }
    let m = String::from_utf8(server.get("/metrics").body).unwrap();
    assert!(!m.contains("/random/"), "{m}");
    let unmatched: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("bitseed_http_requests_total{route=\"unmatched\""))
        .collect();
    assert_eq!(unmatched.len(), 1, "{m}");
    assert!(
        server
            .metric("bitseed_http_requests_total{route=\"unmatched\",status=\"404\"}")
            .unwrap()
            >= 20
    );
    assert!(
        server
            .metric("bitseed_http_requests_total{route=\"/files/{path:.*}\",status=\"200\"}")
            .unwrap()
            >= 3
    );
    drop(server);

    let d = dirs();
    std::fs::write(d.content.join("a.bin"), data(1000, 1)).unwrap();
    let server = Server::with_config(&d, "[http]\naccess_log = false\n");
    server.wait_published("a.bin", None);
    assert_eq!(server.get("/files/a.bin").status, 200);
    assert_eq!(server.get("/").status, 200);
    let log = server.log.clone();
    assert_eq!(server.stop(), Some(0));
    let log = log.lock().unwrap();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("bitseed::access"), "{log}");
}

/// `bitseed_http_file_bytes_total` (and the access log) count what left, not what was asked: a
/// download abandoned after a few KB adds a few MB at most (socket buffers), not its length.
#[test]
fn file_bytes_count_what_was_sent() {
    const LEN: usize = 32 << 20;
    let d = dirs();
    std::fs::write(d.content.join("big.bin"), data(LEN, 3)).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    server.wait_published("big.bin", None);
    let before = server.metric("bitseed_http_file_bytes_total").unwrap();
    let r = server.get("/files/big.bin");
    assert_eq!(r.body.len(), LEN);
    let whole = format!("\"GET /files/big.bin\" 200 {LEN} ");
    server.wait_log(&whole, Duration::from_secs(20));
    let after_whole = server.metric("bitseed_http_file_bytes_total").unwrap();
    assert_eq!(after_whole - before, LEN as u64);

    // A client that reads 64 KiB through a small receive buffer, then goes away.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&server.http.into()).unwrap();
    let mut s: std::net::TcpStream = socket.into();
    write!(
        s,
        "GET /files/big.bin HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.http
    )
    .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 16 * 1024];
    while got < 64 * 1024 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed early");
        got += n;
    }
    drop(s);
    // The line is written when the response's body is dropped: when the connection failed.
    let lines = wait_lines(&server, "\"GET /files/big.bin\" 200 ", 2);
    let sent = logged_bytes(&lines[1]);
    assert!(sent < LEN as u64 / 2, "logged {sent} of {LEN}");
    let counted = server.metric("bitseed_http_file_bytes_total").unwrap() - after_whole;
    assert!(counted < LEN as u64 / 2, "counted {counted} of {LEN}");
}
