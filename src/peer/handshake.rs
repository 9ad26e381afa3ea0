//! BEP 3 handshake, with the reserved bits of BEP 6 (fast), BEP 10 (extended) and BEP 52 (v2
//! upgrade).
//!
//! ```text
//! 0      1                   20        28          48        68
//! +------+-------------------+---------+-----------+---------+
//! | 19   | "BitTorrent protocol" | reserved | info hash | peer id |
//! +------+-------------------+---------+-----------+---------+
//! ```

use super::WireError;
use crate::metainfo::InfoHash;

pub const HANDSHAKE_LEN: usize = 68;
/// The handshake's first 20 bytes, the same in every plaintext handshake: what tells it from
/// an encrypted (MSE) one.
pub const PLAIN_HEADER: &[u8; 20] = b"\x13BitTorrent protocol";

/// reserved[5] & 0x10: BEP 10 extension protocol.
const EXTENDED: (usize, u8) = (5, 0x10);
/// reserved[7] & 0x04: BEP 6 fast extension.
const FAST: (usize, u8) = (7, 0x04);
/// reserved[7] & 0x01: BEP 5, the peer runs a DHT node (its port follows in a PORT message).
const DHT: (usize, u8) = (7, 0x01);
/// reserved[7] & 0x10: BEP 52, "also supports v2" on a hybrid torrent's v1 handshake.
const V2: (usize, u8) = (7, 0x10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// Our handshake: fast and extended always, the v2 bit when the torrent has a v2 side.
    pub fn ours(info_hash: InfoHash, peer_id: [u8; 20], v2: bool) -> Self {
        let mut reserved = [0; 8];
        reserved[EXTENDED.0] |= EXTENDED.1;
        reserved[FAST.0] |= FAST.1;
        if v2 {
            reserved[V2.0] |= V2.1;
        }
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    /// Says we run a DHT node (BEP 5).
    pub fn with_dht(mut self) -> Self {
        self.reserved[DHT.0] |= DHT.1;
        self
    }

    pub fn dht(&self) -> bool {
        self.reserved[DHT.0] & DHT.1 != 0
    }

    pub fn extended(&self) -> bool {
        self.reserved[EXTENDED.0] & EXTENDED.1 != 0
    }
    pub fn fast(&self) -> bool {
        self.reserved[FAST.0] & FAST.1 != 0
    }
    pub fn v2(&self) -> bool {
        self.reserved[V2.0] & V2.1 != 0
    }

    pub fn serialize(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0; HANDSHAKE_LEN];
        out[..20].copy_from_slice(PLAIN_HEADER);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(self.info_hash.as_bytes());
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }

    /// Parses a handshake from the start of `buf`: `Ok(None)` until 68 bytes are there, an error
    /// as soon as the bytes seen cannot start a handshake (a garbage peer is dropped at once).
    pub fn parse(buf: &[u8]) -> Result<Option<Handshake>, WireError> {
        let seen = buf.len().min(PLAIN_HEADER.len());
        if buf[..seen] != PLAIN_HEADER[..seen] {
            return Err(WireError::BadHandshake);
        }
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let mut h = Handshake {
            reserved: [0; 8],
            info_hash: InfoHash::default(),
            peer_id: [0; 20],
        };
        let mut info_hash = [0; 20];
        h.reserved.copy_from_slice(&buf[20..28]);
        info_hash.copy_from_slice(&buf[28..48]);
        h.info_hash = InfoHash::new(info_hash);
        h.peer_id.copy_from_slice(&buf[48..68]);
        Ok(Some(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_exact_round_trip() {
        let h = Handshake::ours(InfoHash::new([0xAA; 20]), *b"-BS0100-abcdefghijkl", true);
        let bytes = h.serialize();
        let mut expected = vec![19u8];
        expected.extend_from_slice(b"BitTorrent protocol");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x14]);
        expected.extend_from_slice(&[0xAA; 20]);
        expected.extend_from_slice(b"-BS0100-abcdefghijkl");
        assert_eq!(bytes.to_vec(), expected);
        assert_eq!(Handshake::parse(&bytes).unwrap(), Some(h));
        assert!(h.fast() && h.extended() && h.v2());
        let plain = Handshake::ours(InfoHash::new([1; 20]), [2; 20], false);
        assert!(!plain.v2() && !plain.dht());
        // BEP 5: the last reserved byte's lowest bit.
        let dht = plain.with_dht();
        assert_eq!(dht.serialize()[27], 0x05);
        assert!(dht.dht() && dht.fast());
    }

    #[test]
    fn partial_and_garbage() {
        let bytes = Handshake::ours(InfoHash::new([1; 20]), [2; 20], false).serialize();
        assert_eq!(Handshake::parse(&bytes[..0]).unwrap(), None);
        assert_eq!(Handshake::parse(&bytes[..67]).unwrap(), None);
        assert_eq!(
            Handshake::parse(b"GET / HTTP/1.1\r\n"),
            Err(WireError::BadHandshake)
        );
        let mut wrong = bytes;
        wrong[5] = b'x';
        assert_eq!(Handshake::parse(&wrong[..6]), Err(WireError::BadHandshake));
    }
}
