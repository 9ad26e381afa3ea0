//! BEP 10 extension protocol: the extended handshake, and one module per extension we speak
//! (BEP 9 `ut_metadata`, BEP 30 `Tr_hashpiece`, BEP 11 `ut_pex`).

pub mod hashpiece;
pub mod ut_metadata;
pub mod ut_pex;

use crate::bencode::{decode, Value};

use super::WireError;

/// Extended message id 0 is the handshake itself.
pub const HANDSHAKE_ID: u8 = 0;
/// The ids we assign to the extensions we accept messages for (the peer sends with these).
pub const UT_METADATA_ID: u8 = 1;
pub const HASHPIECE_ID: u8 = 2;
pub const UT_PEX_ID: u8 = 3;

/// Longest extended handshake we decode: real ones are a few hundred bytes.
const MAX_HANDSHAKE: usize = 16 * 1024;

/// What we tell a peer in our extended handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurHandshake {
    pub metadata_size: Option<u64>,
    /// BEP 30 torrents only.
    pub hashpiece: bool,
    /// How many requests the peer may keep outstanding.
    pub reqq: u32,
    pub client: String,
    /// The peer's address as we see it (`yourip`: 4 or 16 bytes).
    pub your_ip: Option<Vec<u8>>,
    /// BEP 11 peer exchange (not for private torrents).
    pub pex: bool,
}

impl OurHandshake {
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Value::dict();
        m.insert("ut_metadata", Value::Int(UT_METADATA_ID.into()));
        if self.hashpiece {
            m.insert(hashpiece::NAME, Value::Int(HASHPIECE_ID.into()));
        }
        if self.pex {
            m.insert(ut_pex::NAME, Value::Int(UT_PEX_ID.into()));
        }
        let mut d = Value::dict();
        d.insert("m", m);
        if let Some(size) = self.metadata_size {
            d.insert("metadata_size", Value::Int(size as i64));
        }
        d.insert("reqq", Value::Int(self.reqq.into()));
        d.insert("v", Value::str(&self.client));
        if let Some(ip) = &self.your_ip {
            d.insert("yourip", Value::Bytes(ip.clone()));
        }
        d.encode()
    }
}

/// The ids a peer asked us to use for the extensions we send (0 or absent = not supported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerExtensions {
    pub ut_metadata: Option<u8>,
    pub hashpiece: Option<u8>,
    pub ut_pex: Option<u8>,
    /// The port the peer listens on (`p`), when it says.
    pub listen_port: Option<u16>,
}

impl PeerExtensions {
    /// Reads a peer's extended handshake. Unknown keys are ignored; ids outside 1..=255 mean
    /// "not supported" (BEP 10: 0 disables an extension).
    pub fn parse(payload: &[u8]) -> Result<PeerExtensions, WireError> {
        if payload.len() > MAX_HANDSHAKE {
            return Err(WireError::BadExtended("handshake too long"));
        }
        let node = decode(payload).map_err(|_| WireError::BadExtended("handshake not bencode"))?;
        let m = node
            .get("m")
            .ok_or(WireError::BadExtended("handshake without m"))?;
        let id = |name: &str| {
            m.get(name)
                .and_then(|v| v.as_int())
                .and_then(|i| u8::try_from(i).ok())
                .filter(|&i| i != 0)
        };
        Ok(PeerExtensions {
            ut_metadata: id("ut_metadata"),
            hashpiece: id(hashpiece::NAME),
            ut_pex: id(ut_pex::NAME),
            listen_port: node
                .get("p")
                .and_then(|v| v.as_int())
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_handshake_byte_exact() {
        let h = OurHandshake {
            metadata_size: Some(31235),
            hashpiece: false,
            reqq: 500,
            client: "bitseed 0.1.0".into(),
            your_ip: Some(vec![127, 0, 0, 1]),
            pex: false,
        };
        let mut expected = b"d1:md11:ut_metadatai1ee13:metadata_sizei31235e4:reqqi500e1:v13:bitseed 0.1.06:yourip4:".to_vec();
        expected.extend_from_slice(&[127, 0, 0, 1]);
        expected.push(b'e');
        assert_eq!(h.encode(), expected);
        let merkle = OurHandshake {
            hashpiece: true,
            metadata_size: None,
            your_ip: None,
            ..h
        };
        assert_eq!(
            merkle.encode(),
            b"d1:md12:Tr_hashpiecei2e11:ut_metadatai1ee4:reqqi500e1:v13:bitseed 0.1.0e".to_vec()
        );
    }

    #[test]
    fn peer_ids_are_read_and_bounded() {
        let p = PeerExtensions::parse(b"d1:md11:ut_metadatai3e6:ut_pexi1ee1:pi6881ee").unwrap();
        assert_eq!(p.ut_metadata, Some(3));
        assert_eq!(p.hashpiece, None);
        assert_eq!((p.ut_pex, p.listen_port), (Some(1), Some(6881)));
        let pex = OurHandshake {
            metadata_size: None,
            hashpiece: false,
            reqq: 1,
            client: "b".into(),
            your_ip: None,
            pex: true,
        };
        assert_eq!(
            pex.encode(),
            b"d1:md11:ut_metadatai1e6:ut_pexi3ee4:reqqi1e1:v1:be".to_vec()
        );
        let off = PeerExtensions::parse(b"d1:md11:ut_metadatai0eee").unwrap();
        assert_eq!(off.ut_metadata, None);
        let big = PeerExtensions::parse(b"d1:md11:ut_metadatai300eee").unwrap();
        assert_eq!(big.ut_metadata, None);
        assert!(PeerExtensions::parse(b"garbage").is_err());
        assert!(PeerExtensions::parse(b"de").is_err());
    }
}
