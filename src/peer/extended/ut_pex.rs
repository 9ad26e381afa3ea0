//! BEP 11 peer exchange (`ut_pex`), sent by the seeder: each peer is told about the other peers
//! of its swarm (connected to us, or known to our tracker) as they come and go, at most once a
//! minute and 50 at a time, so peers that reached the seed by DHT or another tracker still find
//! each other. What peers send us is accepted and ignored (a seed needs no peers).
//!
//! ```text
//! d5:added<6 bytes per IPv4 peer>7:added.f<1 byte each>6:added6<18 bytes per IPv6 peer>
//!  8:added6.f<1 byte each>7:dropped<6 bytes each>8:dropped6<18 bytes each>e
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::bencode::Value;

pub const NAME: &str = "ut_pex";
/// BEP 11: at most one message a minute.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// The first message waits this long after the connection opens (for the peer's extended
/// handshake, with its listen port and its `ut_pex` id).
pub const FIRST: Duration = Duration::from_secs(2);
/// How soon a swarm with nothing new is looked at again.
const RECHECK: Duration = Duration::from_secs(3);
/// Peers added, and peers dropped, per message (BEP 11's limit).
pub const MAX_PER_MESSAGE: usize = 50;
/// Peers we remember having told one peer about.
const MAX_SENT: usize = 500;

/// The payload of one message.
pub fn encode(added: &[SocketAddr], dropped: &[SocketAddr]) -> Vec<u8> {
    let mut d = Value::dict();
    let compact = |list: &[SocketAddr], v6: bool| {
        let mut out = Vec::new();
        for a in list {
            match (a, v6) {
                (SocketAddr::V4(a), false) => out.extend_from_slice(&a.ip().octets()),
                (SocketAddr::V6(a), true) => out.extend_from_slice(&a.ip().octets()),
                _ => continue,
            }
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        out
    };
    for (key, v6) in [("added", false), ("added6", true)] {
        let c = compact(added, v6);
        let n = c.len() / if v6 { 18 } else { 6 };
        d.insert(key, Value::Bytes(c));
        // Flags: nothing known of them (no encryption preference, not known to be seeds).
        d.insert(&format!("{key}.f"), Value::Bytes(vec![0; n]));
    }
    d.insert("dropped", Value::Bytes(compact(dropped, false)));
    d.insert("dropped6", Value::Bytes(compact(dropped, true)));
    d.encode()
}

/// What one peer has been told, and when.
#[derive(Debug)]
pub struct PexState {
    told: HashSet<SocketAddr>,
    next: Instant,
}

impl PexState {
    pub fn new(opened: Instant) -> Self {
        PexState {
            told: HashSet::new(),
            next: opened + FIRST,
        }
    }

    /// Whether a message may be sent at `now` (cheap: checked before the swarm is gathered).
    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// The next message, if one is due at `now`: the peers of `swarm` (the peer itself, `peer`,
    /// left out) not yet told, and those told that are gone.
    pub fn due(
        &mut self,
        now: Instant,
        swarm: &[SocketAddr],
        peer: Option<SocketAddr>,
    ) -> Option<(Vec<SocketAddr>, Vec<SocketAddr>)> {
        if now < self.next {
            return None;
        }
        let current: HashSet<SocketAddr> = swarm
            .iter()
            .copied()
            .filter(|a| Some(*a) != peer && a.port() != 0)
            .collect();
        let dropped: Vec<SocketAddr> = self
            .told
            .iter()
            .filter(|a| !current.contains(a))
            .take(MAX_PER_MESSAGE)
            .copied()
            .collect();
        let room = MAX_SENT.saturating_sub(self.told.len() - dropped.len());
        let added: Vec<SocketAddr> = current
            .iter()
            .filter(|a| !self.told.contains(a))
            .take(MAX_PER_MESSAGE.min(room))
            .copied()
            .collect();
        if added.is_empty() && dropped.is_empty() {
            // Nothing to tell: look again in a while, not at every tick.
            self.next = now + RECHECK;
            return None;
        }
        for a in &dropped {
            self.told.remove(a);
        }
        self.told.extend(added.iter().copied());
        self.next = now + INTERVAL;
        Some((added, dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::decode;

    fn a(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 6881))
    }

    #[test]
    fn byte_exact() {
        let six: SocketAddr = "[::1]:80".parse().unwrap();
        let bytes = encode(&[a(1), six], &[a(2)]);
        let mut expected = b"d5:added6:\x0a\x00\x00\x01\x1a\xe17:added.f1:\x006:added618:".to_vec();
        expected.extend_from_slice(&[0; 15]);
        expected.extend_from_slice(&[1, 0, 80]);
        expected
            .extend_from_slice(b"8:added6.f1:\x007:dropped6:\x0a\x00\x00\x02\x1a\xe18:dropped60:e");
        assert_eq!(bytes, expected);
        assert!(decode(&bytes).is_ok());
    }

    #[test]
    fn once_a_minute_with_what_changed() {
        let t0 = Instant::now();
        let mut s = PexState::new(t0);
        assert_eq!(s.due(t0, &[a(1)], None), None, "not before FIRST");
        let (added, dropped) = s.due(t0 + FIRST, &[a(1), a(2), a(3)], Some(a(3))).unwrap();
        assert_eq!(added.len(), 2);
        assert!(!added.contains(&a(3)), "not the peer itself");
        assert!(dropped.is_empty());
        let later = t0 + FIRST + Duration::from_secs(1);
        assert!(!s.is_due(later), "not within a minute");
        let (added, mut dropped) = s.due(t0 + FIRST + INTERVAL, &[a(2), a(4)], None).unwrap();
        dropped.sort();
        assert_eq!((added, dropped), (vec![a(4)], vec![a(1)]));
        // Nothing new: nothing sent, and looked at again in RECHECK.
        let t = t0 + FIRST + INTERVAL * 2;
        assert_eq!(s.due(t, &[a(2), a(4)], None), None);
        assert!(!s.is_due(t + RECHECK / 2));
        assert!(s.is_due(t + RECHECK));
    }

    #[test]
    fn bounded_per_message_and_in_memory() {
        let t0 = Instant::now();
        let mut s = PexState::new(t0);
        let many: Vec<SocketAddr> = (0..2000u32)
            .map(|i| SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 1)))
            .collect();
        let mut now = t0 + FIRST;
        for _ in 0..20 {
            if let Some((added, dropped)) = s.due(now, &many, None) {
                assert!(added.len() <= MAX_PER_MESSAGE && dropped.len() <= MAX_PER_MESSAGE);
            }
            now += INTERVAL;
        }
        assert!(s.told.len() <= MAX_SENT);
    }
}
