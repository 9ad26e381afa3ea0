//! Loading a .torrent: decode, take the info hash over the info dict's exact bytes, read the
//! fields, and check that they agree with each other (piece counts, v1 against v2 files, piece
//! layers against their roots as BEP 52 asks).

use std::collections::BTreeMap;

use super::merkle::{self, BLOCK_SIZE};
use super::{FileEntry, Format, InfoHashes, Metainfo, MetainfoError};
use crate::bencode::{decode, Node};

type Result<T> = std::result::Result<T, MetainfoError>;

/// Largest piece length accepted from a file (libtorrent's own limit is similar).
const MAX_PIECE_LENGTH: u64 = 1 << 29;

impl Metainfo {
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo> {
        let top = decode(bytes)?;
        if top.as_dict().is_none() {
            return Err(MetainfoError::invalid("(top level)", "not a dictionary"));
        }
        let info = top.get("info").ok_or(MetainfoError::Missing("info"))?;
        if info.as_dict().is_none() {
            return Err(MetainfoError::invalid("info", "not a dictionary"));
        }

        let name = info
            .get("name")
            .ok_or(MetainfoError::Missing("info.name"))?;
        let name = path_component(name, "info.name")?;
        let piece_length = info
            .get("piece length")
            .ok_or(MetainfoError::Missing("info.piece length"))?
            .as_int()
            .ok_or_else(|| MetainfoError::invalid("info.piece length", "not an integer"))?;
        let piece_length = u64::try_from(piece_length)
            .ok()
            .filter(|&p| p > 0 && p <= MAX_PIECE_LENGTH)
            .ok_or_else(|| {
                MetainfoError::invalid("info.piece length", format!("{piece_length} out of range"))
            })?;

        let v2 = match info.get("meta version").map(|v| v.as_int()) {
            None => false,
            Some(Some(2)) => true,
            Some(other) => {
                return Err(MetainfoError::invalid(
                    "info.meta version",
                    format!("unsupported version {other:?}"),
                ))
            }
        };
        let has_pieces = info.get("pieces").is_some();
        let root_hash = info.get("root hash");
        let format = match (v2, has_pieces, root_hash.is_some()) {
            (true, true, _) => Format::Hybrid,
            (true, false, _) => Format::V2,
            (false, _, true) => Format::Merkle,
            (false, true, false) => Format::V1,
            (false, false, false) => return Err(MetainfoError::Missing("info.pieces")),
        };
        if format.has_v2() && (piece_length < BLOCK_SIZE || !piece_length.is_power_of_two()) {
            return Err(MetainfoError::invalid(
                "info.piece length",
                "v2 needs a power of two of at least 16 KiB",
            ));
        }

        let (files, single_file) = match format {
            Format::V1 | Format::Merkle => v1_files(info, &name)?,
            Format::V2 => v2_files(info, &name)?,
            Format::Hybrid => {
                let (mut v1, single) = v1_files(info, &name)?;
                let (v2, _) = v2_files(info, &name)?;
                let real: Vec<&mut FileEntry> = v1.iter_mut().filter(|f| !f.pad).collect();
                if real.len() != v2.len()
                    || real
                        .iter()
                        .zip(&v2)
                        .any(|(a, b)| a.path != b.path || a.length != b.length)
                {
                    return Err(MetainfoError::invalid(
                        "info.files",
                        "v1 file list does not match the v2 file tree",
                    ));
                }
                for (a, b) in real.into_iter().zip(v2) {
                    a.pieces_root = b.pieces_root;
                }
                (v1, single)
            }
        };

        let mut meta = Metainfo {
            info_hash: InfoHashes::of(info.raw, format),
            info_bytes: info.raw.to_vec(),
            format,
            name,
            piece_length,
            single_file,
            files,
            pieces: Vec::new(),
            root_hash: None,
            piece_layers: BTreeMap::new(),
            private: info.get("private").and_then(Node::as_int) == Some(1),
            source: info.get("source").and_then(Node::as_str).map(str::to_owned),
            trackers: trackers(&top),
            web_seeds: web_seeds(&top),
            comment: top.get("comment").and_then(Node::as_str).map(str::to_owned),
            created_by: top
                .get("created by")
                .and_then(Node::as_str)
                .map(str::to_owned),
            creation_date: top.get("creation date").and_then(Node::as_int),
        };

        let layout = meta.layout();
        if layout.total == 0 {
            return Err(MetainfoError::invalid("info", "the torrent has no content"));
        }
        if format.hashes_v1_pieces() && format != Format::Merkle {
            let pieces = info
                .get("pieces")
                .and_then(Node::as_bytes)
                .ok_or_else(|| MetainfoError::invalid("info.pieces", "not a string"))?;
            if pieces.len() % 20 != 0 || (pieces.len() / 20) as u64 != layout.piece_count() {
                return Err(MetainfoError::invalid(
                    "info.pieces",
                    format!(
                        "{} bytes for {} pieces of {} bytes",
                        pieces.len(),
                        layout.piece_count(),
                        piece_length
                    ),
                ));
            }
            meta.pieces = pieces
                .chunks_exact(20)
                .map(|c| c.try_into().unwrap_or([0; 20]))
                .collect();
        }
        if let Some(root) = root_hash {
            meta.root_hash = Some(
                root.as_bytes()
                    .and_then(|b| <[u8; 20]>::try_from(b).ok())
                    .ok_or_else(|| MetainfoError::invalid("info.root hash", "not 20 bytes"))?,
            );
        }
        if format.has_v2() {
            meta.piece_layers = piece_layers(&top, &meta.files, piece_length)?;
        }
        Ok(meta)
    }
}

/// A file or folder name from the torrent: UTF-8, and nothing that could climb out of a folder.
fn path_component(node: &Node, key: &'static str) -> Result<String> {
    let s = node
        .as_str()
        .ok_or_else(|| MetainfoError::invalid(key, "not a UTF-8 string"))?;
    check_component(s).map_err(|why| MetainfoError::invalid(key, why))?;
    Ok(s.to_owned())
}

fn check_component(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\', '\0']) {
        return Err(format!("unsafe path component {s:?}"));
    }
    Ok(())
}

fn length(node: &Node, key: &'static str) -> Result<u64> {
    node.as_int()
        .and_then(|l| u64::try_from(l).ok())
        .ok_or_else(|| MetainfoError::invalid(key, "not a non-negative integer"))
}

fn v1_files(info: &Node, name: &str) -> Result<(Vec<FileEntry>, bool)> {
    if let Some(len) = info.get("length") {
        let length = length(len, "info.length")?;
        return Ok((
            vec![FileEntry {
                path: vec![name.to_owned()],
                length,
                pad: false,
                pieces_root: None,
            }],
            true,
        ));
    }
    let list = info
        .get("files")
        .ok_or(MetainfoError::Missing("info.length or info.files"))?
        .as_list()
        .ok_or_else(|| MetainfoError::invalid("info.files", "not a list"))?;
    if list.is_empty() {
        return Err(MetainfoError::invalid("info.files", "empty"));
    }
    let mut total: u64 = 0;
    let mut files = Vec::with_capacity(list.len());
    for f in list {
        let length = length(
            f.get("length")
                .ok_or(MetainfoError::Missing("info.files.length"))?,
            "info.files.length",
        )?;
        total = total
            .checked_add(length)
            .ok_or_else(|| MetainfoError::invalid("info.files.length", "total overflows"))?;
        let path = f
            .get("path")
            .and_then(Node::as_list)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| MetainfoError::invalid("info.files.path", "not a non-empty list"))?
            .iter()
            .map(|c| path_component(c, "info.files.path"))
            .collect::<Result<Vec<_>>>()?;
        let pad = f
            .get("attr")
            .and_then(Node::as_bytes)
            .is_some_and(|a| a.contains(&b'p'));
        files.push(FileEntry {
            path,
            length,
            pad,
            pieces_root: None,
        });
    }
    Ok((files, false))
}

/// Walks the BEP 52 file tree in key order (which the decoder keeps as written; bencode sorts
/// keys, so this is the tree order).
fn v2_files(info: &Node, name: &str) -> Result<(Vec<FileEntry>, bool)> {
    let tree = info
        .get("file tree")
        .ok_or(MetainfoError::Missing("info.file tree"))?;
    let mut files = Vec::new();
    let mut path = Vec::new();
    walk_tree(tree, &mut path, &mut files)?;
    if files.is_empty() {
        return Err(MetainfoError::invalid("info.file tree", "no files"));
    }
    let single = files.len() == 1 && files[0].path == [name];
    Ok((files, single))
}

fn walk_tree(node: &Node, path: &mut Vec<String>, out: &mut Vec<FileEntry>) -> Result<()> {
    let dict = node
        .as_dict()
        .ok_or_else(|| MetainfoError::invalid("info.file tree", "entry is not a dictionary"))?;
    let mut total: u64 = out.iter().map(|f| f.length).sum();
    for (key, child) in dict {
        if key.is_empty() {
            if path.is_empty() || dict.len() != 1 {
                return Err(MetainfoError::invalid(
                    "info.file tree",
                    "a file entry must be alone in its folder entry",
                ));
            }
            let length = length(
                child
                    .get("length")
                    .ok_or(MetainfoError::Missing("info.file tree.length"))?,
                "info.file tree.length",
            )?;
            total = total.checked_add(length).ok_or_else(|| {
                MetainfoError::invalid("info.file tree.length", "total overflows")
            })?;
            let pieces_root = match (length, child.get("pieces root")) {
                (0, _) => None,
                (_, Some(r)) => Some(
                    r.as_bytes()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| {
                            MetainfoError::invalid("info.file tree.pieces root", "not 32 bytes")
                        })?,
                ),
                (_, None) => return Err(MetainfoError::Missing("info.file tree.pieces root")),
            };
            out.push(FileEntry {
                path: path.clone(),
                length,
                pad: false,
                pieces_root,
            });
            continue;
        }
        let component = std::str::from_utf8(key)
            .map_err(|_| MetainfoError::invalid("info.file tree", "name is not UTF-8"))?;
        check_component(component).map_err(|why| MetainfoError::invalid("info.file tree", why))?;
        path.push(component.to_owned());
        walk_tree(child, path, out)?;
        path.pop();
    }
    Ok(())
}

fn trackers(top: &Node) -> Vec<Vec<String>> {
    let tiers: Vec<Vec<String>> = top
        .get("announce-list")
        .and_then(Node::as_list)
        .map(|tiers| {
            tiers
                .iter()
                .filter_map(Node::as_list)
                .map(|t| {
                    t.iter()
                        .filter_map(Node::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .filter(|t: &Vec<String>| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !tiers.is_empty() {
        return tiers;
    }
    top.get("announce")
        .and_then(Node::as_str)
        .map(|a| vec![vec![a.to_owned()]])
        .unwrap_or_default()
}

fn web_seeds(top: &Node) -> Vec<String> {
    match top.get("url-list") {
        Some(n) if n.as_str().is_some() => n.as_str().map(str::to_owned).into_iter().collect(),
        Some(n) => n
            .as_list()
            .unwrap_or_default()
            .iter()
            .filter_map(Node::as_str)
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    }
}

/// Reads `piece layers` and checks each against its file's pieces root.
fn piece_layers(
    top: &Node,
    files: &[FileEntry],
    piece_length: u64,
) -> Result<BTreeMap<[u8; 32], Vec<[u8; 32]>>> {
    let mut out = BTreeMap::new();
    let given = top.get("piece layers");
    let blocks_per_piece = (piece_length / BLOCK_SIZE) as usize;
    for f in files.iter().filter(|f| f.length > piece_length) {
        let Some(root) = f.pieces_root else { continue };
        if out.contains_key(&root) {
            continue; // identical files share a root and a layer
        }
        let layer = given
            .and_then(|l| l.as_dict())
            .and_then(|d| d.iter().find(|(k, _)| *k == root.as_slice()))
            .and_then(|(_, v)| v.as_bytes())
            .ok_or_else(|| {
                MetainfoError::PieceLayers(format!("no layer for `{}`", f.display_path()))
            })?;
        let expected = f.length.div_ceil(piece_length);
        if layer.len() % 32 != 0 || (layer.len() / 32) as u64 != expected {
            return Err(MetainfoError::PieceLayers(format!(
                "`{}` has {} bytes, expected {} hashes",
                f.display_path(),
                layer.len(),
                expected
            )));
        }
        let hashes: Vec<[u8; 32]> = layer
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or([0; 32]))
            .collect();
        if merkle::v2_root_from_layer(&hashes, blocks_per_piece) != root {
            return Err(MetainfoError::PieceLayers(format!(
                "layer of `{}` does not match its pieces root",
                f.display_path()
            )));
        }
        out.insert(root, hashes);
    }
    Ok(out)
}
