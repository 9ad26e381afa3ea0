//! WebTorrent 3 (Node.js, `tests/interop/webtorrent`, without WebRTC or uTP) downloading from
//! bitseed: from the web seed alone, and from the seeder found through the tracker.

use std::path::Path;

use crate::common::*;
use crate::common::{dirs, Dirs, Server};

/// A 3 MiB file and a folder, published in `format`.
fn published(format: &str) -> (Dirs, Server) {
    let d = dirs();
    std::fs::write(d.content.join("one.bin"), data(3 << 20, 61)).unwrap();
    write_tree(
        &d.content.join("pack"),
        &[("a.bin", 1 << 20), ("sub/b.bin", 100_001)],
    );
    let server = Server::start(&d.content, &d.state, &["--format", format]);
    server.wait_published("one.bin", None);
    server.wait_published("pack", None);
    (d, server)
}

/// WebTorrent downloads `torrent` with `flags`; panics with its report and bitseed's log if it
/// fails.
fn download(server: &Server, torrent: &Path, out: &Path, flags: &[&str]) {
    let o = webtorrent_download(torrent, out, flags);
    assert!(
        o.status.success(),
        "WebTorrent {flags:?} on {}: {}\n{}\n--- bitseed's log:\n{}",
        torrent.display(),
        stdout(&o),
        stderr(&o),
        server.log.lock().unwrap()
    );
}

fn assert_same(d: &Dirs, out: &Path, rels: &[&str], what: &str) {
    for rel in rels {
        assert!(
            std::fs::read(out.join(rel)).unwrap() == std::fs::read(d.content.join(rel)).unwrap(),
            "{what}: {rel} is not the published bytes"
        );
    }
}

const FILES: [&str; 3] = ["one.bin", "pack/a.bin", "pack/sub/b.bin"];

/// The torrent as served, trackers taken out so the web seed is the only source: a single file
/// (whose `url-list` is the file's own URL: WebTorrent fetches the url-list as it is, so the
/// `/files/` root it was once given answered 404 and the download never started) and a folder
/// (the `/files/` root, to which it appends the name and path), v1 and hybrid.
#[test]
fn webtorrent_downloads_from_the_web_seed() {
    if !have_webtorrent() {
        return;
    }
    for format in ["v1", "hybrid"] {
        let (d, server) = published(format);
        let out = tempfile::tempdir().unwrap();
        for name in ["one.bin", "pack"] {
            let t = server.get(&format!("/torrents/{name}.torrent"));
            let path = out.path().join(format!("{name}.torrent"));
            std::fs::write(&path, &t.body).unwrap();
            download(&server, &path, out.path(), &["--no-tracker"]);
        }
        assert_same(&d, out.path(), &FILES, format);
        let web_seed = server
            .metric("bitseed_egress_bytes_total{channel=\"web_seed\"}")
            .unwrap();
        assert!(web_seed >= (3 << 20) + (1 << 20) + 100_001, "{format}");
        assert_eq!(
            server.metric("bitseed_peer_uploaded_bytes_total"),
            Some(0),
            "{format}"
        );
    }
}

/// From the peer port (web seed removed), found through the tracker, at WebTorrent's default
/// `secure: 1`: every outgoing connection opens with an MSE handshake and is retried the same
/// way, never in plaintext, so this needs the seeder's MSE.
#[test]
fn webtorrent_downloads_from_the_peer_port() {
    peer_port_case(&[], true);
}

/// From the peer port with encryption off (`secure: 0`): the plain BitTorrent handshake.
#[test]
fn webtorrent_downloads_from_the_peer_port_in_plaintext() {
    peer_port_case(&["--secure=0"], false);
}

fn peer_port_case(flags: &[&str], encrypted: bool) {
    if !have_webtorrent() {
        return;
    }
    for format in ["v1", "hybrid"] {
        let (d, server) = published(format);
        let out = tempfile::tempdir().unwrap();
        for name in ["one.bin", "pack"] {
            let t = torrent_without_web_seed(&server, name, out.path());
            download(
                &server,
                &t,
                out.path(),
                &[&["--no-webseed"], flags].concat(),
            );
        }
        assert_same(&d, out.path(), &FILES, format);
        let sent = server.metric("bitseed_peer_uploaded_bytes_total").unwrap();
        assert!(sent >= (3 << 20) + (1 << 20) + 100_001, "{format}: {sent}");
        let plain = server
            .metric("bitseed_peer_handshakes_total{encryption=\"plaintext\"}")
            .unwrap();
        assert_eq!(
            plain == 0,
            encrypted,
            "{format}: {plain} plaintext handshakes"
        );
    }
}
