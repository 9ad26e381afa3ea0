//! What an entry of the content folder looks like on disk, cheaply (names, sizes, mtimes): equal
//! fingerprints mean nothing to hash again.

use serde::Serialize;

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

    /// The fingerprint without the entry's own name (a single file's path is its name), so that a
    /// renamed entry with the same bytes is recognised.
    pub fn content_key(&self) -> String {
        let mut unnamed = self.clone();
        if unnamed.single_file {
            for f in &mut unnamed.files {
                f.0.clear();
            }
        }
        unnamed.encode()
    }
}
