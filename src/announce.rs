//! Announcing a seed to a torrent's HTTP trackers (BEP 3, compact BEP 23): the query and the
//! response reading are pure; `announce` is the small HTTP/1.0 client around them.
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
    #[error("unsupported tracker URL `{0}` (only http:// is spoken)")]
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

/// One announce over HTTP/1.0; returns the interval to wait before the next.
pub async fn announce(url: &str, a: &Announce) -> Result<Duration, AnnounceError> {
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
