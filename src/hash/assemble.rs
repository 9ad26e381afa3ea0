//! From per-piece results to what a metainfo holds: v2 roots and piece layers per file.

use super::PieceHashes;
use crate::metainfo::merkle::{self, BLOCK_SIZE};
use crate::metainfo::{ContentHashes, V2FileHashes};
use crate::storage::Layout;

/// Groups per-piece v2 results by file: a file of one piece has its root already; a larger file
/// keeps its pieces as its layer, and its root is the tree over them.
pub fn content_hashes(layout: &Layout, pieces: PieceHashes) -> ContentHashes {
    let mut v2_files = Vec::with_capacity(layout.files.len());
    if !pieces.v2.is_empty() {
        let blocks_per_piece = (layout.piece_length / BLOCK_SIZE) as usize;
        for f in &layout.files {
            if f.pad || f.length == 0 {
                v2_files.push(None);
                continue;
            }
            let first = (f.offset / layout.piece_length) as usize;
            let count = f.length.div_ceil(layout.piece_length) as usize;
            let layer = pieces.v2[first..first + count].to_vec();
            v2_files.push(Some(if count == 1 {
                V2FileHashes {
                    root: layer[0],
                    layer: Vec::new(),
                }
            } else {
                V2FileHashes {
                    root: merkle::v2_root_from_layer(&layer, blocks_per_piece),
                    layer,
                }
            }));
        }
    }
    ContentHashes {
        pieces: pieces.v1,
        v2_files,
    }
}
