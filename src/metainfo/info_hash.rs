//! A torrent's 20-byte identity on the wire (trackers, handshakes, the DHT): the v1 info hash,
//! or the v2 one truncated (BEP 52). A type of its own, so it is never mixed up with the other
//! 20-byte values beside it: peer ids, DHT node ids, SHA-1 piece hashes.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct InfoHash([u8; 20]);

impl InfoHash {
    pub const fn new(bytes: [u8; 20]) -> Self {
        InfoHash(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The hash in `bytes`, if it is exactly 20 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 20]>::try_from(bytes).ok().map(InfoHash)
    }

    /// From 40 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(InfoHash(out))
    }

    /// 40 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<[u8; 20]> for InfoHash {
    fn from(bytes: [u8; 20]) -> Self {
        InfoHash(bytes)
    }
}

impl From<InfoHash> for [u8; 20] {
    fn from(h: InfoHash) -> Self {
        h.0
    }
}

impl AsRef<[u8]> for InfoHash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_bytes_round_trip() {
        let h = InfoHash::new([0xab; 20]);
        assert_eq!(h.hex(), "ab".repeat(20));
        assert_eq!(h.to_string(), h.hex());
        assert_eq!(InfoHash::from_hex(&h.hex()), Some(h));
        assert_eq!(InfoHash::from_hex(&"AB".repeat(20)), Some(h));
        assert_eq!(InfoHash::from_hex("ab"), None);
        assert_eq!(InfoHash::from_slice(&[0xab; 20]), Some(h));
        assert_eq!(InfoHash::from_slice(&[0xab; 19]), None);
        assert_eq!(format!("{h:?}"), format!("InfoHash({})", "ab".repeat(20)));
    }
}
