//! Hashing shared between the nodes of a cluster: the first node to reach an entry hashes it
//! and records the result (its torrent, with a Merkle torrent's piece hashes and the files'
//! SHA-256) under the entry's content key; the others rebuild the torrent from that record as
//! for a renamed entry, after reading a few pieces themselves and checking them, so a folder
//! that differs between nodes is hashed again rather than published with wrong hashes. The
//! store behind it (`cluster::HashShare`, Redis) is plugged in by `serve`.

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::metainfo::{Format, Metainfo};
use crate::storage::Content;

/// Blocking calls, made from the catalog's hashing threads.
pub trait SharedHashing: Send + Sync {
    /// The record another node made for `key`, waiting while another node hashes it; `None`
    /// when this node is to hash it (it then holds the claim until `record` or `release`), or
    /// when the store cannot be reached (it then hashes alone).
    fn find_or_claim(&self, key: &str) -> Option<Vec<u8>>;
    /// Records what this node hashed for `key` and gives up the claim.
    fn record(&self, key: &str, record: &[u8]);
    /// Gives up the claim without a record (hashing failed).
    fn release(&self, key: &str);
}

/// Pieces read and checked before a record is trusted: the first, the last and one between.
const SPOT_CHECKS: u64 = 3;

/// A record's torrent, Merkle piece hashes and file digests.
pub type Decoded = (Vec<u8>, Option<Vec<[u8; 20]>>, Vec<[u8; 32]>);

#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    /// The torrent file, hex.
    pub torrent: String,
    /// A Merkle torrent's piece hashes, hex.
    pub merkle_pieces: Option<Vec<String>>,
    /// The files' SHA-256, hex.
    pub file_sha256: Vec<String>,
}

impl Record {
    pub fn new(meta: &Metainfo, merkle: Option<&[[u8; 20]]>, file_sha256: &[[u8; 32]]) -> Self {
        Record {
            torrent: hex::encode(meta.to_bytes()),
            merkle_pieces: merkle.map(|p| p.iter().map(hex::encode).collect()),
            file_sha256: file_sha256.iter().map(hex::encode).collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `(torrent, merkle piece hashes, file digests)`, or `None` for a record that does not
    /// decode.
    pub fn decode(bytes: &[u8]) -> Option<Decoded> {
        let r: Record = serde_json::from_slice(bytes).ok()?;
        let torrent = hex::decode(&r.torrent).ok()?;
        let merkle = match r.merkle_pieces {
            Some(p) => Some(
                p.iter()
                    .map(|h| fixed::<20>(h))
                    .collect::<Option<Vec<_>>>()?,
            ),
            None => None,
        };
        let digests = r
            .file_sha256
            .iter()
            .map(|h| fixed::<32>(h))
            .collect::<Option<Vec<_>>>()?;
        Some((torrent, merkle, digests))
    }
}

fn fixed<const N: usize>(h: &str) -> Option<[u8; N]> {
    hex::decode(h).ok()?.try_into().ok()
}

/// Reads a few pieces of `content` and checks them against `meta`'s (or the Merkle torrent's)
/// piece hashes. A v2-only torrent has no SHA-1 pieces to check: `Err` (hash it here).
pub fn spot_check(
    meta: &Metainfo,
    merkle: Option<&[[u8; 20]]>,
    content: &Content,
) -> Result<(), String> {
    let pieces: &[[u8; 20]] = match (meta.format, merkle) {
        (Format::Merkle, Some(p)) => p,
        (Format::V1 | Format::Hybrid, _) => &meta.pieces,
        _ => return Err("no v1 piece hashes to check against".into()),
    };
    let count = pieces.len() as u64;
    if count == 0 {
        return Err("no pieces".into());
    }
    let space: u64 = meta.files.iter().map(|f| f.length).sum();
    let mut checked = vec![0, count / 2, count - 1];
    checked.dedup();
    let mut buf = Vec::new();
    for i in checked.into_iter().take(SPOT_CHECKS as usize) {
        let start = i * meta.piece_length;
        let len = meta.piece_length.min(space.saturating_sub(start));
        buf.resize(len as usize, 0);
        content
            .read_at(start, &mut buf)
            .map_err(|e| format!("piece {i}: {e}"))?;
        let got: [u8; 20] = Sha1::digest(&buf).into();
        if got != pieces[i as usize] {
            return Err(format!("piece {i} differs from the other node's"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_records_do_not_decode() {
        assert!(Record::decode(b"{}").is_none());
        assert!(Record::decode(b"not json").is_none());
        let r = br#"{"torrent":"6465","merkle_pieces":null,"file_sha256":["00"]}"#;
        assert!(Record::decode(r).is_none());
        let ok = format!(
            r#"{{"torrent":"6465","merkle_pieces":null,"file_sha256":["{}"]}}"#,
            "00".repeat(32)
        );
        let (t, m, d) = Record::decode(ok.as_bytes()).unwrap();
        assert_eq!((t, m, d), (b"de".to_vec(), None, vec![[0; 32]]));
    }
}
