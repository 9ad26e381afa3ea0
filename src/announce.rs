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
    pub info_hash: [u8; 20],
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
        escape(&a.info_hash),
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

const UDP_PROTOCOL_ID: u64 = 0x41727101980;
const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_ERROR: u32 = 3;
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

pub fn udp_connect_request(txid: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&UDP_PROTOCOL_ID.to_be_bytes());
    out[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    out[12..].copy_from_slice(&txid.to_be_bytes());
    out
}

pub fn udp_announce_request(connection_id: u64, txid: u32, key: u32, a: &Announce) -> [u8; 98] {
    let event: u32 = match a.event {
        Event::None => 0,
        Event::Started => 2,
        Event::Stopped => 3,
    };
    let ip = match a.ip {
        Some(IpAddr::V4(ip)) => u32::from(ip),
        _ => 0,
    };
    let mut out = [0u8; 98];
    out[..8].copy_from_slice(&connection_id.to_be_bytes());
    out[8..12].copy_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out[12..16].copy_from_slice(&txid.to_be_bytes());
    out[16..36].copy_from_slice(&a.info_hash);
    out[36..56].copy_from_slice(&a.peer_id);
    // downloaded 0, left 0: a seed.
    out[72..80].copy_from_slice(&a.uploaded.to_be_bytes());
    out[80..84].copy_from_slice(&event.to_be_bytes());
    out[84..88].copy_from_slice(&ip.to_be_bytes());
    out[88..92].copy_from_slice(&key.to_be_bytes());
    // num_want 0: a seed wants no peers.
    out[96..98].copy_from_slice(&a.port.to_be_bytes());
    out
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a UDP tracker reply to `txid`: `Ok(None)` for a stray packet (another transaction).
pub fn udp_response(packet: &[u8], txid: u32, action: u32) -> Result<Option<&[u8]>, String> {
    if packet.len() < 8 || be32(packet, 4) != txid {
        return Ok(None);
    }
    match be32(packet, 0) {
        ACTION_ERROR => Err(format!(
            "failure: {}",
            String::from_utf8_lossy(&packet[8..])
        )),
        got if got == action => Ok(Some(&packet[8..])),
        got => Err(format!("unexpected action {got}")),
    }
}

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

    let exchange = |request: Vec<u8>, txid: u32, action: u32| {
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
                    if let Some(body) = udp_response(&buf[..n], txid, action)? {
                        return Ok(body.to_vec());
                    }
                }
            }
            Err("no answer".to_string())
        }
    };

    let txid = random();
    let body = exchange(udp_connect_request(txid).to_vec(), txid, ACTION_CONNECT)
        .await
        .map_err(failed)?;
    if body.len() < 8 {
        return Err(failed("short connect response".into()));
    }
    let connection_id = u64::from_be_bytes(body[..8].try_into().unwrap_or_default());
    let txid = random();
    let body = exchange(
        udp_announce_request(connection_id, txid, random(), a).to_vec(),
        txid,
        ACTION_ANNOUNCE,
    )
    .await
    .map_err(failed)?;
    if body.len() < 12 {
        return Err(failed("short announce response".into()));
    }
    Ok(Duration::from_secs(
        u64::from(be32(&body, 0)).clamp(30, 3600),
    ))
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
            info_hash: [
                0x12, b'a', 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7e,
            ],
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
        assert_eq!(
            udp_connect_request(0x01020304),
            [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4]
        );
        let a = Announce {
            info_hash: [0xAA; 20],
            peer_id: [0xBB; 20],
            port: 0x1AE1,
            uploaded: 7,
            event: Event::Stopped,
            ip: Some("10.0.0.1".parse().unwrap()),
        };
        let p = udp_announce_request(0x1122334455667788, 9, 0xCAFEBABE, &a);
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
        assert_eq!(p.to_vec(), expected);

        let reply = [0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 7, 8, 0, 0, 0, 0];
        assert_eq!(udp_response(&reply, 9, 1), Ok(Some(&reply[8..])));
        assert_eq!(udp_response(&reply, 8, 1), Ok(None), "another transaction");
        assert!(udp_response(b"\0\0\0\x03\0\0\0\x09nope", 9, 1).is_err());
        assert_eq!(udp_response(&reply[..5], 9, 1), Ok(None));
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
