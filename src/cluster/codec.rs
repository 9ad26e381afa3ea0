//! The bytes of a batch of peer deltas, as they travel through Redis (a stream entry or a
//! node's snapshot). Pure. Redis is shared, not trusted blindly: decoding checks every length.
//!
//! ```text
//! batch  = version (1 byte, = 1) · count (u16 BE) · record × count
//! record = flags (bit 0 seeder, bit 1 stopped, bit 2 IPv6) · info hash (20)
//!          · IP (4 or 16) · port (u16 BE) · age in seconds (u16 BE)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::tracker::{InfoHash, PeerDelta};

const VERSION: u8 = 1;
/// Records per batch (the count is 16 bits).
pub const MAX_RECORDS: usize = u16::MAX as usize;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("peer batch: unknown version {0}")]
    Version(u8),
    #[error("peer batch: cut short or too long ({0} bytes)")]
    Length(usize),
}

/// Encodes up to [`MAX_RECORDS`] deltas (the rest are the caller's next batch).
pub fn encode(deltas: &[PeerDelta]) -> Vec<u8> {
    let deltas = &deltas[..deltas.len().min(MAX_RECORDS)];
    let mut out = Vec::with_capacity(3 + deltas.len() * 29);
    out.push(VERSION);
    out.extend_from_slice(&(deltas.len() as u16).to_be_bytes());
    for d in deltas {
        let ip = d.peer.ip().to_canonical();
        let flags = u8::from(d.seeder) | u8::from(d.stopped) << 1 | u8::from(ip.is_ipv6()) << 2;
        out.push(flags);
        out.extend_from_slice(d.info_hash.as_bytes());
        match ip {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
        }
        out.extend_from_slice(&d.peer.port().to_be_bytes());
        out.extend_from_slice(&d.age_secs.to_be_bytes());
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<Vec<PeerDelta>, CodecError> {
    let bad = || CodecError::Length(bytes.len());
    let (&version, rest) = bytes.split_first().ok_or_else(bad)?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let (count, mut rest) = rest.split_at_checked(2).ok_or_else(bad)?;
    let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
    // At least 29 bytes a record: the count is checked before anything is allocated for it.
    if rest.len() < count * 29 {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (&flags, r) = rest.split_first().ok_or_else(bad)?;
        let ip_len = if flags & 4 != 0 { 16 } else { 4 };
        let (hash, r) = r.split_at_checked(20).ok_or_else(bad)?;
        let (ip, r) = r.split_at_checked(ip_len).ok_or_else(bad)?;
        let (tail, r) = r.split_at_checked(4).ok_or_else(bad)?;
        let ip = match <[u8; 4]>::try_from(ip) {
            Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            Err(_) => {
                let v6: [u8; 16] = ip.try_into().map_err(|_| bad())?;
                IpAddr::V6(Ipv6Addr::from(v6))
            }
        };
        let info_hash = InfoHash::from_slice(hash).ok_or_else(bad)?;
        out.push(PeerDelta {
            info_hash,
            peer: SocketAddr::new(ip, u16::from_be_bytes([tail[0], tail[1]])),
            seeder: flags & 1 != 0,
            stopped: flags & 2 != 0,
            age_secs: u16::from_be_bytes([tail[2], tail[3]]),
        });
        rest = r;
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn delta(peer: &str, seeder: bool, stopped: bool, age_secs: u16) -> PeerDelta {
        PeerDelta {
            info_hash: InfoHash::new([7; 20]),
            peer: peer.parse().unwrap(),
            seeder,
            stopped,
            age_secs,
        }
    }

    #[test]
    fn round_trip_both_families() {
        let batch = vec![
            delta("10.0.0.1:6881", true, false, 0),
            delta("[2001:db8::1]:51413", false, true, 300),
        ];
        let bytes = encode(&batch);
        assert_eq!(bytes.len(), 3 + 29 + 41);
        assert_eq!(decode(&bytes).unwrap(), batch);
    }

    #[test]
    fn bad_bytes_are_refused() {
        assert_eq!(decode(&[]), Err(CodecError::Length(0)));
        assert_eq!(decode(&[2, 0, 0]), Err(CodecError::Version(2)));
        // A count of 65535 over three bytes: refused before allocating.
        assert_eq!(decode(&[1, 0xff, 0xff]), Err(CodecError::Length(3)));
        let mut bytes = encode(&[delta("10.0.0.1:1", false, false, 0)]);
        bytes.push(0);
        assert!(decode(&bytes).is_err());
        bytes.truncate(bytes.len() - 2);
        assert!(decode(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }
}
