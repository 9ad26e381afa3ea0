//! Hostile input against the real binary: fuzz regressions replayed, resource bounds pushed past,
//! slow clients cut off.

use crate::common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// Every saved fuzz input (crashes found, in `tests/fuzz_regressions/TARGET/`) and every seed of
/// the fuzz corpus (`fuzz/corpus/TARGET/`) goes through the same body the fuzzer ran.
#[test]
fn fuzz_regressions_and_seed_corpus_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    type Body = fn(&[u8]);
    let targets: [(&str, Body); 11] = [
        ("bencode_metainfo", bitseed::fuzzing::bencode_metainfo),
        ("magnet", bitseed::fuzzing::magnet),
        ("http_query", bitseed::fuzzing::http_query),
        ("http_headers", bitseed::fuzzing::http_headers),
        ("udp_packet", bitseed::fuzzing::udp_packet),
        ("peer_wire", bitseed::fuzzing::peer_wire),
        ("peer_connection", bitseed::fuzzing::peer_connection),
        ("mse_receiver", bitseed::fuzzing::mse_receiver),
        ("krpc", bitseed::fuzzing::krpc),
        ("ws_message", bitseed::fuzzing::ws_message),
        ("cluster_batch", bitseed::fuzzing::cluster_batch),
    ];
    for (name, body) in targets {
        let mut seeds = 0;
        for dir in ["tests/fuzz_regressions", "fuzz/corpus"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.file_name().is_some_and(|n| n == ".keep") {
                    continue;
                }
                let data = std::fs::read(&path).unwrap();
                if dir == "fuzz/corpus" {
                    seeds += 1;
                }
                // A panic names the input that caused it.
                eprintln!("{name}: {}", path.display());
                body(&data);
            }
        }
        // Every target's seed corpus is there (a `.gitignore` rule once kept the .torrent seeds
        // out of git), so this test cannot pass by finding nothing.
        assert!(seeds >= 4, "{name}: only {seeds} seed inputs found");
    }
}

/// A server with short timeouts (from a config file, as an operator would set them) and one
/// published file; returns it with the file's v1 info hash and the peer address.
fn short_timeouts(d: &crate::common::Dirs) -> (Server, InfoHash, SocketAddr) {
    std::fs::write(d.content.join("one.bin"), data(100_000, 3)).unwrap();
    let server = Server::with_config(
        d,
        "[http]\nrequest_timeout = 1.0\nkeep_alive = 1.0\n\
         [peer]\nhandshake_timeout = 1.0\nidle_timeout = 60.0\nframe_timeout = 1.0\n",
    );
    let ih = server.published_hash("one.bin");
    let peer = server.logged_addr("peer listening on ");
    (server, ih, peer)
}

/// Sends `bytes` one at a time, `gap` apart; returns how many were sent before the other side
/// closed the connection (all of them if it never did).
fn trickle(s: &mut TcpStream, bytes: &[u8], gap: Duration) -> usize {
    s.set_read_timeout(Some(gap)).unwrap();
    let mut sink = [0u8; 4096];
    for (i, b) in bytes.iter().enumerate() {
        if s.write_all(std::slice::from_ref(b)).is_err() {
            return i;
        }
        // Wait out the gap reading whatever comes back; EOF or a reset means we were cut off.
        loop {
            match s.read(&mut sink) {
                Ok(0) => return i + 1,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => return i + 1,
            }
        }
    }
    bytes.len()
}

/// A peer or HTTP client that sends one byte at a time is cut off by the configured timeouts
/// (peer.handshake_timeout, peer.frame_timeout, http.request_timeout), long before it finishes,
/// while the server keeps answering others.
#[test]
fn slow_clients_are_cut_off() {
    let d = dirs();
    let (server, ih, peer) = short_timeouts(&d);
    // One byte every 400 ms: a 1 s timeout lets at most a few through.
    let gap = Duration::from_millis(400);

    // A handshake trickled in: 68 bytes would take 27 s.
    let mut s = TcpStream::connect(peer).unwrap();
    let sent = trickle(&mut s, &handshake_bytes(ih), gap);
    assert!(sent < 20, "slow handshake: {sent} of 68 bytes accepted");

    // A whole handshake, then a request frame trickled in. Each byte is news, so only a bound
    // on the frame (not on silence) cuts this peer off.
    let mut s = TcpStream::connect(peer).unwrap();
    s.write_all(&handshake_bytes(ih)).unwrap();
    let mut frame = vec![0, 0, 0, 13, 6];
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0]);
    let sent = trickle(&mut s, &frame.repeat(3), gap);
    assert!(sent < 17, "slow peer frame: {sent} of 51 bytes accepted");

    // A request head trickled in: cut off by http.request_timeout.
    let mut s = TcpStream::connect(server.http).unwrap();
    let head = format!(
        "GET /api/torrents HTTP/1.1\r\nHost: {}\r\nX-Slow: {}\r\n\r\n",
        server.http,
        "s".repeat(40)
    );
    let sent = trickle(&mut s, head.as_bytes(), gap);
    assert!(
        sent < 20,
        "slow HTTP head: {sent} of {} bytes accepted",
        head.len()
    );

    // Everyone else is still served.
    assert_eq!(http_get(server.http, "/api/torrents", &[]).status, 200);
}

/// Request heads are bounded (http.max_uri_bytes, http.max_header_bytes, and actix's 96 headers)
/// whether they arrive whole or not: refused before the tracker or the page sees them, and the
/// server goes on answering.
#[test]
fn oversized_http_heads_are_refused() {
    let d = dirs();
    let server = Server::start(&d.content, &d.state, &[]);
    // 42 KiB of query, sent in one write: actix alone would parse it.
    let long = format!("/announce?info_hash={}", "%41".repeat(14_000));
    assert_eq!(http_get(server.http, &long, &[]).status, 414);
    let big = "b".repeat(20_000);
    assert_eq!(
        http_get(server.http, "/api/torrents", &[("X-Big", &big)]).status,
        431
    );
    let names: Vec<String> = (0..100).map(|i| format!("X-Many-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    assert_eq!(http_get(server.http, "/api/torrents", &many).status, 431);
    // Just under the bound is an ordinary (failing) announce, not a refusal of the head.
    let fine = format!("/announce?info_hash={}", "%41".repeat(2_500));
    assert_eq!(http_get(server.http, &fine, &[]).status, 200);
    assert_eq!(http_get(server.http, "/api/torrents", &[]).status, 200);
}

/// xorshift64: the random moments and operations of the churn test, reproducible from the seed
/// it prints.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// SIGKILL at random moments while files are added, changed and deleted, five times over; after
/// a last restart and the settle time the catalog is exactly the folder, and every published
/// .torrent verifies against its file's bytes (`bitseed verify`).
#[test]
fn sigkill_during_churn_keeps_the_catalog_true_to_the_folder() {
    let d = dirs();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("churn seed {seed}");
    let mut rng = Rng(seed);
    let names = ["a.bin", "b.bin", "c.bin", "d.bin", "e.bin"];
    let settle = ["--settle", "0.2"];
    for _ in 0..5 {
        let server = Server::start(&d.content, &d.state, &settle);
        let until = std::time::Instant::now() + Duration::from_millis(200 + rng.below(1300));
        while std::time::Instant::now() < until {
            let path = d
                .content
                .join(names[rng.below(names.len() as u64) as usize]);
            match rng.below(4) {
                0 => {
                    let _ = std::fs::remove_file(&path);
                }
                1 => {
                    // Appended to, as a copy in progress is.
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .unwrap();
                    f.write_all(&data(1 + rng.below(50_000) as usize, rng.below(1000)))
                        .unwrap();
                }
                _ => {
                    let len = 1 + rng.below(200_000) as usize;
                    std::fs::write(&path, data(len, rng.below(1000))).unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(20 + rng.below(150)));
        }
        drop(server); // SIGKILL, mid-churn
    }

    // At least one entry to verify, whatever the churn left.
    if !d.content.join("a.bin").exists() {
        std::fs::write(d.content.join("a.bin"), data(70_000, 5)).unwrap();
    }
    let server = Server::start(&d.content, &d.state, &settle);
    let mut on_disk: Vec<String> = std::fs::read_dir(&d.content)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let list = server.torrents();
        let mut published: Vec<String> = list
            .iter()
            .filter(|t| t["status"] == "published")
            .map(|t| t["path"].as_str().unwrap().to_owned())
            .collect();
        published.sort();
        if published == on_disk && list.len() == on_disk.len() {
            break list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "catalog {list:?} never matched the folder {on_disk:?}; log:\n{}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let tmp = tempfile::tempdir().unwrap();
    for t in &listed {
        let name = t["path"].as_str().unwrap();
        let r = server.get(&format!("/torrents/{name}.torrent"));
        assert_eq!(r.status, 200, "{name}");
        let torrent = tmp.path().join(format!("{name}.torrent"));
        std::fs::write(&torrent, &r.body).unwrap();
        let out = crate::common::bitseed()
            .arg("verify")
            .arg(&torrent)
            .arg(d.content.join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} does not verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Connects, handshakes for `ih` and says it is interested; true when the seeder gives it a slot
/// (an unchoke follows), false when it is left choked and closed once its wait for room ends.
fn admitted(peer: SocketAddr, ih: InfoHash) -> (TcpStream, bool) {
    let mut s = TcpStream::connect(peer).unwrap();
    if !handshake_answered(&mut s, ih) {
        return (s, false);
    }
    let _ = s.write_all(&bitseed::peer::Message::Interested.to_bytes());
    let mut buf = Vec::new();
    let ok = loop {
        match crate::common::read_message(&mut s, &mut buf) {
            Some(bitseed::peer::Message::Unchoke) => break true,
            Some(_) => continue,
            None => break false,
        }
    };
    (s, ok)
}

/// peer.max_connections_per_torrent and peer.max_connections hold against the real binary: the
/// connection past either gets no slot (its wait ends and it is closed: the sessions holding
/// the slots are new and interested, so none gives way), and a slot freed is taken again.
#[test]
fn peer_connection_caps_hold() {
    let d = dirs();
    std::fs::write(d.content.join("a.bin"), data(50_000, 1)).unwrap();
    std::fs::write(d.content.join("b.bin"), data(50_000, 2)).unwrap();
    let server = Server::with_config(
        &d,
        "[peer]\nmax_connections = 3\nmax_connections_per_torrent = 2\n",
    );
    let hash = |name: &str| server.published_hash(name);
    let (a, b) = (hash("a.bin"), hash("b.bin"));
    let peer = server.logged_addr("peer listening on ");

    let (a1, ok) = admitted(peer, a);
    assert!(ok, "first peer of a.bin");
    let (_a2, ok) = admitted(peer, a);
    assert!(ok, "second peer of a.bin");
    let (_a3, ok) = admitted(peer, a);
    assert!(
        !ok,
        "a third peer of a.bin is past max_connections_per_torrent"
    );
    let (_b1, ok) = admitted(peer, b);
    assert!(ok, "first peer of b.bin");
    let (_b2, ok) = admitted(peer, b);
    assert!(!ok, "a fourth connection is past max_connections");
    // A slot freed is free again (the close is noticed asynchronously: retry, bounded).
    drop(a1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_s, ok) = admitted(peer, b);
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "freed slot never reused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// In open mode, tracker.max_peers_per_torrent and tracker.max_torrents hold against the real
/// binary: peers past the cap are answered but not stored, a torrent past the cap is refused.
#[test]
fn tracker_caps_hold_in_open_mode() {
    let d = dirs();
    let server = Server::with_config(
        &d,
        "[tracker]\nmode = \"open\"\nmax_peers_per_torrent = 3\nmax_torrents = 2\n",
    );
    let announce = |hash: u8, port: u16| {
        let path = format!(
            "/announce?info_hash={}&peer_id=-XX0001-{:012}&port={port}&uploaded=0&downloaded=0&left=10&compact=1&numwant=50",
            "%01".repeat(19) + &format!("%{hash:02X}"),
            port
        );
        let r = http_get(server.http, &path, &[]);
        assert_eq!(r.status, 200);
        r.body
    };
    let mut last = Vec::new();
    for port in 1000..1008 {
        last = announce(1, port);
    }
    let top = bitseed::bencode::decode(&last).unwrap();
    assert!(
        top.get("failure reason").is_none(),
        "{:?}",
        String::from_utf8_lossy(&last)
    );
    let peers = top.get("peers").and_then(|p| p.as_bytes()).unwrap();
    assert!(
        !peers.is_empty() && peers.len() / 6 <= 3,
        "{} peers stored past a cap of 3",
        peers.len() / 6
    );
    let second = announce(2, 2000);
    let top = bitseed::bencode::decode(&second).unwrap();
    assert!(
        top.get("failure reason").is_none(),
        "a second torrent is within the cap"
    );
    let third = announce(3, 3000);
    let top = bitseed::bencode::decode(&third).unwrap();
    assert!(
        top.get("failure reason").is_some(),
        "a third torrent is past max_torrents"
    );
}

/// A 60-second flood of random UDP announces (open mode, caps small enough to reach during the
/// warm-up) and junk peer connections: the server's RSS after the warm-up stays within 10%, and
/// a normal download beside the flood completes with the right bytes.
#[test]
fn rss_stays_flat_under_a_flood_while_a_download_completes() {
    use std::net::UdpSocket;
    let d = dirs();
    let bytes = data(4_000_000, 11);
    std::fs::write(d.content.join("good.bin"), &bytes).unwrap();
    let server = Server::with_config(
        &d,
        "[tracker]\nmode = \"open\"\nmax_torrents = 2000\nmax_peers_per_torrent = 50\n\
         [peer]\nhandshake_timeout = 1.0\nframe_timeout = 1.0\n",
    );
    server.wait_published("good.bin", None);
    let r = server.get("/torrents/good.bin.torrent");
    let meta = bitseed::metainfo::Metainfo::from_bytes(&r.body).unwrap();
    let peer = server.logged_addr("peer listening on ");
    let udp = server.logged_addr("udp tracker listening on ");
    let pid = server.pid();

    let start = std::time::Instant::now();
    let total = Duration::from_secs(60);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut rng = Rng(0x5eed);
            let mut buf = [0u8; 2048];
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut connect = 0x41727101980u64.to_be_bytes().to_vec();
                connect.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
                sock.send_to(&connect, udp).unwrap();
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if n < 16 {
                    continue;
                }
                let cid = &buf[8..16].to_vec();
                for _ in 0..100 {
                    let mut a = cid.clone();
                    a.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 9]);
                    for _ in 0..5 {
                        a.extend_from_slice(&rng.below(u64::MAX).to_be_bytes()[..4]);
                    }
                    a.extend_from_slice(&[b'p'; 20]);
                    a.extend_from_slice(&[0; 24]);
                    a.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0]);
                    a.extend_from_slice(&(rng.below(u64::MAX) as u32).to_be_bytes());
                    a.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
                    a.extend_from_slice(&((rng.below(60_000) + 1) as u16).to_be_bytes());
                    let _ = sock.send_to(&a, udp);
                    let _ = sock.recv_from(&mut buf);
                    sent += 1;
                }
                // Junk on the peer port: a half handshake, random bytes, then gone.
                if let Ok(mut s) = TcpStream::connect(peer) {
                    let junk: Vec<u8> = (0..64).map(|_| rng.below(256) as u8).collect();
                    let _ = s.write_all(&[19]);
                    let _ = s.write_all(&junk);
                }
            }
            sent
        })
    };
    let good = {
        let meta = meta.clone();
        std::thread::spawn(move || crate::common::download(peer, &meta))
    };

    // Warm-up: the tracker's store fills to its caps, buffers reach their working size.
    std::thread::sleep(Duration::from_secs(15));
    let baseline = rss_kib(pid);
    let mut peak = baseline;
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(rss_kib(pid));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let announces = flood.join().unwrap();
    assert_eq!(good.join().unwrap(), bytes, "the download beside the flood");
    assert!(
        announces > 1000,
        "the flood sent only {announces} announces"
    );
    assert!(
        peak * 10 <= baseline * 11,
        "RSS grew from {baseline} KiB to {peak} KiB under the flood"
    );
    // And the server still answers.
    assert_eq!(server.get("/api/torrents").status, 200);
}

/// catalog.hash_jobs bounds concurrent hashing: with four entries dropped in at once and one job
/// allowed, the log never shows a second `hashing` before the first is `hashed`.
#[test]
fn concurrent_hashing_is_bounded_by_hash_jobs() {
    let d = dirs();
    for i in 0..4u64 {
        std::fs::write(d.content.join(format!("f{i}.bin")), data(3_000_000, i)).unwrap();
    }
    let config = d.state.with_extension("toml");
    std::fs::write(&config, "[catalog]\nhash_jobs = 1\nhash_threads = 1\n").unwrap();
    let server = Server::start(
        &d.content,
        &d.state,
        &["--config", config.to_str().unwrap()],
    );
    for i in 0..4 {
        server.wait_published(&format!("f{i}.bin"), None);
    }
    let log = server.log.lock().unwrap().clone();
    let (mut running, mut most, mut started) = (0i32, 0i32, 0);
    for line in log.lines() {
        if line.contains("hashing `") {
            running += 1;
            started += 1;
            most = most.max(running);
        } else if line.contains("hashed `") {
            running -= 1;
        }
    }
    assert_eq!(started, 4, "every entry hashed once; log:\n{log}");
    assert_eq!(most, 1, "hashing jobs at once; log:\n{log}");
}

/// A file rewritten (same size, new bytes) again and again while a peer downloads it from
/// `bitseed serve`: every piece the peer receives under the old torrent matches the old piece
/// hash. The seeder may drop the peer; it may never serve new bytes under the old hash.
#[test]
fn a_file_rewritten_while_seeded_never_serves_a_bad_piece() {
    use bitseed::peer::{BlockRef, Message};
    use sha1::{Digest, Sha1};
    let d = dirs();
    let len = 2_000_000;
    let path = d.content.join("moving.bin");
    std::fs::write(&path, data(len, 1)).unwrap();
    let server = Server::start(&d.content, &d.state, &["--settle", "0.3"]);
    let t = server.wait_published("moving.bin", None);
    let meta = bitseed::metainfo::Metainfo::from_bytes(
        &server
            .get(&format!("/torrents/{}.torrent", "moving.bin"))
            .body,
    )
    .unwrap();
    assert_eq!(
        t["info_hash"].as_str().unwrap(),
        hex::encode(meta.info_hash.wire().unwrap())
    );
    let peer = server.logged_addr("peer listening on ");

    let (mut s, mut buf) = crate::common::connect(peer, meta.info_hash.wire().unwrap());
    crate::common::wait_unchoke(&mut s, &mut buf);
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            for i in 0..20u64 {
                // Same length: only the bytes (and the mtime) say it changed.
                std::fs::write(&path, data(len, 100 + i)).unwrap();
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    let piece_len = meta.piece_length as usize;
    let (mut good, mut dropped) = (0, false);
    'pieces: for (index, want) in meta.pieces.iter().enumerate() {
        let size = piece_len.min(len - index * piece_len);
        let mut out = Vec::new();
        for begin in (0..size).step_by(16384) {
            Message::Request(BlockRef {
                index: index as u32,
                begin: begin as u32,
                length: (size - begin).min(16384) as u32,
            })
            .write_to(&mut out);
        }
        if s.write_all(&out).is_err() {
            dropped = true;
            break;
        }
        let mut piece = vec![0u8; size];
        let mut got = 0;
        while got < size {
            match crate::common::read_message(&mut s, &mut buf) {
                Some(Message::Piece { begin, data, .. }) => {
                    piece[begin as usize..begin as usize + data.len()].copy_from_slice(&data);
                    got += data.len();
                }
                Some(_) => {}
                None => {
                    dropped = true;
                    break 'pieces;
                }
            }
        }
        let hash: [u8; 20] = Sha1::digest(&piece).into();
        assert_eq!(
            &hash, want,
            "piece {index} served under the old hash with new bytes"
        );
        good += 1;
        // Slow enough that the rewrites land mid-download.
        std::thread::sleep(Duration::from_millis(2));
    }
    writer.join().unwrap();
    eprintln!("{good} good pieces, dropped: {dropped}");
    // The old bytes were gone before the last piece was asked for, so the only right end is
    // being dropped.
    assert!(
        dropped,
        "all {good} pieces served although the file changed"
    );
    // The rewrite is seen: the new content is published under a new hash.
    server.wait_published("moving.bin", t["info_hash"].as_str());
}

/// A published file swapped for a symlink to a file outside the content folder (same size):
/// neither `/files` nor the seeder ever hands out the outside bytes, and the catalog unpublishes
/// the entry instead of following the link.
#[test]
fn a_published_file_swapped_for_an_outside_symlink_is_never_followed() {
    use bitseed::peer::Message;
    let d = dirs();
    let outside = tempfile::tempdir().unwrap();
    let secret = data(40_000, 77);
    std::fs::write(outside.path().join("secret"), &secret).unwrap();
    let path = d.content.join("a.bin");
    std::fs::write(&path, data(40_000, 1)).unwrap();
    let server = Server::start(&d.content, &d.state, &["--settle", "0.3"]);
    let ih = server.published_hash("a.bin");
    let peer = server.logged_addr("peer listening on ");
    // A peer connected before the swap, and one request after it.
    let (mut s, mut buf) = crate::common::connect(peer, ih);
    crate::common::wait_unchoke(&mut s, &mut buf);

    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), &path).unwrap();

    let r = server.get("/files/a.bin");
    assert!(
        r.status != 200 && !r.body.windows(64).any(|w| w == &secret[..64]),
        "/files followed the symlink: {}",
        r.status
    );
    let _ = s.write_all(&crate::common::request(0, 0, 16384));
    while let Some(m) = crate::common::read_message(&mut s, &mut buf) {
        if let Message::Piece { data, .. } = m {
            assert_ne!(
                &data[..64],
                &secret[..64],
                "the seeder followed the symlink"
            );
        }
    }
    // The catalog drops the entry rather than publishing the link's target.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.torrents().iter().any(|t| t["path"] == "a.bin") {
        assert!(
            std::time::Instant::now() < deadline,
            "a symlink stayed published"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
