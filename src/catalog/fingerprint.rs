//! What an entry of the content folder looks like on disk, cheaply (names, sizes, mtimes): equal
//! fingerprints mean nothing to hash again.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::hash::walk::Content;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    pub single_file: bool,
    /// (path under the entry, length, mtime in nanoseconds since the epoch).
    pub files: Vec<(Vec<String>, u64, i128)>,
}

impl Fingerprint {
    pub fn of(content: &Content) -> Fingerprint {
        Fingerprint {
            single_file: content.single_file,
            files: content
                .files
                .iter()
                .map(|f| {
                    let mtime = f
                        .mtime
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos() as i128);
                    (f.path.clone(), f.length, mtime)
                })
                .collect(),
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The fingerprint encoded once, with its digest: a folder of 100,000 files has a
    /// fingerprint of megabytes, so it is encoded once per look at the entry.
    pub fn encoded(&self) -> Encoded {
        let text = self.encode();
        let digest = Sha256::digest(text.as_bytes()).into();
        Encoded { text, digest }
    }

    /// The fingerprint without the entry's own name (a single file's path is its name), so that a
    /// renamed entry with the same bytes is recognised: the hex SHA-256 of its encoding.
    pub fn content_key(&self) -> String {
        let mut unnamed = self.clone();
        if unnamed.single_file {
            for f in &mut unnamed.files {
                f.0.clear();
            }
        }
        content_key_of(&unnamed.encode())
    }
}

/// A fingerprint's text (what the store keeps) and digest (what the catalog keeps in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub text: String,
    pub digest: [u8; 32],
}

/// The content key for a stored one: stores written before keys were digests hold the unnamed
/// encoding itself, whose digest is the key.
pub fn content_key_of(stored: &str) -> String {
    if stored.len() == 64 && stored.bytes().all(|b| b.is_ascii_hexdigit()) {
        stored.to_owned()
    } else {
        hex::encode(Sha256::digest(stored.as_bytes()))
    }
}
