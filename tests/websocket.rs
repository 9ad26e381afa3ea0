//! Issue 17, the WebSocket tracker: `ws://…/announce` on the HTTP port, spoken to over real
//! WebSockets as WebTorrent speaks it (binary strings, offers and answers relayed between two
//! connections), counted with the HTTP tracker's peers, bounded, and named in served torrents
//! and magnet links.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::common::{dirs, leecher_announce, Dirs, Server};

const READ: Duration = Duration::from_secs(10);

fn published(extra_config: &str) -> (Dirs, Server, [u8; 20]) {
    let d = dirs();
    std::fs::write(d.content.join("one.bin"), data(200_000, 5)).unwrap();
    let server = Server::with_config(&d, extra_config);
    let hash = server.published_hash("one.bin");
    (d, server, *hash.as_bytes())
}

fn announce(hash: &[u8; 20], peer: u8, left: u64, event: &str, offers: &[u8]) -> Value {
    let offers: Vec<Value> = offers
        .iter()
        .map(|&o| {
            json!({"offer": {"type": "offer", "sdp": format!("v=0 offer {o}")},
                   "offer_id": binary_string(&[o; 20])})
        })
        .collect();
    json!({"action": "announce", "info_hash": binary_string(hash),
           "peer_id": binary_string(&[peer; 20]), "uploaded": 0, "downloaded": 0,
           "left": left, "event": event, "numwant": offers.len(), "offers": offers})
}

fn entry(server: &Server) -> Value {
    server
        .torrents()
        .into_iter()
        .find(|t| t["name"] == "one.bin")
        .expect("one.bin in the API")
}

/// Two browsers meet through the tracker: B's offers reach A (with B's peer id and the offer
/// id, under the hash A announced), A's answer reaches B once; both are counted with the HTTP
/// tracker's peers (a seeder and a leecher beside bitseed's own seed), B's completion counts,
/// and B leaves the swarm when its connection closes.
#[test]
fn browsers_meet_through_offers_and_answers_and_are_counted() {
    let (_d, server, hash) = published("");
    let mut a = ws_connect(server.http, READ);
    ws_send(&mut a, &announce(&hash, b'a', 0, "completed", &[]));
    let answer = ws_recv(&mut a).expect("an announce answer");
    assert_eq!(answer["action"], "announce");
    assert_eq!(answer["info_hash"], binary_string(&hash));
    assert_eq!(answer["interval"], 120);
    // bitseed's own seed and A.
    assert_eq!(
        (answer["complete"].as_u64(), answer["incomplete"].as_u64()),
        (Some(2), Some(0))
    );

    let mut b = ws_connect(server.http, READ);
    ws_send(&mut b, &announce(&hash, b'b', 1000, "started", &[1, 2]));
    let answer = ws_recv(&mut b).expect("an announce answer");
    assert_eq!(
        (answer["complete"].as_u64(), answer["incomplete"].as_u64()),
        (Some(2), Some(1))
    );
    // One other peer: one offer relayed.
    let offer = ws_recv(&mut a).expect("B's offer relayed to A");
    assert_eq!(offer["peer_id"], binary_string(&[b'b'; 20]));
    assert_eq!(offer["info_hash"], binary_string(&hash));
    assert_eq!(offer["offer"]["type"], "offer");
    let offer_id = offer["offer_id"].as_str().unwrap().to_owned();
    let n: u8 = offer["offer"]["sdp"].as_str().unwrap()[10..]
        .parse()
        .unwrap();
    assert_eq!(offer_id, binary_string(&[n; 20]));

    let reply = json!({"action": "announce", "info_hash": binary_string(&hash),
        "peer_id": binary_string(&[b'a'; 20]), "to_peer_id": binary_string(&[b'b'; 20]),
        "offer_id": offer_id, "answer": {"type": "answer", "sdp": "v=0 answer"}});
    ws_send(&mut a, &reply);
    let counts = ws_recv(&mut a).expect("an announce answer to the answer");
    assert_eq!(counts["complete"], 2, "an answer alone leaves A a seeder");
    let relayed = ws_recv(&mut b).expect("A's answer relayed to B");
    assert_eq!(relayed["peer_id"], binary_string(&[b'a'; 20]));
    assert_eq!(
        relayed["answer"],
        json!({"type": "answer", "sdp": "v=0 answer"})
    );
    assert_eq!(relayed["offer_id"], offer_id);
    // The same answer again: no offer waits for it.
    ws_send(&mut a, &reply);
    ws_recv(&mut a).expect("an announce answer");
    let refused = ws_recv(&mut a).expect("a failure");
    assert!(
        refused["failure reason"]
            .as_str()
            .unwrap()
            .contains("no offer waits"),
        "{refused}"
    );

    // The page, the HTTP tracker and a scrape over the WebSocket count them.
    let t = entry(&server);
    assert_eq!(
        (t["seeders"].as_u64(), t["leechers"].as_u64()),
        (Some(2), Some(1)),
        "{t}"
    );
    let hex_hash = hex::encode(hash);
    let http = server.get(&leecher_announce(&hex_hash));
    let body = String::from_utf8_lossy(&http.body).into_owned();
    assert!(
        body.contains("8:completei2e") && body.contains("10:incompletei2e"),
        "{body}"
    );
    ws_send(
        &mut b,
        &json!({"action": "scrape", "info_hash": [binary_string(&hash)]}),
    );
    let scrape = ws_recv(&mut b).expect("a scrape answer");
    let file = &scrape["files"][binary_string(&hash)];
    assert_eq!(
        (file["complete"].as_u64(), file["incomplete"].as_u64()),
        (Some(2), Some(2))
    );

    // B completes (counted once), then its connection closes: it leaves the swarm.
    ws_send(&mut b, &announce(&hash, b'b', 0, "completed", &[]));
    let answer = ws_recv(&mut b).expect("an announce answer");
    assert_eq!(answer["complete"], 3);
    assert_eq!(entry(&server)["completed"], 2);
    b.close(None).unwrap();
    while ws_recv(&mut b).is_some() {}
    drop(b);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while entry(&server)["seeders"] != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "B never left: {}",
            entry(&server)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A stops.
    ws_send(&mut a, &announce(&hash, b'a', 0, "stopped", &[]));
    ws_recv(&mut a).expect("an announce answer");
    assert_eq!(entry(&server)["seeders"], 1);
    assert_eq!(
        server.metric("bitseed_tracker_websocket_connections"),
        Some(1)
    );
}

/// Published mode refuses what bitseed does not publish; malformed messages get a failure
/// naming what is wrong; every bound holds: offers per announce, SDP size, message size (the
/// connection is closed), swarms per connection, messages per second, silence.
#[test]
fn the_websocket_tracker_refuses_and_bounds() {
    let (_d, server, hash) = published(
        "[tracker.websocket]\nmax_offers = 3\nmax_sdp_bytes = 100\nmax_message_bytes = 4096\n\
         max_swarms_per_connection = 1\nmessages_per_second = 1\nidle_timeout = 2\n",
    );
    let mut ws = ws_connect(server.http, READ);
    let failure = |ws: &mut Ws, msg: &Value| -> String {
        ws_send(ws, msg);
        let v = ws_recv(ws).expect("an answer");
        v["failure reason"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_owned()
    };
    assert_eq!(
        failure(&mut ws, &announce(&[9; 20], b'a', 5, "started", &[])),
        "unregistered torrent"
    );
    assert!(
        failure(&mut ws, &announce(&hash, b'a', 5, "started", &[1, 2, 3, 4]))
            .contains("more than 3 offers")
    );
    let mut big_sdp = announce(&hash, b'a', 5, "started", &[1]);
    big_sdp["offers"][0]["offer"]["sdp"] = json!("x".repeat(101));
    assert!(failure(&mut ws, &big_sdp).contains("SDP longer than 100"));
    // Hex is not a binary string.
    let mut hex_hash = announce(&hash, b'a', 5, "started", &[]);
    hex_hash["info_hash"] = json!(hex::encode(hash));
    // The budget of 5 messages is spent: wait for tokens (1 a second) before each of the rest.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(failure(&mut ws, &hex_hash).contains("not 20 bytes"));
    std::thread::sleep(Duration::from_millis(1100));
    ws.send(tungstenite::Message::text("{not json")).unwrap();
    let v = ws_recv(&mut ws).expect("an answer");
    assert!(
        v["failure reason"].as_str().unwrap().contains("malformed"),
        "{v}"
    );
    // One swarm per connection: a second hash (published or not) is refused.
    std::thread::sleep(Duration::from_millis(1100));
    ws_send(&mut ws, &announce(&hash, b'a', 5, "started", &[]));
    assert_eq!(ws_recv(&mut ws).expect("an answer")["incomplete"], 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert!(
        failure(&mut ws, &announce(&[8; 20], b'a', 5, "started", &[]))
            .contains("too many torrents")
    );

    // Over the rate: 20 scrapes at once, at most the burst (5) and the tokens that came
    // meanwhile are answered.
    let mut burst = ws_connect(server.http, Duration::from_secs(2));
    for _ in 0..20 {
        ws_send(
            &mut burst,
            &json!({"action": "scrape", "info_hash": binary_string(&hash)}),
        );
    }
    let mut answered = 0;
    while ws_recv(&mut burst).is_some() {
        answered += 1;
    }
    assert!((5..20).contains(&answered), "{answered} of 20 answered");

    // A message over 4096 bytes closes the connection.
    let mut big = ws_connect(server.http, READ);
    let _ = big.send(tungstenite::Message::text(format!(
        "{{\"x\":\"{}\"}}",
        "y".repeat(5000)
    )));
    assert!(ws_recv(&mut big).is_none(), "the connection was closed");

    // Silence: a connection that answers no ping is closed after idle_timeout (2 s).
    let silent = std::net::TcpStream::connect(server.http).unwrap();
    silent.set_read_timeout(Some(READ)).unwrap();
    let (mut silent, _) =
        tungstenite::client(format!("ws://{}/announce", server.http), silent).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    // What came meanwhile was pings, then the close (or the connection is gone).
    let closed = loop {
        match silent.read() {
            Ok(tungstenite::Message::Ping(_)) | Ok(tungstenite::Message::Pong(_)) => continue,
            Ok(tungstenite::Message::Close(_)) | Err(_) => break true,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    };
    assert!(closed);
}

/// Served torrents and magnet links name the WebSocket tracker beside the HTTP one (a tier of
/// its own), and none when it is off.
#[test]
fn torrents_and_magnets_name_the_websocket_tracker() {
    let (_d, server, _) = published("");
    let t = entry(&server);
    let ws_url = format!("ws://{}/announce", server.http);
    let magnet = t["magnet"].as_str().unwrap();
    let m = bitseed::metainfo::Magnet::parse(magnet).unwrap();
    assert_eq!(
        m.trackers,
        [format!("http://{}/announce", server.http), ws_url.clone()]
    );
    let torrent = server.get("/torrents/one.bin.torrent");
    let meta = bitseed::metainfo::Metainfo::from_bytes(&torrent.body).unwrap();
    assert_eq!(
        meta.trackers,
        [
            vec![format!("http://{}/announce", server.http)],
            vec![ws_url]
        ]
    );
    drop(server);

    let (_d, server, _) = published("[tracker.websocket]\nenabled = false\n");
    let m = bitseed::metainfo::Magnet::parse(entry(&server)["magnet"].as_str().unwrap()).unwrap();
    assert_eq!(m.trackers.len(), 1);
    // And /announce stays a plain HTTP tracker: no upgrade.
    let stream = std::net::TcpStream::connect(server.http).unwrap();
    assert!(tungstenite::client(format!("ws://{}/announce", server.http), stream).is_err());
}

/// An offer as Chromium makes it for a data channel (its candidate never answers here).
const CHROMIUM_OFFER: &str = "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\n\
    t=0 0\r\na=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n\
    m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
    a=candidate:1 1 udp 2113937151 127.0.0.1 9 typ host generation 0 network-cost 999\r\n\
    a=ice-ufrag:Hk3T\r\na=ice-pwd:jZl2rTYxN5VsaqJ1mOxXqUFp\r\na=ice-options:trickle\r\n\
    a=fingerprint:sha-256 8B:0B:9C:1C:6A:45:BB:4F:3E:52:1D:A4:CE:71:5D:0B:6E:5E:37:7C:DF:2B:A5:E0:9E:6B:3C:9F:AD:49:51:2C\r\n\
    a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n";

/// Issue 17 item 4, the signalling half (the Chromium test in `browser_download` does the
/// whole path): a leecher's last offer goes to bitseed's seeder, which answers it through the
/// tracker from its own peer id with a host candidate on loopback; a second announce from the
/// same browser gets no second answer while the first session lives; an offer that is not SDP
/// goes to other browsers as before. The session whose browser never connects ends at
/// `connect_timeout`; datagrams naming no session are dropped and counted.
#[test]
fn the_seeder_answers_a_browsers_offer_through_the_tracker() {
    let (_d, server, hash) = published("[peer.webrtc]\nconnect_timeout = 3\n");
    let mut b = ws_connect(server.http, READ);
    let mut msg = announce(&hash, b'b', 1000, "started", &[7]);
    msg["offers"][0]["offer"]["sdp"] = json!(CHROMIUM_OFFER);
    ws_send(&mut b, &msg);
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(ws_recv(&mut b).expect("the announce answer and bitseed's answer"));
    }
    let ours = got
        .iter()
        .find(|m| m.get("answer").is_some())
        .unwrap_or_else(|| panic!("no answer from the seeder: {got:?}"));
    assert_eq!(ours["offer_id"], binary_string(&[7; 20]));
    assert_eq!(ours["info_hash"], binary_string(&hash));
    assert_eq!(ours["answer"]["type"], "answer");
    let peer_id = ours["peer_id"].as_str().unwrap();
    assert!(peer_id.starts_with("-bS0100-"), "{peer_id}");
    let sdp = ours["answer"]["sdp"].as_str().unwrap();
    let candidate = sdp
        .lines()
        .find(|l| l.starts_with("a=candidate:") && l.contains(" typ host"))
        .unwrap_or_else(|| panic!("no host candidate: {sdp}"));
    let fields: Vec<&str> = candidate.split(' ').collect();
    assert_eq!(fields[4], "127.0.0.1", "{candidate}");
    let port: u16 = fields[5].parse().unwrap();
    assert_eq!(server.metric("bitseed_webrtc_sessions"), Some(1));

    // While that session lives, the same browser's next offers all go elsewhere.
    ws_send(&mut b, &msg);
    let next = ws_recv(&mut b).expect("an announce answer");
    assert_eq!(next["action"], "announce");
    assert!(next.get("answer").is_none(), "{next}");
    // (Counted when made, before the announce answer is sent: none was.)
    assert_eq!(server.metric("bitseed_webrtc_answers_total"), Some(1));

    // Not STUN, and a STUN check naming nobody: dropped, counted.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"not webrtc", ("127.0.0.1", port)).unwrap();
    let mut stun = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[1; 12]);
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0x07]);
    stun.extend_from_slice(b"who:me\0\0");
    udp.send_to(&stun, ("127.0.0.1", port)).unwrap();
    server.wait_metric("bitseed_webrtc_unrouted_datagrams_total", |v| v == 2);

    // Nobody connects: the session ends at its timeout and the browser may be answered again.
    server.wait_metric("bitseed_webrtc_connect_timeouts_total", |v| v == 1);
    server.wait_metric("bitseed_webrtc_sessions", |v| v == 0);

    // An offer that is not SDP: refused by the seeder, relayed to another browser (b leaves
    // first, so a is the only one).
    ws_send(&mut b, &announce(&hash, b'b', 1000, "stopped", &[]));
    while ws_recv(&mut b).is_some_and(|m| m["action"] != "announce") {}
    let mut a = ws_connect(server.http, READ);
    ws_send(&mut a, &announce(&hash, b'a', 1000, "started", &[]));
    ws_recv(&mut a).expect("an announce answer");
    let mut c = ws_connect(server.http, READ);
    ws_send(&mut c, &announce(&hash, b'c', 1000, "started", &[9]));
    ws_recv(&mut c).expect("an announce answer");
    let relayed = ws_recv(&mut a).expect("c's offer relayed to a");
    assert_eq!(relayed["offer_id"], binary_string(&[9; 20]));
    assert_eq!(
        server.metric("bitseed_webrtc_offers_refused_total{reason=\"bad_offer\"}"),
        Some(1)
    );
}

/// The seeder's WebRTC bounds, through the tracker: with `max_sessions_per_ip = 2`, three
/// browsers from one address get two answers (the third's offer goes to other browsers); with
/// the WebRTC side off, none.
#[test]
fn the_seeder_answers_browsers_within_its_bounds() {
    let (_d, server, hash) = published("[peer.webrtc]\nmax_sessions_per_ip = 2\n");
    let mut answered = 0;
    let mut conns = Vec::new();
    for peer in [b'x', b'y', b'z'] {
        let mut ws = ws_connect(server.http, READ);
        let mut msg = announce(&hash, peer, 1000, "started", &[1]);
        msg["offers"][0]["offer"]["sdp"] = json!(CHROMIUM_OFFER);
        ws_send(&mut ws, &msg);
        let first = ws_recv(&mut ws).expect("an announce answer");
        assert_eq!(first["action"], "announce", "{first}");
        conns.push(ws);
        // Counted when made, before the announce answer: the gauge says whether it was.
        if server.metric("bitseed_webrtc_answers_total") == Some(answered + 1) {
            answered += 1;
            let ours = ws_recv(conns.last_mut().unwrap()).expect("bitseed's answer");
            assert!(ours.get("answer").is_some(), "{ours}");
        }
    }
    assert_eq!(answered, 2);
    assert_eq!(server.metric("bitseed_webrtc_sessions"), Some(2));
    // The third browser's offer went to one of the first two instead.
    let relayed: Vec<Value> = conns[..2]
        .iter_mut()
        .filter_map(|ws| {
            ws.get_mut()
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            ws_recv(ws)
        })
        .collect();
    assert_eq!(relayed.len(), 1, "{relayed:?}");
    assert_eq!(relayed[0]["peer_id"], binary_string(&[b'z'; 20]));

    let (_d, off, hash) = published("[peer.webrtc]\nenabled = false\n");
    let mut ws = ws_connect(off.http, READ);
    let mut msg = announce(&hash, b'x', 1000, "started", &[1]);
    msg["offers"][0]["offer"]["sdp"] = json!(CHROMIUM_OFFER);
    ws_send(&mut ws, &msg);
    ws_recv(&mut ws).expect("an announce answer");
    assert_eq!(off.metric("bitseed_webrtc_answers_total"), None);
}
