//! HTTP announce and scrape requests (BEP 3, 7, 23, 48), parsed from the raw query string.
//!
//! Hand-written over bytes rather than a generic query parser: `info_hash` and `peer_id` are raw
//! binary percent-encoded, not text, and this runs once per announce, so it decodes straight into
//! fixed arrays without allocating.

use std::net::IpAddr;

use thiserror::Error;

pub use crate::metainfo::InfoHash;
pub type PeerId = [u8; 20];

/// Most info hashes in one scrape; more is refused rather than answered at any size.
pub const MAX_SCRAPE_HASHES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    None,
    Started,
    Stopped,
    Completed,
    /// BEP 21: the client stays in the swarm but downloads nothing for now.
    Paused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    /// `None` when absent or negative: the configured default applies.
    pub numwant: Option<u32>,
    pub compact: bool,
    pub no_peer_id: bool,
    /// The `ip` parameter, believed only when the configuration says so.
    pub ip: Option<IpAddr>,
}

/// Why a request is refused; the message is the `failure reason` the client sees.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RequestError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("repeated {0}")]
    Repeated(&'static str),
    #[error("invalid port")]
    Port,
    #[error("too many info_hash (at most {MAX_SCRAPE_HASHES})")]
    TooManyHashes,
}

/// Parses an announce query string (the part after `?`, still percent-encoded).
pub fn parse_announce(query: &[u8]) -> Result<AnnounceRequest, RequestError> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let mut uploaded = None;
    let mut downloaded = None;
    let mut left = None;
    let mut event = Event::None;
    let mut numwant = None;
    let mut compact = true;
    let mut no_peer_id = false;
    let mut ip = None;
    for (key, value) in pairs(query) {
        match key {
            b"info_hash" => {
                if info_hash.is_some() {
                    return Err(RequestError::Repeated("info_hash"));
                }
                let hash = decode_20(value).ok_or(RequestError::Malformed("info_hash"))?;
                info_hash = Some(InfoHash::new(hash));
            }
            b"peer_id" => {
                peer_id = Some(decode_20(value).ok_or(RequestError::Malformed("peer_id"))?)
            }
            b"port" => {
                let p = parse_u64(value).ok_or(RequestError::Port)?;
                port = Some(u16::try_from(p).map_err(|_| RequestError::Port)?);
            }
            b"uploaded" => uploaded = Some(number(value, "uploaded")?),
            b"downloaded" => downloaded = Some(number(value, "downloaded")?),
            b"left" => left = Some(number(value, "left")?),
            b"event" => {
                event = match value {
                    b"" | b"empty" => Event::None,
                    b"started" => Event::Started,
                    b"stopped" => Event::Stopped,
                    b"completed" => Event::Completed,
                    b"paused" => Event::Paused,
                    _ => return Err(RequestError::Malformed("event")),
                }
            }
            b"numwant" => {
                numwant = match value.strip_prefix(b"-") {
                    // Some clients send -1 for "the default".
                    Some(rest) => {
                        parse_u64(rest).ok_or(RequestError::Malformed("numwant"))?;
                        None
                    }
                    None => Some(
                        parse_u64(value)
                            .ok_or(RequestError::Malformed("numwant"))?
                            .min(u64::from(u32::MAX)) as u32,
                    ),
                }
            }
            b"compact" => compact = flag(value, "compact")?,
            b"no_peer_id" => no_peer_id = flag(value, "no_peer_id")?,
            b"ip" => ip = decode_ip(value),
            _ => {}
        }
    }
    Ok(AnnounceRequest {
        info_hash: info_hash.ok_or(RequestError::Missing("info_hash"))?,
        peer_id: peer_id.ok_or(RequestError::Missing("peer_id"))?,
        port: port.ok_or(RequestError::Missing("port"))?,
        uploaded: uploaded.ok_or(RequestError::Missing("uploaded"))?,
        downloaded: downloaded.ok_or(RequestError::Missing("downloaded"))?,
        left: left.ok_or(RequestError::Missing("left"))?,
        event,
        numwant,
        compact,
        no_peer_id,
        ip,
    })
}

/// Parses a scrape query string: zero or more `info_hash`, each exactly 20 bytes once decoded.
pub fn parse_scrape(query: &[u8]) -> Result<Vec<InfoHash>, RequestError> {
    let mut hashes = Vec::new();
    for (key, value) in pairs(query) {
        if key == b"info_hash" {
            if hashes.len() == MAX_SCRAPE_HASHES {
                return Err(RequestError::TooManyHashes);
            }
            let hash = decode_20(value).ok_or(RequestError::Malformed("info_hash"))?;
            hashes.push(InfoHash::new(hash));
        }
    }
    Ok(hashes)
}

fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        })
}

/// Percent-decodes `value` into exactly 20 bytes, or `None`.
fn decode_20(value: &[u8]) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let n = percent_decode_into(value, &mut out)?;
    (n == 20).then_some(out)
}

/// Percent-decodes into `out`; `None` on a bad escape or when the result does not fit.
fn percent_decode_into(value: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    let mut i = 0;
    while i < value.len() {
        let byte = if value[i] == b'%' {
            let hi = hex(*value.get(i + 1)?)?;
            let lo = hex(*value.get(i + 2)?)?;
            i += 3;
            hi << 4 | lo
        } else {
            i += 1;
            value[i - 1]
        };
        *out.get_mut(n)? = byte;
        n += 1;
    }
    Some(n)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A decimal number of at most 20 digits that fits in u64.
fn parse_u64(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &c| {
        let digit = c.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn number(value: &[u8], name: &'static str) -> Result<u64, RequestError> {
    parse_u64(value).ok_or(RequestError::Malformed(name))
}

fn flag(value: &[u8], name: &'static str) -> Result<bool, RequestError> {
    match value {
        b"0" => Ok(false),
        b"1" => Ok(true),
        _ => Err(RequestError::Malformed(name)),
    }
}

/// The `ip` parameter when it is a literal address; host names are ignored (resolving them
/// would let a client make the tracker send DNS queries).
fn decode_ip(value: &[u8]) -> Option<IpAddr> {
    let mut buf = [0u8; 64];
    let n = percent_decode_into(value, &mut buf)?;
    std::str::from_utf8(&buf[..n]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_ESC: &str = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A";
    const HASH: InfoHash = InfoHash::new([
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
        0x12, 0x34, 0x56, 0x78, 0x9a,
    ]);

    fn base() -> String {
        format!("info_hash={HASH_ESC}&peer_id=-BS0001-abcdefghijkl&port=6881&uploaded=1&downloaded=2&left=3")
    }

    #[test]
    fn parses_a_full_announce() {
        let q = format!(
            "{}&event=started&numwant=80&compact=0&no_peer_id=1&key=abc&ip=10.1.2.3",
            base()
        );
        let r = parse_announce(q.as_bytes()).unwrap();
        assert_eq!(r.info_hash, HASH);
        assert_eq!(&r.peer_id, b"-BS0001-abcdefghijkl");
        assert_eq!((r.port, r.uploaded, r.downloaded, r.left), (6881, 1, 2, 3));
        assert_eq!(r.event, Event::Started);
        assert_eq!(r.numwant, Some(80));
        assert!(!r.compact);
        assert!(r.no_peer_id);
        assert_eq!(r.ip, Some("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn defaults() {
        let r = parse_announce(base().as_bytes()).unwrap();
        assert_eq!(r.event, Event::None);
        assert_eq!(r.numwant, None);
        assert!(r.compact);
        assert!(!r.no_peer_id);
        assert_eq!(r.ip, None);
        for (extra, event) in [
            ("&event=", Event::None),
            ("&event=empty", Event::None),
            ("&event=stopped", Event::Stopped),
            ("&event=completed", Event::Completed),
            ("&event=paused", Event::Paused),
        ] {
            let q = base() + extra;
            assert_eq!(parse_announce(q.as_bytes()).unwrap().event, event);
        }
        let q = base() + "&numwant=0";
        assert_eq!(parse_announce(q.as_bytes()).unwrap().numwant, Some(0));
        let q = base() + "&numwant=-1";
        assert_eq!(parse_announce(q.as_bytes()).unwrap().numwant, None);
        let q = base() + "&ip=example.com";
        assert_eq!(parse_announce(q.as_bytes()).unwrap().ip, None);
        let q = base() + "&port=0";
        assert_eq!(parse_announce(q.as_bytes()).unwrap().port, 0);
    }

    #[test]
    fn refuses_malformed_input() {
        let cases: &[(&str, RequestError)] = &[
            ("", RequestError::Missing("info_hash")),
            (
                "info_hash=short&peer_id=x",
                RequestError::Malformed("info_hash"),
            ),
            (
                &format!("info_hash={HASH_ESC}aa"),
                RequestError::Malformed("info_hash"),
            ),
            (
                &format!("info_hash={HASH_ESC}&info_hash={HASH_ESC}"),
                RequestError::Repeated("info_hash"),
            ),
            ("info_hash=%zz%12", RequestError::Malformed("info_hash")),
            ("info_hash=%1", RequestError::Malformed("info_hash")),
            (
                &base().replace("port=6881", "port=65536"),
                RequestError::Port,
            ),
            (&base().replace("port=6881", "port=-1"), RequestError::Port),
            (&base().replace("port=6881", "port="), RequestError::Port),
            (
                &base().replace("&port=6881", ""),
                RequestError::Missing("port"),
            ),
            (
                &base().replace("&left=3", ""),
                RequestError::Missing("left"),
            ),
            (
                &base().replace("left=3", "left=-3"),
                RequestError::Malformed("left"),
            ),
            (
                &base().replace("left=3", "left=99999999999999999999999"),
                RequestError::Malformed("left"),
            ),
            (
                &base().replace("uploaded=1", "uploaded=1x"),
                RequestError::Malformed("uploaded"),
            ),
            (&(base() + "&event=bogus"), RequestError::Malformed("event")),
            (
                &(base() + "&numwant=many"),
                RequestError::Malformed("numwant"),
            ),
            (&(base() + "&compact=2"), RequestError::Malformed("compact")),
            (
                &base().replace("peer_id=-BS0001-abcdefghijkl", "peer_id=abc"),
                RequestError::Malformed("peer_id"),
            ),
        ];
        for (query, want) in cases {
            assert_eq!(
                parse_announce(query.as_bytes()),
                Err(want.clone()),
                "{query}"
            );
        }
    }

    #[test]
    fn scrape_lists_hashes() {
        let q = format!("info_hash={HASH_ESC}&x=1&info_hash={}", "a".repeat(20));
        assert_eq!(
            parse_scrape(q.as_bytes()).unwrap(),
            vec![HASH, InfoHash::new([b'a'; 20])]
        );
        assert_eq!(parse_scrape(b"").unwrap(), Vec::<InfoHash>::new());
        assert_eq!(
            parse_scrape(b"info_hash=abc"),
            Err(RequestError::Malformed("info_hash"))
        );
        let many = vec![format!("info_hash={HASH_ESC}"); MAX_SCRAPE_HASHES + 1].join("&");
        assert_eq!(
            parse_scrape(many.as_bytes()),
            Err(RequestError::TooManyHashes)
        );
    }

    /// Random bytes and mutated queries: every one parses or is refused, none panics.
    #[test]
    fn random_queries_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        };
        let alphabet = b"%&=0123456789abcdefABCDEF_-+.info_hashpeer_idportleftnumwantevent";
        let valid = format!("{}&event=started&numwant=9&ip=1.2.3.4", base()).into_bytes();
        for _ in 0..20_000 {
            let r = next();
            let mut q: Vec<u8> = if r % 2 == 0 {
                valid.clone()
            } else {
                (0..(r >> 8) % 120)
                    .map(|_| alphabet[next() as usize % alphabet.len()])
                    .collect()
            };
            for _ in 0..(r >> 16) % 6 {
                if !q.is_empty() {
                    let at = next() as usize % q.len();
                    q[at] = next() as u8;
                }
            }
            let _ = parse_announce(&q);
            let _ = parse_scrape(&q);
        }
    }
}
