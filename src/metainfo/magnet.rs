//! Magnet links (BEP 9; `btmh` for v2 as BEP 52 says).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use thiserror::Error;

use super::InfoHashes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHashes,
    pub name: Option<String>,
    pub trackers: Vec<String>,
    pub web_seeds: Vec<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MagnetError {
    #[error("not a magnet link (it must start with `magnet:?`)")]
    NotMagnet,
    #[error("bad `xt` value `{0}`")]
    BadTopic(String),
    #[error("no `xt=urn:btih:` or `xt=urn:btmh:` in the link")]
    NoInfoHash,
    #[error("the link is longer than {MAX_LEN} bytes")]
    TooLong,
}

/// Magnet links are pasted by people and fetched from pages; anything longer is not one.
const MAX_LEN: usize = 64 * 1024;

/// Characters left as they are in parameter values: unreserved ones, plus `:` and `/` so URLs stay
/// readable (they are legal in a query).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'/');

impl Magnet {
    pub fn to_uri(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v1) = self.info_hash.v1 {
            parts.push(format!("xt=urn:btih:{}", hex::encode(v1)));
        }
        if let Some(v2) = self.info_hash.v2 {
            parts.push(format!("xt=urn:btmh:1220{}", hex::encode(v2)));
        }
        if let Some(name) = &self.name {
            parts.push(format!("dn={}", utf8_percent_encode(name, VALUE)));
        }
        for t in &self.trackers {
            parts.push(format!("tr={}", utf8_percent_encode(t, VALUE)));
        }
        for w in &self.web_seeds {
            parts.push(format!("ws={}", utf8_percent_encode(w, VALUE)));
        }
        format!("magnet:?{}", parts.join("&"))
    }

    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_LEN {
            return Err(MagnetError::TooLong);
        }
        let query = uri.strip_prefix("magnet:?").ok_or(MagnetError::NotMagnet)?;
        let mut m = Magnet {
            info_hash: InfoHashes::default(),
            name: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            match key {
                "xt" => parse_topic(&value, &mut m.info_hash)?,
                "dn" => m.name = Some(value),
                "tr" => m.trackers.push(value),
                "ws" => m.web_seeds.push(value),
                _ => {}
            }
        }
        if m.info_hash.v1.is_none() && m.info_hash.v2.is_none() {
            return Err(MagnetError::NoInfoHash);
        }
        Ok(m)
    }
}

fn parse_topic(value: &str, out: &mut InfoHashes) -> Result<(), MagnetError> {
    let bad = || MagnetError::BadTopic(value.to_owned());
    if let Some(h) = value.strip_prefix("urn:btih:") {
        let bytes = match h.len() {
            40 => hex::decode(h).map_err(|_| bad())?,
            32 => base32_decode(h).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        out.v1 = Some(bytes.try_into().map_err(|_| bad())?);
    } else if let Some(h) = value.strip_prefix("urn:btmh:") {
        // A multihash: 0x12 (SHA-256), 0x20 (32 bytes), then the digest.
        let digest = h
            .strip_prefix("1220")
            .filter(|d| d.len() == 64)
            .ok_or_else(bad)?;
        let bytes = hex::decode(digest).map_err(|_| bad())?;
        out.v2 = Some(bytes.try_into().map_err(|_| bad())?);
    }
    Ok(())
}

/// RFC 4648 base32 without padding, as old magnet links carry btih.
fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits: u64 = 0;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(20);
    for c in s.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        bits = (bits << 5) | u64::from(v);
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_round_trip() {
        let m = Magnet {
            info_hash: InfoHashes {
                v1: Some([0xab; 20]),
                v2: Some([0xcd; 32]),
            },
            name: Some("my file & more".into()),
            trackers: vec!["http://127.0.0.1:8080/announce".into()],
            web_seeds: vec!["http://127.0.0.1:8080/files/".into()],
        };
        let uri = m.to_uri();
        assert!(uri.starts_with(&format!(
            "magnet:?xt=urn:btih:{}&xt=urn:btmh:1220{}&dn=my%20file%20%26%20more&tr=http://",
            "ab".repeat(20),
            "cd".repeat(32)
        )));
        assert_eq!(Magnet::parse(&uri).unwrap(), m);
    }

    #[test]
    fn base32_and_errors() {
        // 20 bytes of 0x00 in base32 are 32 'A's.
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{}", "A".repeat(32))).unwrap();
        assert_eq!(m.info_hash.v1, Some([0; 20]));
        assert_eq!(Magnet::parse("http://x"), Err(MagnetError::NotMagnet));
        assert_eq!(Magnet::parse("magnet:?dn=x"), Err(MagnetError::NoInfoHash));
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btih:zz"),
            Err(MagnetError::BadTopic(_))
        ));
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btmh:1114abcd"),
            Err(MagnetError::BadTopic(_))
        ));
    }
}
