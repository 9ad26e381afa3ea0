//! The loaded torrent: its exact info bytes and the fields read from them.

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};
use sha2::Sha256;

use super::{Format, InfoHash, Magnet};
use crate::bencode::Value;
use crate::storage::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InfoHashes {
    /// SHA-1 of the info dict (v1, Merkle, hybrid).
    pub v1: Option<[u8; 20]>,
    /// SHA-256 of the info dict (v2, hybrid).
    pub v2: Option<[u8; 32]>,
}

impl InfoHashes {
    pub fn of(info_bytes: &[u8], format: Format) -> Self {
        InfoHashes {
            v1: format.has_v1().then(|| Sha1::digest(info_bytes).into()),
            v2: format.has_v2().then(|| Sha256::digest(info_bytes).into()),
        }
    }

    /// The 20 bytes that trackers and handshakes carry: the v1 hash, else the v2 hash truncated.
    pub fn wire(&self) -> Option<InfoHash> {
        self.v1.map(InfoHash::new).or_else(|| self.v2_truncated())
    }

    /// Every 20-byte hash a client may use for this torrent: v1, and the truncated v2 (a hybrid
    /// torrent is announced and handshaken under both).
    pub fn wire_hashes(&self) -> Vec<InfoHash> {
        self.v1
            .map(InfoHash::new)
            .into_iter()
            .chain(self.v2_truncated())
            .collect()
    }

    fn v2_truncated(&self) -> Option<InfoHash> {
        self.v2.and_then(|h| InfoHash::from_slice(&h[..20]))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components under the torrent's folder; a single-file torrent's one entry is `[name]`.
    pub path: Vec<String>,
    pub length: u64,
    /// A BEP 47 pad file (`attr` contains `p`): zeros that exist only in the piece space.
    pub pad: bool,
    /// BEP 52 `pieces root`, for non-empty files of v2 and hybrid torrents.
    pub pieces_root: Option<[u8; 32]>,
}

impl FileEntry {
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// The info dict exactly as it stands in the file; both info hashes are taken over it.
    pub info_bytes: Vec<u8>,
    pub info_hash: InfoHashes,
    pub format: Format,
    pub name: String,
    pub piece_length: u64,
    /// True when the info dict has `length` (v1) or a file tree of one file named `name` (v2).
    pub single_file: bool,
    /// In piece-space order: the v1 `files` list with its pad files, or for v2 the file tree order.
    pub files: Vec<FileEntry>,
    /// v1 piece hashes (v1, hybrid).
    pub pieces: Vec<[u8; 20]>,
    /// BEP 30 root hash (Merkle).
    pub root_hash: Option<[u8; 20]>,
    /// BEP 52 piece layers, by pieces root.
    pub piece_layers: BTreeMap<[u8; 32], Vec<[u8; 32]>>,
    pub private: bool,
    pub source: Option<String>,
    /// Tracker tiers (BEP 12); `announce` is the first URL.
    pub trackers: Vec<Vec<String>>,
    /// BEP 19 `url-list`.
    pub web_seeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

impl Metainfo {
    /// Where the files sit in the piece space.
    pub fn layout(&self) -> Layout {
        if self.format == Format::V2 {
            Layout::aligned(self.piece_length, self.files.iter().map(|f| f.length))
        } else {
            Layout::contiguous(
                self.piece_length,
                self.files.iter().map(|f| (f.length, f.pad)),
            )
        }
    }

    pub fn piece_count(&self) -> u64 {
        self.layout().piece_count()
    }

    /// Bytes of content, pad files excluded.
    pub fn total_size(&self) -> u64 {
        self.files.iter().filter(|f| !f.pad).map(|f| f.length).sum()
    }

    /// The torrent file: the exact info bytes with the keys outside `info` around them.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_with(&self.trackers, &self.web_seeds)
    }

    /// The torrent file with other trackers and web seeds (outside the info dict, so the info
    /// hashes are the same): what `serve` hands out per request, without copying the metainfo.
    pub fn to_bytes_with(&self, trackers: &[Vec<String>], web_seeds: &[String]) -> Vec<u8> {
        self.to_bytes_with_nodes(trackers, web_seeds, &[])
    }

    /// `to_bytes_with`, with BEP 5 `nodes` (DHT nodes to bootstrap from, `host`, `port`).
    pub fn to_bytes_with_nodes(
        &self,
        trackers: &[Vec<String>],
        web_seeds: &[String],
        nodes: &[(String, u16)],
    ) -> Vec<u8> {
        let mut top = Value::dict();
        if !nodes.is_empty() {
            let list = nodes
                .iter()
                .map(|(h, p)| Value::List(vec![Value::str(h), Value::Int((*p).into())]))
                .collect();
            top.insert("nodes", Value::List(list));
        }
        let all: Vec<&String> = trackers.iter().flatten().collect();
        if let Some(first) = all.first() {
            top.insert("announce", Value::str(first));
        }
        if all.len() > 1 {
            let tiers = trackers
                .iter()
                .filter(|t| !t.is_empty())
                .map(|tier| Value::List(tier.iter().map(|u| Value::str(u)).collect()))
                .collect();
            top.insert("announce-list", Value::List(tiers));
        }
        if let Some(c) = &self.comment {
            top.insert("comment", Value::str(c));
        }
        if let Some(c) = &self.created_by {
            top.insert("created by", Value::str(c));
        }
        if let Some(d) = self.creation_date {
            top.insert("creation date", Value::Int(d));
        }
        top.insert("info", Value::Raw(self.info_bytes.clone()));
        if !self.piece_layers.is_empty() {
            let mut layers = Value::dict();
            if let Value::Dict(map) = &mut layers {
                for (root, layer) in &self.piece_layers {
                    map.insert(root.to_vec(), Value::Bytes(layer.concat()));
                }
            }
            top.insert("piece layers", layers);
        }
        match web_seeds {
            [] => {}
            [one] => top.insert("url-list", Value::str(one)),
            many => top.insert(
                "url-list",
                Value::List(many.iter().map(|u| Value::str(u)).collect()),
            ),
        }
        top.encode()
    }

    pub fn magnet(&self) -> Magnet {
        Magnet {
            info_hash: self.info_hash,
            name: Some(self.name.clone()),
            trackers: self.trackers.iter().flatten().cloned().collect(),
            web_seeds: self.web_seeds.clone(),
        }
    }
}
