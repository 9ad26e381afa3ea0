//! The publisher's one upload budget (`egress.max_rate`) and its counters, against the real
//! binary: the budget holds over the peer wire and `/files` together, a client that only has
//! the web seed still finishes under it, and the counters match the bytes clients received.

use crate::common::*;
use std::time::{Duration, Instant};

/// Bytes sent per channel, from `/metrics`: (peer, web seed, direct).
fn egress(server: &Server) -> (u64, u64, u64) {
    let get = |ch: &str| {
        server
            .metric(&format!("bitseed_egress_bytes_total{{channel=\"{ch}\"}}"))
            .unwrap_or_else(|| panic!("no {ch} egress in /metrics"))
    };
    (get("peer"), get("web_seed"), get("direct"))
}

/// A peer-wire download, a web-seed fetch and a direct download at once, for 6 seconds: what
/// the publisher sent over all three stays within the budget (1 MB/s) plus its burst.
#[test]
fn the_budget_holds_over_the_peer_wire_and_files_together() {
    let d = dirs();
    std::fs::write(d.content.join("big.bin"), data(24_000_000, 41)).unwrap();
    // The test's downloader asks for every piece at once, as a seed's leecher would: no
    // super-seeding (on by default under a budget).
    let server = Server::with_config(
        &d,
        "[egress]\nmax_rate = 1000000\n[peer]\nsuper_seed = \"off\"\n",
    );
    let t = server.wait_published("big.bin", None);
    let peer = server.logged_addr("peer listening on ");
    let bytes = server.get("/torrents/big.bin.torrent").body;
    let meta = bitseed::metainfo::Metainfo::from_bytes(&bytes).unwrap();
    assert!(t["size"].as_u64().unwrap() > 20_000_000);
    let http = server.http;
    let mut clients = Vec::new();
    clients.push(std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| crate::common::download(peer, &meta));
    }));
    // The web seed client from another address than the peer-wire one, which it would be
    // turned away for (see below).
    for (ua, from) in [
        ("libtorrent/2.0.8.0", [127, 0, 0, 2]),
        ("curl/8.5.0", [127, 0, 0, 1]),
    ] {
        clients.push(std::thread::spawn(move || {
            let _ = std::panic::catch_unwind(|| {
                let s = connect_from(from, http);
                request_on(s, http, "GET", "/files/big.bin", &[("User-Agent", ua)])
            });
        }));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (p0, w0, d0) = egress(&server);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let (p1, w1, d1) = egress(&server);
    let secs = t0.elapsed().as_secs_f64();
    let sent = (p1 - p0) + (w1 - w0) + (d1 - d0);
    eprintln!(
        "{secs:.1} s: peer {} web seed {} direct {} ({:.0} B/s in all)",
        p1 - p0,
        w1 - w0,
        d1 - d0,
        sent as f64 / secs
    );
    // The budget, plus a burst and the bytes already in flight at each end of the window.
    assert!(
        sent as f64 <= 1_000_000.0 * secs + 600_000.0,
        "{sent} bytes in {secs:.1} s under a budget of 1 MB/s"
    );
    // Each channel got some: direct its share, the peer wire the rest, the web seed its floor.
    assert!(
        p1 > p0 && d1 > d0 && w1 > w0,
        "{p0}->{p1} {w0}->{w1} {d0}->{d1}"
    );
    drop(server);
    for c in clients {
        let _ = c.join();
    }
}

/// A client that cannot reach the peer port (the tracker lists the seed at an address where
/// nothing listens) still downloads everything from the web seed under the budget, and the
/// counters say it went over the web seed.
#[test]
fn a_web_seed_only_client_finishes_under_the_budget() {
    if !crate::common::have_aria2() {
        return;
    }
    let d = dirs();
    let body = data(3_000_000, 42);
    std::fs::write(d.content.join("ws.bin"), &body).unwrap();
    let server = Server::with_config(
        &d,
        "[egress]\nmax_rate = 2000000\n[peer]\npublic_ip = \"127.0.0.254\"\n",
    );
    server.wait_published("ws.bin", None);
    let out = tempfile::tempdir().unwrap();
    let torrent = out.path().join("ws.torrent");
    std::fs::write(&torrent, server.get("/torrents/ws.bin.torrent").body).unwrap();
    let o = crate::common::aria2c(out.path(), &torrent);
    assert!(o.status.success(), "{}", crate::common::stdout(&o));
    assert_eq!(std::fs::read(out.path().join("ws.bin")).unwrap(), body);
    let (peer, web, direct) = egress(&server);
    assert_eq!(peer, 0, "nothing could go over the peer wire");
    assert_eq!(
        direct, 0,
        "aria2 is a BitTorrent client: its fetches are the web seed"
    );
    assert!(web >= 3_000_000, "web seed {web}");
}

/// What the counters say is what the clients got: a direct download counts its bytes (and one
/// completed download), a peer-wire download its pieces plus a little protocol, per channel in
/// `/metrics` and per torrent in the API.
#[test]
fn counters_match_the_bytes_clients_received() {
    let d = dirs();
    let body = data(2_000_000, 43);
    std::fs::write(d.content.join("c.bin"), &body).unwrap();
    let server = Server::start(&d.content, &d.state, &[]);
    server.wait_published("c.bin", None);
    let r = http_get(server.http, "/files/c.bin", &[("User-Agent", "Wget/1.21")]);
    assert_eq!(r.body, body);
    let r = http_get(
        server.http,
        "/files/c.bin",
        &[
            ("User-Agent", "qBittorrent/4.6"),
            ("Range", "bytes=0-99999"),
        ],
    );
    assert_eq!(r.body.len(), 100_000);
    let peer = server.logged_addr("peer listening on ");
    let meta = bitseed::metainfo::Metainfo::from_bytes(&server.get("/torrents/c.bin.torrent").body)
        .unwrap();
    assert_eq!(crate::common::download(peer, &meta), body);
    // Counted as the next chunk is asked for or the stream ends: give the server a moment.
    let p = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        let (p, w, dir) = egress(&server);
        (dir == 2_000_000 && w == 100_000 && p >= 2_000_000)
            .then_some(p)
            .ok_or(format!("counters: peer {p} web seed {w} direct {dir}"))
    });
    // The peer wire: pieces plus message framing and the greeting (well under 1%).
    assert!(p < 2_000_000 + 20_000, "peer wire {p}");
    let t = server.wait_published("c.bin", None);
    assert_eq!(t["sent_direct"], 2_000_000);
    assert_eq!(t["sent_web_seed"], 100_000);
    assert_eq!(t["direct_completed"], 1);
    assert!(t["sent_peer"].as_u64().unwrap() >= 2_000_000);
    assert!(t["copies_sent"].as_f64().unwrap() > 2.0);
}

/// A budget (100 MB/s) that slows nothing here but puts the web seed's rules and super-seeding
/// in force.
const WIDE_BUDGET: &str = "[egress]\nmax_rate = 100000000\n";

/// `name` with `body`, published by a server with `config`: the server, its peer port and the
/// torrent it serves.
fn published(
    d: &Dirs,
    name: &str,
    body: &[u8],
    config: &str,
) -> (Server, std::net::SocketAddr, bitseed::metainfo::Metainfo) {
    std::fs::write(d.content.join(name), body).unwrap();
    let server = Server::with_config(d, config);
    server.wait_published(name, None);
    let peer = server.logged_addr("peer listening on ");
    let bytes = server.get(&format!("/torrents/{name}.torrent")).body;
    let meta = bitseed::metainfo::Metainfo::from_bytes(&bytes).unwrap();
    (server, peer, meta)
}

/// Under a budget, a BitTorrent client on the torrent's peer wire is turned away from the web
/// seed (503, Retry-After): the swarm serves it. A client at another address, a person's
/// download from the same address, and anyone when there is no budget are served.
#[test]
fn the_web_seed_turns_away_a_client_on_the_peer_wire() {
    for budget in [true, false] {
        let d = dirs();
        let config = if budget { WIDE_BUDGET } else { "" };
        let (server, peer, meta) = published(&d, "w.bin", &data(2_000_000, 44), config);
        let http = server.http;
        let fetch = |from: [u8; 4], ua: &str| {
            let s = connect_from(from, http);
            let headers = [("User-Agent", ua), ("Range", "bytes=0-65535")];
            request_on(s, http, "GET", "/files/w.bin", &headers)
        };
        let lt = "libtorrent/2.0.8.0";
        assert_eq!(fetch([127, 0, 0, 1], lt).status, 206, "not on the wire yet");
        let wire = crate::common::connect(peer, meta.info_hash.wire().unwrap());
        // The session holds its slot a moment after the handshake.
        let on_wire = if budget {
            poll(Duration::from_secs(10), Duration::from_millis(50), || {
                let r = fetch([127, 0, 0, 1], lt);
                (r.status != 206)
                    .then_some(r)
                    .ok_or("never turned away".into())
            })
        } else {
            std::thread::sleep(Duration::from_secs(1));
            fetch([127, 0, 0, 1], lt)
        };
        if budget {
            assert_eq!(on_wire.status, 503);
            assert_eq!(on_wire.header("Retry-After"), Some("120"));
        } else {
            assert_eq!(on_wire.status, 206, "no budget: nothing to save");
        }
        assert_eq!(fetch([127, 0, 0, 2], lt).status, 206, "another address");
        assert_eq!(fetch([127, 0, 0, 1], "curl/8.5.0").status, 206, "a person");
        drop(wire);
        poll(Duration::from_secs(10), Duration::from_millis(50), || {
            (fetch([127, 0, 0, 1], lt).status == 206)
                .then_some(())
                .ok_or("still turned away after leaving the wire".into())
        });
    }
}

/// libtorrent sends its web seed request as it connects to the peer wire, and the request may
/// come first: the web seed waits a moment for the client to arrive, and turns it away then,
/// instead of starting an answer that is cut when it does.
#[test]
fn the_web_seed_waits_a_moment_for_a_client_joining_the_peer_wire() {
    let d = dirs();
    let (server, peer, meta) = published(&d, "j.bin", &data(2_000_000, 45), WIDE_BUDGET);
    let http = server.http;
    let from = [127, 0, 0, 3];
    let asked = std::thread::spawn(move || {
        let s = connect_from(from, http);
        let headers = [
            ("User-Agent", "libtorrent/2.0.8.0"),
            ("Range", "bytes=0-65535"),
        ];
        request_on(s, http, "GET", "/files/j.bin", &headers)
    });
    // Well inside the web seed's wait (2 s), well after its request arrived.
    std::thread::sleep(Duration::from_millis(300));
    let wire = crate::common::handshake(connect_from(from, peer), meta.info_hash.wire().unwrap());
    let answer = asked.join().unwrap();
    assert_eq!(answer.status, 503, "turned away once on the wire");
    assert_eq!(answer.header("Retry-After"), Some("120"));
    drop(wire);
}

/// A served 4 MiB file (its bytes from `seed`) under a budget, so super-seeding is on (`auto`)
/// and web-seed requests are looked at; 127.0.0.7 asks the web seed for its first three
/// quarters, as libtorrent does, then a peer from `peer_ip` joins the peer wire and says it is
/// interested. The first 4 pieces shown to it, and how many pieces were claimed, of how many.
fn shown_after_a_web_seed_request(seed: u64, peer_ip: [u8; 4]) -> (Vec<u32>, u32, u32) {
    use bitseed::peer::Message;
    let d = dirs();
    let len = 4 << 20;
    let (server, peer, meta) = published(&d, "c.bin", &data(len, seed), WIDE_BUDGET);
    let piece = meta.piece_length;
    let pieces = len.div_ceil(piece as usize) as u32;
    let claimed = pieces * 3 / 4;
    let range = format!("bytes=0-{}", u64::from(claimed) * piece - 1);
    let web = connect_from([127, 0, 0, 7], server.http);
    let headers = [
        ("User-Agent", "libtorrent/2.0.8.0"),
        ("Range", range.as_str()),
    ];
    assert_eq!(
        request_on(web, server.http, "GET", "/files/c.bin", &headers).status,
        206
    );
    let (mut s, mut buf) =
        crate::common::handshake(connect_from(peer_ip, peer), meta.info_hash.wire().unwrap());
    std::io::Write::write_all(&mut s, &Message::Interested.to_bytes()).unwrap();
    let mut shown = Vec::new();
    while shown.len() < 4 {
        match crate::common::read_message(&mut s, &mut buf).expect("seeder closed") {
            Message::Have(p) => shown.push(p),
            Message::HaveAll | Message::Bitfield(_) => panic!("shown everything: {shown:?}"),
            _ => {}
        }
    }
    (shown, claimed, pieces)
}

/// Pieces some client is waiting on the web seed for go out last to everyone else too: that
/// client asks no peer for them meanwhile, so the first copies handed out are pieces every
/// peer can pass on to it.
#[test]
fn super_seeding_hands_out_first_what_no_web_seed_request_covers() {
    let (shown, claimed, pieces) = shown_after_a_web_seed_request(46, [127, 0, 0, 8]);
    assert!(
        shown.iter().all(|&p| p >= claimed),
        "shown {shown:?}, another client waits on 0..{claimed} of {pieces}"
    );
}

/// A client that asked the web seed for a range of pieces and then joins the peer wire is
/// shown other pieces while that request holds them (libtorrent asks no one else for them
/// until it has read our answer), not pieces it would leave unrequested.
#[test]
fn super_seeding_shows_pieces_outside_a_web_seed_request() {
    let (shown, claimed, pieces) = shown_after_a_web_seed_request(45, [127, 0, 0, 7]);
    // Were the claim ignored, these would be the first pieces of the file (rarest first, ties
    // by index).
    assert!(
        shown.iter().all(|&p| p >= claimed),
        "shown {shown:?}, claimed 0..{claimed} of {pieces}"
    );
}

/// `n` libtorrent leechers of `bench/lt_swarm.py` (each on its own 127.0.0.x from `first`, 2 MB/s
/// up, 8 MB/s down, with `extra` arguments) download `torrent` into `save`; each must end with
/// `body` as `name`. Returns lt_swarm's report.
fn lt_swarm(
    torrent: &std::path::Path,
    save: &std::path::Path,
    (n, first): (usize, u8),
    extra: &[&str],
    (name, body): (&str, &[u8]),
) -> serde_json::Value {
    let swarm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/lt_swarm.py");
    let o = output_within(
        std::process::Command::new("/usr/bin/python3")
            .arg(&swarm)
            .arg(torrent)
            .arg(save)
            .args([
                &n.to_string(),
                "2000000",
                "8000000",
                "--first",
                &first.to_string(),
            ])
            .args(extra),
        Duration::from_secs(70),
    );
    let r: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    assert_eq!(r["ok"], true, "{r}");
    for i in 0..n {
        let got = std::fs::read(save.join(i.to_string()).join(name)).unwrap();
        assert!(
            got == body,
            "leecher {i} of {}: wrong bytes",
            save.display()
        );
    }
    r
}

/// A server publishing `body` as `name` under a 4 MB/s budget (super-seeding on), and its
/// torrent without the web seed (so that only the peer wire serves it) in `out`.
fn budgeted(
    d: &Dirs,
    name: &str,
    body: &[u8],
    out: &std::path::Path,
) -> (Server, std::path::PathBuf) {
    std::fs::write(d.content.join(name), body).unwrap();
    let server = Server::with_config(d, "[egress]\nmax_rate = 4000000\n");
    server.wait_published(name, None);
    let torrent = torrent_without_web_seed(&server, name, out);
    (server, torrent)
}

/// Super-seeding (on under a budget) with real clients over time: two libtorrent leechers
/// download and leave, then two more start together and finish too. (The seed once went on
/// counting the first two as holders of every piece, and showed the next two nothing, ever.)
#[test]
fn a_second_wave_of_leechers_finishes_after_the_first_has_left() {
    if !have_libtorrent() {
        return;
    }
    let (d, out) = (dirs(), tempfile::tempdir().unwrap());
    let body = data(2 << 20, 47);
    let (_server, torrent) = budgeted(&d, "w.bin", &body, out.path());
    for wave in 1..=2u8 {
        let save = out.path().join(format!("wave{wave}"));
        let file = ("w.bin", body.as_slice());
        lt_swarm(&torrent, &save, (2, 10 * wave), &["--timeout", "30"], file);
    }
}

/// Downloads arriving over time, as on a website, under super-seeding: each of 4 libtorrent
/// leechers starts a second after the one before and leaves half a second after it has the
/// file, so the pieces of the early ones leave with them while later ones still need them.
/// Every leecher finishes with the right bytes.
#[test]
fn downloads_that_arrive_and_leave_over_time_all_finish() {
    if !have_libtorrent() {
        return;
    }
    let (d, out) = (dirs(), tempfile::tempdir().unwrap());
    let body = data(3 << 20, 48);
    let (server, torrent) = budgeted(&d, "c.bin", &body, out.path());
    let arrivals = ["--stagger", "1", "--leave-after", "0.5", "--timeout", "40"];
    let save = out.path().join("dl");
    lt_swarm(&torrent, &save, (4, 30), &arrivals, ("c.bin", &body));
    let (peer, _, _) = egress(&server);
    assert!(
        peer >= body.len() as u64,
        "the seed sent at least one copy over the peer wire: {peer}"
    );
}
