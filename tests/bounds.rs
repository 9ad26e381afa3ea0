//! Connection bounds against the real binary: per client address (peer wire and HTTP, trusted
//! proxies exempt), HTTP connections in total, and the HTTP keep-alive timeout. Loopback has a
//! whole /8, so clients from different addresses are sockets bound to 127.0.0.2, 127.0.0.3...

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

/// peer.max_connections_per_ip: a third connection from one address is closed, another address
/// is admitted, and a slot freed is taken again.
#[test]
fn peer_connections_per_ip_are_capped() {
    let d = dirs();
    std::fs::write(d.content.join("a.bin"), data(50_000, 1)).unwrap();
    let server = Server::with_config(&d, "[peer]\nmax_connections_per_ip = 2\n");
    let ih = server.published_hash("a.bin");
    let peer = server.logged_addr("peer listening on ");
    let admitted = |from: [u8; 4]| {
        let mut s = connect_from(from, peer);
        let ok = crate::common::handshake_answered(&mut s, ih);
        (s, ok)
    };
    let (first, ok) = admitted([127, 0, 0, 1]);
    assert!(ok, "first connection from 127.0.0.1");
    let (_second, ok) = admitted([127, 0, 0, 1]);
    assert!(ok, "second connection from 127.0.0.1");
    let (_third, ok) = admitted([127, 0, 0, 1]);
    assert!(!ok, "a third connection from 127.0.0.1 is past the cap");
    let (_other, ok) = admitted([127, 0, 0, 2]);
    assert!(ok, "127.0.0.2 is another client");
    drop(first);
    eventually(
        Duration::from_secs(10),
        "the freed slot of 127.0.0.1 is never reused",
        || admitted([127, 0, 0, 1]).1,
    );
}

/// http.max_connections_per_ip: past the cap a connection is closed before it is answered;
/// another address is served; a trusted proxy (every client behind it shares its address) is
/// not capped.
#[test]
fn http_connections_per_ip_are_capped_except_trusted_proxies() {
    let d = dirs();
    let server = Server::with_config(
        &d,
        "[http]\nmax_connections_per_ip = 2\nkeep_alive = 60.0\n\
         [tracker]\ntrusted_proxies = [\"127.0.0.3\"]\n",
    );
    let wait = Duration::from_secs(5);
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| connect_from([127, 0, 0, 1], server.http))
        .collect();
    for s in &mut held {
        assert_eq!(ask(s, wait), Some(200), "within the cap");
    }
    let mut third = connect_from([127, 0, 0, 1], server.http);
    assert_eq!(
        ask(&mut third, wait),
        None,
        "past the cap: closed unanswered"
    );
    let mut other = connect_from([127, 0, 0, 2], server.http);
    assert_eq!(ask(&mut other, wait), Some(200), "another address");
    let mut proxied: Vec<TcpStream> = (0..4)
        .map(|_| connect_from([127, 0, 0, 3], server.http))
        .collect();
    for s in &mut proxied {
        assert_eq!(ask(s, wait), Some(200), "a trusted proxy is not capped");
    }
    // The connections held are still served, and a freed slot is taken again.
    assert_eq!(ask(&mut held[0], wait), Some(200));
    held.pop();
    eventually(
        Duration::from_secs(10),
        "the freed HTTP slot is never reused",
        || ask(&mut connect_from([127, 0, 0, 1], server.http), wait) == Some(200),
    );
}

/// http.max_connections (per worker, with http.workers = 1): a connection past it waits,
/// unanswered, until one closes, and is then served.
#[test]
fn http_max_connections_holds_until_one_closes() {
    let d = dirs();
    let server = Server::with_config(
        &d,
        "[http]\nworkers = 1\nmax_connections = 2\nmax_connections_per_ip = 0\nkeep_alive = 60.0\n",
    );
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| connect_from([127, 0, 0, 1], server.http))
        .collect();
    for s in &mut held {
        assert_eq!(ask(s, Duration::from_secs(5)), Some(200));
    }
    let mut waiting = connect_from([127, 0, 0, 1], server.http);
    assert_eq!(
        ask(&mut waiting, Duration::from_millis(1500)),
        None,
        "a third connection is not served while two are open"
    );
    drop(held);
    // The request already sent is answered once a slot frees.
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = [0u8; 12];
    waiting.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
}

/// http.keep_alive: an idle connection is closed by the server after the keep-alive time, not
/// before, and not kept for ever.
#[test]
fn http_idle_keep_alive_connections_are_closed() {
    let d = dirs();
    let server = Server::with_config(&d, "[http]\nkeep_alive = 2.0\n");
    let mut s = connect_from([127, 0, 0, 1], server.http);
    assert_eq!(ask(&mut s, Duration::from_secs(5)), Some(200));
    let idle = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{n} unexpected bytes on an idle connection"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the idle connection was not closed: {e}"),
    }
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "closed after {after:?}, before the keep-alive time"
    );
}

/// The seeder keeps every published file open: started from a shell whose soft limit on open
/// files is low (128), `serve` raises it to the hard limit and seeds a folder of 300 files
/// instead of failing with "Too many open files".
#[test]
fn a_folder_of_more_files_than_the_soft_fd_limit_is_seeded() {
    let d = dirs();
    let many = d.content.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..300 {
        std::fs::write(many.join(format!("f{i:03}.txt")), format!("file {i}\n")).unwrap();
    }
    let server = Server::start_with_soft_fd_limit(&d.content, &d.state, 128);
    let ih = server.published_hash("many");
    server.wait_log("open files limit: ", Duration::from_secs(5));
    let peer = server.logged_addr("peer listening on ");
    eventually(
        Duration::from_secs(10),
        "the seeder never served the folder of 300 files",
        || {
            let mut s = connect_from([127, 0, 0, 1], peer);
            crate::common::handshake_answered(&mut s, ih)
        },
    );
    assert!(
        !server.log.lock().unwrap().contains("Too many open files"),
        "{}",
        server.log.lock().unwrap()
    );
}

/// More published files (660) than the process may open descriptors (hard limit 256, a pool of
/// 64): every file is
/// published, served over HTTP and seeded over the peer wire through the bounded pool of open
/// files, and the descriptors in use stay under the limit.
#[test]
fn more_published_files_than_descriptors_are_all_served() {
    let d = dirs();
    let many = d.content.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..600 {
        std::fs::write(many.join(format!("f{i:03}.txt")), data(700, i)).unwrap();
    }
    for i in 0..60 {
        std::fs::write(
            d.content.join(format!("top{i:03}.bin")),
            data(300, 1000 + i),
        )
        .unwrap();
    }
    let server = Server::start_with_fd_limit(&d.content, &d.state, "ulimit -n 256");
    let ih = server.published_hash("many");
    eventually(
        Duration::from_secs(10),
        "not every entry was published",
        || {
            server
                .torrents()
                .iter()
                .filter(|t| t["status"] == "published")
                .count()
                == 61
        },
    );
    for i in 0..60u64 {
        let r = server.get(&format!("/files/top{i:03}.bin"));
        assert_eq!(
            (r.status, r.body),
            (200, data(300, 1000 + i)),
            "top{i:03}.bin"
        );
    }
    for i in (0..600u64).step_by(5) {
        let r = server.get(&format!("/files/many/f{i:03}.txt"));
        assert_eq!((r.status, r.body), (200, data(700, i)), "many/f{i:03}.txt");
    }
    let torrent = server.get("/torrents/many.torrent").body;
    let meta = bitseed::metainfo::Metainfo::from_bytes(&torrent).unwrap();
    assert_eq!(meta.info_hash.wire(), Some(ih));
    let peer = server.logged_addr("peer listening on ");
    let got = crate::common::download(peer, &meta);
    let want: Vec<u8> = (0..600u64).flat_map(|i| data(700, i)).collect();
    assert_eq!(got, want, "the seeded folder");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    assert!(fds < 200, "{fds} descriptors open under a limit of 256");
    let log = server.log.lock().unwrap();
    assert!(!log.contains("Too many open files"), "{log}");
}

/// Connections that only handshake and send keep-alives hold no slot for good: with the
/// per-torrent cap (and the seeder's total) full of them, a real aria2c download (web seed taken
/// out, so only the peer wire can serve it) still gets in, and the evictions are counted.
#[test]
fn idle_connections_make_way_for_a_real_downloader() {
    if !crate::common::have_aria2() {
        return;
    }
    let d = dirs();
    std::fs::write(d.content.join("wanted.bin"), data(2_000_000, 31)).unwrap();
    let server = Server::with_config(
        &d,
        "[peer]\nmax_connections = 40\nmax_connections_per_torrent = 20\nmax_connections_per_ip = 8\n",
    );
    let ih = server.published_hash("wanted.bin");
    let peer = server.logged_addr("peer listening on ");
    // 48 idle connections from 6 addresses: the torrent's 20 slots and the seeder's 40 fill up.
    let mut idle = Vec::new();
    for a in 0..6u8 {
        for _ in 0..8 {
            let mut s = connect_from([127, 0, 0, 40 + a], peer);
            if crate::common::handshake_answered(&mut s, ih) {
                idle.push(s);
            }
        }
    }
    assert!(
        idle.len() >= 20,
        "only {} idle connections got in",
        idle.len()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keeper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Keep-alives every second: no reason to close them but that they want nothing.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &mut idle {
                    let _ = s.write_all(&[0, 0, 0, 0]);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // Past their grace period, the idle ones may be evicted.
    std::thread::sleep(Duration::from_secs(11));
    let out = tempfile::tempdir().unwrap();
    let t = crate::common::torrent_without_web_seed(&server, "wanted.bin", out.path());
    let o = crate::common::aria2c(out.path(), &t);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    keeper.join().unwrap();
    assert!(o.status.success(), "{}", crate::common::stdout(&o));
    assert_eq!(
        std::fs::read(out.path().join("wanted.bin")).unwrap(),
        data(2_000_000, 31)
    );
    let evicted = server
        .metric("bitseed_peer_connections_evicted_total")
        .expect("an eviction metric");
    assert!(evicted >= 1, "{evicted} evictions");
}
