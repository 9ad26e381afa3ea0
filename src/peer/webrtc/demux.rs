//! Which browser session a datagram on the WebRTC socket belongs to: by its source address
//! once that address has been seen in a connectivity check, and before that by the ICE
//! username of the STUN check (RFC 8445 7.2.2: `USERNAME` is `our-ufrag:their-ufrag`), whose
//! first part is the ufrag we put in that session's answer.
//!
//! Pure: no sockets, no clock. A datagram that names no session is dropped by the caller.

use std::collections::HashMap;
use std::net::SocketAddr;

/// Source addresses one session may be reached from at most: a browser checks a few candidate
/// pairs (host, server-reflexive, IPv4 and IPv6); a flood of checks from spoofed addresses
/// must not grow the table.
pub const MAX_ADDRS_PER_SESSION: usize = 8;

/// STUN (RFC 8489 5): a 20-byte header, the first byte 0 to 3 (RFC 7983: DTLS is 20 to 63,
/// RTP and RTCP 128 to 191), then the magic cookie.
const STUN_HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const USERNAME: u16 = 0x0006;
/// RFC 8489 14.3: less than 513 bytes.
const MAX_USERNAME: usize = 512;

/// The USERNAME attribute of a STUN message, if `datagram` is one and has it.
pub fn stun_username(datagram: &[u8]) -> Option<&[u8]> {
    if datagram.len() < STUN_HEADER || datagram[0] > 3 || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(STUN_HEADER..STUN_HEADER + body_len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == USERNAME {
            return (len <= MAX_USERNAME).then_some(value);
        }
        // Values are padded to a multiple of four bytes.
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// The ufrag a STUN check names as its recipient's (ours), if it is one.
pub fn recipient_ufrag(datagram: &[u8]) -> Option<&[u8]> {
    let name = stun_username(datagram)?;
    let colon = name.iter().position(|&b| b == b':')?;
    Some(&name[..colon])
}

/// The table of sessions: each known by the ufrag of its answer and by the source addresses
/// its checks came from.
#[derive(Debug)]
pub struct Demux<T> {
    sessions: HashMap<u64, Route<T>>,
    by_ufrag: HashMap<Vec<u8>, u64>,
    by_addr: HashMap<SocketAddr, u64>,
}

#[derive(Debug)]
struct Route<T> {
    ufrag: Vec<u8>,
    addrs: Vec<SocketAddr>,
    to: T,
}

impl<T> Default for Demux<T> {
    fn default() -> Self {
        Demux {
            sessions: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
        }
    }
}

impl<T> Demux<T> {
    /// Adds session `id`, whose answer carries `ufrag`; false if that ufrag is taken (the
    /// caller makes another).
    pub fn insert(&mut self, id: u64, ufrag: &[u8], to: T) -> bool {
        if self.by_ufrag.contains_key(ufrag) || self.sessions.contains_key(&id) {
            return false;
        }
        self.by_ufrag.insert(ufrag.to_vec(), id);
        self.sessions.insert(
            id,
            Route {
                ufrag: ufrag.to_vec(),
                addrs: Vec::new(),
                to,
            },
        );
        true
    }

    /// Forgets session `id` and its addresses.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let route = self.sessions.remove(&id)?;
        self.by_ufrag.remove(&route.ufrag);
        for a in &route.addrs {
            self.by_addr.remove(a);
        }
        Some(route.to)
    }

    /// The session `datagram` from `source` is for: the one that address belongs to, else the
    /// one a STUN check names (and the address is then learned for it, up to
    /// `MAX_ADDRS_PER_SESSION`).
    pub fn route(&mut self, source: SocketAddr, datagram: &[u8]) -> Option<(u64, &T)> {
        if let Some(&id) = self.by_addr.get(&source) {
            return self.sessions.get(&id).map(|r| (id, &r.to));
        }
        let ufrag = recipient_ufrag(datagram)?;
        let id = *self.by_ufrag.get(ufrag)?;
        let route = self.sessions.get_mut(&id)?;
        if route.addrs.len() < MAX_ADDRS_PER_SESSION {
            route.addrs.push(source);
            self.by_addr.insert(source, id);
        }
        Some((id, &route.to))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN binding request with USERNAME `name` (and a PRIORITY before it, as browsers send).
    fn check(name: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&0x0024u16.to_be_bytes());
        attrs.extend_from_slice(&4u16.to_be_bytes());
        attrs.extend_from_slice(&[1, 2, 3, 4]);
        attrs.extend_from_slice(&USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(name.len() as u16).to_be_bytes());
        attrs.extend_from_slice(name);
        attrs.resize(attrs.len().div_ceil(4) * 4, 0);
        let mut d = vec![0x00, 0x01];
        d.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        d.extend_from_slice(&MAGIC_COOKIE);
        d.extend_from_slice(&[7; 12]);
        d.extend_from_slice(&attrs);
        d
    }

    #[test]
    fn reads_the_username_of_a_stun_check() {
        assert_eq!(stun_username(&check(b"abc:xyz")), Some(&b"abc:xyz"[..]));
        assert_eq!(recipient_ufrag(&check(b"abc:xyz")), Some(&b"abc"[..]));
        assert_eq!(recipient_ufrag(&check(b"nocolon")), None);
        // Not STUN: DTLS (first byte 20..63), too short, wrong cookie.
        let mut dtls = check(b"abc:xyz");
        dtls[0] = 22;
        assert_eq!(stun_username(&dtls), None);
        assert_eq!(stun_username(&check(b"a:b")[..19]), None);
        let mut cookie = check(b"a:b");
        cookie[4] = 0;
        assert_eq!(stun_username(&cookie), None);
    }

    #[test]
    fn hostile_lengths_are_refused_not_read_past() {
        let mut d = check(b"abc:xyz");
        // A body longer than the datagram.
        d[2..4].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(stun_username(&d), None);
        // An attribute longer than the body.
        let mut d = check(b"abc:xyz");
        d[STUN_HEADER + 2..STUN_HEADER + 4].copy_from_slice(&60000u16.to_be_bytes());
        assert_eq!(stun_username(&d), None);
        // A username over RFC 8489's bound.
        let long = vec![b'a'; 600];
        assert_eq!(stun_username(&check(&long)), None);
        // Every truncation of a good check: no panic.
        let d = check(b"abc:xyz");
        for n in 0..d.len() {
            let _ = stun_username(&d[..n]);
        }
    }

    #[test]
    fn routes_by_ufrag_then_by_learned_address() {
        let mut m = Demux::default();
        assert!(m.insert(1, b"one", 'a'));
        assert!(m.insert(2, b"two", 'b'));
        assert!(!m.insert(3, b"one", 'c'), "ufrag taken");
        let (x, y): (SocketAddr, SocketAddr) = (
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:5001".parse().unwrap(),
        );
        // DTLS from an unknown address: nobody's.
        assert_eq!(m.route(x, &[22, 254, 253]), None);
        assert_eq!(m.route(x, &check(b"two:peer")), Some((2, &'b')));
        // Now anything from x is session 2's.
        assert_eq!(m.route(x, &[22, 254, 253]), Some((2, &'b')));
        assert_eq!(m.route(y, &check(b"nobody:peer")), None);
        assert_eq!(m.route(y, &check(b"one:peer")), Some((1, &'a')));
        assert_eq!(m.remove(2), Some('b'));
        assert_eq!(m.route(x, &[22, 254, 253]), None);
        assert_eq!(m.route(x, &check(b"two:peer")), None);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_session_learns_few_addresses() {
        let mut m = Demux::default();
        m.insert(1, b"one", ());
        for port in 0..100u16 {
            let a = SocketAddr::from(([127, 0, 0, 1], 6000 + port));
            assert!(m.route(a, &check(b"one:peer")).is_some());
        }
        assert_eq!(m.by_addr.len(), MAX_ADDRS_PER_SESSION);
        m.remove(1);
        assert!(m.by_addr.is_empty() && m.len() == 0);
    }
}
