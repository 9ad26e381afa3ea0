//! The holes an outside probe found (issue 12), each tried again against the real binary: a
//! regression test per hole, written so that it fails on the code that had it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use bitseed::peer::{HashRequest, Message};
use serde_json::Value;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// CPU seconds (user + system) the process has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    crate::common::rss_kib(pid) as f64 / 1024.0
}

/// A GET from the loopback address `from`.
fn get_from(from: [u8; 4], to: SocketAddr, path: &str) -> Response {
    request_on(connect_from(from, to), to, "GET", path, &[])
}

fn announce(hash: &[u8; 20], port: u16, left: u64, extra: &str) -> String {
    crate::common::announce_path(hash, port, left, &format!("&compact=1{extra}"))
}

/// A server that published `name`, restarted with a settle time longer than the test: what
/// changes during the test is served (or refused) as published, not hashed again.
fn published_then_slow_to_settle(d: &Dirs, name: &str) -> Server {
    let server = Server::start(&d.content, &d.state, &["--settle", "0.3"]);
    server.wait_published(name, None);
    assert_eq!(server.stop(), Some(0));
    let server = Server::start(&d.content, &d.state, &["--settle", "600"]);
    server.wait_published(name, None);
    server
}

// ---- 2. symlink races ----------------------------------------------------------------------

/// While a published file flips between itself and a symlink to a file outside the content
/// folder, `/files` serves the published bytes or nothing: never the outside file. (The old
/// check-then-open by path served the outside file to about one request in eight.)
#[test]
fn files_never_follow_a_published_file_flipping_to_an_outside_symlink() {
    let d = dirs();
    let outside = tempfile::tempdir().unwrap();
    let secret = data(40_000, 77);
    let real = data(40_000, 1);
    std::fs::write(outside.path().join("secret"), &secret).unwrap();
    let path = d.content.join("a.bin");
    std::fs::write(&path, &real).unwrap();
    // Published, then restarted with a long settle: the catalog does not republish during the
    // race; this is about serving.
    let server = published_then_slow_to_settle(&d, "a.bin");
    // A hidden hard link keeps the published inode, so it can be put back in place.
    std::fs::hard_link(&path, d.content.join(".keep")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let content = d.content.clone();
        let secret = outside.path().join("secret");
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(content.join(".l"));
                std::os::unix::fs::symlink(&secret, content.join(".l")).unwrap();
                std::fs::rename(content.join(".l"), content.join("a.bin")).unwrap();
                let _ = std::fs::remove_file(content.join(".k"));
                std::fs::hard_link(content.join(".keep"), content.join(".k")).unwrap();
                std::fs::rename(content.join(".k"), content.join("a.bin")).unwrap();
                flips += 1;
            }
            flips
        })
    };
    let (mut served, mut refused) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let r = server.get("/files/a.bin");
        assert!(
            !r.body.windows(64).any(|w| w == &secret[..64]),
            "/files served the outside file"
        );
        if r.status == 200 {
            assert_eq!(r.body, real);
            served += 1;
        } else {
            refused += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    eprintln!("{flips} flips, {served} served, {refused} refused");
    assert!(
        flips > 100 && served + refused > 100,
        "the race did not run"
    );
}

/// A published file replaced, while bitseed is stopped, by a symlink to an outside file of the
/// same size and modification time (so the stored torrent looks reusable): after a restart
/// neither the seeder nor `/files` hands out the outside bytes.
#[test]
fn a_symlink_swapped_in_while_stopped_is_neither_seeded_nor_served() {
    let d = dirs();
    let outside = tempfile::tempdir().unwrap();
    // Named like the decoy: the entry's name comes from where the link leads, so the stored
    // torrent (name, size, mtime) looks reusable.
    let secret_path = outside.path().join("decoy.bin");
    let secret = data(100_000, 78);
    std::fs::write(&secret_path, &secret).unwrap();
    let decoy = d.content.join("decoy.bin");
    std::fs::write(&decoy, data(100_000, 2)).unwrap();
    let mtime = std::fs::metadata(&secret_path).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(&decoy)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let server = Server::start(&d.content, &d.state, &["--settle", "0.3"]);
    let ih = server.published_hash("decoy.bin");
    assert_eq!(server.stop(), Some(0));

    std::fs::remove_file(&decoy).unwrap();
    std::os::unix::fs::symlink(&secret_path, &decoy).unwrap();
    let server = Server::start(&d.content, &d.state, &["--settle", "0.3"]);
    let peer = server.logged_addr("peer listening on ");
    server.wait_log("catalog:", Duration::from_secs(20));

    let r = server.get("/files/decoy.bin");
    assert!(
        !r.body.windows(64).any(|w| w == &secret[..64]),
        "/files served the symlink's target"
    );
    let mut s = TcpStream::connect(peer).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hs = bitseed::peer::Handshake::ours(ih, *b"-TC0001-testclient00", false).serialize();
    let _ = s.write_all(&hs);
    let mut buf = Vec::new();
    let mut requested = false;
    let mut answer = [0u8; 68];
    if s.read_exact(&mut answer).is_ok() && s.write_all(&Message::Interested.to_bytes()).is_ok() {
        while let Some(m) = crate::common::read_message(&mut s, &mut buf) {
            match m {
                Message::Unchoke if !requested => {
                    let _ = s.write_all(&crate::common::request(0, 0, 16384));
                    requested = true;
                }
                Message::Piece { data, .. } => {
                    assert_ne!(
                        &data[..64],
                        &secret[..64],
                        "the seeder followed the symlink"
                    );
                }
                _ => {}
            }
        }
    }
}

// ---- 3. peer-port memory amplification ------------------------------------------------------

/// 40 peers (five addresses) each send 450 metadata requests in one write and read nothing: the
/// answers queued for them stay bounded per peer (the old bound was checked once per read, so
/// each held 7 MB until its send timeout), and the server's memory with them.
#[test]
fn cheap_requests_from_peers_that_read_nothing_queue_little() {
    let d = dirs();
    // 64 MiB in 16 KiB pieces: 4,096 pieces, an info dict of about 80 KB (5 metadata pieces).
    let file = std::fs::File::create(d.content.join("big.bin")).unwrap();
    file.set_len(64 << 20).unwrap();
    drop(file);
    let server = Server::start(&d.content, &d.state, &[]);
    let t = server.wait_published("big.bin", None);
    let ih = server.published_hash("big.bin");
    assert!(t["piece_length"].as_u64().unwrap() >= 16384);
    let peer = server.logged_addr("peer listening on ");
    let before = rss_mib(server.pid());

    let hs = bitseed::peer::Handshake::ours(ih, *b"-TC0001-testclient00", false).serialize();
    let mut burst = Vec::new();
    Message::Extended {
        id: 0,
        payload: b"d1:md11:ut_metadatai3eee".to_vec(),
    }
    .write_to(&mut burst);
    // 450 answers of 16 KiB: just under the old per-peer cap of 8 MiB, which was checked only
    // after a whole read was answered, so each peer could hold 7 MB until its send timeout.
    for _ in 0..450 {
        // Our ut_metadata id, from our extended handshake.
        Message::Extended {
            id: 1,
            payload: b"d8:msg_typei0e5:piecei0ee".to_vec(),
        }
        .write_to(&mut burst);
    }
    // The requests are answered: a peer that reads gets 16 KiB metadata pieces back.
    {
        let mut s = connect_from([127, 0, 0, 7], peer);
        s.write_all(&hs).unwrap();
        let mut head = [0u8; 68];
        s.read_exact(&mut head).unwrap();
        s.write_all(&burst[..30 + 31 * 10]).unwrap();
        let mut buf = Vec::new();
        let mut pieces = 0;
        while pieces < 10 {
            match crate::common::read_message(&mut s, &mut buf) {
                Some(Message::Extended { id: 3, payload }) if payload.len() > 16384 => pieces += 1,
                Some(_) => {}
                None => panic!("the reading peer was dropped after {pieces} metadata pieces"),
            }
        }
    }
    let mut peers = Vec::new();
    for a in 2..7u8 {
        for _ in 0..8 {
            let s = connect_from([127, 0, 0, a], peer);
            let sock = socket2::SockRef::from(&s);
            let _ = sock.set_recv_buffer_size(4096);
            peers.push(s);
        }
    }
    for s in &mut peers {
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let mut head = [0u8; 68];
        if s.write_all(&hs).is_ok() && s.read_exact(&mut head).is_ok() {
            let _ = s.write_all(&burst);
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_mib(server.pid());
    eprintln!("rss {before:.1} MiB -> {after:.1} MiB with 40 flooding peers");
    assert!(
        after - before < 64.0,
        "RSS grew {:.1} MiB for 40 peers reading nothing",
        after - before
    );
    drop(peers);
}

// ---- 4. stalled HTTP downloads -------------------------------------------------------------

/// 200 clients that ask for a big file and never read hold little memory while they wait (a
/// 64 KiB chunk each), and are closed after `http.send_timeout` (the old server kept each one,
/// its descriptor and a 256 KiB buffer, for as long as the client lived).
#[test]
fn stalled_downloads_are_closed_after_the_send_timeout() {
    let d = dirs();
    let file = std::fs::File::create(d.content.join("big.bin")).unwrap();
    file.set_len(32 << 20).unwrap();
    drop(file);
    let server = Server::with_config(&d, "[http]\nsend_timeout = 2.0\n");
    server.wait_published("big.bin", None);
    let pid = server.pid();
    let idle = open_fds(pid);
    let rss_idle = rss_mib(pid);
    let mut stalled = Vec::new();
    for i in 0..200u32 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 10 + (i % 4) as u8], 0)).into())
            .unwrap();
        s.connect(&server.http.into()).unwrap();
        let mut s: TcpStream = s.into();
        write!(
            s,
            "GET /files/big.bin HTTP/1.1\r\nHost: {}\r\n\r\n",
            server.http
        )
        .unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let busy = open_fds(pid);
    let rss_busy = rss_mib(pid);
    eprintln!(
        "200 stalled downloads: {idle} -> {busy} fds, RSS {rss_idle:.1} -> {rss_busy:.1} MiB"
    );
    assert!(
        busy >= idle + 150,
        "the downloads did not start: {idle} -> {busy} fds"
    );
    assert!(
        rss_busy - rss_idle < 64.0,
        "200 stalled downloads took {:.1} MiB",
        rss_busy - rss_idle
    );
    poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let open = open_fds(pid);
        (open <= idle + 2).then_some(()).ok_or_else(|| {
            format!("stalled downloads still open after 30 s: {open} fds (idle {idle})")
        })
    });
    // The server still answers.
    assert_eq!(server.get("/healthz").status, 200);
    drop(stalled);
}

/// Nothing can be changed over HTTP: every route answers other methods with an error.
#[test]
fn only_get_and_head_are_answered() {
    let d = dirs();
    std::fs::write(d.content.join("a.bin"), data(5000, 1)).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    let t = server.wait_published("a.bin", None);
    let hash = t["info_hash"].as_str().unwrap();
    let paths = [
        "/".to_owned(),
        "/api/torrents".to_owned(),
        format!("/api/torrents/{hash}"),
        "/torrents/a.bin.torrent".to_owned(),
        "/files/a.bin".to_owned(),
        "/announce".to_owned(),
        "/scrape".to_owned(),
        "/metrics".to_owned(),
    ];
    for path in &paths {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let r = http_request(server.http, method, path, &[("Content-Length", "0")]);
            assert!(
                (400..500).contains(&r.status),
                "{method} {path} answered {}",
                r.status
            );
        }
    }
    assert!(std::fs::read(d.content.join("a.bin")).unwrap() == data(5000, 1));
    assert_eq!(server.torrents().len(), 1);
}

// ---- 5. links from headers -----------------------------------------------------------------

/// Without `public_url`, links follow the request's Host, checked, and never a stranger's
/// forwarding headers: a hostile Host, X-Forwarded-Host or X-Forwarded-Proto neither injects
/// markup nor makes a `javascript:` link; such answers are not for shared caches; and the start
/// warns that public_url is unset.
#[test]
fn request_headers_cannot_inject_links() {
    let d = dirs();
    crate::common::write_tree(&d.content, &[("pack/a.txt", 1000), ("pack/b.txt", 2000)]);
    let server = Server::start(&d.content, &d.state, &[]);
    server.wait_published("pack", None);
    server.wait_log("public_url is not set", Duration::from_secs(5));
    let evil = [
        ("X-Forwarded-Host", "x\"><script>alert(1)</script>"),
        ("X-Forwarded-Proto", "javascript"),
        ("Forwarded", "host=evil.example;proto=https"),
    ];
    let base = format!("http://{}/", server.http);
    for path in ["/", "/files/pack/", "/api/torrents"] {
        let r = http_get(server.http, path, &evil);
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 200, "{path}");
        assert!(!body.contains("<script>alert"), "{path}: {body}");
        assert!(!body.contains("javascript:"), "{path}: {body}");
        assert!(!body.contains("evil.example"), "{path}: {body}");
        assert!(body.contains(&base), "{path}: links not at {base}: {body}");
        assert!(
            r.header("vary").is_some_and(|v| v.contains("Host"))
                && r.header("cache-control")
                    .is_some_and(|v| v.contains("private")),
            "{path}: {:?}",
            r.headers
        );
    }
    // A Host that is not a host: links fall back to our own address.
    let r = http_get(
        server.http,
        "/files/pack/",
        &[("Host", "a\"><script>alert(2)</script>")],
    );
    let body = String::from_utf8_lossy(&r.body);
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(body.contains(&base), "{body}");
}

// ---- 6. remote-triggered hashing -----------------------------------------------------------

/// 20 peers sending BEP 52 block-layer hash requests (each makes the seeder read and hash 8 MiB)
/// as fast as they are answered: the seeder's hashing budget keeps it from spending more than a
/// fraction of a core (the old seeder spent 1.76 of 2), and requests are still answered.
#[test]
fn block_hash_requests_cannot_keep_the_seeder_busy() {
    let d = dirs();
    std::fs::write(d.content.join("v2.bin"), data(64 << 20, 5)).unwrap();
    let server = Server::with_config(&d, "[torrent]\nformat = \"v2\"\npiece_size = 4194304\n");
    let t = server.wait_published("v2.bin", None);
    // A v2 torrent's handshake carries its SHA-256 info hash cut to 20 bytes.
    let ih =
        bitseed::metainfo::InfoHash::from_hex(&t["info_hash_v2"].as_str().unwrap()[..40]).unwrap();
    let peer = server.logged_addr("peer listening on ");
    let bytes = http_get(server.http, &format!("/torrents/{}.torrent", "v2.bin"), &[]).body;
    let meta = bitseed::metainfo::Metainfo::from_bytes(&bytes).unwrap();
    let root = meta.files[0].pieces_root.unwrap();
    assert_eq!(t["format"], "v2");

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut threads = Vec::new();
    for i in 0..20u32 {
        let (stop, answered) = (stop.clone(), answered.clone());
        let from = [127, 0, 0, 20 + (i % 4) as u8];
        threads.push(std::thread::spawn(move || {
            let mut s = connect_from(from, peer);
            let hs = bitseed::peer::Handshake::ours(ih, *b"-TC0001-testclient00", true);
            let mut head = [0u8; 68];
            if s.write_all(&hs.serialize()).is_err() || s.read_exact(&mut head).is_err() {
                return;
            }
            // Keep 4 requests outstanding, for 512 leaves (two 4 MiB pieces) each.
            let mut first = Vec::new();
            for k in 0..4u32 {
                Message::HashRequest(HashRequest {
                    pieces_root: root,
                    base_layer: 0,
                    index: 512 * ((i + k) % 8),
                    length: 512,
                    proof_layers: 0,
                })
                .write_to(&mut first);
            }
            if s.write_all(&first).is_err() {
                return;
            }
            let mut buf = Vec::new();
            let mut k = 4;
            while !stop.load(Ordering::Relaxed) {
                match crate::common::read_message(&mut s, &mut buf) {
                    Some(Message::Hashes { .. }) | Some(Message::HashReject(_)) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        let next = Message::HashRequest(HashRequest {
                            pieces_root: root,
                            base_layer: 0,
                            index: 512 * ((i + k) % 8),
                            length: 512,
                            proof_layers: 0,
                        });
                        k += 1;
                        if s.write_all(&next.to_bytes()).is_err() {
                            return;
                        }
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(1));
    let cpu0 = cpu_secs(server.pid());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let used = (cpu_secs(server.pid()) - cpu0) / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let answers = answered.load(Ordering::Relaxed);
    eprintln!("seeder CPU {used:.2} cores, {answers} hash answers");
    assert!(answers > 0, "no block-layer request was answered");
    assert!(used < 0.6, "hash requests kept {used:.2} cores busy");
    drop(server);
    for t in threads {
        let _ = t.join();
    }
}

// ---- 7, 8. tracker fill and peer-list stuffing ---------------------------------------------

/// Open mode: one address cannot create more than `max_torrents_per_ip` swarms, and once
/// strangers fill `max_torrents`, the torrents bitseed publishes are still tracked.
#[test]
fn one_host_cannot_fill_the_open_tracker_and_published_torrents_stay_tracked() {
    let d = dirs();
    std::fs::write(d.content.join("ours.bin"), data(50_000, 4)).unwrap();
    let server = Server::with_config(
        &d,
        "[tracker]\nmode = \"open\"\nmax_torrents = 30\nmax_torrents_per_ip = 12\n",
    );
    let ours = server.wait_published("ours.bin", None);
    let mut created = [0usize; 4];
    for (k, host) in [2u8, 3, 4, 5].into_iter().enumerate() {
        for n in 0..20u8 {
            let hash = [
                host, n, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
            ];
            let r = get_from(
                [127, 0, 0, host],
                server.http,
                &announce(&hash, 7000, 10, ""),
            );
            if failure_reason(&r.body).is_none() {
                created[k] += 1;
            }
        }
    }
    // 12 each from the first two hosts, 6 from the third (30 in all), none from the fourth.
    assert_eq!(created, [12, 12, 6, 0], "swarms created per host");
    let hex = ours["info_hash"].as_str().unwrap();
    let hash: [u8; 20] = hex::decode(hex).unwrap().try_into().unwrap();
    let r = get_from([127, 0, 0, 6], server.http, &announce(&hash, 7001, 10, ""));
    assert_eq!(
        failure_reason(&r.body),
        None,
        "a published torrent refused when full"
    );
}

/// One address announcing one torrent on a hundred ports is stored at most
/// `max_peers_per_ip` times (16): an honest leecher's answer is not all one host's junk.
#[test]
fn one_host_cannot_stuff_a_peer_list() {
    let d = dirs();
    std::fs::write(d.content.join("ours.bin"), data(50_000, 4)).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    let ih = server.published_hash("ours.bin");
    for port in 1..=100u16 {
        let r = get_from(
            [127, 0, 0, 9],
            server.http,
            &announce(ih.as_bytes(), 20_000 + port, 10, ""),
        );
        assert_eq!(failure_reason(&r.body), None);
    }
    let r = get_from(
        [127, 0, 0, 8],
        server.http,
        &announce(ih.as_bytes(), 6881, 10, "&numwant=200"),
    );
    let top = bitseed::bencode::decode(&r.body).unwrap();
    let peers = top.get("peers").and_then(|p| p.as_bytes()).unwrap();
    let junk = peers.chunks(6).filter(|c| c[..4] == [127, 0, 0, 9]).count();
    assert_eq!(junk, 16, "peers of one host handed out");
}

// ---- 9. a file rewritten during a download -------------------------------------------------

/// A file rewritten in place while it is being downloaded: the download is cut off, and no byte
/// of the new content goes out under the old validators.
#[test]
fn a_download_stops_when_its_file_is_rewritten() {
    let d = dirs();
    let old = data(32 << 20, 6);
    let path = d.content.join("big.bin");
    std::fs::write(&path, &old).unwrap();
    let server = published_then_slow_to_settle(&d, "big.bin");
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(16384).unwrap();
    s.connect(&server.http.into()).unwrap();
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /files/big.bin HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.http
    )
    .unwrap();
    let mut got = vec![0u8; 65536];
    s.read_exact(&mut got).unwrap();
    // Rewrite in place with other bytes: the same inode, a new modification time.
    let new = data(32 << 20, 60);
    std::fs::write(&path, &new).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    got.extend_from_slice(&rest);
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &got[body_at..];
    assert!(
        body.len() < old.len(),
        "the whole file was sent although it changed"
    );
    assert_eq!(
        body,
        &old[..body.len()],
        "new bytes went out under the old ETag"
    );
}

// ---- 10. bytes sent with the handshake -----------------------------------------------------

/// A peer that sends its handshake and `interested` in one write is unchoked (the old seeder
/// left bytes that came with the handshake unread until the next read, which never came), and
/// a partial frame sent with the handshake is cut off by `peer.frame_timeout`.
#[test]
fn messages_sent_with_the_handshake_are_read_at_once() {
    let d = dirs();
    std::fs::write(d.content.join("one.bin"), data(100_000, 3)).unwrap();
    let server = Server::with_config(&d, "[peer]\nframe_timeout = 1.0\nidle_timeout = 60.0\n");
    let ih = server.published_hash("one.bin");
    let peer = server.logged_addr("peer listening on ");

    let mut s = TcpStream::connect(peer).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = bitseed::peer::Handshake::ours(ih, *b"-TC0001-testclient00", false)
        .serialize()
        .to_vec();
    Message::Interested.write_to(&mut out);
    s.write_all(&out).unwrap();
    let mut head = [0u8; 68];
    s.read_exact(&mut head).unwrap();
    let mut buf = Vec::new();
    loop {
        match crate::common::read_message(&mut s, &mut buf) {
            Some(Message::Unchoke) => break,
            Some(_) => continue,
            None => panic!("never unchoked after handshake + interested in one write"),
        }
    }

    let mut s = TcpStream::connect(peer).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = bitseed::peer::Handshake::ours(ih, *b"-TC0001-testclient01", false)
        .serialize()
        .to_vec();
    out.extend_from_slice(&[0, 0, 0, 13, 6, 0, 0]);
    let started = Instant::now();
    s.write_all(&out).unwrap();
    let mut sink = [0u8; 4096];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "a partial frame sent with the handshake held the connection {took:?}"
    );
}

// ---- 11. UDP error answers -----------------------------------------------------------------

/// Junk with a transaction ID gets an error answer no longer than itself.
#[test]
fn udp_error_answers_are_no_larger_than_the_request() {
    let d = dirs();
    let server = Server::start(&d.content, &d.state, &[]);
    let udp_addr = server.logged_addr("udp tracker listening on ");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answered = 0;
    for len in [16usize, 20, 30, 60, 97, 98, 120] {
        for action in [0u32, 1, 2, 9] {
            let mut p = vec![0x42u8; len];
            p[8..12].copy_from_slice(&action.to_be_bytes());
            sock.send_to(&p, udp_addr).unwrap();
            let mut back = [0u8; 2048];
            if let Ok((n, _)) = sock.recv_from(&mut back) {
                answered += 1;
                assert!(
                    n <= len,
                    "{len}-byte packet (action {action}) answered with {n}"
                );
            }
        }
    }
    assert!(
        answered > 10,
        "only {answered} answers: errors were not tested"
    );
}

// ---- 12. smaller ---------------------------------------------------------------------------

/// `/files` details: the ETag names the torrent's version, not the inode; names with `%`
/// download at the URL the API gives; unsatisfiable ranges are 416 with `bytes */LEN`; HEAD
/// says the length GET sends; a failed entry's error does not show the content folder's path.
#[test]
fn files_details_etag_percent_names_ranges_head_and_failed_paths() {
    let d = dirs();
    let body = data(5000, 8);
    std::fs::write(d.content.join("100% done.bin"), &body).unwrap();
    std::fs::create_dir_all(d.content.join("broken")).unwrap();
    std::fs::write(
        d.content
            .join("broken")
            .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"bad\xff")),
        b"x",
    )
    .unwrap();
    // The publisher's view shows failed entries, with why.
    let token = "security-test-token-0123";
    let server = Server::with_config(&d, &format!("[page]\nadmin_token = \"{token}\"\n"));
    let t = server.wait_published("100% done.bin", None);
    let url = t["download_url"].as_str().unwrap();
    let path = &url[url.find("/files/").unwrap()..];
    let r = server.get(path);
    assert_eq!((r.status, &r.body), (200, &body), "{path}");
    let etag = r.header("etag").unwrap().to_owned();
    let ino = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(d.content.join("100% done.bin")).unwrap(),
    );
    assert!(
        !etag.contains(&format!("{ino:x}")),
        "ETag {etag} shows inode {ino:x}"
    );
    for range in ["bytes=-0", "bytes=5000-", "bytes=9000-9999"] {
        let r = http_get(server.http, path, &[("Range", range)]);
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(r.header("content-range"), Some("bytes */5000"), "{range}");
    }
    let r = http_get(server.http, path, &[("Range", "bytes=-10")]);
    assert_eq!((r.status, &r.body[..]), (206, &body[4990..]));
    let r = http_get(
        server.http,
        path,
        &[("If-None-Match", &format!("W/{etag}"))],
    );
    assert_eq!(r.status, 304);
    let r = http_request(server.http, "HEAD", path, &[]);
    assert_eq!((r.status, r.header("content-length")), (200, Some("5000")));
    assert!(r.body.is_empty());

    let failed: Value = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        server
            .publisher_torrents(token)
            .into_iter()
            .find(|t| t["path"] == "broken" && t["status"] == "failed")
            .ok_or("broken never failed".into())
    });
    let error = failed["error"].as_str().unwrap();
    let root = d.content.canonicalize().unwrap();
    assert!(
        !error.contains(root.to_str().unwrap()) && !error.contains(d.content.to_str().unwrap()),
        "the error shows the content folder's path: {error}"
    );
    assert!(error.contains("broken/"), "{error}");
    let bearer = format!("Bearer {token}");
    let r = http_get(server.http, "/", &[("Authorization", &bearer)]);
    let page = String::from_utf8_lossy(&r.body).into_owned();
    assert!(page.contains("broken/"), "{page}");
    assert!(!page.contains(d.content.to_str().unwrap()), "{page}");
}

// ---- issue 14: pages that stay small -------------------------------------------------------

/// The API and the page send one page at a time (a cursor in `next` links, filters by name and
/// status), and a poll of an unchanged page is a 304.
#[test]
fn the_api_and_page_come_in_pages() {
    let d = dirs();
    for i in 0..30 {
        std::fs::write(d.content.join(format!("item{i:02}.bin")), data(100, i)).unwrap();
    }
    std::fs::write(d.content.join("other.bin"), data(100, 99)).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    eventually(Duration::from_secs(30), "not all published", || {
        let torrents = server.torrents();
        torrents
            .iter()
            .filter(|t| t["status"] == "published")
            .count()
            >= 31
    });
    let r = server.get("/api/torrents?limit=10&prefix=item");
    let page: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
    let names: Vec<&str> = page.iter().map(|t| t["path"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"item00.bin"));
    assert_eq!(names.len(), 10);
    assert_eq!(r.header("x-total-count"), Some("30"));
    let next = r.header("link").unwrap();
    assert!(
        next.contains("after=item09.bin") && next.contains("prefix=item"),
        "{next}"
    );
    // Following the links gives every item once, and the last page has no link.
    let mut seen = names.len();
    let mut link = Some(next.to_owned());
    while let Some(l) = link {
        let url = l
            .split(';')
            .next()
            .unwrap()
            .trim()
            .trim_matches(['<', '>'])
            .to_owned();
        let r = server.get(&url);
        let page: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        assert!(page
            .iter()
            .all(|t| t["path"].as_str().unwrap().starts_with("item")));
        seen += page.len();
        link = r.header("link").map(str::to_owned);
    }
    assert_eq!(seen, 30);
    // Search, case-insensitive, and the ETag of an unchanged page.
    let r = server.get("/api/torrents?q=OTHER");
    let page: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(page.len(), 1);
    let etag = r.header("etag").unwrap().to_owned();
    let again = http_get(
        server.http,
        "/api/torrents?q=OTHER",
        &[("If-None-Match", &etag)],
    );
    assert_eq!((again.status, again.body.len()), (304, 0));
    // The page: its first rows, a search box, and a link to more.
    let html = String::from_utf8(server.get("/?limit=5").body).unwrap();
    assert_eq!(html.matches(" data-path=").count(), 5);
    assert!(
        html.contains("name=q") && html.contains("?after=item04.bin"),
        "{html}"
    );
    let html = String::from_utf8(server.get("/?q=other").body).unwrap();
    assert_eq!(html.matches(" data-path=").count(), 1);
}
