//! UDP tracker packets (BEP 15) with BEP 41 options, parsed from and written to bytes, in
//! both directions: the tracker parses requests and writes answers, the announcer, the load
//! tool and the tests write requests and parse answers, all with this one codec.
//!
//! ```text
//! connect   req: protocol_id u64 | action=0 u32 | transaction u32                       (16)
//! announce  req: connection u64 | action=1 | transaction | info_hash 20 | peer_id 20 |
//!                downloaded u64 | left u64 | uploaded u64 | event u32 | ip u32 | key u32 |
//!                num_want i32 | port u16 | BEP 41 options…                              (98+)
//! scrape    req: connection u64 | action=2 | transaction | info_hash 20 × n             (16+20n)
//! connect   res: action=0 | transaction | connection u64
//! announce  res: action=1 | transaction | interval | leechers | seeders | (ip, port) × n
//! scrape    res: action=2 | transaction | (seeders, completed, leechers) × n
//! error     res: action=3 | transaction | message
//! ```
//! All integers big-endian.

use thiserror::Error;

use super::http_request::{Event, InfoHash, PeerId};

pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// BEP 15: "up to about 74 torrents can be scraped at once".
pub const MAX_SCRAPE_HASHES: usize = 74;

const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const SCRAPE: u32 = 2;
const ERROR: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Connect {
        transaction_id: u32,
    },
    Announce(Announce),
    Scrape {
        connection_id: u64,
        transaction_id: u32,
        /// Whole 20-byte info hashes back to back, at most [`MAX_SCRAPE_HASHES`] of them; read
        /// them with `chunks_exact(20)`.
        info_hashes: &'a [u8],
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    pub event: Event,
    /// The `IP address` field; 0 means "the sender's".
    pub ip: u32,
    pub key: u32,
    /// `None` for -1 (or any negative): the default.
    pub num_want: Option<u32>,
    pub port: u16,
}

/// A datagram that is not a request we answer. With a transaction ID the client can be told why;
/// without one (too short to hold it, or not our protocol) the datagram is dropped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{message}")]
pub struct ParseError {
    pub transaction_id: Option<u32>,
    pub message: &'static str,
}

fn err(transaction_id: Option<u32>, message: &'static str) -> ParseError {
    ParseError {
        transaction_id,
        message,
    }
}

/// Parses one datagram.
pub fn parse(packet: &[u8]) -> Result<Request<'_>, ParseError> {
    if packet.len() < 16 {
        return Err(err(None, "packet too short"));
    }
    let connection_id = u64_at(packet, 0);
    let action = u32_at(packet, 8);
    let tx = u32_at(packet, 12);
    match action {
        CONNECT if connection_id == PROTOCOL_ID => Ok(Request::Connect { transaction_id: tx }),
        CONNECT => Err(err(None, "bad protocol id")),
        ANNOUNCE => parse_announce(packet, connection_id, tx),
        SCRAPE => {
            let body = &packet[16..];
            let n = (body.len() / 20).min(MAX_SCRAPE_HASHES);
            if n == 0 {
                return Err(err(Some(tx), "scrape without info_hash"));
            }
            Ok(Request::Scrape {
                connection_id,
                transaction_id: tx,
                info_hashes: &body[..n * 20],
            })
        }
        _ => Err(err(Some(tx), "unknown action")),
    }
}

fn parse_announce(packet: &[u8], connection_id: u64, tx: u32) -> Result<Request<'_>, ParseError> {
    if packet.len() < 98 {
        return Err(err(Some(tx), "announce too short"));
    }
    let event = match u32_at(packet, 80) {
        0 => Event::None,
        1 => Event::Completed,
        2 => Event::Started,
        3 => Event::Stopped,
        _ => return Err(err(Some(tx), "unknown event")),
    };
    skip_options(&packet[98..]).map_err(|m| err(Some(tx), m))?;
    let num_want = i32::from_be_bytes(array(packet, 92));
    Ok(Request::Announce(Announce {
        connection_id,
        transaction_id: tx,
        info_hash: InfoHash::new(array(packet, 16)),
        peer_id: array(packet, 36),
        downloaded: u64_at(packet, 56),
        left: u64_at(packet, 64),
        uploaded: u64_at(packet, 72),
        event,
        ip: u32_at(packet, 84),
        key: u32_at(packet, 88),
        num_want: u32::try_from(num_want).ok(),
        port: u16::from_be_bytes(array(packet, 96)),
    }))
}

/// Walks BEP 41 options: 0 ends them, 1 is a one-byte NOP, every other type has a length byte.
/// We use none of them (URLData included), but a truncated one marks a malformed packet.
fn skip_options(mut options: &[u8]) -> Result<(), &'static str> {
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            0 => return Ok(()),
            1 => options = rest,
            _ => {
                let (&len, rest) = rest.split_first().ok_or("truncated BEP 41 option")?;
                options = rest
                    .get(usize::from(len)..)
                    .ok_or("truncated BEP 41 option")?;
            }
        }
    }
    Ok(())
}

fn array<const N: usize>(packet: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&packet[at..at + N]);
    out
}

fn u32_at(packet: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(packet, at))
}

fn u64_at(packet: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(array(packet, at))
}

pub fn write_connect(transaction_id: u32, connection_id: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&CONNECT.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&connection_id.to_be_bytes());
}

/// `peers` holds compact entries of one family: 6 bytes (v4) or 18 bytes (v6) each.
pub fn write_announce(
    transaction_id: u32,
    interval: u32,
    leechers: u32,
    seeders: u32,
    peers: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&interval.to_be_bytes());
    out.extend_from_slice(&leechers.to_be_bytes());
    out.extend_from_slice(&seeders.to_be_bytes());
    out.extend_from_slice(peers);
}

/// One scrape entry: seeders, completed, leechers (in the packet's order).
pub fn write_scrape(transaction_id: u32, entries: &[(u32, u32, u32)], out: &mut Vec<u8>) {
    out.extend_from_slice(&SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for (seeders, completed, leechers) in entries {
        out.extend_from_slice(&seeders.to_be_bytes());
        out.extend_from_slice(&completed.to_be_bytes());
        out.extend_from_slice(&leechers.to_be_bytes());
    }
}

pub fn write_error(transaction_id: u32, message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&ERROR.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
}

/// The code of `event` in an announce; BEP 21's `paused` has none in BEP 15 and goes as none.
fn event_code(event: Event) -> u32 {
    match event {
        Event::None | Event::Paused => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
    }
}

/// A client's connect request.
pub fn write_connect_request(transaction_id: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
    out.extend_from_slice(&CONNECT.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
}

/// A client's announce request (98 bytes, no BEP 41 options): what `parse` reads back as `a`.
pub fn write_announce_request(a: &Announce, out: &mut Vec<u8>) {
    out.extend_from_slice(&a.connection_id.to_be_bytes());
    out.extend_from_slice(&ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&a.transaction_id.to_be_bytes());
    out.extend_from_slice(a.info_hash.as_bytes());
    out.extend_from_slice(&a.peer_id);
    out.extend_from_slice(&a.downloaded.to_be_bytes());
    out.extend_from_slice(&a.left.to_be_bytes());
    out.extend_from_slice(&a.uploaded.to_be_bytes());
    out.extend_from_slice(&event_code(a.event).to_be_bytes());
    out.extend_from_slice(&a.ip.to_be_bytes());
    out.extend_from_slice(&a.key.to_be_bytes());
    let num_want = a
        .num_want
        .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
    out.extend_from_slice(&num_want.to_be_bytes());
    out.extend_from_slice(&a.port.to_be_bytes());
}

/// A client's scrape request for `info_hashes` (at most [`MAX_SCRAPE_HASHES`] are read).
pub fn write_scrape_request(
    connection_id: u64,
    transaction_id: u32,
    info_hashes: &[InfoHash],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for h in info_hashes {
        out.extend_from_slice(h.as_bytes());
    }
}

/// A tracker's answer, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    Connect {
        transaction_id: u32,
        connection_id: u64,
    },
    Announce {
        transaction_id: u32,
        interval: u32,
        leechers: u32,
        seeders: u32,
        /// Compact peers: 6 bytes each over IPv4, 18 over IPv6 (BEP 15 by the socket's family).
        peers: &'a [u8],
    },
    Scrape {
        transaction_id: u32,
        /// Seeders, completed, leechers, 12 bytes per torrent, whole entries only; read them
        /// with [`scrape_entries`].
        entries: &'a [u8],
    },
    Error {
        transaction_id: u32,
        message: &'a [u8],
    },
}

impl Response<'_> {
    pub fn transaction_id(&self) -> u32 {
        match self {
            Response::Connect { transaction_id, .. }
            | Response::Announce { transaction_id, .. }
            | Response::Scrape { transaction_id, .. }
            | Response::Error { transaction_id, .. } => *transaction_id,
        }
    }
}

/// Parses one answer datagram.
pub fn parse_response(packet: &[u8]) -> Result<Response<'_>, ParseError> {
    if packet.len() < 8 {
        return Err(err(None, "answer too short"));
    }
    let tx = u32_at(packet, 4);
    match u32_at(packet, 0) {
        CONNECT if packet.len() >= 16 => Ok(Response::Connect {
            transaction_id: tx,
            connection_id: u64_at(packet, 8),
        }),
        ANNOUNCE if packet.len() >= 20 => Ok(Response::Announce {
            transaction_id: tx,
            interval: u32_at(packet, 8),
            leechers: u32_at(packet, 12),
            seeders: u32_at(packet, 16),
            peers: &packet[20..],
        }),
        SCRAPE => {
            let body = &packet[8..];
            Ok(Response::Scrape {
                transaction_id: tx,
                entries: &body[..body.len() / 12 * 12],
            })
        }
        ERROR => Ok(Response::Error {
            transaction_id: tx,
            message: &packet[8..],
        }),
        CONNECT | ANNOUNCE => Err(err(Some(tx), "answer too short")),
        _ => Err(err(Some(tx), "unknown action")),
    }
}

/// A scrape answer's entries: (seeders, completed, leechers) per torrent.
pub fn scrape_entries(entries: &[u8]) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
    entries
        .chunks_exact(12)
        .map(|e| (u32_at(e, 0), u32_at(e, 4), u32_at(e, 8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce_packet(event: u32, num_want: i32) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        p.extend_from_slice(&[0xaa; 20]);
        p.extend_from_slice(&[0xbb; 20]);
        p.extend_from_slice(&100u64.to_be_bytes());
        p.extend_from_slice(&200u64.to_be_bytes());
        p.extend_from_slice(&300u64.to_be_bytes());
        p.extend_from_slice(&event.to_be_bytes());
        p.extend_from_slice(&[10, 0, 0, 9]);
        p.extend_from_slice(&77u32.to_be_bytes());
        p.extend_from_slice(&num_want.to_be_bytes());
        p.extend_from_slice(&6881u16.to_be_bytes());
        assert_eq!(p.len(), 98);
        p
    }

    #[test]
    fn connect_request_and_response() {
        let mut p = PROTOCOL_ID.to_be_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(
            parse(&p),
            Ok(Request::Connect {
                transaction_id: 0x0102_0304
            })
        );
        p[0] = 9;
        assert_eq!(parse(&p), Err(err(None, "bad protocol id")));
        let mut out = Vec::new();
        write_connect(0x0102_0304, 0x1122_3344_5566_7788, &mut out);
        assert_eq!(
            out,
            [0, 0, 0, 0, 1, 2, 3, 4, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
    }

    #[test]
    fn announce_request() {
        let Ok(Request::Announce(a)) = parse(&announce_packet(2, -1)) else {
            panic!()
        };
        assert_eq!(
            a,
            Announce {
                connection_id: 0x1122_3344_5566_7788,
                transaction_id: 0xdead_beef,
                info_hash: InfoHash::new([0xaa; 20]),
                peer_id: [0xbb; 20],
                downloaded: 100,
                left: 200,
                uploaded: 300,
                event: Event::Started,
                ip: 0x0a00_0009,
                key: 77,
                num_want: None,
                port: 6881,
            }
        );
        for (code, event) in [(0, Event::None), (1, Event::Completed), (3, Event::Stopped)] {
            let Ok(Request::Announce(a)) = parse(&announce_packet(code, 0)) else {
                panic!()
            };
            assert_eq!((a.event, a.num_want), (event, Some(0)));
        }
        assert_eq!(
            parse(&announce_packet(4, 0)),
            Err(err(Some(0xdead_beef), "unknown event"))
        );
        assert_eq!(
            parse(&announce_packet(0, 0)[..97]),
            Err(err(Some(0xdead_beef), "announce too short"))
        );
    }

    #[test]
    fn bep41_options_are_skipped() {
        let ok: &[&[u8]] = &[
            &[
                2, 12, b'/', b'd', b'i', b'r', b'?', b'a', b'=', b'b', b'&', b'c', b'=', b'd',
            ],
            &[
                2, 12, b'/', b'd', b'i', b'r', b'?', b'a', b'=', b'b', b'&', b'c', b'=', b'd', 1,
                1, 0,
            ],
            &[2, 0],
            &[1, 1, 1],
            // After EndOfOptions anything goes.
            &[0, 2, 200],
            // Unknown option types carry a length and are skipped.
            &[9, 2, 0, 0, 2, 1, b'x'],
        ];
        for options in ok {
            let mut p = announce_packet(0, 5);
            p.extend_from_slice(options);
            assert!(matches!(parse(&p), Ok(Request::Announce(_))), "{options:?}");
        }
        let bad: &[&[u8]] = &[&[2], &[2, 5, b'a'], &[1, 9, 3, 0, 0]];
        for options in bad {
            let mut p = announce_packet(0, 5);
            p.extend_from_slice(options);
            assert_eq!(
                parse(&p),
                Err(err(Some(0xdead_beef), "truncated BEP 41 option")),
                "{options:?}"
            );
        }
    }

    #[test]
    fn announce_response() {
        let mut out = Vec::new();
        write_announce(7, 1800, 2, 3, &[127, 0, 0, 1, 0x1a, 0xe1], &mut out);
        assert_eq!(
            out,
            [
                0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0x07, 0x08, 0, 0, 0, 2, 0, 0, 0, 3, 127, 0, 0, 1,
                0x1a, 0xe1
            ]
        );
    }

    #[test]
    fn scrape_request_and_response() {
        let mut p = 5u64.to_be_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 9]);
        assert_eq!(parse(&p), Err(err(Some(9), "scrape without info_hash")));
        p.extend_from_slice(&[1; 20]);
        p.extend_from_slice(&[2; 20]);
        p.extend_from_slice(&[3; 7]); // a partial hash is ignored
        let mut two = vec![1u8; 20];
        two.extend_from_slice(&[2; 20]);
        assert_eq!(
            parse(&p),
            Ok(Request::Scrape {
                connection_id: 5,
                transaction_id: 9,
                info_hashes: &two
            })
        );
        for _ in 0..100 {
            p.extend_from_slice(&[4; 20]);
        }
        let Ok(Request::Scrape { info_hashes, .. }) = parse(&p) else {
            panic!()
        };
        assert_eq!(info_hashes.len(), MAX_SCRAPE_HASHES * 20);
        let mut out = Vec::new();
        write_scrape(9, &[(1, 2, 3), (4, 5, 6)], &mut out);
        assert_eq!(
            out,
            [
                0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5,
                0, 0, 0, 6
            ]
        );
    }

    #[test]
    fn error_response_and_junk() {
        let mut out = Vec::new();
        write_error(0x0a0b_0c0d, "bad", &mut out);
        assert_eq!(out, [0, 0, 0, 3, 0x0a, 0x0b, 0x0c, 0x0d, b'b', b'a', b'd']);
        assert_eq!(parse(&[0; 15]), Err(err(None, "packet too short")));
        let mut p = vec![0u8; 16];
        p[11] = 7;
        p[15] = 1;
        assert_eq!(parse(&p), Err(err(Some(1), "unknown action")));
    }

    /// Random and mutated datagrams: every one parses or is refused, none panics.
    #[test]
    fn random_datagrams_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let valid = announce_packet(2, -1);
        for _ in 0..20_000 {
            let r = next();
            let mut p = if r % 2 == 0 {
                valid.clone()
            } else {
                vec![0u8; (r >> 8) as usize % 200]
            };
            let flips = (r >> 16) % 8;
            for _ in 0..flips {
                let len = p.len();
                if len > 0 {
                    let at = next() as usize % len;
                    p[at] = next() as u8;
                }
            }
            if r % 5 == 0 {
                p.truncate((r >> 24) as usize % (p.len() + 1));
            }
            if r % 7 == 0 {
                p.extend((0..(r >> 32) % 40).map(|_| next() as u8));
            }
            let _ = parse(&p);
        }
    }

    #[test]
    fn client_requests_read_back_as_written() {
        let mut out = Vec::new();
        write_connect_request(7, &mut out);
        assert_eq!(parse(&out), Ok(Request::Connect { transaction_id: 7 }));
        let a = Announce {
            connection_id: 0x1122_3344_5566_7788,
            transaction_id: 9,
            info_hash: InfoHash::new([1; 20]),
            peer_id: [2; 20],
            downloaded: 3,
            left: 4,
            uploaded: 5,
            event: Event::Completed,
            ip: 0x7f00_0001,
            key: 6,
            num_want: None,
            port: 6881,
        };
        out.clear();
        write_announce_request(&a, &mut out);
        assert_eq!(out.len(), 98);
        assert_eq!(parse(&out), Ok(Request::Announce(a.clone())));
        out.clear();
        write_scrape_request(
            1,
            2,
            &[InfoHash::new([3; 20]), InfoHash::new([4; 20])],
            &mut out,
        );
        let Ok(Request::Scrape { info_hashes, .. }) = parse(&out) else {
            panic!("not a scrape");
        };
        assert_eq!(info_hashes.len(), 40);
    }

    #[test]
    fn answers_read_back_as_written() {
        let mut out = Vec::new();
        write_connect(5, 99, &mut out);
        assert_eq!(
            parse_response(&out),
            Ok(Response::Connect {
                transaction_id: 5,
                connection_id: 99
            })
        );
        out.clear();
        write_announce(6, 1800, 2, 3, &[127, 0, 0, 1, 0x1a, 0xe1], &mut out);
        assert_eq!(
            parse_response(&out),
            Ok(Response::Announce {
                transaction_id: 6,
                interval: 1800,
                leechers: 2,
                seeders: 3,
                peers: &[127, 0, 0, 1, 0x1a, 0xe1],
            })
        );
        out.clear();
        write_scrape(8, &[(1, 2, 3), (4, 5, 6)], &mut out);
        out.push(0); // a partial entry is left out
        let Ok(Response::Scrape { entries, .. }) = parse_response(&out) else {
            panic!("not a scrape answer");
        };
        assert_eq!(
            scrape_entries(entries).collect::<Vec<_>>(),
            [(1, 2, 3), (4, 5, 6)]
        );
        out.clear();
        write_error(9, "no", &mut out);
        assert_eq!(
            parse_response(&out),
            Ok(Response::Error {
                transaction_id: 9,
                message: b"no"
            })
        );
        // Truncated answers are errors, not panics.
        assert!(parse_response(&out[..4]).is_err());
        assert!(parse_response(&[0, 0, 0, 1, 0, 0, 0, 1, 0]).is_err());
    }
}
