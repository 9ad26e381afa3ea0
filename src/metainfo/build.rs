//! Building a new torrent from a file list and its hashes. The info dict is encoded once, and the
//! result is loaded back through the same checks as any other torrent, so what we write is what
//! we validate.

use super::merkle;
use super::{FileEntry, Format, Metainfo, MetainfoError};
use crate::bencode::Value;

/// Hashes of one v2 file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2FileHashes {
    pub root: [u8; 32],
    /// One hash per piece; empty when the file fits in one piece (its root is then enough).
    pub layer: Vec<[u8; 32]>,
}

/// What hashing the content produced, in the order of `plan_files`'s entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentHashes {
    /// SHA-1 of every piece of the piece space (v1, Merkle, hybrid).
    pub pieces: Vec<[u8; 20]>,
    /// Per planned file: `Some` for non-empty real files of v2 and hybrid torrents.
    pub v2_files: Vec<Option<V2FileHashes>>,
}

impl ContentHashes {
    /// The hashes a torrent already holds, to rebuild it (under another name, say) without
    /// reading the data again. `None` for Merkle torrents, which keep only their root.
    pub fn from_metainfo(meta: &Metainfo) -> Option<ContentHashes> {
        if meta.format == Format::Merkle {
            return None;
        }
        let v2_files = if meta.format.has_v2() {
            meta.files
                .iter()
                .map(|f| {
                    f.pieces_root.map(|root| V2FileHashes {
                        root,
                        layer: meta.piece_layers.get(&root).cloned().unwrap_or_default(),
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(ContentHashes {
            pieces: meta.pieces.clone(),
            v2_files,
        })
    }
}

/// The piece-space file list for `files` (sorted, real files): for hybrid torrents a BEP 47 pad
/// file goes before every non-empty file that would not start on a piece boundary, which is the
/// list libtorrent derives from the v2 file tree and compares against.
pub fn plan_files(
    files: &[(Vec<String>, u64)],
    format: Format,
    piece_length: u64,
) -> Vec<FileEntry> {
    let mut out = Vec::with_capacity(files.len());
    let mut offset: u64 = 0;
    for (path, length) in files {
        if format == Format::Hybrid && *length > 0 && offset % piece_length != 0 {
            let pad = piece_length - offset % piece_length;
            out.push(FileEntry {
                path: vec![".pad".to_owned(), pad.to_string()],
                length: pad,
                pad: true,
                pieces_root: None,
            });
            offset += pad;
        }
        out.push(FileEntry {
            path: path.clone(),
            length: *length,
            pad: false,
            pieces_root: None,
        });
        offset += length;
    }
    out
}

/// Everything a new torrent is made of.
#[derive(Debug, Clone)]
pub struct NewTorrent {
    pub name: String,
    pub format: Format,
    pub piece_length: u64,
    /// A file given on its own (v1 `length`); otherwise a folder (`files`).
    pub single_file: bool,
    /// From `plan_files`.
    pub files: Vec<FileEntry>,
    pub hashes: ContentHashes,
    pub private: bool,
    pub source: Option<String>,
    pub trackers: Vec<String>,
    pub web_seeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

impl NewTorrent {
    pub fn build(self) -> Result<Metainfo, MetainfoError> {
        if self.format == Format::Merkle && !self.web_seeds.is_empty() {
            return Err(MetainfoError::invalid(
                "url-list",
                "BEP 30 Merkle torrents cannot have web seeds",
            ));
        }
        let mut info = Value::dict();
        info.insert("name", Value::str(&self.name));
        info.insert("piece length", Value::Int(self.piece_length as i64));
        if self.private {
            info.insert("private", Value::Int(1));
        }
        if let Some(s) = &self.source {
            info.insert("source", Value::str(s));
        }
        if self.format.has_v1() {
            if self.single_file {
                info.insert("length", Value::Int(self.files[0].length as i64));
            } else {
                info.insert("files", v1_file_list(&self.files));
            }
            match self.format {
                Format::Merkle => {
                    let root = merkle::bep30_root(&self.hashes.pieces);
                    info.insert("root hash", Value::Bytes(root.to_vec()));
                }
                _ => info.insert("pieces", Value::Bytes(self.hashes.pieces.concat())),
            }
        }
        let mut layers = std::collections::BTreeMap::new();
        if self.format.has_v2() {
            info.insert("meta version", Value::Int(2));
            let mut tree = Value::dict();
            for (file, hashes) in self.files.iter().zip(&self.hashes.v2_files) {
                if file.pad {
                    continue;
                }
                let mut leaf = Value::dict();
                leaf.insert("length", Value::Int(file.length as i64));
                if let Some(h) = hashes {
                    leaf.insert("pieces root", Value::Bytes(h.root.to_vec()));
                    if !h.layer.is_empty() {
                        layers.insert(h.root, h.layer.clone());
                    }
                }
                let mut entry = Value::dict();
                entry.insert("", leaf);
                insert_path(&mut tree, &file.path, entry);
            }
            info.insert("file tree", tree);
        }
        let info_bytes = info.encode();

        let mut trackers: Vec<Vec<String>> =
            self.trackers.iter().map(|t| vec![t.clone()]).collect();
        trackers.dedup();
        let meta = Metainfo {
            info_hash: Default::default(),
            info_bytes,
            format: self.format,
            name: self.name,
            piece_length: self.piece_length,
            single_file: self.single_file,
            files: Vec::new(),
            pieces: Vec::new(),
            root_hash: None,
            piece_layers: layers,
            private: self.private,
            source: self.source,
            trackers,
            web_seeds: self.web_seeds,
            comment: self.comment,
            created_by: self.created_by,
            creation_date: self.creation_date,
        };
        Metainfo::from_bytes(&meta.to_bytes())
    }
}

fn v1_file_list(files: &[FileEntry]) -> Value {
    Value::List(
        files
            .iter()
            .map(|f| {
                let mut d = Value::dict();
                if f.pad {
                    d.insert("attr", Value::str("p"));
                }
                d.insert("length", Value::Int(f.length as i64));
                d.insert(
                    "path",
                    Value::List(f.path.iter().map(|c| Value::str(c)).collect()),
                );
                d
            })
            .collect(),
    )
}

/// Puts `entry` at `path` in a nested file-tree dict, making folders on the way.
fn insert_path(tree: &mut Value, path: &[String], entry: Value) {
    let Value::Dict(map) = tree else { return };
    match path {
        [] => {}
        [last] => {
            map.insert(last.as_bytes().to_vec(), entry);
        }
        [first, rest @ ..] => {
            let child = map
                .entry(first.as_bytes().to_vec())
                .or_insert_with(Value::dict);
            insert_path(child, rest, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(spec: &[(&str, u64)]) -> Vec<(Vec<String>, u64)> {
        spec.iter()
            .map(|(p, l)| (p.split('/').map(str::to_owned).collect(), *l))
            .collect()
    }

    #[test]
    fn pad_files_align_every_non_empty_file() {
        let plan = plan_files(
            &files(&[("a", 10), ("b", 0), ("c", 16), ("d", 17), ("e", 1)]),
            Format::Hybrid,
            16,
        );
        let got: Vec<(String, u64, bool)> = plan
            .iter()
            .map(|f| (f.display_path(), f.length, f.pad))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), 10, false),
                ("b".into(), 0, false),
                (".pad/6".into(), 6, true),
                ("c".into(), 16, false),
                ("d".into(), 17, false),
                (".pad/15".into(), 15, true),
                ("e".into(), 1, false),
            ]
        );
        // No pads outside hybrid, and none after the last file.
        assert_eq!(
            plan_files(&files(&[("a", 10), ("b", 3)]), Format::V1, 16).len(),
            2
        );
        assert_eq!(
            plan_files(&files(&[("a", 10)]), Format::Hybrid, 16).len(),
            1
        );
    }

    #[test]
    fn info_dict_keys_are_sorted_and_exact() {
        let t = NewTorrent {
            name: "x".into(),
            format: Format::V1,
            piece_length: 16384,
            single_file: true,
            files: plan_files(&files(&[("x", 3)]), Format::V1, 16384),
            hashes: ContentHashes {
                pieces: vec![[7; 20]],
                v2_files: vec![],
            },
            private: true,
            source: Some("s".into()),
            trackers: vec!["http://t/a".into()],
            web_seeds: vec![],
            comment: None,
            created_by: None,
            creation_date: None,
        };
        let meta = t.build().unwrap();
        let mut expected = b"d6:lengthi3e4:name1:x12:piece lengthi16384e6:pieces20:".to_vec();
        expected.extend_from_slice(&[7; 20]);
        expected.extend_from_slice(b"7:privatei1e6:source1:se");
        assert_eq!(meta.info_bytes, expected);
        let mut file = b"d8:announce10:http://t/a4:info".to_vec();
        file.extend_from_slice(&expected);
        file.push(b'e');
        assert_eq!(meta.to_bytes(), file);
    }
}
