//! The bodies of the fuzz targets in `fuzz/`, kept here so the regression tests feed saved
//! inputs through exactly the code the fuzzer ran. Each takes arbitrary bytes, must never panic,
//! and checks what must hold for any input (round trips of what was accepted).

use std::sync::OnceLock;

use crate::bencode;
use crate::metainfo::{Format, Magnet, Metainfo};
use crate::peer::extended::{self, hashpiece, ut_metadata};
use crate::peer::message::MAX_FRAME;
use crate::peer::{Connection, Handshake, Message, Published};
use crate::tracker::{http_request, udp_protocol};

/// Bencode decoding and torrent loading. A torrent that loads re-encodes to one that loads with
/// the same info hashes, and its magnet link parses back.
pub fn bencode_metainfo(data: &[u8]) {
    let _ = bencode::decode(data);
    let _ = bencode::decode_prefix(data);
    let Ok(meta) = Metainfo::from_bytes(data) else {
        return;
    };
    let _ = meta.layout();
    let again = Metainfo::from_bytes(&meta.to_bytes()).expect("a loaded torrent re-encodes");
    assert_eq!(again.info_hash, meta.info_hash);
    let magnet = meta.magnet();
    assert_eq!(
        Magnet::parse(&magnet.to_uri()).expect("our magnet link parses"),
        magnet
    );
}

/// Magnet links: what parses prints to a link that parses to the same thing.
pub fn magnet(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = Magnet::parse(text) else {
        return;
    };
    assert_eq!(
        Magnet::parse(&m.to_uri()).expect("our magnet link parses"),
        m
    );
}

/// Announce and scrape query strings, as the HTTP tracker hands them over.
pub fn http_query(data: &[u8]) {
    let _ = http_request::parse_announce(data);
    if let Ok(hashes) = http_request::parse_scrape(data) {
        assert!(hashes.len() <= data.len());
    }
}

/// Request headers that shape answers: `Range` against a file length, the validators, and what a
/// trusted proxy forwards (client address, host, scheme). The first 8 bytes are the length.
pub fn http_headers(data: &[u8]) {
    use crate::proxy::{
        parse_forwarded, parse_node, valid_host, valid_proto, Proxies, ProxyHeader,
    };
    use crate::web::range::{if_range_holds, none_match, parse_range, Ranged};
    let (len, text) = match data.split_first_chunk::<8>() {
        Some((len, rest)) => (u64::from_le_bytes(*len) >> (data.len() % 64), rest),
        None => (0, data),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    match parse_range(text, len) {
        Ranged::Part(start, end) => assert!(start < end && end <= len, "{start}..{end} of {len}"),
        Ranged::Whole | Ranged::Unsatisfiable => {}
    }
    let _ = none_match(text, "\"etag-0\"");
    let _ = if_range_holds(text, "\"etag-0\"", Some(text));
    let f = parse_forwarded(text);
    if let Some(host) = &f.host {
        assert!(valid_host(host).is_some() && !host.contains(['"', '<', '>', '/', ' ']));
    }
    assert!(f.proto.is_none_or(|p| p == "http" || p == "https"));
    let _ = (parse_node(text), valid_proto(text));
    let proxy = std::net::IpAddr::from([127, 0, 0, 1]);
    for header in [
        ProxyHeader::XForwardedFor,
        ProxyHeader::Forwarded,
        ProxyHeader::XRealIp,
    ] {
        let p = Proxies::new(&[proxy], header);
        let _ = p.client_ip(proxy, |_| std::iter::once(text.as_bytes()));
    }
}

/// UDP tracker packets.
pub fn udp_packet(data: &[u8]) {
    if let Ok(udp_protocol::Request::Scrape { info_hashes, .. }) = udp_protocol::parse(data) {
        assert_eq!(info_hashes.len() % 20, 0);
    }
}

/// WebSocket tracker messages (WebTorrent's JSON). The first byte picks small or default
/// bounds. What parses stays within the bounds and, written again as WebTorrent would, parses
/// to the same request; every refusal renders as a failure message that is JSON.
pub fn ws_message(data: &[u8]) {
    use crate::tracker::ws_protocol::{self as ws, WsLimits, WsRequest};
    let Some((&first, msg)) = data.split_first() else {
        return;
    };
    let limits = if first & 1 == 0 {
        WsLimits {
            max_message_bytes: 65_536,
            max_offers: 10,
            max_sdp_bytes: 16_384,
            max_scrape_hashes: 100,
        }
    } else {
        WsLimits {
            max_message_bytes: 512,
            max_offers: 2,
            max_sdp_bytes: 16,
            max_scrape_hashes: 2,
        }
    };
    let request = match ws::parse(msg, &limits) {
        Ok(r) => r,
        Err(e) => {
            let failure = ws::parse_failure(msg, &e);
            assert!(serde_json::from_str::<serde_json::Value>(&failure).is_ok());
            return;
        }
    };
    let again = match &request {
        WsRequest::Scrape(hashes) => {
            assert!(hashes.len() <= limits.max_scrape_hashes);
            let list: Vec<String> = hashes
                .iter()
                .map(|h| ws::binary_string(h.as_bytes()))
                .collect();
            serde_json::json!({"action": "scrape", "info_hash": list})
        }
        WsRequest::Announce(a) => {
            assert!(a.offers.len() <= limits.max_offers);
            assert!(a.offers.iter().all(|o| o.sdp.len() <= limits.max_sdp_bytes));
            let event = match a.event {
                http_request::Event::None => "update",
                http_request::Event::Started => "started",
                http_request::Event::Stopped => "stopped",
                http_request::Event::Completed => "completed",
                http_request::Event::Paused => "paused",
            };
            let offers: Vec<serde_json::Value> = a
                .offers
                .iter()
                .map(|o| {
                    serde_json::json!({"offer": {"type": "offer", "sdp": o.sdp},
                        "offer_id": ws::binary_string(&o.offer_id)})
                })
                .collect();
            let mut v = serde_json::json!({"action": "announce",
                "info_hash": ws::binary_string(a.info_hash.as_bytes()),
                "peer_id": ws::binary_string(&a.peer_id), "left": a.left, "event": event,
                "numwant": a.numwant, "offers": offers});
            if let Some(answer) = &a.answer {
                v["to_peer_id"] = ws::binary_string(&answer.to_peer_id).into();
                v["offer_id"] = ws::binary_string(&answer.offer_id).into();
                v["answer"] = serde_json::json!({"type": "answer", "sdp": answer.sdp});
            }
            v
        }
    };
    // Written again, a request may grow past the message bound (escapes): judged unbounded.
    let unbounded = WsLimits {
        max_message_bytes: usize::MAX,
        ..limits
    };
    let parsed = ws::parse(again.to_string().as_bytes(), &unbounded);
    assert_eq!(parsed.as_ref(), Ok(&request), "{again}");
}

/// The handshake, peer wire frames and the extension payloads in them. A frame that parses
/// writes back to one that parses to the same message.
pub fn peer_wire(data: &[u8]) {
    let _ = Handshake::parse(data);
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    // The first byte picks the frame bound: the fixed one, or a small one to reach `TooLong`.
    let max = if first & 1 == 0 { MAX_FRAME } else { 64 };
    while let Ok(Some((msg, used))) = Message::parse(rest, max) {
        assert!(used > 0 && used <= rest.len());
        rest = &rest[used..];
        if let Message::Extended { payload, .. } = &msg {
            let _ = extended::PeerExtensions::parse(payload);
            let _ = ut_metadata::parse(payload);
            let _ = hashpiece::parse(payload);
        }
        if !matches!(msg, Message::Unknown(_)) {
            let bytes = msg.to_bytes();
            let (back, n) = Message::parse(&bytes, u32::MAX)
                .expect("our frame parses")
                .expect("our frame is whole");
            assert_eq!(n, bytes.len());
            assert_eq!(back, msg);
        }
    }
}

/// Real torrents of each format over one small file, made once per process.
fn torrents() -> &'static [Published] {
    static TORRENTS: OnceLock<(tempfile::TempDir, Vec<Published>)> = OnceLock::new();
    &TORRENTS
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temp folder");
            let file = dir.path().join("data.bin");
            // Three and a bit pieces of 16 KiB, so the last piece is short.
            let bytes: Vec<u8> = (0..40_000u32).map(|i| (i * 7) as u8).collect();
            std::fs::write(&file, bytes).expect("writing the fuzz content");
            let list = [Format::V1, Format::Merkle, Format::V2, Format::Hybrid]
                .into_iter()
                .map(|format| {
                    let content = crate::hash::walk::collect(
                        &file,
                        crate::hash::walk::WalkOptions::default(),
                    )
                    .expect("walking the fuzz content");
                    let opts = crate::hash::CreateOptions {
                        piece_length: Some(16384),
                        ..crate::hash::CreateOptions::new(format)
                    };
                    let progress = std::sync::atomic::AtomicU64::new(0);
                    let meta = crate::hash::create(&content, &opts, &progress, None)
                        .expect("creating the fuzz torrent");
                    let meta = Metainfo::from_bytes(&meta.to_bytes()).expect("loading it back");
                    Published::open(meta, &file).expect("publishing the fuzz torrent")
                })
                .collect();
            (dir, list)
        })
        .1
}

/// The per-connection state machine fed a byte stream as the session feeds it: a handshake,
/// then frames bounded by `max_frame`, with the shell's choking and reads interleaved. The first
/// byte picks the torrent format, fast/plain and super-seeding.
pub fn peer_connection(data: &[u8]) {
    let Some((&setup, stream)) = data.split_first() else {
        return;
    };
    let torrent = &torrents()[usize::from(setup & 3)];
    // Super-seeding off, or on with one or several pieces shown at a time.
    let super_seed = usize::from(setup & 4 != 0) * (1 + usize::from(setup >> 6));
    let Ok(Some(theirs)) = Handshake::parse(stream) else {
        return;
    };
    let mut conn = Connection::new(&theirs, torrent, 8, super_seed);
    let _ = conn.greeting(torrent, Some(vec![127, 0, 0, 1]));
    let mut rest = &stream[crate::peer::handshake::HANDSHAKE_LEN..];
    let mut step = 0u32;
    let t0 = std::time::Instant::now();
    while let Ok(Some((msg, used))) = Message::parse(rest, conn.max_frame()) {
        rest = &rest[used..];
        if conn.on_message(msg, torrent).is_err() {
            return;
        }
        assert!(conn.queued() <= 8);
        step += 1;
        // The choker's decisions, and the reads the session makes, at points the input picks.
        if let Some(&b) = rest.first() {
            if step % 3 == 0 {
                let _ = conn.set_choking(b & 1 == 0);
            }
        }
        // Time passes half a second a step, so shown pieces left unrequested expire too.
        let now = t0 + std::time::Duration::from_millis(step as u64 * 500);
        if let Some((_, _)) = conn.offer_wanted(now, step % 5 == 0) {
            let _ = conn.offer(step % torrent.piece_count().max(1), now);
        }
        if let Some(job) = conn.next_job(torrent, 64 * 1024) {
            let frames = job
                .read_frames(&torrent.content)
                .expect("reading a queued request");
            assert!(frames.len() >= job.len);
        }
    }
}

/// The MSE receiver fed one connection's bytes in pieces. The first byte picks the policy (bits
/// 0-1), the piece size (bits 2-6: 1 to 31 bytes, 0 for all at once) and whether the input is
/// guided (bit 7). Unguided, the rest is the peer's bytes as they are: sniffing, Ya, the sync
/// search. Guided, an honest Ya and a PadA (twice the next byte long) go first and, once Yb is
/// back, HASH('req1', S) and the masked hash of a published torrent, then the rest encrypted in
/// A's stream: the input lands past the sync point, on VC, crypto_provide, the pads, IA and the
/// payload after them, which no fuzzer could reach through SHA-1 and RC4 on its own.
pub fn mse_receiver(data: &[u8]) {
    let _ = mse_outcome(data);
}

/// `mse_receiver`'s body: how the handshake ended (a mode, a refusal's reason, or `None` for
/// input that ran out first), so tests can check the seeds reach what they were made for.
fn mse_outcome(data: &[u8]) -> Option<Result<crate::peer::mse::Mode, &'static str>> {
    use std::collections::HashMap;

    use crate::peer::mse::receiver::MAX_HANDSHAKE;
    use crate::peer::mse::{dh, initiator, keys, Encryption, Mode, Random, Receiver, KEY_LEN};

    const IH: [u8; 20] = [0x42; 20];
    const A_KEY: [u8; 20] = [0x3C; 20];
    const B_KEY: [u8; 20] = [0x5B; 20];
    const PAD_B: usize = 37;
    // Both keys are fixed, so A's side of the exchange (Ya, Yb and S) is worked out once:
    // only the receiver's own exponentiations run per input.
    static EXCHANGE: OnceLock<([u8; KEY_LEN], [u8; KEY_LEN], [u8; KEY_LEN])> = OnceLock::new();
    let (ya, yb, s) = EXCHANGE.get_or_init(|| {
        let yb = dh::public_key(&B_KEY);
        let s = dh::shared_secret(&A_KEY, &yb).expect("our Yb is a valid key");
        (dh::public_key(&A_KEY), yb, s)
    });
    let (&setup, rest) = data.split_first()?;
    let policy = match setup & 3 {
        1 => Encryption::Require,
        2 => Encryption::Disable,
        _ => Encryption::Prefer,
    };
    let piece = match (setup >> 2) & 31 {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let lookup: HashMap<_, _> = [IH, [0x17; 20]]
        .into_iter()
        .map(|ih| (keys::req2_key(&ih), ih))
        .collect();
    let mut receiver = Receiver::new(
        policy,
        Random {
            private_key: B_KEY,
            pad: vec![0xA5; PAD_B],
        },
    );
    let mut out = Vec::new();
    let mut input = rest.to_vec();
    let mut guided_secret = None;
    if setup & 0x80 != 0 {
        let (&pad_a, tail) = rest.split_first()?;
        let mut first = ya.to_vec();
        first.extend(std::iter::repeat_n(0xEE, 2 * usize::from(pad_a)));
        match receiver.feed(&first, &lookup, &mut out) {
            Ok(None) => {}
            Ok(Some(_)) => panic!("an MSE Ya finished a handshake"),
            Err(e) => {
                assert_eq!(policy, Encryption::Disable, "{e}");
                return Some(Err(e.reason()));
            }
        }
        assert_eq!(out.first_chunk::<KEY_LEN>(), Some(yb), "Yb answers Ya");
        let (mut a_stream, _) = keys::streams(s, &IH);
        input = initiator::step3(s, &IH, &mut a_stream, tail.to_vec());
        guided_secret = Some(s);
    }
    let mut fed = Vec::new();
    for p in input.chunks(piece.min(input.len().max(1))) {
        fed.extend_from_slice(p);
        match receiver.feed(p, &lookup, &mut out) {
            Ok(None) => {
                assert!(receiver.held() < MAX_HANDSHAKE, "held {}", receiver.held());
                // Yb and PadB, then step 4 once crypto_provide is in (before PadC and IA).
                assert!(out.len() <= KEY_LEN + PAD_B + 14);
            }
            Ok(Some(done)) => {
                match done.mode {
                    Mode::Plaintext => {
                        assert_ne!(policy, Encryption::Require);
                        assert!(guided_secret.is_none() && done.prefix == fed);
                        assert!(out.is_empty());
                    }
                    Mode::Rc4 | Mode::MsePlaintext => {
                        assert_ne!(policy, Encryption::Disable);
                        assert!(policy == Encryption::Prefer || done.mode == Mode::Rc4);
                        let ih = done.info_hash.expect("MSE names the torrent");
                        assert!(lookup.values().any(|v| *v == ih));
                        assert!(done.prefix.len() <= fed.len());
                        // Step 4 decrypts in B's stream to VC and the mode selected.
                        assert_eq!(out.len(), KEY_LEN + PAD_B + 14);
                        if let Some(s) = guided_secret {
                            let (_, mut b_stream) = keys::streams(s, &ih);
                            let mut step4 = out[KEY_LEN + PAD_B..].to_vec();
                            b_stream.apply_keystream(&mut step4);
                            let select = if done.mode == Mode::Rc4 { 2u8 } else { 1 };
                            assert_eq!(step4, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, select, 0, 0]);
                        }
                    }
                }
                return Some(Ok(done.mode));
            }
            Err(e) => {
                assert_ne!(e.reason(), "internal", "{e}");
                return Some(Err(e.reason()));
            }
        }
    }
    None
}

/// DHT datagrams (KRPC, BEP 5): parsed, and fed to a node that seeds one hash and has a query
/// of its own in flight (transaction id 0, to the address the input comes from), as a query or
/// as the answer. Whatever the node sends back is KRPC it would take itself, in one packet.
pub fn krpc(data: &[u8]) {
    use crate::dht::id::NodeId;
    use crate::dht::krpc::{Message, MAX_DATAGRAM};
    use crate::dht::node::{Limits, Node};
    use std::net::SocketAddrV4;
    use std::time::{Duration, Instant};

    let _ = Message::parse(data);
    let now = Instant::now();
    let from: SocketAddrV4 = "10.0.0.2:6881".parse().expect("an address");
    let limits = Limits {
        max_stored_hashes: 4,
        max_peers_per_hash: 4,
        queries_per_ip: 100,
        queries_per_sec: 100,
    };
    let mut node = Node::new(
        NodeId([0x11; 20]),
        limits,
        6881,
        None,
        None,
        vec![from],
        7,
        now,
    );
    node.seed([0x22; 20], now);
    let mut out = Vec::new();
    // The first tick bootstraps: a find_node (tid 0) to `from`.
    node.tick(now, &mut out);
    node.on_datagram(data, from, now, &mut out);
    node.on_datagram(data, from, now, &mut out);
    node.tick(now + Duration::from_secs(4), &mut out);
    for o in &out {
        assert!(o.bytes.len() <= MAX_DATAGRAM, "{} bytes", o.bytes.len());
        assert!(Message::parse(&o.bytes).is_ok(), "we send what we parse");
    }
}

/// A batch of peers from Redis (cluster mode), and a node's hashing record: a batch that
/// decodes re-encodes to the same bytes, and its peers go into a tracker's swarms.
pub fn cluster_batch(data: &[u8]) {
    use crate::cluster::codec;
    use crate::tracker::{Mode, Tracker, TrackerConfig};

    let _ = crate::catalog::shared::Record::decode(data);
    let Ok(peers) = codec::decode(data) else {
        return;
    };
    assert_eq!(
        codec::encode(&peers),
        data,
        "a batch re-encodes to its bytes"
    );
    static TRACKER: OnceLock<(Tracker, tempfile::TempDir)> = OnceLock::new();
    let (tracker, _) = TRACKER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp folder");
        let config = TrackerConfig {
            mode: Mode::Open,
            ..TrackerConfig::default()
        };
        let t = Tracker::new(config, dir.path()).expect("a tracker");
        (t, dir)
    });
    tracker.apply_remote(&peers);
}

#[cfg(test)]
mod tests {
    use crate::peer::mse::Mode;

    /// The MSE seeds reach what they were written for: a guided seed that stopped completing
    /// its handshake would leave the fuzzer outside the encrypted fields.
    #[test]
    fn mse_seeds_reach_their_outcomes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mse_receiver");
        let expected: [(&str, Option<Result<Mode, &str>>); 7] = [
            ("plaintext_handshake", Some(Ok(Mode::Plaintext))),
            ("plaintext_require", Some(Err("plaintext_refused"))),
            ("garbage_http", Some(Err("bad_mse_sync"))),
            ("guided_rc4_ia", Some(Ok(Mode::Rc4))),
            (
                "guided_plaintext_byte_at_a_time",
                Some(Ok(Mode::MsePlaintext)),
            ),
            ("guided_pad_c_512_require", Some(Ok(Mode::Rc4))),
            ("guided_no_ia", Some(Ok(Mode::Rc4))),
        ];
        for (name, outcome) in expected {
            let data = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(super::mse_outcome(&data), outcome, "{name}");
        }
    }
}
