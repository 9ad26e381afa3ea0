//! Announcing a seed to a torrent's trackers: HTTP (BEP 3, compact BEP 23) and UDP (BEP 15). The
//! queries, packets and response reading are pure; `announce` is the small client around them.
//!
//! A hand-written client rather than an HTTP crate: one GET with a bounded response is all a
//! seed needs, and the info hash must go out as exactly-escaped raw bytes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bencode::decode;
use crate::metainfo::InfoHash;
use crate::tracker::http_request::Event as TrackerEvent;
use crate::tracker::udp_protocol;

/// Longest tracker response read: a seed's announce answer is small.
const MAX_RESPONSE: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Error)]
pub enum AnnounceError {
    #[error("unsupported tracker URL `{0}` (http:// and udp:// are spoken)")]
    Unsupported(String),
    #[error("tracker `{url}`: {why}")]
    Failed { url: String, why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Started,
    Stopped,
    /// A regular re-announce.
    None,
}

#[derive(Debug, Clone)]
pub struct Announce {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub event: Event,
    pub ip: Option<IpAddr>,
}

/// `http://host[:port]/path[?query]` split into (host, port, path with query).
pub fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, 80),
    };
    if host.is_empty() {
        return None;
    }
    Some((
        host.trim_matches(['[', ']']).to_string(),
        port,
        path.to_string(),
    ))
}

fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path and query of the announce GET.
pub fn request_target(path: &str, a: &Announce) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut q = format!(
        "{path}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded=0&left=0&compact=1&numwant=0",
        escape(a.info_hash.as_bytes()),
        escape(&a.peer_id),
        a.port,
        a.uploaded
    );
    match a.event {
        Event::Started => q.push_str("&event=started"),
        Event::Stopped => q.push_str("&event=stopped"),
        Event::None => {}
    }
    if let Some(ip) = a.ip {
        q.push_str(&format!("&ip={ip}"));
    }
    q
}

/// The interval the tracker asks for, or its failure reason.
pub fn read_response(body: &[u8]) -> Result<Duration, String> {
    let node = decode(body).map_err(|e| format!("response is not bencode: {e}"))?;
    if let Some(reason) = node.get("failure reason") {
        return Err(format!(
            "failure: {}",
            String::from_utf8_lossy(reason.as_bytes().unwrap_or_default())
        ));
    }
    let interval = node
        .get("interval")
        .and_then(|i| i.as_int())
        .ok_or("response without interval")?;
    // Bounded so a hostile tracker can make us neither spin nor go silent for days.
    Ok(Duration::from_secs(interval.clamp(30, 3600) as u64))
}

/// One announce; returns the interval to wait before the next.
pub async fn announce(url: &str, a: &Announce) -> Result<Duration, AnnounceError> {
    if url.starts_with("udp://") {
        return announce_udp(url, a).await;
    }
    let (host, port, path) =
        split_url(url).ok_or_else(|| AnnounceError::Unsupported(url.to_string()))?;
    let failed = |why: String| AnnounceError::Failed {
        url: url.to_string(),
        why,
    };
    let work = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        let req = format!(
            "GET {} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: bitseed/{}\r\nConnection: close\r\n\r\n",
            request_target(&path, a),
            env!("CARGO_PKG_VERSION")
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("malformed HTTP response")?;
        let status = buf[..split]
            .split(|&b| b == b' ')
            .nth(1)
            .unwrap_or_default();
        if status != b"200" {
            return Err(format!("HTTP status {}", String::from_utf8_lossy(status)));
        }
        read_response(&buf[split + 4..])
    };
    match tokio::time::timeout(TIMEOUT, work).await {
        Ok(r) => r.map_err(failed),
        Err(_) => Err(failed("timed out".into())),
    }
}

// ---- BEP 15: UDP trackers ----

/// BEP 15 retries with a timeout of 15 × 2^n s; a seed announcing on its own schedule gives up
/// sooner and tries again at the next interval.
const UDP_TRIES: u32 = 3;
const UDP_TIMEOUT: Duration = Duration::from_secs(3);

/// `udp://host:port[/...]` → (host, port).
pub fn split_udp_url(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("udp://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    if host.is_empty() {
        return None;
    }
    Some((
        host.trim_matches(['[', ']']).to_string(),
        port.parse().ok()?,
    ))
}

/// Our announce as BEP 15 puts it: a seed (nothing downloaded, nothing left) wanting no peers.
pub fn udp_announce(
    connection_id: u64,
    txid: u32,
    key: u32,
    a: &Announce,
) -> udp_protocol::Announce {
    udp_protocol::Announce {
        connection_id,
        transaction_id: txid,
        info_hash: a.info_hash,
        peer_id: a.peer_id,
        downloaded: 0,
        left: 0,
        uploaded: a.uploaded,
        event: match a.event {
            Event::None => TrackerEvent::None,
            Event::Started => TrackerEvent::Started,
            Event::Stopped => TrackerEvent::Stopped,
        },
        ip: match a.ip {
            Some(IpAddr::V4(ip)) => u32::from(ip),
            _ => 0,
        },
        key,
        num_want: Some(0),
        port: a.port,
    }
}

/// Reads a tracker's answer to `txid`: `Ok(None)` for a stray packet (another transaction, or
/// not an answer at all).
pub fn udp_answer(packet: &[u8], txid: u32) -> Result<Option<udp_protocol::Response<'_>>, String> {
    match udp_protocol::parse_response(packet) {
        Ok(r) if r.transaction_id() != txid => Ok(None),
        Ok(udp_protocol::Response::Error { message, .. }) => {
            Err(format!("failure: {}", String::from_utf8_lossy(message)))
        }
        Ok(r) => Ok(Some(r)),
        Err(e) if e.transaction_id == Some(txid) => Err(e.message.to_string()),
        Err(_) => Ok(None),
    }
}

/// What the UDP announcer reads from an answer of the kind it expects.
type Pick = fn(&udp_protocol::Response<'_>) -> Option<u64>;

async fn announce_udp(url: &str, a: &Announce) -> Result<Duration, AnnounceError> {
    let failed = |why: String| AnnounceError::Failed {
        url: url.to_string(),
        why,
    };
    let (host, port) =
        split_udp_url(url).ok_or_else(|| AnnounceError::Unsupported(url.to_string()))?;
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| failed(e.to_string()))?
        .next()
        .ok_or_else(|| failed("no address".into()))?;
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| failed(e.to_string()))?;
    socket
        .connect(target)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let random = || {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32
    };

    // One request, sent up to UDP_TRIES times; what `pick` reads from the answer to it (parsed
    // once, on the receive buffer), or `what` when the answer is of another kind.
    let exchange = |request: Vec<u8>, txid: u32, what: &'static str, pick: Pick| {
        let socket = &socket;
        async move {
            let mut buf = [0u8; 2048];
            for _ in 0..UDP_TRIES {
                socket.send(&request).await.map_err(|e| e.to_string())?;
                let deadline = tokio::time::Instant::now() + UDP_TIMEOUT;
                loop {
                    let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                        Err(_) => break,
                        Ok(r) => r.map_err(|e| e.to_string())?,
                    };
                    if let Some(answer) = udp_answer(&buf[..n], txid)? {
                        return pick(&answer).ok_or_else(|| what.to_string());
                    }
                }
            }
            Err("no answer".to_string())
        }
    };

    let txid = random();
    let mut request = Vec::new();
    udp_protocol::write_connect_request(txid, &mut request);
    let connection_id = exchange(
        request,
        txid,
        "answered a connect with something else",
        |r| match r {
            udp_protocol::Response::Connect { connection_id, .. } => Some(*connection_id),
            _ => None,
        },
    )
    .await
    .map_err(failed)?;
    let txid = random();
    let mut request = Vec::new();
    let ours = udp_announce(connection_id, txid, random(), a);
    udp_protocol::write_announce_request(&ours, &mut request);
    let interval = exchange(
        request,
        txid,
        "answered an announce with something else",
        |r| match r {
            udp_protocol::Response::Announce { interval, .. } => Some(u64::from(*interval)),
            _ => None,
        },
    )
    .await
    .map_err(failed)?;
    Ok(Duration::from_secs(interval.clamp(30, 3600)))
}

/// The address trackers should list for us, when configured.
pub fn advertised(ip: Option<IpAddr>, listen: SocketAddr) -> Option<IpAddr> {
    ip.or_else(|| (!listen.ip().is_unspecified()).then(|| listen.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_queries() {
        assert_eq!(
            split_url("http://t.example:8080/announce?k=1"),
            Some(("t.example".into(), 8080, "/announce?k=1".into()))
        );
        assert_eq!(
            split_url("http://127.0.0.1/a"),
            Some(("127.0.0.1".into(), 80, "/a".into()))
        );
        assert_eq!(split_url("udp://x:1"), None);
        let a = Announce {
            info_hash: InfoHash::new([
                0x12, b'a', 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7e,
            ]),
            peer_id: *b"-BS0100-abcdefghijkl",
            port: 6881,
            uploaded: 5,
            event: Event::Started,
            ip: None,
        };
        assert_eq!(
            request_target("/announce?k=1", &a),
            "/announce?k=1&info_hash=%12a%FF%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00~\
             &peer_id=-BS0100-abcdefghijkl&port=6881&uploaded=5&downloaded=0&left=0&compact=1\
             &numwant=0&event=started"
        );
    }

    #[test]
    fn udp_packets_byte_exact() {
        assert_eq!(
            split_udp_url("udp://tracker.example:6969/announce"),
            Some(("tracker.example".into(), 6969))
        );
        assert_eq!(split_udp_url("udp://x"), None);
        let mut connect = Vec::new();
        udp_protocol::write_connect_request(0x01020304, &mut connect);
        assert_eq!(
            connect,
            [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4]
        );
        let a = Announce {
            info_hash: InfoHash::new([0xAA; 20]),
            peer_id: [0xBB; 20],
            port: 0x1AE1,
            uploaded: 7,
            event: Event::Stopped,
            ip: Some("10.0.0.1".parse().unwrap()),
        };
        let mut p = Vec::new();
        udp_protocol::write_announce_request(
            &udp_announce(0x1122334455667788, 9, 0xCAFEBABE, &a),
            &mut p,
        );
        let mut expected = vec![
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0, 0, 0, 1, 0, 0, 0, 9,
        ];
        expected.extend_from_slice(&[0xAA; 20]);
        expected.extend_from_slice(&[0xBB; 20]);
        expected.extend_from_slice(&[0; 16]); // downloaded, left
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]); // uploaded
        expected.extend_from_slice(&[0, 0, 0, 3]); // stopped
        expected.extend_from_slice(&[10, 0, 0, 1]);
        expected.extend_from_slice(&[0xCA, 0xFE, 0xBA, 0xBE]);
        expected.extend_from_slice(&[0, 0, 0, 0]); // num_want
        expected.extend_from_slice(&[0x1A, 0xE1]);
        assert_eq!(p, expected);

        let reply = [0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            udp_answer(&reply, 9),
            Ok(Some(udp_protocol::Response::Announce {
                transaction_id: 9,
                interval: 0x708,
                leechers: 0,
                seeders: 1,
                peers: &[],
            }))
        );
        assert_eq!(udp_answer(&reply, 8), Ok(None), "another transaction");
        assert!(udp_answer(b"\0\0\0\x03\0\0\0\x09nope", 9).is_err());
        assert_eq!(udp_answer(&reply[..5], 9), Ok(None));
    }

    #[test]
    fn responses() {
        assert_eq!(
            read_response(b"d8:intervali1800e5:peers0:e"),
            Ok(Duration::from_secs(1800))
        );
        assert_eq!(
            read_response(b"d8:intervali1e5:peers0:e"),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            read_response(b"d14:failure reason4:nopee"),
            Err("failure: nope".into())
        );
        assert!(read_response(b"garbage").is_err());
    }
}
