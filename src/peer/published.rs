//! A published torrent as the seeder serves it: its metainfo, its files on disk with the
//! size/mtime recorded when hashed, and the hash trees built once for BEP 30 and BEP 52 answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use thiserror::Error;

use super::extended::hashpiece::Bep30Tree;
use super::v2_hashes::FileHashTree;
use crate::egress::Offload;
use crate::hash::{self, HashError, Job, Mode};
use crate::metainfo::{Format, InfoHash, Metainfo};
use crate::storage::{Content, FileId, Root, StorageError};

#[derive(Debug, Error)]
pub enum PublishError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("hashing the content of a Merkle torrent: {0}")]
    Hash(#[from] HashError),
    #[error("the content does not match the torrent's root hash")]
    RootMismatch,
    #[error("the piece layer of `{0}` does not match its pieces root")]
    BadLayer(String),
}

#[derive(Debug)]
pub struct Published {
    /// Shared with the catalog's entry: one copy however many views hold it.
    pub metainfo: Arc<Metainfo>,
    pub content: Arc<Content>,
    /// What the publisher sent of this torrent, by channel (shared with the catalog's entry).
    pub offload: Arc<Offload>,
    pub(crate) bep30: Option<Bep30Tree>,
    pub(crate) v2_trees: BTreeMap<[u8; 32], FileHashTree>,
}

impl Published {
    /// Content the caller vouches for (as `bitseed seed` does): stamps are taken now. `path` is
    /// the file, or the folder named by the torrent (or the folder that holds it). Blocking (a
    /// Merkle torrent's pieces are hashed to rebuild its tree).
    pub fn open(metainfo: Metainfo, path: &Path) -> Result<Published, PublishError> {
        let paths = file_paths(&metainfo, path);
        let content = Content::vouched(metainfo.layout(), Arc::new(Root::anywhere()), &paths)?;
        Published::with_content(
            Arc::new(metainfo),
            Arc::new(content),
            Arc::new(Offload::default()),
            None,
        )
    }

    /// `content` holds the torrent's files as the catalog hashed them. `merkle_pieces`, a Merkle
    /// torrent's piece hashes when known, spare reading its content (they are checked against
    /// the root). Blocking, as `open`.
    pub fn with_content(
        metainfo: Arc<Metainfo>,
        content: Arc<Content>,
        offload: Arc<Offload>,
        merkle_pieces: Option<&[[u8; 20]]>,
    ) -> Result<Published, PublishError> {
        let layout = content.layout().clone();

        let known = merkle_pieces
            .filter(|p| metainfo.format == Format::Merkle && p.len() as u64 == layout.piece_count())
            .map(Bep30Tree::new)
            .filter(|t| Some(t.root()) == metainfo.root_hash);
        let bep30 = if let Some(tree) = known {
            Some(tree)
        } else if metainfo.format == Format::Merkle {
            tracing::info!(
                "hashing `{}` to rebuild its BEP 30 tree ({} bytes)",
                metainfo.name,
                metainfo.total_size()
            );
            let progress = AtomicU64::new(0);
            let (paths, stamps): (Vec<Option<PathBuf>>, Vec<FileId>) = (0..layout.files.len())
                .map(|i| match content.file(i) {
                    Some((path, id)) => (Some(path.to_owned()), *id),
                    None => (None, FileId::default()),
                })
                .unzip();
            let pieces = hash::hash_pieces(&Job {
                layout: &layout,
                root: content.root(),
                paths: &paths,
                v1: true,
                v2: false,
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                mode: Mode::Strict,
                progress: &progress,
                cancel: None,
                stamps: Some(&stamps),
            })?;
            let tree = Bep30Tree::new(&pieces.v1);
            if Some(tree.root()) != metainfo.root_hash {
                return Err(PublishError::RootMismatch);
            }
            Some(tree)
        } else {
            None
        };

        let mut v2_trees = BTreeMap::new();
        for (f, lf) in metainfo.files.iter().zip(&layout.files) {
            let Some(root) = f.pieces_root else { continue };
            let Some(layer) = metainfo.piece_layers.get(&root) else {
                continue; // a file of one piece: its root is its piece hash
            };
            if v2_trees.contains_key(&root) {
                continue;
            }
            let tree = FileHashTree::new(root, lf.offset, f.length, metainfo.piece_length, layer)
                .ok_or_else(|| PublishError::BadLayer(f.display_path()))?;
            v2_trees.insert(root, tree);
        }

        Ok(Published {
            metainfo,
            content,
            offload,
            bep30,
            v2_trees,
        })
    }

    /// The 20-byte hashes a handshake may carry for this torrent: v1, and v2 truncated.
    pub fn wire_hashes(&self) -> Vec<InfoHash> {
        self.metainfo.info_hash.wire_hashes()
    }

    /// The torrent's main wire hash (v1 if it has one), for logs and the registry.
    pub fn info_hash(&self) -> InfoHash {
        self.metainfo.info_hash.wire().unwrap_or_default()
    }

    pub fn piece_count(&self) -> u32 {
        self.content.layout().piece_count() as u32
    }
}

/// Where each torrent file is under `path`: the file itself for a single-file torrent, else
/// `path/NAME/...` when `path/NAME` is a folder, else `path/...`.
pub fn file_paths(metainfo: &Metainfo, path: &Path) -> Vec<Option<PathBuf>> {
    if metainfo.single_file {
        let file = if path.is_dir() {
            path.join(&metainfo.name)
        } else {
            path.to_owned()
        };
        return metainfo
            .files
            .iter()
            .map(|f| (!f.pad).then(|| file.clone()))
            .collect();
    }
    let named = path.join(&metainfo.name);
    let base = if named.is_dir() {
        named
    } else {
        path.to_owned()
    };
    metainfo
        .files
        .iter()
        .map(|f| {
            (!f.pad).then(|| {
                let mut p = base.clone();
                p.extend(&f.path);
                p
            })
        })
        .collect()
}
