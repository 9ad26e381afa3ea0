//! Bencoded HTTP tracker answers (BEP 3, 7, 23, 24, 48), written by hand: keys are emitted in
//! sorted order directly, and the compact peer strings are copied in without building a tree.
//! The tests compare each against `bencode::Value`, whose dictionaries sort their keys.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use super::http_request::{InfoHash, PeerId};

/// Swarm figures sent with every answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Seeders now in the swarm.
    pub complete: u32,
    /// Leechers now in the swarm.
    pub incomplete: u32,
    /// Peers that ever completed the download.
    pub downloaded: u64,
}

/// What an announce answer carries besides its peers.
#[derive(Debug, Clone, Copy)]
pub struct AnnounceAnswer {
    pub counts: Counts,
    pub interval: u32,
    pub min_interval: u32,
    /// BEP 24: the address the tracker sees the client at.
    pub external_ip: Option<IpAddr>,
}

/// Writes a compact answer (BEP 23 / BEP 7): `peers4` holds 6-byte entries, `peers6` 18-byte
/// entries; `peers` is always present, `peers6` only when there are v6 peers.
pub fn write_compact(answer: &AnnounceAnswer, peers4: &[u8], peers6: &[u8], out: &mut Vec<u8>) {
    write_head(answer, out);
    bytes(out, b"peers");
    bytes(out, peers4);
    if !peers6.is_empty() {
        bytes(out, b"peers6");
        bytes(out, peers6);
    }
    out.push(b'e');
}

/// One peer of the dictionary model (BEP 3).
#[derive(Debug, Clone, Copy)]
pub struct DictPeer {
    pub addr: SocketAddr,
    pub peer_id: Option<PeerId>,
}

/// Writes the dictionary model (`compact=0`): `peers` is a list of `{ip, peer id, port}`, v4 and
/// v6 alike; `peer id` is left out when `no_peer_id` or when it is unknown.
pub fn write_dictionary(
    answer: &AnnounceAnswer,
    peers: &[DictPeer],
    no_peer_id: bool,
    out: &mut Vec<u8>,
) {
    write_head(answer, out);
    bytes(out, b"peers");
    out.push(b'l');
    for peer in peers {
        out.push(b'd');
        bytes(out, b"ip");
        let mut ip = [0u8; 48];
        let mut cursor = std::io::Cursor::new(&mut ip[..]);
        // An IP address always fits in 48 bytes, so the write cannot fail.
        let _ = write!(cursor, "{}", peer.addr.ip());
        let n = cursor.position() as usize;
        bytes(out, &ip[..n]);
        if let (Some(id), false) = (peer.peer_id, no_peer_id) {
            bytes(out, b"peer id");
            bytes(out, &id);
        }
        bytes(out, b"port");
        int(out, u64::from(peer.addr.port()));
        out.push(b'e');
    }
    out.push(b'e');
    out.push(b'e');
}

fn write_head(answer: &AnnounceAnswer, out: &mut Vec<u8>) {
    out.push(b'd');
    bytes(out, b"complete");
    int(out, u64::from(answer.counts.complete));
    bytes(out, b"downloaded");
    int(out, answer.counts.downloaded);
    match answer.external_ip {
        Some(IpAddr::V4(ip)) => {
            bytes(out, b"external ip");
            bytes(out, &ip.octets());
        }
        Some(IpAddr::V6(ip)) => {
            bytes(out, b"external ip");
            bytes(out, &ip.octets());
        }
        None => {}
    }
    bytes(out, b"incomplete");
    int(out, u64::from(answer.counts.incomplete));
    bytes(out, b"interval");
    int(out, u64::from(answer.interval));
    bytes(out, b"min interval");
    int(out, u64::from(answer.min_interval));
}

/// Writes a scrape answer (BEP 48); `files` must be sorted by info hash and free of repeats.
pub fn write_scrape(files: &[(InfoHash, Counts)], out: &mut Vec<u8>) {
    out.extend_from_slice(b"d5:filesd");
    for (hash, counts) in files {
        bytes(out, hash.as_bytes());
        out.push(b'd');
        bytes(out, b"complete");
        int(out, u64::from(counts.complete));
        bytes(out, b"downloaded");
        int(out, counts.downloaded);
        bytes(out, b"incomplete");
        int(out, u64::from(counts.incomplete));
        out.push(b'e');
    }
    out.extend_from_slice(b"ee");
}

/// Writes `d14:failure reason<n>:<message>e`.
pub fn write_failure(message: &str, out: &mut Vec<u8>) {
    out.push(b'd');
    bytes(out, b"failure reason");
    bytes(out, message.as_bytes());
    out.push(b'e');
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    int_digits(out, b.len() as u64);
    out.push(b':');
    out.extend_from_slice(b);
}

fn int(out: &mut Vec<u8>, i: u64) {
    out.push(b'i');
    int_digits(out, i);
    out.push(b'e');
}

fn int_digits(out: &mut Vec<u8>, mut i: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (i % 10) as u8;
        i /= 10;
        if i == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::Value;

    fn answer(external_ip: Option<IpAddr>) -> AnnounceAnswer {
        AnnounceAnswer {
            counts: Counts {
                complete: 3,
                incomplete: 12,
                downloaded: 1234567890123,
            },
            interval: 1800,
            min_interval: 900,
            external_ip,
        }
    }

    fn head(v: &mut Value) {
        v.insert("complete", Value::Int(3));
        v.insert("incomplete", Value::Int(12));
        v.insert("downloaded", Value::Int(1234567890123));
        v.insert("interval", Value::Int(1800));
        v.insert("min interval", Value::Int(900));
    }

    #[test]
    fn compact_v4_exact_bytes() {
        let mut out = Vec::new();
        write_compact(&answer(None), &[10, 0, 0, 1, 0x1a, 0xe1], &[], &mut out);
        assert_eq!(
            out,
            b"d8:completei3e10:downloadedi1234567890123e10:incompletei12e8:intervali1800e\
              12:min intervali900e5:peers6:\x0a\x00\x00\x01\x1a\xe1e"
        );
    }

    #[test]
    fn compact_v4_and_v6_with_external_ip_matches_sorted_encoder() {
        let p4 = [1u8, 2, 3, 4, 0, 80, 5, 6, 7, 8, 0, 81];
        let p6: Vec<u8> = (0..18).collect();
        let ext: IpAddr = "192.0.2.7".parse().unwrap();
        let mut out = Vec::new();
        write_compact(&answer(Some(ext)), &p4, &p6, &mut out);
        let mut v = Value::dict();
        head(&mut v);
        v.insert("external ip", Value::Bytes(vec![192, 0, 2, 7]));
        v.insert("peers", Value::Bytes(p4.to_vec()));
        v.insert("peers6", Value::Bytes(p6));
        assert_eq!(out, v.encode());
    }

    #[test]
    fn empty_peer_list_still_has_peers_key() {
        let mut out = Vec::new();
        write_compact(&answer(Some("::1".parse().unwrap())), &[], &[], &mut out);
        let mut v = Value::dict();
        head(&mut v);
        v.insert(
            "external ip",
            Value::Bytes([0u8; 15].iter().chain(&[1]).copied().collect()),
        );
        v.insert("peers", Value::Bytes(vec![]));
        assert_eq!(out, v.encode());
    }

    #[test]
    fn dictionary_model_with_and_without_peer_id() {
        let peers = [
            DictPeer {
                addr: "10.0.0.1:6881".parse().unwrap(),
                peer_id: Some([b'A'; 20]),
            },
            DictPeer {
                addr: "[2001:db8::1]:51413".parse().unwrap(),
                peer_id: None,
            },
        ];
        let mut out = Vec::new();
        write_dictionary(&answer(None), &peers, false, &mut out);
        assert_eq!(
            out,
            b"d8:completei3e10:downloadedi1234567890123e10:incompletei12e8:intervali1800e\
              12:min intervali900e5:peersld2:ip8:10.0.0.17:peer id20:AAAAAAAAAAAAAAAAAAAA\
              4:porti6881eed2:ip11:2001:db8::14:porti51413eeee"
                .as_slice()
        );
        let mut out = Vec::new();
        write_dictionary(&answer(None), &peers, true, &mut out);
        assert!(!out.windows(7).any(|w| w == b"peer id"));
        assert!(out
            .ends_with(b"5:peersld2:ip8:10.0.0.14:porti6881eed2:ip11:2001:db8::14:porti51413eeee"));
    }

    #[test]
    fn scrape_and_failure_exact_bytes() {
        let mut out = Vec::new();
        let c = Counts {
            complete: 11,
            incomplete: 19,
            downloaded: 13772,
        };
        write_scrape(
            &[
                (InfoHash::new([b'x'; 20]), c),
                (InfoHash::new([b'y'; 20]), Counts::default()),
            ],
            &mut out,
        );
        assert_eq!(
            out,
            b"d5:filesd20:xxxxxxxxxxxxxxxxxxxxd8:completei11e10:downloadedi13772e10:incompletei19ee\
              20:yyyyyyyyyyyyyyyyyyyyd8:completei0e10:downloadedi0e10:incompletei0eeee"
                .as_slice()
        );
        let mut out = Vec::new();
        write_scrape(&[], &mut out);
        assert_eq!(out, b"d5:filesdee");
        let mut out = Vec::new();
        write_failure("unregistered torrent", &mut out);
        assert_eq!(out, b"d14:failure reason20:unregistered torrente");
    }

    /// xorshift64*, so the randomized tests below are the same on every run.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The hand-written writers against the sorted-key encoder over many random answers.
    #[test]
    fn random_answers_match_the_reference_encoder() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..500 {
            let r = rng(&mut seed);
            let counts = Counts {
                complete: rng(&mut seed) as u32,
                incomplete: (r >> 8) as u32 % 1000,
                // Within i64, the reference encoder's integer type.
                downloaded: rng(&mut seed) >> 1 >> (r % 63),
            };
            let external_ip = match r % 3 {
                0 => None,
                1 => Some(IpAddr::from((rng(&mut seed) as u32).to_be_bytes())),
                _ => Some(IpAddr::from(
                    (u128::from(rng(&mut seed)) << 64).to_be_bytes(),
                )),
            };
            let answer = AnnounceAnswer {
                counts,
                interval: (r >> 16) as u32,
                min_interval: (r >> 24) as u32,
                external_ip,
            };
            let p4: Vec<u8> = (0..(r >> 32) % 5 * 6)
                .map(|_| rng(&mut seed) as u8)
                .collect();
            let p6: Vec<u8> = (0..(r >> 40) % 3 * 18)
                .map(|_| rng(&mut seed) as u8)
                .collect();
            let mut want = Value::dict();
            want.insert("complete", Value::Int(i64::from(counts.complete)));
            want.insert("incomplete", Value::Int(i64::from(counts.incomplete)));
            want.insert("downloaded", Value::Int(counts.downloaded as i64));
            want.insert("interval", Value::Int(i64::from(answer.interval)));
            want.insert("min interval", Value::Int(i64::from(answer.min_interval)));
            match external_ip {
                Some(IpAddr::V4(ip)) => {
                    want.insert("external ip", Value::Bytes(ip.octets().to_vec()))
                }
                Some(IpAddr::V6(ip)) => {
                    want.insert("external ip", Value::Bytes(ip.octets().to_vec()))
                }
                None => {}
            }
            want.insert("peers", Value::Bytes(p4.clone()));
            if !p6.is_empty() {
                want.insert("peers6", Value::Bytes(p6.clone()));
            }
            let mut out = Vec::new();
            write_compact(&answer, &p4, &p6, &mut out);
            assert_eq!(out, want.encode());
        }
    }
}
