//! `bitseed tracker` run as a real process, spoken to over real HTTP and UDP sockets on loopback,
//! and announced to by libtorrent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;
use bitseed::bencode::{decode, Node};

/// A running `bitseed tracker`, killed when dropped.
struct Server {
    child: Child,
    http: SocketAddr,
    udp: SocketAddr,
}

impl Server {
    /// Starts the tracker on 127.0.0.1 port 0 (HTTP and UDP) and reads the bound addresses from
    /// its stdout.
    fn start(state: &Path, extra: &[&str]) -> Server {
        Server::start_at(state, "127.0.0.1:0", extra)
    }

    /// Like `start`, with HTTP and UDP both bound to `bind`.
    fn start_at(state: &Path, bind: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bitseed"))
            .args(["tracker", "--http", bind, "--udp", bind, "--workers", "1"])
            .arg("--state")
            .arg(state)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bitseed tracker");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            http: ([0, 0, 0, 0], 0).into(),
            udp: ([0, 0, 0, 0], 0).into(),
        };
        while server.http.port() == 0 || server.udp.port() == 0 {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("tracker printed its addresses");
            let addr = line.rsplit(' ').next().and_then(|a| a.parse().ok());
            match (
                line.starts_with("http listening on "),
                line.starts_with("udp listening on "),
                addr,
            ) {
                (true, _, Some(a)) => server.http = a,
                (_, true, Some(a)) => server.udp = a,
                _ => {}
            }
        }
        server
    }

    /// Stops the tracker with SIGTERM, as a service manager would, and returns its exit status.
    fn stop(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!("tracker did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn get(&self, path: &str) -> Vec<u8> {
        ok_body(self.http, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn compact_ports(peers: &[u8]) -> Vec<u16> {
    assert_eq!(peers.len() % 6, 0);
    peers
        .chunks(6)
        .map(|c| u16::from_be_bytes([c[4], c[5]]))
        .collect()
}

fn hash(n: u8) -> [u8; 20] {
    let mut h = [0x5a; 20];
    h[0] = n;
    h[19] = n;
    h
}

#[test]
fn http_many_peers_on_one_torrent() {
    let state = tempfile::tempdir().unwrap();
    // Every peer here is 127.0.0.1 on another port: no per-address cap.
    let server = Server::start(state.path(), &["--max-peers-per-ip", "0"]);
    let h = hash(1);
    for port in 1000..1060 {
        // Seeders say they have the data: `left=0` alone is not enough (issue 15).
        let (left, event) = if port < 1010 {
            (0, "&event=completed")
        } else {
            (100, "&event=started")
        };
        let body = server.get(&announce_path(&h, port, left, event));
        decode(&body).expect("bencoded answer");
    }
    let body = server.get(&announce_path(&h, 2000, 100, "&numwant=200"));
    let node = decode(&body).unwrap();
    assert_eq!((int(&node, "complete"), int(&node, "incomplete")), (10, 51));
    assert_eq!(
        (int(&node, "interval"), int(&node, "min interval")),
        (1800, 900)
    );
    assert_eq!(bytes(&node, "external ip"), [127, 0, 0, 1]);
    let mut ports = compact_ports(bytes(&node, "peers"));
    ports.sort();
    assert_eq!(
        ports,
        (1000..1060).collect::<Vec<_>>(),
        "everyone but the requester"
    );
    // Default numwant is 50.
    let node_body = server.get(&announce_path(&h, 2001, 100, ""));
    assert_eq!(
        compact_ports(bytes(&decode(&node_body).unwrap(), "peers")).len(),
        50
    );
    // A seeder gets leechers only.
    let seeder_body = server.get(&announce_path(&h, 1000, 0, "&numwant=200"));
    let ports = compact_ports(bytes(&decode(&seeder_body).unwrap(), "peers"));
    assert_eq!(ports.len(), 52);
    assert!(ports.iter().all(|p| *p >= 1010), "{ports:?}");
}

#[test]
fn http_stopped_completed_and_counts_survive_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let mut server = Server::start(state.path(), &[]);
    let h = hash(2);
    server.get(&announce_path(&h, 1, 100, "&event=started"));
    server.get(&announce_path(&h, 2, 100, "&event=started"));
    // `completed` with bytes left does not count.
    let node_body = server.get(&announce_path(&h, 1, 5, "&event=completed"));
    assert_eq!(int(&decode(&node_body).unwrap(), "downloaded"), 0);
    let body = server.get(&announce_path(&h, 1, 0, "&event=completed"));
    let node = decode(&body).unwrap();
    assert_eq!(
        (
            int(&node, "complete"),
            int(&node, "incomplete"),
            int(&node, "downloaded")
        ),
        (1, 1, 1)
    );
    // Clients resend `completed`; it is counted once.
    let body = server.get(&announce_path(&h, 1, 0, "&event=completed"));
    assert_eq!(int(&decode(&body).unwrap(), "downloaded"), 1);
    let body = server.get(&announce_path(&h, 2, 100, "&event=stopped"));
    let node = decode(&body).unwrap();
    assert_eq!((int(&node, "complete"), int(&node, "incomplete")), (1, 0));
    assert_eq!(bytes(&node, "peers"), b"");
    let scrape = server.get(&format!("/scrape?info_hash={}", enc(&h)));
    let node = decode(&scrape).unwrap();
    let files = node.get("files").unwrap();
    let entry = files.as_dict().unwrap();
    assert_eq!(entry.len(), 1);
    assert_eq!(entry[0].0, h);
    assert_eq!(
        (
            int(&entry[0].1, "complete"),
            int(&entry[0].1, "incomplete"),
            int(&entry[0].1, "downloaded")
        ),
        (1, 0, 1)
    );
    assert!(server.stop().success(), "graceful stop exits 0");
    let server = Server::start(state.path(), &[]);
    let scrape = server.get(&format!("/scrape?info_hash={}", enc(&h)));
    let node = decode(&scrape).unwrap();
    let entry = &node.get("files").unwrap().as_dict().unwrap()[0].1;
    assert_eq!(
        (int(entry, "complete"), int(entry, "downloaded")),
        (0, 1),
        "count kept, peers not"
    );
}

#[test]
fn http_peers_expire_after_twice_the_interval() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path(), &["--interval", "1"]);
    let h = hash(3);
    let body = server.get(&announce_path(&h, 1, 100, "&event=started"));
    assert_eq!(int(&decode(&body).unwrap(), "interval"), 1);
    let stats = String::from_utf8(server.get("/stats")).unwrap();
    assert!(stats.contains("torrents: 1\n"), "{stats}");
    // The sweep runs in the background; wait for it (bounded), asserting only the outcome.
    let stats = poll(Duration::from_secs(60), Duration::from_millis(200), || {
        let stats = String::from_utf8(server.get("/stats")).unwrap();
        if stats.contains("torrents: 0\n") {
            Ok(stats)
        } else {
            Err(format!("peer never expired: {stats}"))
        }
    });
    assert!(stats.contains("leechers: 0\n"), "{stats}");
    let scrape = server.get(&format!("/scrape?info_hash={}", enc(&h)));
    let node = decode(&scrape).unwrap();
    let entry = &node.get("files").unwrap().as_dict().unwrap()[0].1;
    assert_eq!(int(entry, "incomplete"), 0);
}

#[test]
fn http_malformed_input_gets_a_failure_reason() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path(), &[]);
    let h = enc(&hash(4));
    let good = announce_path(&hash(4), 6881, 0, "");
    let cases: Vec<(String, &str)> = vec![
        ("/announce".into(), "missing info_hash"),
        ("/announce?".into(), "missing info_hash"),
        ("/announce?info_hash=abc".into(), "malformed info_hash"),
        (format!("/announce?info_hash={h}%AA"), "malformed info_hash"),
        ("/announce?info_hash=%GG".into(), "malformed info_hash"),
        (
            good.replace("info_hash=", "info_hash=%"),
            "malformed info_hash",
        ),
        (format!("{good}&info_hash={h}"), "repeated info_hash"),
        (good.replace("&peer_id=", "&x="), "missing peer_id"),
        (good.replace("peer_id=", "peer_id=%41"), "malformed peer_id"),
        (good.replace("port=6881", "port=65536"), "invalid port"),
        (good.replace("port=6881", "port=-1"), "invalid port"),
        (good.replace("port=6881", "port=http"), "invalid port"),
        (good.replace("&port=6881", ""), "missing port"),
        (good.replace("left=0", "left=-1"), "malformed left"),
        (
            good.replace("left=0", "left=18446744073709551616"),
            "malformed left",
        ),
        (good.replace("&uploaded=0", ""), "missing uploaded"),
        (
            good.replace("downloaded=0", "downloaded=1e9"),
            "malformed downloaded",
        ),
        (format!("{good}&event=finished"), "malformed event"),
        (format!("{good}&numwant=lots"), "malformed numwant"),
        (format!("{good}&compact=yes"), "malformed compact"),
        ("/scrape?info_hash=short".into(), "malformed info_hash"),
        (
            format!("/scrape?{}", vec![format!("info_hash={h}"); 101].join("&")),
            "too many info_hash (at most 100)",
        ),
    ];
    for (path, want) in cases {
        let body = server.get(&path);
        assert_eq!(
            failure_reason(&body).expect("a failure reason"),
            want,
            "{path}"
        );
    }
    // Still serving after all that.
    decode(&server.get(&good))
        .unwrap()
        .get("peers")
        .expect("peers");
}

#[test]
fn http_edge_cases_port_zero_numwant_zero_paused_dictionary_v2() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path(), &[]);
    let h = hash(5);
    // port=0: a normal answer, but never listed.
    let body = server.get(&announce_path(&h, 0, 100, ""));
    assert_eq!(bytes(&decode(&body).unwrap(), "peers"), b"");
    server.get(&announce_path(&h, 7000, 0, "&event=paused"));
    let body = server.get(&announce_path(&h, 7001, 100, ""));
    assert_eq!(
        compact_ports(bytes(&decode(&body).unwrap(), "peers")),
        [7000]
    );
    // numwant=0 is valid: counts, no peers. (The paused peer has only said `left=0`: it is
    // counted as incomplete.)
    let body = server.get(&announce_path(&h, 7002, 100, "&numwant=0"));
    let node = decode(&body).unwrap();
    assert_eq!(bytes(&node, "peers"), b"");
    assert_eq!((int(&node, "complete"), int(&node, "incomplete")), (0, 3));
    // compact=0: the dictionary model, no peer id when asked not to.
    let body = server.get(&announce_path(
        &h,
        7003,
        100,
        "&compact=0&no_peer_id=1&numwant=1",
    ));
    let node = decode(&body).unwrap();
    let peers = node
        .get("peers")
        .and_then(Node::as_list)
        .expect("peers list");
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].get("ip").and_then(Node::as_str), Some("127.0.0.1"));
    assert!(peers[0].get("port").and_then(Node::as_int).is_some());
    assert!(peers[0].get("peer id").is_none());
    // A v2 info hash arrives truncated to 20 bytes: just another 20-byte hash.
    let v2 = [0xeeu8; 32];
    let mut truncated = [0u8; 20];
    truncated.copy_from_slice(&v2[..20]);
    let body = server.get(&announce_path(&truncated, 7004, 100, ""));
    assert_eq!(int(&decode(&body).unwrap(), "incomplete"), 1);
    // The `ip` parameter is ignored by default.
    let body = server.get(&announce_path(&h, 7005, 100, "&ip=10.9.9.9&numwant=0"));
    assert_eq!(
        bytes(&decode(&body).unwrap(), "external ip"),
        [127, 0, 0, 1]
    );
    let body = server.get(&announce_path(&h, 7006, 100, "&numwant=200"));
    let ports = compact_ports(bytes(&decode(&body).unwrap(), "peers"));
    assert!(ports.contains(&7005));
    assert!(!bytes(&decode(&body).unwrap(), "peers")
        .windows(4)
        .any(|w| w == [10, 9, 9, 9]));
}

#[test]
fn http_published_mode_refuses_unregistered_torrents() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path(), &["--mode", "published"]);
    let body = server.get(&announce_path(&hash(6), 1, 0, ""));
    assert_eq!(
        failure_reason(&body).expect("a failure reason"),
        "unregistered torrent"
    );
}

#[test]
fn http_policy_flags_proxies_ip_param_and_torrent_cap() {
    let state = tempfile::tempdir().unwrap();
    let h = hash(13);
    // Forwarded headers count only from a trusted proxy.
    let server = Server::start(state.path(), &[]);
    let fwd = &[("X-Forwarded-For", "198.51.100.7")];
    let body = ok_body_with(server.http, &announce_path(&h, 1, 0, ""), fwd);
    assert_eq!(
        bytes(&decode(&body).unwrap(), "external ip"),
        [127, 0, 0, 1]
    );
    drop(server);
    let server = Server::start(
        state.path(),
        &["--trusted-proxy", "127.0.0.1", "--accept-ip-param"],
    );
    let body = ok_body_with(server.http, &announce_path(&h, 1, 0, ""), fwd);
    assert_eq!(
        bytes(&decode(&body).unwrap(), "external ip"),
        [198, 51, 100, 7]
    );
    let body = ok_body_with(
        server.http,
        &announce_path(&h, 2, 0, "&ip=203.0.113.5"),
        &[],
    );
    decode(&body).unwrap();
    let body = server.get(&announce_path(&h, 3, 100, "&numwant=10"));
    let peers = bytes(&decode(&body).unwrap(), "peers").to_vec();
    assert!(
        peers.chunks(6).any(|c| c == [198, 51, 100, 7, 0, 1]),
        "{peers:?}"
    );
    assert!(
        peers.chunks(6).any(|c| c == [203, 0, 113, 5, 0, 2]),
        "{peers:?}"
    );
    drop(server);
    // Open mode caps the number of torrents.
    let server = Server::start(state.path(), &["--max-torrents", "1"]);
    decode(&server.get(&announce_path(&hash(14), 1, 0, "")))
        .unwrap()
        .get("peers")
        .expect("peers");
    assert_eq!(
        failure_reason(&server.get(&announce_path(&hash(15), 1, 0, ""))).expect("a failure reason"),
        "tracker is full"
    );
}

#[test]
fn http_newtrackon_style_check() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path(), &[]);
    let random: [u8; 20] = std::array::from_fn(|i| {
        (i as u8)
            .wrapping_mul(37)
            .wrapping_add(std::process::id() as u8)
    });
    let body = server.get(&announce_path(
        &random,
        51413,
        0,
        "&compact=1&event=started",
    ));
    let node = decode(&body).expect("well-formed bencode");
    assert!(node.get("peers").and_then(Node::as_bytes).is_some());
    assert!(node.get("interval").and_then(Node::as_int).is_some());
    // Its `left=0` alone does not make it a seeder (issue 15).
    let stats = String::from_utf8(server.get("/stats")).unwrap();
    for line in [
        "torrents: 1",
        "seeders: 0",
        "leechers: 1",
        "announces per second: ",
    ] {
        assert!(stats.contains(line), "{stats}");
    }
}

/// `bitseed tracker` takes the HTTP bounds `serve` has: a request target over --max-uri-bytes
/// is answered 414, a connection past --max-connections-per-ip is closed unanswered, and
/// --keep-alive closes an idle connection.
#[test]
fn http_bounds_of_the_standalone_tracker() {
    use crate::common::{ask, connect_from};
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(
        state.path(),
        &[
            "--max-uri-bytes",
            "300",
            "--max-connections-per-ip",
            "1",
            "--keep-alive",
            "2",
        ],
    );
    let wait = Duration::from_secs(5);
    let mut s = connect_from([127, 0, 0, 1], server.http);
    let long = format!(
        "GET /announce?info_hash={} HTTP/1.1\r\nHost: t\r\n\r\n",
        "%41".repeat(120)
    );
    s.write_all(long.as_bytes()).unwrap();
    let mut status = [0u8; 12];
    s.read_exact(&mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 414");
    let mut held = connect_from([127, 0, 0, 2], server.http);
    assert_eq!(
        ask(&mut held, wait),
        Some(404),
        "/healthz is not a tracker route"
    );
    let mut second = connect_from([127, 0, 0, 2], server.http);
    assert_eq!(
        ask(&mut second, wait),
        None,
        "past --max-connections-per-ip"
    );
    // Idle for the keep-alive time: closed by the tracker.
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(held.read(&mut status).unwrap_or(0), 0);
}

// ---- UDP ----

#[test]
fn udp_connect_announce_scrape_many_peers() {
    let state = tempfile::tempdir().unwrap();
    // Every peer here is 127.0.0.1 on another port: no per-address cap.
    let server = Server::start(state.path(), &["--max-peers-per-ip", "0"]);
    let udp = Udp::new(server.udp);
    let conn = udp.connect();
    let h = hash(7);
    for port in 3000..3100 {
        // Seeders announce `completed`: `left=0` alone is not a seeder (issue 15).
        let (left, event) = if port < 3020 { (0, 1) } else { (1, 2) };
        let r = udp.exchange(&udp_announce(conn, &h, port, left, event, 0));
        assert_eq!((be32(&r, 0), be32(&r, 4)), (1, u32::from(port)));
    }
    // num_want = -1: the default, 50.
    let r = udp.exchange(&udp_announce(conn, &h, 4000, 1, 0, -1));
    assert_eq!((be32(&r, 8), be32(&r, 12), be32(&r, 16)), (1800, 81, 20));
    assert_eq!((r.len() - 20) / 6, 50);
    let r = udp.exchange(&udp_announce(conn, &h, 4000, 1, 0, 1000));
    let ports = compact_ports(&r[20..]);
    assert_eq!(ports.len(), 100, "everyone but the requester");
    assert!(!ports.contains(&4000));
    // stopped, then completed counted once.
    udp.exchange(&udp_announce(conn, &h, 4000, 1, 3, 0));
    udp.exchange(&udp_announce(conn, &h, 3050, 0, 1, 0));
    udp.exchange(&udp_announce(conn, &h, 3050, 0, 1, 0));
    let mut p = conn.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 99]);
    p.extend_from_slice(&h);
    p.extend_from_slice(&hash(8));
    let r = udp.exchange(&p);
    assert_eq!(r.len(), 8 + 24);
    assert_eq!((be32(&r, 0), be32(&r, 4)), (2, 99));
    assert_eq!((be32(&r, 8), be32(&r, 12), be32(&r, 16)), (21, 21, 79));
    assert_eq!((be32(&r, 20), be32(&r, 24), be32(&r, 28)), (0, 0, 0));
    // The same swarm over HTTP.
    let body = server.get(&format!("/scrape?info_hash={}", enc(&h)));
    let node = decode(&body).unwrap();
    let entry = &node.get("files").unwrap().as_dict().unwrap()[0].1;
    assert_eq!(
        (
            int(entry, "complete"),
            int(entry, "incomplete"),
            int(entry, "downloaded")
        ),
        (21, 79, 21)
    );
}

#[test]
fn udp_malformed_datagrams_never_stop_the_loop() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path(), &[]);
    let udp = Udp::new(server.udp);
    let conn = udp.connect();
    let h = hash(9);
    // Dropped (no transaction ID to answer, or not our protocol): the next exchange proves the
    // loop is alive and that nothing was queued for us.
    for junk in [&[][..], &[1, 2, 3][..], &[0u8; 15][..], &[0u8; 16][..]] {
        udp.socket.send_to(junk, server.udp).unwrap();
    }
    // (`connect` asserts the answer carries our transaction ID, so nothing stale was queued.)
    udp.connect();
    let error = |r: &[u8], tx: u32| -> String {
        assert_eq!((be32(r, 0), be32(r, 4)), (3, tx), "{r:?}");
        String::from_utf8(r[8..].to_vec()).unwrap()
    };
    // An error answer is never longer than its request: a 16-byte packet gets 8 bytes of text.
    let mut unknown = conn.to_be_bytes().to_vec();
    unknown.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 5]);
    assert_eq!(error(&udp.exchange(&unknown), 5), "unknown ");
    unknown.extend_from_slice(&[0; 16]);
    assert_eq!(error(&udp.exchange(&unknown), 5), "unknown action");
    let p = udp_announce(conn, &h, 5000, 0, 0, 5);
    assert_eq!(error(&udp.exchange(&p[..97]), 5000), "announce too short");
    assert_eq!(
        error(&udp.exchange(&udp_announce(conn, &h, 5000, 0, 7, 5)), 5000),
        "unknown event"
    );
    assert_eq!(
        error(
            &udp.exchange(&udp_announce(conn ^ 1, &h, 5000, 0, 0, 5)),
            5000
        ),
        "bad connection id"
    );
    let mut scrape = (conn ^ 2).to_be_bytes().to_vec();
    scrape.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 6]);
    scrape.extend_from_slice(&h);
    assert_eq!(error(&udp.exchange(&scrape), 6), "bad connection id");
    // BEP 41: URLData, NOPs and EndOfOptions are skipped; a truncated option is an error.
    let mut with_options = udp_announce(conn, &h, 5001, 0, 0, 5);
    with_options.extend_from_slice(&[
        2, 9, b'/', b'a', b'n', b'n', b'o', b'u', b'n', b'c', b'e', 1, 1, 0, 0xff,
    ]);
    let r = udp.exchange(&with_options);
    // Counted (as a leecher: it has only said `left=0`).
    assert_eq!((be32(&r, 0), be32(&r, 4), be32(&r, 12)), (1, 5001, 1));
    let mut truncated = udp_announce(conn, &h, 5002, 0, 0, 5);
    truncated.extend_from_slice(&[2, 200, b'/']);
    assert_eq!(
        error(&udp.exchange(&truncated), 5002),
        "truncated BEP 41 option"
    );
    // newTrackon's check over UDP: a random info hash, left=0, gets a well-formed answer.
    let random: [u8; 20] = std::array::from_fn(|i| (i as u8) ^ 0xc3);
    let r = udp.exchange(&udp_announce(conn, &random, 51413, 0, 2, -1));
    assert_eq!((be32(&r, 0), r.len()), (1, 20));
}

#[test]
fn ipv6_peers6_and_v4_mapped_clients() {
    let state = tempfile::tempdir().unwrap();
    // Dual-stack: v4 clients arrive as ::ffff:127.0.0.1 and must count as v4.
    let server = Server::start_at(state.path(), "[::]:0", &[]);
    let v4: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, server.http.port()).into();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, server.http.port()).into();
    let h = hash(12);
    let body = ok_body(v4, &announce_path(&h, 1, 100, ""));
    assert_eq!(
        bytes(&decode(&body).unwrap(), "external ip"),
        [127, 0, 0, 1]
    );
    let body = ok_body(v6, &announce_path(&h, 2, 100, ""));
    let node = decode(&body).unwrap();
    assert_eq!(
        bytes(&node, "external ip"),
        std::net::Ipv6Addr::LOCALHOST.octets()
    );
    assert_eq!(compact_ports(bytes(&node, "peers")), [1]);
    assert!(
        node.get("peers6").is_none(),
        "a peer never gets itself back"
    );
    let body = ok_body(v4, &announce_path(&h, 3, 100, ""));
    let node = decode(&body).unwrap();
    assert_eq!(compact_ports(bytes(&node, "peers")), [1]);
    let mut v6_peer = std::net::Ipv6Addr::LOCALHOST.octets().to_vec();
    v6_peer.extend_from_slice(&2u16.to_be_bytes());
    assert_eq!(bytes(&node, "peers6"), v6_peer);
    // UDP answers in the packet's family only: 18-byte entries to a v6 client.
    let udp6 = Udp {
        socket: UdpSocket::bind("[::1]:0").unwrap(),
        server: (std::net::Ipv6Addr::LOCALHOST, server.udp.port()).into(),
    };
    udp6.socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let conn = udp6.connect();
    let r = udp6.exchange(&udp_announce(conn, &h, 4, 100, 2, -1));
    assert_eq!((be32(&r, 12), be32(&r, 16)), (4, 0));
    assert_eq!(r[20..], v6_peer[..]);
    let udp4 = Udp::new((std::net::Ipv4Addr::LOCALHOST, server.udp.port()).into());
    let conn = udp4.connect();
    let r = udp4.exchange(&udp_announce(conn, &h, 5, 100, 2, -1));
    let mut ports = compact_ports(&r[20..]);
    ports.sort();
    assert_eq!(ports, [1, 3]);
}

#[test]
fn udp_connection_ids_survive_a_restart_and_scrape_without_hashes_is_empty() {
    let state = tempfile::tempdir().unwrap();
    let mut server = Server::start(state.path(), &[]);
    let udp = Udp::new(server.udp);
    let conn = udp.connect();
    assert!(server.stop().success());
    // Same state folder, so the same key: the client's ID is still good on the new process.
    let server = Server::start(state.path(), &[]);
    let udp = Udp {
        socket: udp.socket,
        server: server.udp,
    };
    let r = udp.exchange(&udp_announce(conn, &hash(16), 1, 0, 2, -1));
    assert_eq!((be32(&r, 0), be32(&r, 4)), (1, 1), "{r:?}");
    // A new state folder means a new key: the old ID is refused.
    let other = tempfile::tempdir().unwrap();
    let server = Server::start(other.path(), &[]);
    let udp = Udp {
        socket: udp.socket,
        server: server.udp,
    };
    let r = udp.exchange(&udp_announce(conn, &hash(16), 1, 0, 2, -1));
    assert_eq!(&r[8..], b"bad connection id");
    // Full scrape is off by default: an empty scrape lists nothing.
    assert_eq!(server.get("/scrape"), b"d5:filesdee");
    let server = Server::start(other.path(), &["--full-scrape"]);
    server.get(&announce_path(&hash(17), 1, 0, ""));
    let body = server.get("/scrape");
    let node = decode(&body).unwrap();
    assert_eq!(node.get("files").unwrap().as_dict().unwrap().len(), 1);
}

// ---- libtorrent ----

/// Whether libtorrent's Python binding is there; under CI its absence fails the test.
fn libtorrent_available() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3-libtorrent is missing (apt-get install python3-libtorrent)"
        );
        eprintln!("skipping: python3-libtorrent is not installed");
    }
    ok
}

/// A libtorrent session in its own process, announced and still in the swarm until dropped.
struct LtPeer {
    child: Child,
    reply: serde_json::Value,
}

impl LtPeer {
    fn announce(url: &str, info_hash: &[u8; 20]) -> LtPeer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt_announce.py");
        let mut child = Command::new("/usr/bin/python3")
            .args([script, url, &hex::encode(info_hash)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run lt_announce.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        // The script gives up after 30 s on its own, so this read is bounded.
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read reply");
        let reply = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("lt_announce.py printed {line:?}: {e}"));
        LtPeer { child, reply }
    }
}

impl Drop for LtPeer {
    fn drop(&mut self) {
        // Closing stdin lets it leave the swarm; kill in case it does not.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn libtorrent_announces_over_http_and_udp_and_gets_peers() {
    if !libtorrent_available() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path(), &[]);
    for (url, h) in [
        (format!("http://{}/announce", server.http), hash(10)),
        (format!("udp://{}/announce", server.udp), hash(11)),
    ] {
        let a = LtPeer::announce(&url, &h);
        assert_eq!(
            a.reply["error"],
            serde_json::Value::Null,
            "{url}: {}",
            a.reply
        );
        let b = LtPeer::announce(&url, &h);
        assert_eq!(
            b.reply["error"],
            serde_json::Value::Null,
            "{url}: {}",
            b.reply
        );
        assert_eq!(
            b.reply["num_peers"].as_u64(),
            Some(1),
            "{url}: B gets A back: {}",
            b.reply
        );
        let scrape = server.get(&format!("/scrape?info_hash={}", enc(&h)));
        let node = decode(&scrape).unwrap();
        let entry = &node.get("files").unwrap().as_dict().unwrap()[0].1;
        assert_eq!(
            int(entry, "complete") + int(entry, "incomplete"),
            2,
            "{url}: both in the swarm"
        );
    }
}

// ---- The tracker built into `serve`: its own seed, hybrid torrents (issue 15) ----

/// `bitseed serve` with `file` (of `len` bytes) published; its addresses.
struct Published {
    server: crate::common::Server,
    _dirs: crate::common::Dirs,
    udp: SocketAddr,
    /// Our seed in compact form, as the tracker lists it.
    own: [u8; 6],
    entry: serde_json::Value,
}

fn publish(file: &str, len: usize, extra: &[&str]) -> Published {
    let d = crate::common::dirs();
    let server = crate::common::Server::start(&d.content, &d.state, extra);
    std::fs::write(d.content.join(file), crate::common::data(len, 15)).unwrap();
    let entry = server.wait_published(file, None);
    let udp = server.logged_addr("udp tracker listening on ");
    let peer = server.logged_addr("peer listening on ");
    let mut own = [127, 0, 0, 1, 0, 0];
    own[4..].copy_from_slice(&peer.port().to_be_bytes());
    Published {
        server,
        _dirs: d,
        udp,
        own,
        entry,
    }
}

/// Issue 15: aria2 fetching a magnet link's metadata announces `left=0`, and was treated as a
/// seeder: given no peer, not even bitseed's own seed, and counted in `complete`. Over HTTP
/// and UDP, a `left=0` announce without `completed` gets the own seed and counts as incomplete.
#[test]
fn serve_lists_its_seed_to_a_left_zero_announce_and_does_not_count_it_as_a_seed() {
    let p = publish("f.bin", 40_000, &[]);
    let h = hex20(p.entry["info_hash"].as_str().unwrap());
    let http = p.server.http;
    let (peers, counts) = http_peers(http, &announce_path(&h, 7101, 0, "&event=started"));
    assert_eq!(peers, [p.own]);
    assert_eq!(counts, (1, 1), "our seed complete, the newcomer incomplete");
    let udp = Udp::new(p.udp);
    let conn = udp.connect();
    let (peers, counts) = udp_peers(&udp.exchange(&udp_announce(conn, &h, 7102, 0, 2, -1)));
    assert_eq!(peers, [p.own, compact_local(7101)]);
    assert_eq!(counts, (1, 2));
    // Said again, still not a seed; the page counts as the scrape does.
    ok_body(http, &announce_path(&h, 7101, 0, ""));
    assert_eq!(scraped(http, &h), (1, 2, 0));
    let api = p.server.wait_published("f.bin", None);
    assert_eq!(
        (api["seeders"].as_u64(), api["leechers"].as_u64()),
        (Some(1), Some(2))
    );
    // Once it shows it has the data (`left` from above zero to zero), it is a seed.
    ok_body(http, &announce_path(&h, 7101, 40_000, ""));
    ok_body(http, &announce_path(&h, 7101, 0, ""));
    // And `completed` is shown at once.
    udp.exchange(&udp_announce(conn, &h, 7102, 0, 1, -1));
    assert_eq!(scraped(http, &h), (3, 0, 1));
}

/// Issue 15: a hybrid torrent's two hashes (v1, truncated v2) were two swarms. Now peers under
/// either are listed to announcers of either, over HTTP and UDP; both scrape alike; `stopped`
/// under either removes the peer; a client back under the other hash after `stopped` is given
/// our seed again.
#[test]
fn serve_tracks_a_hybrid_torrent_as_one_swarm_over_http_and_udp() {
    let p = publish("h.bin", 60_000, &["--format", "hybrid"]);
    let v1 = hex20(p.entry["info_hash"].as_str().unwrap());
    let v2 = hex20(p.entry["info_hash_v2"].as_str().unwrap());
    let http = p.server.http;
    let udp = Udp::new(p.udp);
    let conn = udp.connect();
    // A leecher under v1 over HTTP; another under v2 over UDP gets it, and our seed.
    let (peers, _) = http_peers(http, &announce_path(&v1, 7201, 100, "&event=started"));
    assert_eq!(peers, [p.own]);
    let (peers, counts) = udp_peers(&udp.exchange(&udp_announce(conn, &v2, 7202, 100, 2, -1)));
    assert_eq!(peers, [p.own, compact_local(7201)]);
    assert_eq!(counts, (1, 2));
    // The v1 one gets the v2 one back.
    let (peers, _) = http_peers(http, &announce_path(&v1, 7201, 100, ""));
    assert_eq!(peers, [p.own, compact_local(7202)]);
    // One count for both hashes, over HTTP and UDP scrapes.
    assert_eq!(scraped(http, &v1), (1, 2, 0));
    assert_eq!(scraped(http, &v2), (1, 2, 0));
    udp.exchange(&udp_announce(conn, &v2, 7202, 0, 1, -1));
    assert_eq!(scraped(http, &v1), (2, 1, 1));
    let mut scrape = conn.to_be_bytes().to_vec();
    scrape.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 5]);
    scrape.extend_from_slice(&v1);
    scrape.extend_from_slice(&v2);
    let r = udp.exchange(&scrape);
    assert_eq!((be32(&r, 0), r.len()), (2, 8 + 24));
    assert_eq!(r[8..20], r[20..32], "v1 and v2 scraped alike");
    assert_eq!((be32(&r, 8), be32(&r, 12), be32(&r, 16)), (2, 1, 1));
    // `stopped` under the v2 hash removes the peer that announced under v1; back under v2
    // only, from the same address and port, it is given our seed and the other peer.
    ok_body(http, &announce_path(&v2, 7201, 100, "&event=stopped"));
    assert_eq!(scraped(http, &v1), (2, 0, 1));
    let (peers, counts) = http_peers(http, &announce_path(&v2, 7201, 100, "&event=started"));
    assert_eq!(peers, [p.own, compact_local(7202)]);
    assert_eq!(counts, (2, 1));
}

/// Issue 15: aria2 given only the magnet link (no web seed) found no peer: it announces
/// `left=0` while it fetches the metadata, and a "seeder" was given no peers, not even
/// bitseed's own seed. It must fetch the metadata and the data from bitseed's seeder, found
/// through the built-in tracker.
#[test]
fn aria2_downloads_from_the_magnet_link_through_the_tracker() {
    if !crate::common::have_aria2() {
        return;
    }
    let len = 1_500_000;
    let p = publish("m.bin", len, &[]);
    let magnet = crate::common::magnet_without_web_seed(p.entry["magnet"].as_str().unwrap());
    assert!(
        magnet.contains("&tr=") && !magnet.contains("ws="),
        "{magnet}"
    );
    let out = tempfile::tempdir().unwrap();
    let o = crate::common::aria2c(out.path(), &magnet);
    assert!(
        o.status.success(),
        "{}\n{}",
        crate::common::stdout(&o),
        p.server.log.lock().unwrap()
    );
    assert_eq!(
        std::fs::read(out.path().join("m.bin")).unwrap(),
        crate::common::data(len, 15)
    );
    let sent = p.server.metric("bitseed_peer_uploaded_bytes_total");
    assert!(sent.is_some_and(|n| n >= len as u64), "{sent:?}");
}
