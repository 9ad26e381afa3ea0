//! `bitseed serve` end to end: the real binary on temporary folders, spoken to over HTTP.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

#[test]
fn dropped_file_is_published_with_links_and_web_seed() {
    let d = dirs();
    let bytes = data(300_000, 9);
    let server = Server::start(&d.content, &d.state, &["--format", "hybrid"]);
    std::fs::write(d.content.join("big file.bin"), &bytes).unwrap();
    let t = server.wait_published("big file.bin", None);
    assert_eq!(t["format"], "hybrid");
    assert_eq!(t["size"], 300_000);
    assert_eq!(t["files"], 1);
    for key in [
        "info_hash",
        "info_hash_v2",
        "torrent_url",
        "magnet",
        "download_url",
    ] {
        assert!(t[key].is_string(), "{key}: {t}");
    }
    let ih = t["info_hash"].as_str().unwrap();
    // One entry by either hash.
    for h in [ih, t["info_hash_v2"].as_str().unwrap()] {
        let one = server.get(&format!("/api/torrents/{h}"));
        assert_eq!(one.status, 200);
    }
    assert_eq!(
        server
            .get(&format!("/api/torrents/{}", "0".repeat(40)))
            .status,
        404
    );

    // The .torrent: right type, a file name, an ETag that works, announce and web seed filled in.
    let r = server.get("/torrents/big%20file.bin.torrent");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-bittorrent"));
    assert!(r
        .header("content-disposition")
        .unwrap()
        .contains("big file.bin.torrent"));
    let etag = r.header("etag").unwrap().to_owned();
    let again = http_get(
        server.http,
        "/torrents/big%20file.bin.torrent",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    let tdir = tempfile::tempdir().unwrap();
    let tpath = tdir.path().join("t.torrent");
    std::fs::write(&tpath, &r.body).unwrap();
    let j: Value = serde_json::from_str(&stdout(&run(&[
        "inspect",
        "--json",
        tpath.to_str().unwrap(),
    ])))
    .unwrap();
    assert_eq!(j["info_hash"], ih);
    assert_eq!(j["trackers"][0][0], server.url("/announce"));
    assert_eq!(j["web_seeds"][0], server.url("/files/big%20file.bin"));
    // S3 style: the file's URL with ?torrent.
    let s3 = server.get("/files/big%20file.bin?torrent");
    assert_eq!(s3.body, r.body);

    // Direct download with Range, If-Range and the validators.
    let full = server.get("/files/big%20file.bin");
    assert_eq!(full.status, 200);
    assert_eq!(full.body, bytes);
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    let etag = full.header("etag").unwrap().to_owned();
    assert!(full.header("last-modified").is_some());
    let part = http_get(
        server.http,
        "/files/big%20file.bin",
        &[("Range", "bytes=1000-1999")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 1000-1999/300000"));
    assert_eq!(part.body, &bytes[1000..2000]);
    let tail = http_get(
        server.http,
        "/files/big%20file.bin",
        &[("Range", "bytes=-10")],
    );
    assert_eq!(tail.body, &bytes[299_990..]);
    let if_range = http_get(
        server.http,
        "/files/big%20file.bin",
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    );
    assert_eq!(if_range.status, 206);
    let stale = http_get(
        server.http,
        "/files/big%20file.bin",
        &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")],
    );
    assert_eq!(stale.status, 200, "a stale If-Range gets the whole file");
    // CORS for browser clients.
    let cors = http_get(
        server.http,
        "/files/big%20file.bin",
        &[("Origin", "http://example.com"), ("Range", "bytes=0-0")],
    );
    assert!(cors.header("access-control-allow-origin").is_some());
    assert!(cors
        .header("access-control-expose-headers")
        .unwrap()
        .to_lowercase()
        .contains("content-range"));

    // The page lists it with its three links.
    let page = String::from_utf8(server.get("/").body).unwrap();
    assert!(page.contains("big file.bin"));
    assert!(
        page.contains(".torrent</a>")
            && page.contains("Magnet</a>")
            && page.contains("Download</a>")
    );
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.stop(), Some(0), "clean exit on SIGTERM");
}

#[test]
fn folders_pad_files_and_path_traversal() {
    let d = dirs();
    write_tree(
        &d.content.join("pack"),
        &[("a.bin", 20_000), ("sub/b.bin", 5_000)],
    );
    std::fs::write(d.content.join("pack/.hidden"), b"secret").unwrap();
    std::fs::write(d.content.join("outside-link-target"), b"x").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"top secret").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), d.content.join("pack/link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), d.content.join("escape")).unwrap();
    let server = Server::start(&d.content, &d.state, &["--format", "hybrid"]);
    let t = server.wait_published("pack", None);
    assert_eq!(
        t["files"], 2,
        "hidden files and symlinks are not published: {t}"
    );

    let b = server.get("/files/pack/sub/b.bin");
    assert_eq!(b.status, 200);
    assert_eq!(
        b.body,
        std::fs::read(d.content.join("pack/sub/b.bin")).unwrap()
    );
    // BEP 47 pad file after a.bin (20,000 bytes in 16 KiB pieces): 12,768 zeros, by Range too.
    let pad = server.get("/files/pack/.pad/12768");
    assert_eq!(pad.status, 200);
    assert_eq!(pad.body, vec![0u8; 12_768]);
    let pad_part = http_get(
        server.http,
        "/files/pack/.pad/12768",
        &[("Range", "bytes=100-199")],
    );
    assert_eq!((pad_part.status, pad_part.body.len()), (206, 100));
    assert_eq!(server.get("/files/pack/.pad/999").status, 404);

    for path in [
        "/files/../state/catalog.sqlite",
        "/files/%2e%2e/state/catalog.sqlite",
        "/files/pack/%2e%2e/outside-link-target",
        "/files/pack/../outside-link-target",
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
        "/files/pack/.hidden",
        "/files/pack/link",
        "/files/escape/secret",
        "/files/nothing",
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 404, "{path} must be 404, got {}", r.status);
        assert!(!String::from_utf8_lossy(&r.body).contains("secret"));
    }
}

#[test]
fn slow_writes_change_delete_and_restart() {
    let d = dirs();
    let server = Server::start(&d.content, &d.state, &["--settle", "2"]);

    // Written slowly over 5 s: published once, complete.
    let path = d.content.join("slow.bin");
    let bytes = data(500_000, 3);
    {
        let mut f = std::fs::File::create(&path).unwrap();
        for chunk in bytes.chunks(50_000) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let t = server.wait_published("slow.bin", None);
    assert_eq!(t["size"], 500_000);
    std::thread::sleep(Duration::from_millis(1500));
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.matches("published `slow.bin`").count(), 1, "{log}");
    let first = t["info_hash"].as_str().unwrap().to_owned();

    // Modified: a new info hash; the old one is gone.
    std::fs::write(&path, data(400_000, 4)).unwrap();
    let t2 = server.wait_published("slow.bin", Some(&first));
    assert_eq!(t2["size"], 400_000);
    assert_eq!(server.get(&format!("/api/torrents/{first}")).status, 404);
    // The tracker forgets the old hash and tracks the new one.
    let old = String::from_utf8_lossy(&server.get(&leecher_announce(&first)).body).into_owned();
    assert!(old.contains("unregistered torrent"), "{old}");
    let new = server.get(&leecher_announce(t2["info_hash"].as_str().unwrap()));
    let new = String::from_utf8_lossy(&new.body).into_owned();
    assert!(
        new.contains("8:intervali") && new.contains("5:peers"),
        "{new}"
    );

    // Renamed: republished under the new name, hashes reused.
    std::fs::rename(&path, d.content.join("renamed.bin")).unwrap();
    let t3 = server.wait_published("renamed.bin", None);
    assert_eq!(t3["size"], 400_000);
    server.wait_log("published `renamed.bin`", Duration::from_secs(10));
    assert!(server.log.lock().unwrap().contains("(hashes reused)"));

    // Deleted: it disappears.
    std::fs::remove_file(d.content.join("renamed.bin")).unwrap();
    eventually(
        Duration::from_secs(20),
        "deleted entry still listed",
        || server.torrents().is_empty(),
    );

    // A restart over unchanged content hashes nothing.
    std::fs::write(d.content.join("keep.bin"), data(200_000, 5)).unwrap();
    let kept = server.wait_published("keep.bin", None);
    assert_eq!(server.stop(), Some(0));
    let again = Server::start(&d.content, &d.state, &[]);
    let k2 = again.wait_published("keep.bin", None);
    assert_eq!(k2["info_hash"], kept["info_hash"]);
    again.wait_log("1 entry unchanged since last run", Duration::from_secs(5));
    let metrics = String::from_utf8(again.get("/metrics").body).unwrap();
    assert!(
        metrics.contains("bitseed_hashed_bytes_total 0"),
        "{metrics}"
    );
}

#[test]
fn check_prints_settings_and_bad_config_names_the_key() {
    let d = dirs();
    let o = bitseed()
        .args(["serve", "--check", "--content"])
        .arg(&d.content)
        .args(["--format", "v2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("format = \"v2\""), "{text}");
    // A Redis password in the cluster settings is not printed.
    let o = bitseed()
        .args(["serve", "--check"])
        .env(
            "BITSEED_CLUSTER__REDIS_URL",
            "redis://:s3cret@127.0.0.1:6379/0",
        )
        .env("BITSEED_CLUSTER__NODE_URL", "http://127.0.0.1:8080")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("redis://:***@127.0.0.1:6379/0"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    let bad = d.state.with_extension("toml");
    std::fs::write(&bad, "[torrent]\npiece_size = 12345\n").unwrap();
    let o = bitseed()
        .args(["serve", "--check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("torrent.piece_size"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1);
}

/// With no peer at all, aria2c still downloads every byte from the web seed (BEP 19), as S3's
/// BitTorrent fallback did — for a v1 file and a hybrid folder with pad files.
#[test]
fn aria2_downloads_from_the_web_seed_alone() {
    if !have_aria2() {
        return;
    }
    for format in ["v1", "hybrid"] {
        let d = dirs();
        write_tree(
            &d.content.join("pack"),
            &[("a.bin", 70_000), ("sub/b.txt", 6), ("z.bin", 40_000)],
        );
        std::fs::write(d.content.join("one.bin"), data(1_000_000, 8)).unwrap();
        let server = Server::start(&d.content, &d.state, &["--format", format]);
        server.wait_published("pack", None);
        server.wait_published("one.bin", None);
        let out = tempfile::tempdir().unwrap();
        for name in ["pack", "one.bin"] {
            let t = server.get(&format!("/torrents/{name}.torrent"));
            let tp = out.path().join(format!("{name}.torrent"));
            std::fs::write(&tp, &t.body).unwrap();
            let o = aria2c(out.path(), &tp);
            assert!(o.status.success(), "{format} {name}: {}", stdout(&o));
        }
        for rel in ["one.bin", "pack/a.bin", "pack/sub/b.txt", "pack/z.bin"] {
            assert_eq!(
                std::fs::read(out.path().join(rel)).unwrap(),
                std::fs::read(d.content.join(rel)).unwrap(),
                "{format}: {rel}"
            );
        }
        let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
        assert!(
            !metrics.contains("bitseed_http_file_bytes_total 0\n"),
            "{metrics}"
        );
    }
}

/// libtorrent downloads from the web seed alone (the tracker lists the seed at an address where
/// nothing listens): a single file, whose `url-list` is the file's own URL, and a folder, whose
/// is the `/files/` root — v1 and hybrid.
#[test]
fn libtorrent_downloads_from_the_web_seed_alone() {
    if !have_libtorrent() {
        return;
    }
    for format in ["v1", "hybrid"] {
        let d = dirs();
        std::fs::write(d.content.join("one.bin"), data(1_000_000, 8)).unwrap();
        write_tree(
            &d.content.join("pack"),
            &[("a.bin", 70_000), ("sub/b.txt", 6)],
        );
        let server = Server::with_config(
            &d,
            &format!("[torrent]\nformat = \"{format}\"\n[peer]\npublic_ip = \"127.0.0.254\"\n"),
        );
        let out = tempfile::tempdir().unwrap();
        for name in ["one.bin", "pack"] {
            server.wait_published(name, None);
            let tp = out.path().join(format!("{name}.torrent"));
            std::fs::write(&tp, server.get(&format!("/torrents/{name}.torrent")).body).unwrap();
            let o = std::process::Command::new("/usr/bin/python3")
                .arg(interop_script("lt_download.py"))
                .arg("--torrent")
                .arg(&tp)
                .arg("--save")
                .arg(out.path())
                .args(["--timeout", "60"])
                .output()
                .expect("run python3");
            assert!(
                o.status.success(),
                "{format} {name}: {}{}",
                stdout(&o),
                stderr(&o)
            );
        }
        for rel in ["one.bin", "pack/a.bin", "pack/sub/b.txt"] {
            assert_eq!(
                std::fs::read(out.path().join(rel)).unwrap(),
                std::fs::read(d.content.join(rel)).unwrap(),
                "{format}: {rel}"
            );
        }
        assert_eq!(
            server.metric("bitseed_peer_uploaded_bytes_total"),
            Some(0),
            "{format}"
        );
    }
}

/// SIGKILL right after publishing, then a restart: the catalog is whole and nothing is hashed.
#[test]
fn kill_9_then_restart_keeps_the_catalog() {
    let d = dirs();
    write_tree(&d.content, &[("a.bin", 150_000), ("dir/b.bin", 70_000)]);
    let server = Server::start(&d.content, &d.state, &["--format", "v2"]);
    let a = server.wait_published("a.bin", None);
    let dir = server.wait_published("dir", None);
    drop(server); // SIGKILL
    let again = Server::start(&d.content, &d.state, &["--format", "v2"]);
    assert_eq!(
        again.wait_published("a.bin", None)["info_hash_v2"],
        a["info_hash_v2"]
    );
    assert_eq!(
        again.wait_published("dir", None)["info_hash_v2"],
        dir["info_hash_v2"]
    );
    again.wait_log("2 entries unchanged since last run", Duration::from_secs(5));
    // Another format in the configuration: the entries are made again, not reused.
    drop(again);
    let other = Server::start(&d.content, &d.state, &["--format", "v1"]);
    let a1 = other.wait_published("a.bin", None);
    assert_eq!(a1["format"], "v1");
    other.wait_log("0 entries unchanged since last run", Duration::from_secs(5));
}

fn uploaded_over_peer_wire(server: &Server) -> u64 {
    server
        .metric("bitseed_peer_uploaded_bytes_total")
        .expect("a peer upload metric")
}

/// A file dropped in is found by aria2c through bitseed's tracker and downloaded from its
/// seeder (the web seed is taken out of the torrent), bytes equal — v1 single file and folder.
#[test]
fn aria2_downloads_through_the_tracker_and_the_seeder() {
    if !have_aria2() {
        return;
    }
    let d = dirs();
    let server = Server::start(&d.content, &d.state, &[]);
    std::fs::write(d.content.join("one.bin"), data(3_000_000, 21)).unwrap();
    write_tree(
        &d.content.join("pack"),
        &[("a.bin", 700_000), ("sub/b.bin", 123_457)],
    );
    server.wait_published("one.bin", None);
    server.wait_published("pack", None);
    let out = tempfile::tempdir().unwrap();
    for name in ["one.bin", "pack"] {
        let t = torrent_without_web_seed(&server, name, out.path());
        let o = aria2c(out.path(), &t);
        assert!(
            o.status.success(),
            "{name}: {}\n{}",
            stdout(&o),
            server.log.lock().unwrap()
        );
    }
    for rel in ["one.bin", "pack/a.bin", "pack/sub/b.bin"] {
        assert_eq!(
            std::fs::read(out.path().join(rel)).unwrap(),
            std::fs::read(d.content.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(uploaded_over_peer_wire(&server) >= 3_000_000 + 700_000 + 123_457);
}

/// rtorrent (libtorrent-rakshasa, TCP only), headless, downloads a folder torrent through the
/// tracker and the seeder, from the .torrent and from the magnet link (web seed removed from
/// both). Each case has a server of its own: rtorrent treats peers of one IP address as one peer,
/// and on loopback a killed rtorrent left in the swarm would hide our seed from the next.
#[test]
fn rtorrent_downloads_through_the_tracker_and_the_seeder() {
    if !have_rtorrent() {
        return;
    }
    // Killed when dropped: rtorrent in daemon mode seeds until stopped.
    struct Rtorrent(std::process::Child);
    impl Drop for Rtorrent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    for how in ["magnet", "torrent"] {
        let d = dirs();
        let server = Server::start(&d.content, &d.state, &[]);
        write_tree(
            &d.content.join("pack"),
            &[("a.bin", 900_000), ("sub/b.bin", 54_321)],
        );
        let t = server.wait_published("pack", None);
        let work = tempfile::tempdir().unwrap();
        let source = match how {
            "magnet" => t["magnet"]
                .as_str()
                .unwrap()
                .split("&ws=")
                .next()
                .unwrap()
                .to_owned(),
            _ => torrent_without_web_seed(&server, "pack", work.path())
                .display()
                .to_string(),
        };
        let (out, session) = (work.path().join("out"), work.path().join("session"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&session).unwrap();
        let _rtorrent = Rtorrent(
            std::process::Command::new("rtorrent")
                .args(["-n", "-o", "system.daemon.set=true", "-o"])
                .arg(format!("directory.default.set={}", out.display()))
                .arg("-o")
                .arg(format!("session.path.set={}", session.display()))
                .args([
                    "-o",
                    "network.port_range.set=49152-65000",
                    "-o",
                    "network.port_random.set=yes",
                ])
                .args(["-o", "dht.mode.set=disable", "-o", "protocol.pex.set=no"])
                .arg("-o")
                .arg(format!("load.start={source}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start rtorrent"),
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        let done = || {
            ["a.bin", "sub/b.bin"].iter().all(|rel| {
                std::fs::read(out.join("pack").join(rel)).ok()
                    == std::fs::read(d.content.join("pack").join(rel)).ok()
            })
        };
        while !done() {
            assert!(
                Instant::now() < deadline,
                "rtorrent ({how}) did not finish\n{}",
                server.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            uploaded_over_peer_wire(&server) >= 900_000 + 54_321,
            "{how}"
        );
    }
}

/// libtorrent, given only the magnet link from the API (web seed removed), gets the metadata and
/// the data from bitseed, found through its tracker — v1 and v2.
#[test]
fn libtorrent_downloads_from_the_magnet_link() {
    if !have_libtorrent() {
        return;
    }
    // Hybrid first: the magnet carries both hashes, libtorrent announces both at once, and the
    // tracker must list our seed to it under one of them only (see
    // hybrid_own_seed_is_listed_to_a_client_under_one_hash_only).
    for format in ["hybrid", "v1", "v2"] {
        let d = dirs();
        let server = Server::start(&d.content, &d.state, &["--format", format]);
        write_tree(
            &d.content.join("pack"),
            &[("a.bin", 900_000), ("b.bin", 50_001)],
        );
        let t = server.wait_published("pack", None);
        let magnet = t["magnet"].as_str().unwrap();
        let magnet = magnet.split("&ws=").next().unwrap().to_owned();
        let out = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new("/usr/bin/python3");
        cmd.arg(interop_script("lt_download.py"))
            .args(["--magnet", &magnet, "--save"])
            .arg(out.path())
            .args(["--timeout", "90"]);
        let o = cmd.output().expect("run python3");
        assert!(
            o.status.success(),
            "{format}: {}{}\n{}",
            stdout(&o),
            stderr(&o),
            server.log.lock().unwrap()
        );
        crate::common::assert_same_files(
            &out.path().join("pack"),
            &d.content.join("pack"),
            &["a.bin", "b.bin"],
            format,
        );
        // The tracker counted the downloader.
        poll(Duration::from_secs(10), Duration::from_millis(200), || {
            let t = server.wait_published("pack", None);
            (t["seeders"].as_u64().unwrap_or(0) >= 1)
                .then_some(())
                .ok_or(t.to_string())
        });
    }
}

/// A seeder listening on 0.0.0.0 without `peer.public_ip` is listed under the address the
/// client reached the tracker on.
#[test]
fn own_seed_on_any_address_is_listed_under_the_reached_address() {
    let d = dirs();
    let server = Server::start(&d.content, &d.state, &["--peer", "0.0.0.0:0"]);
    std::fs::write(d.content.join("f.bin"), data(50_000, 2)).unwrap();
    let t = server.wait_published("f.bin", None);
    let port = server.logged_addr("peer listening on ").port();
    let path = format!(
        "{}&compact=0",
        leecher_announce(t["info_hash"].as_str().unwrap())
    );
    let r = server.get(&path);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        body.contains(&format!("2:ip9:127.0.0.14:porti{port}e")),
        "{body}"
    );
}

/// A hybrid torrent is tracked under its v1 and truncated v2 hashes; a client announcing both
/// (as libtorrent does, at once) is given our own seed under the first one it asked about only:
/// given it under both, libtorrent 2.0 may reject our handshake as "invalid info-hash" and never
/// come back. A client announcing one hash only always gets it.
#[test]
fn hybrid_own_seed_is_listed_to_a_client_under_one_hash_only() {
    let d = dirs();
    let server = Server::start(&d.content, &d.state, &["--format", "hybrid"]);
    std::fs::write(d.content.join("h.bin"), data(50_000, 4)).unwrap();
    let t = server.wait_published("h.bin", None);
    let port = server.logged_addr("peer listening on ").port();
    let v1 = t["info_hash"].as_str().unwrap().to_owned();
    let v2 = t["info_hash_v2"].as_str().unwrap()[..40].to_owned();
    let own = format!("2:ip9:127.0.0.14:porti{port}e");
    let lists_own = |hash: &str, client_port: u16| {
        let path = leecher_announce(hash).replace("&port=6881", &format!("&port={client_port}"));
        let body = server.get(&format!("{path}&compact=0")).body;
        String::from_utf8_lossy(&body).contains(&own)
    };
    // One client, v2 asked first: v2 only, on every later announce too.
    assert!(lists_own(&v2, 7001));
    assert!(!lists_own(&v1, 7001));
    assert!(lists_own(&v2, 7001));
    // Another, v1 first.
    assert!(lists_own(&v1, 7002));
    assert!(!lists_own(&v2, 7002));
    // Clients announcing one hash only.
    assert!(lists_own(&v1, 7003));
    assert!(lists_own(&v2, 7004));
}

/// The peer port's UDP side speaks uTP (BEP 29): a SYN gets a STATE packet addressed to its
/// connection id and acknowledging it. Datagrams that are not uTP (a DHT ping) get no answer and
/// are counted.
#[test]
fn the_peer_port_accepts_utp_and_counts_other_datagrams() {
    let d = dirs();
    let server = Server::start(&d.content, &d.state, &[]);
    let peer = server.logged_addr("peer listening on ");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut syn = [0u8; 20];
    syn[0] = 0x41; // ST_SYN, version 1
    syn[2..4].copy_from_slice(&0x1234u16.to_be_bytes());
    syn[12..16].copy_from_slice(&65536u32.to_be_bytes()); // window
    syn[16..18].copy_from_slice(&42u16.to_be_bytes());
    sock.send_to(&syn, peer).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).expect("an answer to the SYN");
    assert!(n >= 20, "{n} bytes");
    assert_eq!(from, peer);
    assert_eq!(buf[0], 0x21, "ST_STATE, version 1");
    assert_eq!(
        &buf[2..4],
        &0x1234u16.to_be_bytes(),
        "the SYN's connection id"
    );
    assert_eq!(&buf[18..20], &42u16.to_be_bytes(), "acknowledges the SYN");
    // Anything else gets no answer, and is counted.
    sock.send_to(
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
        peer,
    )
    .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // The SYN-ACK again (resent until acknowledged), then a FIN, are all that come.
    while sock.recv_from(&mut buf).is_ok() {
        assert!(buf[0] == 0x21 || buf[0] == 0x11, "only uTP answers");
    }
    assert_eq!(
        server.metric("bitseed_peer_udp_datagrams_total{kind=\"other\"}"),
        Some(1)
    );
    assert!(server.metric("bitseed_peer_udp_datagrams_total{kind=\"utp\"}") >= Some(1));
}

/// A handshake for a torrent not published here is closed and counted by reason.
#[test]
fn refused_handshakes_are_counted_by_reason() {
    use std::io::{Read, Write};
    let d = dirs();
    let server = Server::start(&d.content, &d.state, &[]);
    let peer = server.logged_addr("peer listening on ");
    let mut s = std::net::TcpStream::connect(peer).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hs = bitseed::peer::Handshake::ours(
        bitseed::metainfo::InfoHash::new([7; 20]),
        *b"-TC0001-testclient00",
        false,
    );
    s.write_all(&hs.serialize()).unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "closed");
    let series = "bitseed_peer_handshakes_refused_total{reason=\"unknown_info_hash\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.metric(series) != Some(1) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.metric(series), Some(1));
}

/// libtorrent as qBittorrent runs it (uTP first, encryption preferred) downloads from the
/// seeder over uTP on its first connection: no refused attempt, no fallback.
#[test]
fn libtorrent_with_client_defaults_connects_over_utp_at_once() {
    if !have_libtorrent() {
        return;
    }
    let d = dirs();
    let server = Server::start(&d.content, &d.state, &[]);
    let bytes = data(300_000, 9);
    std::fs::write(d.content.join("u.bin"), &bytes).unwrap();
    server.wait_published("u.bin", None);
    let peer = server.logged_addr("peer listening on ");
    let work = tempfile::tempdir().unwrap();
    let torrent = torrent_without_web_seed(&server, "u.bin", work.path());
    let out = work.path().join("out");
    let o = std::process::Command::new("/usr/bin/python3")
        .arg(interop_script("lt_download.py"))
        .arg("--torrent")
        .arg(&torrent)
        .arg("--save")
        .arg(&out)
        .args([
            "--peer",
            &peer.to_string(),
            "--timeout",
            "60",
            "--client-defaults",
        ])
        .output()
        .expect("run python3");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(std::fs::read(out.join("u.bin")).unwrap(), bytes);
    let report: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    eprintln!("libtorrent at client defaults: {} s", report["seconds"]);
    assert_eq!(report["disconnects"], serde_json::json!([]), "{report}");
    assert_eq!(
        server.metric("bitseed_peer_connections_accepted_total{transport=\"utp\"}"),
        Some(1)
    );
    assert_eq!(
        server.metric("bitseed_peer_connections_accepted_total{transport=\"tcp\"}"),
        Some(0)
    );
}

/// A Merkle torrent's piece hashes are kept with its entry: neither publishing it (just hashed),
/// nor restarting, nor renaming it reads its content again, and the hash lists sent after each
/// still verify against the root.
#[test]
fn merkle_entries_are_seeded_after_a_restart_without_hashing_again() {
    let d = dirs();
    let bytes = data(700_000, 31);
    std::fs::write(d.content.join("m.bin"), &bytes).unwrap();
    let args = ["--format", "merkle"];
    let server = Server::start(&d.content, &d.state, &args);
    server.wait_published("m.bin", None);
    let meta = bitseed::metainfo::Metainfo::from_bytes(&server.get("/torrents/m.bin.torrent").body)
        .unwrap();
    assert!(meta.root_hash.is_some());
    let peer = server.logged_addr("peer listening on ");
    assert_eq!(crate::common::download(peer, &meta), bytes);
    assert!(
        !server
            .log
            .lock()
            .unwrap()
            .contains("to rebuild its BEP 30 tree"),
        "{}",
        server.log.lock().unwrap()
    );
    drop(server);

    let again = Server::start(&d.content, &d.state, &args);
    again.wait_log("1 entry unchanged since last run", Duration::from_secs(10));
    again.wait_published("m.bin", None);
    let peer = again.logged_addr("peer listening on ");
    assert_eq!(crate::common::download(peer, &meta), bytes);

    // Renamed: published under the new name from the kept hashes, not read again.
    std::fs::rename(d.content.join("m.bin"), d.content.join("n.bin")).unwrap();
    again.wait_log("published `n.bin`", Duration::from_secs(20));
    let renamed =
        bitseed::metainfo::Metainfo::from_bytes(&again.get("/torrents/n.bin.torrent").body)
            .unwrap();
    assert_eq!(renamed.root_hash, meta.root_hash);
    assert_eq!(crate::common::download(peer, &renamed), bytes);
    let log = again.log.lock().unwrap().clone();
    assert!(log.contains("(hashes reused)"), "{log}");
    assert!(!log.contains("hashing `n.bin`"), "{log}");
    assert!(!log.contains("to rebuild its BEP 30 tree"), "{log}");
}
