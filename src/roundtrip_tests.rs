//! Property tests: every message we write is read back as the same message, by our own reader
//! of the other side — peer wire frames and handshakes, BEP 9/10/30 extension payloads, UDP and
//! HTTP tracker requests (our announcer's encoder against the tracker's parser) and answers, and
//! whole torrents (metainfo with random names, trackers and fields).

use proptest::prelude::*;

use crate::announce;
use crate::metainfo::{plan_files, ContentHashes, Format, InfoHash, Metainfo, NewTorrent};
use crate::peer::extended::{hashpiece, OurHandshake, PeerExtensions};
use crate::peer::message::{BLOCK, MAX_FRAME};
use crate::peer::{BlockRef, Handshake, HashRequest, Message};
use crate::tracker::{http_request, udp_protocol};

fn block_ref() -> impl Strategy<Value = BlockRef> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, length)| BlockRef {
        index,
        begin,
        length,
    })
}

fn hash_request() -> impl Strategy<Value = HashRequest> {
    (
        any::<[u8; 32]>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(pieces_root, base_layer, index, length, proof_layers)| HashRequest {
                pieces_root,
                base_layer,
                index,
                length,
                proof_layers,
            },
        )
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// Every message type, each with payloads up to the largest frame a seed accepts.
fn message() -> impl Strategy<Value = Message> {
    let most_hashes = (MAX_FRAME as usize - 1 - 48) / 32;
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        any::<u32>().prop_map(Message::Have),
        bytes(2048).prop_map(Message::Bitfield),
        block_ref().prop_map(Message::Request),
        (any::<u32>(), any::<u32>(), bytes(BLOCK as usize))
            .prop_map(|(index, begin, data)| Message::Piece { index, begin, data }),
        block_ref().prop_map(Message::Cancel),
        any::<u16>().prop_map(Message::Port),
        any::<u32>().prop_map(Message::Suggest),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        block_ref().prop_map(Message::Reject),
        any::<u32>().prop_map(Message::AllowedFast),
        (any::<u8>(), bytes(4096)).prop_map(|(id, payload)| Message::Extended { id, payload }),
        hash_request().prop_map(Message::HashRequest),
        (
            hash_request(),
            prop::collection::vec(any::<[u8; 32]>(), 0..=most_hashes)
        )
            .prop_map(|(request, hashes)| Message::Hashes { request, hashes }),
        hash_request().prop_map(Message::HashReject),
        prop_oneof![10u8..=12, 18u8..=19, 24u8..=255].prop_map(Message::Unknown),
    ]
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including what a path or URL should never hold: the format must carry it.
    "\\PC{0,24}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn peer_messages_round_trip(msgs in prop::collection::vec(message(), 1..6)) {
        let mut stream = Vec::new();
        for m in &msgs {
            let one = m.to_bytes();
            prop_assert!(one.len() <= 4 + MAX_FRAME as usize);
            prop_assert_eq!(Message::parse(&one, MAX_FRAME).unwrap(), Some((m.clone(), one.len())));
            // A cut frame is "need more", never an error or a different message.
            for cut in [0, 3, 4, one.len() / 2, one.len() - 1] {
                if cut < one.len() {
                    prop_assert_eq!(Message::parse(&one[..cut], MAX_FRAME).unwrap(), None);
                }
            }
            stream.extend_from_slice(&one);
        }
        // Back to back, as they arrive on a socket.
        let mut at = 0;
        for m in &msgs {
            let (got, used) = Message::parse(&stream[at..], MAX_FRAME).unwrap().unwrap();
            prop_assert_eq!(&got, m);
            at += used;
        }
        prop_assert_eq!(at, stream.len());
    }

    #[test]
    fn handshakes_round_trip(reserved in any::<[u8; 8]>(), info_hash in any::<[u8; 20]>(), peer_id in any::<[u8; 20]>()) {
        let h = Handshake { reserved, info_hash: InfoHash::new(info_hash), peer_id };
        let bytes = h.serialize();
        prop_assert_eq!(Handshake::parse(&bytes).unwrap(), Some(h));
        prop_assert_eq!(Handshake::parse(&bytes[..67]).unwrap(), None);
    }

    #[test]
    fn extended_handshakes_round_trip(
        metadata_size in prop::option::of(0u64..1 << 40),
        hashpiece in any::<bool>(),
        reqq in any::<u32>(),
        client in text(),
        your_ip in prop::option::of(prop_oneof![bytes(4).prop_filter("4", |b| b.len() == 4), prop::collection::vec(any::<u8>(), 16)]),
    ) {
        let ours = OurHandshake { metadata_size, hashpiece, reqq, client: client.clone(), your_ip: your_ip.clone(), pex: false };
        let payload = ours.encode();
        // What a peer reads from it: the ids to send with ...
        let ext = PeerExtensions::parse(&payload).unwrap();
        prop_assert_eq!(ext.ut_metadata, Some(crate::peer::extended::UT_METADATA_ID));
        prop_assert_eq!(ext.hashpiece, hashpiece.then_some(crate::peer::extended::HASHPIECE_ID));
        // ... and every field as written.
        let d = crate::bencode::decode(&payload).unwrap();
        prop_assert_eq!(d.get("metadata_size").and_then(|v| v.as_int()), metadata_size.map(|s| s as i64));
        prop_assert_eq!(d.get("reqq").and_then(|v| v.as_int()), Some(i64::from(reqq)));
        prop_assert_eq!(d.get("v").and_then(|v| v.as_bytes()), Some(client.as_bytes()));
        prop_assert_eq!(d.get("yourip").and_then(|v| v.as_bytes()), your_ip.as_deref());
    }

    #[test]
    fn tr_hashpiece_round_trips(
        index in any::<u32>(),
        begin in any::<u32>(),
        hashes in prop::collection::vec((any::<u32>(), any::<[u8; 20]>()), 0..40),
        data in bytes(BLOCK as usize),
    ) {
        let mut payload = hashpiece::header(index, begin, &hashes);
        payload.extend_from_slice(&data);
        let got = hashpiece::parse(&payload).unwrap();
        prop_assert_eq!(got, hashpiece::HashPiece { index, begin, hashes, data });
    }

    #[test]
    fn ut_metadata_round_trips(piece in any::<u32>(), info in bytes(40_000)) {
        use crate::bencode::{decode_prefix, Value};
        use crate::peer::extended::ut_metadata::{answer, parse, Incoming, PIECE_SIZE};
        // A request as a peer writes it is read back as that request.
        let mut req = Value::dict();
        req.insert("msg_type", Value::Int(0));
        req.insert("piece", Value::Int(piece.into()));
        prop_assert_eq!(parse(&req.encode()).unwrap(), Incoming::Request(piece));
        // Our answer reads back as the piece asked for: its slice of the info dict, or a reject
        // past the end.
        let piece = piece % (info.len() / PIECE_SIZE + 2) as u32;
        let msg = answer(piece, &info);
        let (head, used) = decode_prefix(&msg).unwrap();
        prop_assert_eq!(head.get("piece").and_then(|v| v.as_int()), Some(i64::from(piece)));
        let start = piece as usize * PIECE_SIZE;
        if start < info.len() {
            prop_assert_eq!(head.get("msg_type").and_then(|v| v.as_int()), Some(1));
            prop_assert_eq!(head.get("total_size").and_then(|v| v.as_int()), Some(info.len() as i64));
            prop_assert_eq!(&msg[used..], &info[start..(start + PIECE_SIZE).min(info.len())]);
        } else {
            prop_assert_eq!(head.get("msg_type").and_then(|v| v.as_int()), Some(2));
            prop_assert_eq!(used, msg.len());
        }
        prop_assert_eq!(parse(&msg).unwrap(), Incoming::Other);
    }

    #[test]
    fn udp_announces_round_trip(
        connection_id in any::<u64>(),
        txid in any::<u32>(),
        key in any::<u32>(),
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        port in any::<u16>(),
        uploaded in any::<u64>(),
        event in 0usize..3,
        ip in prop::option::of(any::<u32>()),
    ) {
        let a = announce::Announce {
            info_hash: InfoHash::new(info_hash), peer_id, port, uploaded,
            event: [announce::Event::None, announce::Event::Started, announce::Event::Stopped][event],
            ip: ip.map(|ip| std::net::Ipv4Addr::from(ip).into()),
        };
        let mut packet = Vec::new();
        udp_protocol::write_announce_request(&announce::udp_announce(connection_id, txid, key, &a), &mut packet);
        let udp_protocol::Request::Announce(got) = udp_protocol::parse(&packet).unwrap() else {
            panic!("not read as an announce");
        };
        prop_assert_eq!((got.connection_id, got.transaction_id, got.key), (connection_id, txid, key));
        prop_assert_eq!((got.info_hash, got.peer_id, got.port), (InfoHash::new(info_hash), peer_id, port));
        prop_assert_eq!((got.uploaded, got.downloaded, got.left), (uploaded, 0, 0));
        prop_assert_eq!(got.event, [http_request::Event::None, http_request::Event::Started, http_request::Event::Stopped][event]);
        prop_assert_eq!(got.ip, ip.unwrap_or(0));
        prop_assert_eq!(got.num_want, Some(0));

        let mut connect = Vec::new();
        udp_protocol::write_connect_request(txid, &mut connect);
        prop_assert_eq!(udp_protocol::parse(&connect).unwrap(), udp_protocol::Request::Connect { transaction_id: txid });
    }

    #[test]
    fn udp_answers_round_trip(txid in any::<u32>(), cid in any::<u64>(), interval in any::<u32>(), peers in prop::collection::vec(any::<[u8; 6]>(), 0..50), message in text()) {
        let mut out = Vec::new();
        udp_protocol::write_connect(txid, cid, &mut out);
        prop_assert_eq!(announce::udp_answer(&out, txid).unwrap(), Some(udp_protocol::Response::Connect { transaction_id: txid, connection_id: cid }));
        out.clear();
        let compact = peers.concat();
        udp_protocol::write_announce(txid, interval, 3, 4, &compact, &mut out);
        prop_assert_eq!(announce::udp_answer(&out, txid).unwrap(), Some(udp_protocol::Response::Announce {
            transaction_id: txid, interval, leechers: 3, seeders: 4, peers: &compact[..],
        }));
        // Another transaction's answer is not ours.
        prop_assert_eq!(announce::udp_answer(&out, txid.wrapping_add(1)).unwrap(), None);
        out.clear();
        udp_protocol::write_error(txid, &message, &mut out);
        let err = announce::udp_answer(&out, txid).unwrap_err();
        prop_assert_eq!(err, format!("failure: {message}"));
    }

    #[test]
    fn http_announces_round_trip(
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        port in 1u16..,
        uploaded in any::<u64>(),
        event in 0usize..3,
        ip in prop::option::of(any::<std::net::IpAddr>()),
        path in prop_oneof![Just("/announce"), Just("/announce?passkey=abc")],
    ) {
        let a = announce::Announce {
            info_hash: InfoHash::new(info_hash), peer_id, port, uploaded,
            event: [announce::Event::None, announce::Event::Started, announce::Event::Stopped][event],
            ip,
        };
        let target = announce::request_target(path, &a);
        let query = target.split_once('?').unwrap().1;
        let got = http_request::parse_announce(query.as_bytes()).unwrap();
        prop_assert_eq!((got.info_hash, got.peer_id, got.port), (InfoHash::new(info_hash), peer_id, port));
        prop_assert_eq!((got.uploaded, got.downloaded, got.left), (uploaded, 0, 0));
        prop_assert_eq!(got.event, [http_request::Event::None, http_request::Event::Started, http_request::Event::Stopped][event]);
        prop_assert_eq!((got.numwant, got.compact), (Some(0), true));
        prop_assert_eq!(got.ip, ip);
    }

    #[test]
    fn torrents_round_trip(
        // Every name the loader takes as a path component (it refuses `/`, `\`, NUL, `.` and `..`).
        name in "\\PC{1,24}".prop_filter("a path component", |n| !n.contains(['/', '\\']) && n != "." && n != ".."),
        folder in prop::collection::vec((prop::collection::vec("[a-zA-Z0-9 é_.-]{1,12}".prop_filter("no dot names", |c| c != "." && c != ".."), 1..3), 0u64..200_000), 1..5),
        merkle in any::<bool>(),
        piece_exp in 14u32..20,
        private in any::<bool>(),
        source in prop::option::of(text()),
        comment in prop::option::of(text()),
        trackers in prop::collection::vec("https?://[a-z]{1,8}\\.example(:[0-9]{2,5})?/announce", 0..4),
        web_seeds in prop::collection::vec("https://[a-z]{1,8}\\.example/files/", 0..3),
        creation_date in prop::option::of(0i64..4_000_000_000),
        seed in any::<u8>(),
    ) {
        let format = if merkle { Format::Merkle } else { Format::V1 };
        let web_seeds = if merkle { Vec::new() } else { web_seeds };
        let mut files: Vec<(Vec<String>, u64)> = folder;
        files.sort();
        files.dedup_by(|a, b| a.0 == b.0 || a.0.starts_with(&b.0) || b.0.starts_with(&a.0));
        let total: u64 = files.iter().map(|f| f.1).sum();
        prop_assume!(total > 0);
        let piece_length = 1u64 << piece_exp;
        let pieces = (0..total.div_ceil(piece_length))
            .map(|i| [seed ^ i as u8; 20])
            .collect();
        let meta = NewTorrent {
            name,
            format,
            piece_length,
            single_file: false,
            files: plan_files(&files, format, piece_length),
            hashes: ContentHashes { pieces, v2_files: Vec::new() },
            private,
            source,
            trackers,
            web_seeds,
            comment,
            created_by: Some("bitseed test".into()),
            creation_date,
        }
        .build()
        .unwrap();
        let bytes = meta.to_bytes();
        let back = Metainfo::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &meta);
        // Written again, byte for byte the same: the info hash survives any number of trips.
        prop_assert_eq!(back.to_bytes(), bytes);
    }
}
