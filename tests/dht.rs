//! The DHT node (BEP 5) on the peer port, with libtorrent on a loopback DHT whose only contact
//! is bitseed: no tracker, no peer given. bitseed's own bootstrap list is empty, so nothing
//! leaves the machine.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::common::{dirs, Dirs, Server};

/// `bitseed serve` with its DHT node on and no bootstrap node of its own.
fn start_with_dht(d: &Dirs, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("BITSEED_DHT__ENABLED", "true"),
        ("BITSEED_DHT__BOOTSTRAP", ""),
    ];
    all.extend_from_slice(env);
    Server::start_env(d, extra, &all)
}

/// The magnet link of `t` (an API entry) with neither trackers nor web seeds.
fn bare_magnet(t: &Value) -> (String, Vec<String>) {
    let mut m = bitseed::metainfo::Magnet::parse(t["magnet"].as_str().unwrap()).unwrap();
    m.trackers.clear();
    m.web_seeds.clear();
    let hashes = m.info_hash.wire_hashes().iter().map(hex::encode).collect();
    let uri = m.to_uri();
    assert!(!uri.contains("tr=") && !uri.contains("ws="), "{uri}");
    (uri, hashes)
}

fn lt_dht(args: &[&str], timeout: Duration) -> (std::process::Output, Value) {
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.arg(interop_script("lt_dht.py")).args(args);
    let o = output_within(&mut cmd, timeout);
    let line = stdout(&o);
    let v = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
    (o, v)
}

/// libtorrent with DHT on, bootstrapped only from bitseed's DHT address, given a magnet link with
/// no `tr=` (nor web seed), finds bitseed's seed over the DHT and downloads a v1 and a hybrid
/// torrent; bitseed announces every wire hash to it; the served .torrent names bitseed's node.
#[test]
fn libtorrent_downloads_a_bare_magnet_found_over_the_dht() {
    if !have_libtorrent() {
        return;
    }
    for format in ["v1", "hybrid"] {
        let d = dirs();
        let server = start_with_dht(&d, &["--format", format], &[]);
        write_tree(
            &d.content.join("pack"),
            &[("a.bin", 700_000), ("b.bin", 40_001)],
        );
        let t = server.wait_published("pack", None);
        let peer = server.logged_addr("peer listening on ");
        // The .torrent names our DHT node (BEP 5 `nodes`): the host asked for, the peer port.
        let r = server.get("/torrents/pack.torrent");
        assert_eq!(r.status, 200);
        let node = bitseed::bencode::decode(&r.body).unwrap();
        let nodes = node.get("nodes").and_then(|n| n.as_list()).expect("nodes");
        let first = nodes[0].as_list().unwrap();
        assert_eq!(first[0].as_str(), Some("127.0.0.1"));
        assert_eq!(first[1].as_int(), Some(i64::from(peer.port())));

        let (magnet, hashes) = bare_magnet(&t);
        assert_eq!(hashes.len(), if format == "hybrid" { 2 } else { 1 });
        let out = tempfile::tempdir().unwrap();
        let bootstrap = format!("127.0.0.1:{}", peer.port());
        let mut args = vec![
            "--bootstrap",
            &bootstrap,
            "--listen",
            "127.0.0.2",
            "--magnet",
            &magnet,
            "--save",
            out.path().to_str().unwrap(),
            "--timeout",
            "90",
        ];
        for h in &hashes {
            args.extend(["--expect-announce", h.as_str()]);
        }
        let (o, v) = lt_dht(&args, Duration::from_secs(120));
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
        // Each wire hash was announced to libtorrent's node by bitseed's, with the peer port.
        for h in &hashes {
            let a = v["announces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a[0] == h.as_str())
                .unwrap_or_else(|| panic!("{format}: {h} not announced: {v}"));
            assert_eq!(a[1], "127.0.0.1", "{v}");
            assert_eq!(a[2].as_u64(), Some(u64::from(peer.port())), "{v}");
        }
        // bitseed's node answered libtorrent's get_peers with its own seed address (the only
        // peer libtorrent could have downloaded from).
        let own = serde_json::json!([["127.0.0.1", peer.port()]]);
        assert!(
            hashes.iter().any(|h| v["lookups"][h.as_str()] == own),
            "{format}: {v}"
        );
        assert!(server.metric("bitseed_dht_queries_answered_total") >= Some(1));
        assert!(server.metric("bitseed_dht_nodes") >= Some(1));
        assert!(server.metric("bitseed_dht_announces_acked_total") >= Some(hashes.len() as u64));
        assert_eq!(
            server.metric("bitseed_dht_torrents"),
            Some(hashes.len() as u64)
        );
        assert!(server.metric("bitseed_peer_udp_datagrams_total{kind=\"dht\"}") >= Some(1));
        server.stop();
    }
}

/// A private torrent (BEP 27) is never announced to the DHT nor answered for: libtorrent's node,
/// in bitseed's table, asks for its peers and gets none, and bitseed announces nothing; the
/// served .torrent names no DHT node.
#[test]
fn a_private_torrent_is_never_announced_to_the_dht() {
    if !have_libtorrent() {
        return;
    }
    let d = dirs();
    let server = start_with_dht(&d, &[], &[("BITSEED_TORRENT__PRIVATE", "true")]);
    std::fs::write(d.content.join("secret.bin"), data(300_000, 7)).unwrap();
    let t = server.wait_published("secret.bin", None);
    let hash = t["info_hash"].as_str().unwrap().to_owned();
    let peer = server.logged_addr("peer listening on ");
    let r = server.get("/torrents/secret.bin.torrent");
    let node = bitseed::bencode::decode(&r.body).unwrap();
    assert!(node.get("nodes").is_none());
    assert_eq!(
        node.get("info")
            .and_then(|i| i.get("private"))
            .and_then(|p| p.as_int()),
        Some(1)
    );
    let bootstrap = format!("127.0.0.1:{}", peer.port());
    let (o, v) = lt_dht(
        &[
            "--bootstrap",
            &bootstrap,
            "--listen",
            "127.0.0.3",
            "--lookup",
            &hash,
            "--timeout",
            "60",
        ],
        Duration::from_secs(90),
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // libtorrent's lookup reached bitseed (its only node) and got no peers.
    assert_eq!(v["lookups"][&hash], Value::Array(vec![]), "{v}");
    assert!(v["announces"].as_array().unwrap().is_empty(), "{v}");
    // bitseed knew libtorrent's node (a public torrent is announced to such a node at once) and
    // announced nothing.
    server.wait_metric("bitseed_dht_nodes", |v| v >= 1);
    assert_eq!(server.metric("bitseed_dht_torrents"), Some(0));
    assert_eq!(server.metric("bitseed_dht_announces_sent_total"), Some(0));
    server.stop();
}

/// The node id and routing table are kept in the state folder: after a restart the node has
/// the same id and its table back before anyone contacts it.
#[test]
fn the_node_id_and_table_survive_a_restart() {
    if !have_libtorrent() {
        return;
    }
    let d = dirs();
    let server = start_with_dht(&d, &[], &[]);
    std::fs::write(d.content.join("f.bin"), data(10_000, 3)).unwrap();
    let t = server.wait_published("f.bin", None);
    let hash = t["info_hash"].as_str().unwrap().to_owned();
    let peer = server.logged_addr("peer listening on ");
    let id = node_id(&server);
    let bootstrap = format!("127.0.0.1:{}", peer.port());
    let mut lt = KillOnDrop(
        std::process::Command::new("/usr/bin/python3")
            .arg(interop_script("lt_dht.py"))
            .args(["--bootstrap", &bootstrap, "--listen", "127.0.0.4"])
            .args(["--expect-announce", &hash, "--timeout", "60"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    server.wait_metric("bitseed_dht_nodes", |v| v >= 1);
    let _ = lt.0.wait();
    server.stop();
    assert!(d.state.join("dht.dat").exists());
    let again = start_with_dht(&d, &[], &[]);
    assert_eq!(node_id(&again), id);
    assert!(
        again
            .wait_log("saved nodes", Duration::from_secs(20))
            .contains(": 1 saved nodes"),
        "{}",
        again.log.lock().unwrap()
    );
    again.stop();
}

/// The node id as logged at start.
fn node_id(server: &Server) -> String {
    let line = server.wait_log("DHT node ", Duration::from_secs(20));
    line.split("DHT node ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_owned()
}

/// `bitseed seed --dht`: the same node on the seed's port; libtorrent, bootstrapped from it
/// alone, downloads a bare magnet of the torrent.
#[test]
fn bitseed_seed_runs_a_dht_node() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.bin");
    std::fs::write(&file, data(200_000, 11)).unwrap();
    let torrent = dir.path().join("one.torrent");
    let o = bitseed()
        .arg("create")
        .arg(&file)
        .arg("-o")
        .arg(&torrent)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let meta = bitseed::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    let mut magnet = meta.magnet();
    magnet.trackers.clear();
    magnet.web_seeds.clear();
    let hash = hex::encode(meta.info_hash.wire_hashes()[0]);
    // A bootstrap node that is no node: loopback, nothing listens there.
    let mut child = KillOnDrop(
        bitseed()
            .arg("seed")
            .arg(&torrent)
            .arg(&file)
            .args(["--listen", "127.0.0.1:0", "--no-announce", "--dht"])
            .args(["--dht-bootstrap", "127.0.0.1:9"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let bootstrap = addr.to_string();
    let (o, v) = lt_dht(
        &[
            "--bootstrap",
            &bootstrap,
            "--listen",
            "127.0.0.5",
            "--magnet",
            &magnet.to_uri(),
            "--save",
            out.path().to_str().unwrap(),
            "--expect-announce",
            &hash,
            "--timeout",
            "60",
        ],
        Duration::from_secs(90),
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        std::fs::read(out.path().join("one.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    assert_eq!(
        v["lookups"][&hash],
        serde_json::json!([["127.0.0.1", addr.port()]]),
        "{v}"
    );
}

/// PEX (BEP 11): two libtorrent peers that each know only bitseed (no tracker, no DHT) learn
/// each other from bitseed's peer exchange and trade pieces (bitseed's upload is slowed so
/// that they have reason to).
#[test]
fn two_peers_that_know_only_the_seed_find_each_other_by_pex() {
    if !have_libtorrent() {
        return;
    }
    let d = dirs();
    let server = Server::start_env(&d, &[], &[("BITSEED_PEER__MAX_UPLOAD_RATE", "250000")]);
    std::fs::write(d.content.join("big.bin"), data(3_000_000, 5)).unwrap();
    server.wait_published("big.bin", None);
    let peer = server.logged_addr("peer listening on ");
    let dir = tempfile::tempdir().unwrap();
    let torrent = torrent_without_web_seed(&server, "big.bin", dir.path());
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.arg(interop_script("lt_pex.py"))
        .arg("--torrent")
        .arg(&torrent)
        .args(["--seed", &peer.to_string(), "--save"])
        .arg(dir.path())
        .args(["--timeout", "120"]);
    let o = output_within(&mut cmd, Duration::from_secs(150));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap_or(Value::Null);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    for (me, other) in [("a", "127.0.0.3"), ("b", "127.0.0.2")] {
        let learned = v[me]["pex"].as_array().unwrap();
        assert!(
            learned
                .iter()
                .any(|p| p.as_str().unwrap().starts_with(other)),
            "{me} did not learn {other} by PEX: {v}"
        );
        assert_eq!(
            std::fs::read(dir.path().join(me).join("big.bin")).unwrap(),
            std::fs::read(d.content.join("big.bin")).unwrap()
        );
    }
    // Pieces went between the two peers, not only from bitseed.
    let traded = v["a"]["from_other"].as_u64().unwrap() + v["b"]["from_other"].as_u64().unwrap();
    assert!(traded > 0, "{v}");
    server.stop();
}

/// LSD (BEP 14), pointed at a loopback socket instead of the multicast group: a published
/// torrent is announced with the peer port and its info hash.
#[test]
fn local_service_discovery_announces_published_torrents() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let group = sock.local_addr().unwrap().to_string();
    let d = dirs();
    let server = Server::start_env(
        &d,
        &[],
        &[
            ("BITSEED_LSD__ENABLED", "true"),
            ("BITSEED_LSD__GROUP", &group),
        ],
    );
    std::fs::write(d.content.join("lan.bin"), data(20_000, 9)).unwrap();
    let t = server.wait_published("lan.bin", None);
    let peer = server.logged_addr("peer listening on ");
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("an LSD announce");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.starts_with("BT-SEARCH * HTTP/1.1\r\n"), "{text}");
    assert!(text.contains(&format!("\r\nHost: {group}\r\n")), "{text}");
    assert!(
        text.contains(&format!("\r\nPort: {}\r\n", peer.port())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\r\nInfohash: {}\r\n",
            t["info_hash"].as_str().unwrap()
        )),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n\r\n"), "{text}");
    server.stop();
}

/// The peer wire says a DHT node runs (BEP 5): the handshake's DHT bit, and a PORT message with
/// the node's port to a peer that sets the bit too.
#[test]
fn the_peer_wire_advertises_the_dht_node() {
    use std::io::{Read, Write};
    let d = dirs();
    let server = start_with_dht(&d, &[], &[]);
    std::fs::write(d.content.join("w.bin"), data(50_000, 4)).unwrap();
    let hash = server.published_hash("w.bin");
    let peer = server.logged_addr("peer listening on ");
    let mut s = std::net::TcpStream::connect(peer).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
    hs.extend_from_slice(hash.as_bytes());
    hs.extend_from_slice(b"-XX0001-abcdefghijkl");
    s.write_all(&hs).unwrap();
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).unwrap();
    assert_eq!(theirs[27] & 0x01, 0x01, "DHT bit");
    // Messages until PORT (id 9): HaveAll and the extended handshake come first.
    let mut port = None;
    for _ in 0..5 {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut msg).unwrap();
        if msg.first() == Some(&9) {
            port = Some(u16::from_be_bytes([msg[1], msg[2]]));
            break;
        }
    }
    assert_eq!(port, Some(peer.port()));
    drop(s);
    server.stop();
}
