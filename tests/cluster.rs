//! Cluster mode (issue 18): a real `redis-server` on loopback and three `bitseed serve` nodes
//! publishing one content folder. Peers announced to one node are returned by the others (HTTP
//! and UDP), every node's seeder is listed by every node, completed counts add up, served
//! torrents name every node, an entry is hashed by one node only, a libtorrent download gets
//! pieces from all three seeders and finishes when one node is killed, and the nodes carry on
//! through a Redis restart and converge again. No timing assertions: bounded polls only.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Server;
use crate::common::*;
use crate::common::{
    announce_path, compact_local, http_peers, scraped, udp_announce, udp_peers, Udp,
};

/// Three nodes of one cluster on one content folder, each with its own state folder.
struct Cluster {
    redis: Redis,
    nodes: Vec<Option<Server>>,
    _tmp: tempfile::TempDir,
}

fn start_cluster(files: &[(&str, usize)]) -> Option<Cluster> {
    start_cluster_with(files, "")
}

/// Three nodes on one folder, each with `top` (top-level settings) in its configuration.
fn start_cluster_with(files: &[(&str, usize)], top: &str) -> Option<Cluster> {
    let (tmp, content) = content_folder(files);
    start_nodes(tmp, &[&content, &content, &content], top)
}

/// A temporary folder whose `content/` holds `files`.
fn content_folder(files: &[(&str, usize)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let content = tmp.path().join("content");
    std::fs::create_dir_all(&content).unwrap();
    write_tree(&content, files);
    (tmp, content)
}

/// One node per content folder (one folder, or copies of it), with a Redis for them.
fn start_nodes(tmp: tempfile::TempDir, contents: &[&Path], top: &str) -> Option<Cluster> {
    if !have_redis() {
        return None;
    }
    Some(start_nodes_on(Redis::start(), tmp, contents, top))
}

/// `start_nodes` with `redis` (running or not).
fn start_nodes_on(redis: Redis, tmp: tempfile::TempDir, contents: &[&Path], top: &str) -> Cluster {
    let nodes = (1..=contents.len())
        .map(|i| {
            let port = free_port();
            let state = tmp.path().join(format!("state{i}"));
            let config = tmp.path().join(format!("node{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "{top}[tracker]\ninterval = 60\nmin_interval = 30\n[cluster]\nredis_url = \"{}\"\n\
                     node_id = \"n{i}\"\nnode_url = \"http://127.0.0.1:{port}\"\n\
                     heartbeat_secs = 1\nnode_ttl_secs = 5\nreconcile_secs = 5\n",
                    redis.url()
                ),
            )
            .unwrap();
            let http = format!("127.0.0.1:{port}");
            Some(Server::start(
                contents[i - 1],
                &state,
                &["--config", config.to_str().unwrap(), "--http", &http],
            ))
        })
        .collect();
    Cluster {
        redis,
        nodes,
        _tmp: tmp,
    }
}

impl Cluster {
    fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("a running node")
    }

    /// Waits until every running node lists `n` live nodes.
    fn wait_nodes(&self, n: u64) {
        let within = Duration::from_secs(30);
        let started = Instant::now();
        for s in self.nodes.iter().flatten() {
            let left = within.saturating_sub(started.elapsed());
            poll(left, Duration::from_millis(100), || {
                (s.metric("bitseed_cluster_nodes") == Some(n))
                    .then_some(())
                    .ok_or_else(|| format!("never {n} nodes:\n{}", log(s)))
            });
        }
    }
}

fn log(s: &Server) -> String {
    s.log.lock().unwrap().clone()
}

/// How many of `logs` contain `needle`.
fn count(logs: &[String], needle: &str) -> usize {
    logs.iter().filter(|l| l.contains(needle)).count()
}

fn udp_addr(s: &Server) -> SocketAddr {
    s.logged_addr("udp tracker listening on ")
}

fn peer_port(s: &Server) -> u16 {
    s.logged_addr("peer listening on ").port()
}

/// The peers node `s` gives a leecher on `port` over HTTP.
fn http_ports(s: &Server, h: &[u8; 20], port: u16) -> (Vec<[u8; 6]>, (i64, i64)) {
    http_peers(s.http, &announce_path(h, port, 100, "&compact=1"))
}

#[test]
fn three_nodes_share_swarms_counts_links_and_hashing_through_redis() {
    let Some(mut c) = start_cluster(&[("big.bin", 3 << 20)]) else {
        return;
    };
    // One content folder, one torrent: the same info hash on every node, hashed by one.
    let hashes: Vec<String> = (0..3)
        .map(|i| {
            c.node(i).wait_published("big.bin", None)["info_hash"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    let logs: Vec<String> = (0..3).map(|i| log(c.node(i))).collect();
    let hashed = count(&logs, "hashed `big.bin`");
    let reused = count(&logs, "hashes reused from another node");
    assert_eq!((hashed, reused), (1, 2), "one node hashes, two reuse");
    let h = hex20(&hashes[0]);
    c.wait_nodes(3);

    // The page counts people: the three seeders are the nodes, not people.
    let api = c.node(1).wait_published("big.bin", None);
    assert_eq!(
        (api["seeders"].as_u64(), api["people_sharing"].as_u64()),
        (Some(3), Some(0))
    );

    // Every node lists every node's seeder, and counts them.
    let seeds: Vec<[u8; 6]> = (0..3)
        .map(|i| compact_local(peer_port(c.node(i))))
        .collect();
    for i in 0..3 {
        let (peers, (complete, _)) = http_ports(c.node(i), &h, 40_000 + i as u16);
        assert_eq!(complete, 3, "node {i}");
        for s in &seeds {
            assert!(peers.contains(s), "node {i} lists {s:?}: {peers:?}");
        }
    }

    // A peer announced to node 1 is returned by node 2 over HTTP and node 3 over UDP.
    http_ports(c.node(0), &h, 41_001);
    eventually(
        Duration::from_secs(30),
        "never: node 2 returns node 1's peer",
        || {
            http_ports(c.node(1), &h, 41_002)
                .0
                .contains(&compact_local(41_001))
        },
    );
    let udp = Udp::new(udp_addr(c.node(2)));
    eventually(
        Duration::from_secs(30),
        "never: node 3 returns node 1's peer over UDP",
        || {
            let conn = udp.connect();
            let r = udp.exchange(&udp_announce(conn, &h, 41_003, 100, 2, 50));
            udp_peers(&r).0.contains(&compact_local(41_001))
        },
    );

    // Served torrents and magnets name every node's tracker (one tier) and web seed.
    let r = c.node(0).get("/torrents/big.bin.torrent");
    let meta = bitseed::metainfo::Metainfo::from_bytes(&r.body).unwrap();
    // (The WebSocket tracker follows in a tier of its own.)
    assert_eq!(
        meta.trackers[0].len(),
        6,
        "HTTP and UDP of 3 nodes: {:?}",
        meta.trackers
    );
    assert_eq!(meta.web_seeds.len(), 3, "{:?}", meta.web_seeds);
    for s in c.nodes.iter().flatten() {
        let base = format!("http://{}", s.http);
        assert!(meta.trackers[0].contains(&format!("{base}/announce")));
        assert!(meta.web_seeds.contains(&format!("{base}/files/big.bin")));
        let udp = format!("udp://127.0.0.1:{}/announce", udp_addr(s).port());
        assert!(meta.trackers[0].contains(&udp), "{udp}");
    }
    let api = c.node(1).wait_published("big.bin", None);
    let magnet = api["magnet"].as_str().unwrap();
    assert_eq!(magnet.matches("&tr=http").count(), 3, "{magnet}");
    assert_eq!(magnet.matches("&tr=udp").count(), 3, "{magnet}");
    assert_eq!(magnet.matches("&ws=").count(), 3, "{magnet}");

    // Completions on two nodes add up on all three.
    let complete = |s: &Server, port| {
        crate::common::http_get(s.http, &announce_path(&h, port, 0, "&event=completed"), &[])
    };
    complete(c.node(0), 42_001);
    complete(c.node(2), 42_003);
    for i in 0..3 {
        let http = c.node(i).http;
        eventually(
            Duration::from_secs(30),
            "never: 2 completed everywhere",
            || scraped(http, &h).2 == 2,
        );
    }

    // Redis away for 10 s: the nodes answer alone, and count a completion meanwhile.
    c.redis.stop();
    std::thread::sleep(Duration::from_secs(10));
    let (_, (complete_now, _)) = http_ports(c.node(1), &h, 43_000);
    assert!(complete_now >= 1, "node 2 still answers");
    complete(c.node(1), 42_002);
    c.redis.restart();
    // Back: a new announce is seen across nodes again, and no completion was lost.
    http_ports(c.node(1), &h, 44_002);
    for i in [0, 2] {
        eventually(
            Duration::from_secs(30),
            "never: node 2's new peer seen again",
            || {
                http_ports(c.node(i), &h, 44_100)
                    .0
                    .contains(&compact_local(44_002))
            },
        );
    }
    for i in 0..3 {
        let http = c.node(i).http;
        eventually(
            Duration::from_secs(30),
            "never: 3 completed everywhere after the restart",
            || scraped(http, &h).2 == 3,
        );
    }
    c.wait_nodes(3);

    // A node that stops leaves the others' lists.
    let gone = c.nodes[2].take().unwrap();
    let gone_seed = compact_local(peer_port(&gone));
    gone.stop();
    c.wait_nodes(2);
    let (peers, (complete, _)) = http_ports(c.node(0), &h, 45_000);
    assert!(!peers.contains(&gone_seed));
    assert_eq!(complete, 2 + 3, "two node seeds, three completed peers");
}

#[test]
fn libtorrent_downloads_from_all_three_seeders_and_finishes_when_one_dies() {
    if !have_libtorrent() {
        return;
    }
    let Some(mut c) = start_cluster(&[("film.bin", 6 << 20)]) else {
        return;
    };
    for i in 0..3 {
        c.node(i).wait_published("film.bin", None);
    }
    c.wait_nodes(3);
    let work = tempfile::tempdir().unwrap();
    let torrent = torrent_without_web_seed(c.node(0), "film.bin", work.path());
    let save = work.path().join("save");
    let mut lt = KillOnDrop(
        Command::new("/usr/bin/python3")
            .arg(interop_script("lt_cluster.py"))
            .arg("--torrent")
            .arg(&torrent)
            .arg("--save")
            .arg(&save)
            .args(["--rate", "600000", "--timeout", "90"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3"),
    );
    let seeders: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", peer_port(c.node(i))))
        .collect();
    let stdout = lt.0.stdout.take().unwrap();
    let mut killed = false;
    let mut last = serde_json::Value::Null;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let from = |s: &str| v["peers"][s].as_u64().unwrap_or(0);
        if !killed && seeders.iter().all(|s| from(s) > 0) {
            // Every seeder has sent pieces; node 1 dies mid-download.
            assert!(v["progress"].as_f64().unwrap() < 1.0);
            c.nodes[0].take();
            killed = true;
        }
        last = v;
    }
    let status = lt.0.wait().unwrap();
    assert!(killed, "never got pieces from all three seeders: {last}");
    assert!(status.success(), "download did not finish: {last}");
    assert_eq!(last["ok"], true);
    let want = std::fs::read(c._tmp.path().join("content/film.bin")).unwrap();
    assert_eq!(std::fs::read(save.join("film.bin")).unwrap(), want);
}

/// deploy/cluster/nginx.conf in front of the three nodes, as the compose file runs it (the node
/// names pointed at loopback): with `public_url` naming nginx, the page, the API and the torrents
/// answer through it, the torrent names nginx's tracker and every node's web seed, and an
/// announce through it finds the three seeders; node 1 killed, nginx skips it
/// (`proxy_next_upstream`) and every request through it still answers.
#[test]
fn nginx_in_front_of_three_nodes_keeps_answering_when_one_dies() {
    if !have_nginx() {
        return;
    }
    let front = free_port();
    let top = format!("public_url = \"http://127.0.0.1:{front}\"\n");
    let Some(mut c) = start_cluster_with(&[("film.bin", 1 << 20)], &top) else {
        return;
    };
    let h = hex20(
        c.node(0).wait_published("film.bin", None)["info_hash"]
            .as_str()
            .unwrap(),
    );
    for i in 1..3 {
        c.node(i).wait_published("film.bin", None);
    }
    c.wait_nodes(3);
    let mut site = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cluster/nginx.conf"),
    )
    .unwrap()
    .replace("listen 80;", &format!("listen 127.0.0.1:{front};"));
    for i in 0..3 {
        let node = format!("server node{}:8080 ", i + 1);
        assert!(site.contains(&node), "{node} upstream");
        site = site.replace(&node, &format!("server {} ", c.node(i).http));
    }
    let nginx = Nginx::start(&site, front);
    let base = format!("http://{}", nginx.addr);
    let seeds: Vec<[u8; 6]> = (0..3)
        .map(|i| compact_local(peer_port(c.node(i))))
        .collect();
    let want = std::fs::read(c._tmp.path().join("content/film.bin")).unwrap();

    // Everything a client asks for, through nginx, answered by whichever node it picks.
    let everything = |round: &str| {
        for path in ["/", "/api/torrents", "/healthz"] {
            let r = crate::common::http_get(nginx.addr, path, &[]);
            assert_eq!(r.status, 200, "{round}: {path}\n{}", nginx.errors());
        }
        let r = crate::common::http_get(nginx.addr, "/torrents/film.bin.torrent", &[]);
        assert_eq!(r.status, 200, "{round}: torrent\n{}", nginx.errors());
        let meta = bitseed::metainfo::Metainfo::from_bytes(&r.body).unwrap();
        assert_eq!(meta.trackers[0], [format!("{base}/announce")], "{round}");
        assert_eq!(
            meta.web_seeds[0],
            format!("{base}/files/film.bin"),
            "{round}"
        );
        let r = crate::common::http_get(
            nginx.addr,
            "/files/film.bin",
            &[("Range", "bytes=1000-1999")],
        );
        assert_eq!(r.status, 206, "{round}: range\n{}", nginx.errors());
        assert_eq!(r.body, want[1000..2000], "{round}: range bytes");
    };
    for _ in 0..3 {
        everything("three nodes");
    }
    // Every node's web seed is in the torrent, behind nginx's own.
    let r = crate::common::http_get(nginx.addr, "/torrents/film.bin.torrent", &[]);
    let meta = bitseed::metainfo::Metainfo::from_bytes(&r.body).unwrap();
    assert_eq!(meta.web_seeds.len(), 4, "{:?}", meta.web_seeds);
    let (peers, (complete, _)) =
        http_peers(nginx.addr, &announce_path(&h, 46_001, 100, "&compact=1"));
    assert_eq!(complete, 3, "three node seeds through nginx");
    for s in &seeds {
        assert!(peers.contains(s), "nginx's answer lists {s:?}: {peers:?}");
    }

    c.nodes[0].take();
    for _ in 0..6 {
        everything("node 1 killed");
    }
    let (peers, _) = http_peers(nginx.addr, &announce_path(&h, 46_002, 100, "&compact=1"));
    assert!(
        peers.contains(&seeds[1]) && peers.contains(&seeds[2]),
        "{peers:?}"
    );
}

/// Hash once, checked: nodes with copies of the folder reuse the first node's hashes for an
/// identical copy, but hash an entry themselves when their copy differs (same names, sizes and
/// times, other bytes), and publish what they have, not the other node's hashes.
#[test]
fn a_copy_that_differs_is_hashed_again_not_published_with_the_other_nodes_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("same.bin"), data(1 << 20, 1)).unwrap();
    }
    let mut other = data(1 << 20, 2);
    std::fs::write(a.join("differs.bin"), &other).unwrap();
    other[0] ^= 1; // in the first piece, which is always checked
    std::fs::write(b.join("differs.bin"), &other).unwrap();
    // The same times on both sides, as `rsync -a` keeps them.
    let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for dir in [&a, &b] {
        for f in ["same.bin", "differs.bin"] {
            let file = std::fs::File::options()
                .write(true)
                .open(dir.join(f))
                .unwrap();
            file.set_modified(when).unwrap();
        }
    }
    let Some(c) = start_nodes(tmp, &[&a, &b], "") else {
        return;
    };
    let hash = |i: usize, name: &str| c.node(i).published_hash(name);
    assert_eq!(hash(0, "same.bin"), hash(1, "same.bin"));
    assert_ne!(hash(0, "differs.bin"), hash(1, "differs.bin"));
    let logs = [log(c.node(0)), log(c.node(1))];
    assert_eq!(count(&logs, "hashed `same.bin`"), 1, "{logs:?}");
    assert_eq!(count(&logs, "hashed `differs.bin`"), 2, "{logs:?}");
    assert_eq!(
        count(&logs, "`differs.bin`: another node's hashes not used"),
        1
    );
}

/// Nodes started before their Redis (compose starts them together) wait for it before hashing:
/// the entry is still hashed by one node only.
#[test]
fn nodes_started_before_their_redis_wait_for_it_to_hash_once() {
    if !have_redis() {
        return;
    }
    let (tmp, content) = content_folder(&[("big.bin", 3 << 20)]);
    let mut redis = Redis::start();
    redis.stop();
    let mut c = start_nodes_on(redis, tmp, &[&content, &content], "");
    eventually(
        Duration::from_secs(20),
        "no node said it waits for redis",
        || (0..2).any(|i| log(c.node(i)).contains("hashing waits for it")),
    );
    c.redis.restart();
    for i in 0..2 {
        c.node(i).wait_published("big.bin", None);
    }
    let logs: Vec<String> = (0..2).map(|i| log(c.node(i))).collect();
    let hashed = count(&logs, "hashed `big.bin`");
    let reused = count(&logs, "hashes reused from another node");
    assert_eq!(
        (hashed, reused),
        (1, 1),
        "one node hashes, one reuses: {logs:?}"
    );
}

/// A Redis that accepts connections and never answers (a partition dropping its packets) costs
/// the node one timeout, not one per entry: after it, the node hashes alone for a while, so a
/// folder of 20 entries is published within the bound (at the 4 s a silent Redis costs an
/// entry, it took 80).
#[test]
fn a_silent_redis_costs_one_timeout_not_one_per_entry() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}.bin")).collect();
    let files: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 50_000)).collect();
    let (tmp, content) = content_folder(&files);
    // Connections complete in the kernel's backlog; nothing ever reads them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free_port();
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\nredis_url = \"redis://{}/0\"\nnode_url = \"http://127.0.0.1:{port}\"\n",
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let http = format!("127.0.0.1:{port}");
    let node = Server::start(
        &content,
        &tmp.path().join("state"),
        &["--config", config.to_str().unwrap(), "--http", &http],
    );
    poll(Duration::from_secs(40), Duration::from_millis(200), || {
        let published = node
            .torrents()
            .iter()
            .filter(|t| t["status"] == "published")
            .count();
        (published == names.len())
            .then_some(())
            .ok_or_else(|| format!("{published} of {} published:\n{}", names.len(), log(&node)))
    });
    assert!(log(&node).contains("hashing alone for the next"));
}
