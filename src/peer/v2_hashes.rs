//! BEP 52 hash requests answered from a file's piece layer: the layers from the pieces up to the
//! `pieces root` are built once when a torrent is published, so an answer costs no hashing.
//!
//! Layers are counted from the leaves (16 KiB blocks, layer 0); the piece layer is
//! `log2(piece length / 16 KiB)`. Requests at the piece layer and above are answered from memory;
//! block-layer requests (clients send them after a piece failed its check) need the pieces they
//! cover read and hashed, which `answer_from_disk` does off the async runtime.

use sha2::{Digest, Sha256};

use crate::metainfo::merkle::{pad_root, sha256_pair, BLOCK_SIZE};
use crate::storage::{Content, StorageError};

use super::message::HashRequest;

/// Largest `length` answered: libtorrent's own bound on what it requests.
pub const MAX_HASHES: u32 = 8192;
/// Largest block-layer request answered from disk: BEP 52's advised bound, so one request reads
/// at most the pieces covering 512 blocks.
pub const MAX_LEAVES: u32 = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashTree {
    /// Where the file starts in the piece space, its length, and the torrent's piece length.
    file_offset: u64,
    file_length: u64,
    piece_length: u64,
    /// Layer number of `layers[0]`.
    piece_layer: u32,
    /// Layer number of the root: log2 of the leaf layer's width.
    root_layer: u32,
    /// From the piece layer (padded to a power of two) up to the root.
    layers: Vec<Vec<[u8; 32]>>,
}

impl FileHashTree {
    /// Builds the upper tree of a file larger than one piece from its piece layer. `None` when the
    /// layer does not lead to `root` (the metainfo loader checked this already).
    pub fn new(
        root: [u8; 32],
        file_offset: u64,
        file_length: u64,
        piece_length: u64,
        piece_layer: &[[u8; 32]],
    ) -> Option<Self> {
        let blocks_per_piece = (piece_length / BLOCK_SIZE).max(1) as usize;
        let blocks = file_length.div_ceil(BLOCK_SIZE).max(1);
        let leaf_width = blocks.next_power_of_two();
        let root_layer = leaf_width.trailing_zeros();
        let piece_layer_no = blocks_per_piece.trailing_zeros();
        if piece_layer.is_empty() || root_layer <= piece_layer_no {
            return None;
        }
        let width = (leaf_width >> piece_layer_no) as usize;
        if piece_layer.len() > width {
            return None;
        }
        let mut pad = pad_root(blocks_per_piece, [0; 32], sha256_pair);
        let mut layer = piece_layer.to_vec();
        layer.resize(width, pad);
        let mut layers = vec![layer];
        while layers.last().is_some_and(|l| l.len() > 1) {
            let below = layers.last().map(Vec::as_slice).unwrap_or_default();
            let next: Vec<[u8; 32]> = below
                .chunks_exact(2)
                .map(|p| sha256_pair(&p[0], &p[1]))
                .collect();
            pad = sha256_pair(&pad, &pad);
            layers.push(next);
        }
        if layers.last().and_then(|l| l.first()) != Some(&root) {
            return None;
        }
        Some(FileHashTree {
            file_offset,
            file_length,
            piece_length,
            piece_layer: piece_layer_no,
            root_layer,
            layers,
        })
    }

    /// The `hashes` payload for a request: the base layer's hashes, then one uncle per proof layer
    /// above the subtree the hashes themselves cover. `None` means a `hash reject`.
    pub fn answer(&self, r: &HashRequest) -> Option<Vec<[u8; 32]>> {
        if r.base_layer < self.piece_layer
            || r.base_layer >= self.root_layer
            || r.length == 0
            || r.length > MAX_HASHES
            || r.proof_layers >= self.root_layer - r.base_layer
        {
            return None;
        }
        let k = (r.base_layer - self.piece_layer) as usize;
        let layer = self.layers.get(k)?;
        let (index, length) = (r.index as usize, r.length as usize);
        let end = index.checked_add(length)?;
        if end > layer.len() {
            return None;
        }
        let mut out = layer[index..end].to_vec();
        // Layers a subtree of `length` hashes lets the receiver compute itself carry no uncle.
        let implied = length.next_power_of_two().trailing_zeros() as i64 - 1;
        let mut pos = index;
        for i in 0..r.proof_layers as usize {
            pos >>= 1;
            if (i as i64) >= implied {
                out.push(*self.layers.get(k + 1 + i)?.get(pos ^ 1)?);
            }
        }
        Some(out)
    }

    /// For a block-layer request: the file's pieces to read and hash, `(first, count)`.
    pub fn leaf_plan(&self, r: &HashRequest) -> Option<(u64, u64)> {
        if r.base_layer != 0
            || self.piece_layer == 0
            || r.length == 0
            || r.length > MAX_LEAVES
            || r.proof_layers >= self.root_layer
        {
            return None;
        }
        let end = u64::from(r.index) + u64::from(r.length);
        let pieces = self.file_length.div_ceil(self.piece_length);
        let bpp_log = self.piece_layer;
        let (first, last) = (u64::from(r.index) >> bpp_log, (end - 1) >> bpp_log);
        if end > 1u64 << self.root_layer || last >= pieces {
            return None;
        }
        Some((first, last - first + 1))
    }

    /// Answers a block-layer request from the leaf hashes of the pieces `leaf_plan` named
    /// (`2^piece_layer` per piece, zeros past the end of the file). `None` when they do not hash
    /// to the piece layer (the file changed) or the request is not one `leaf_plan` accepts.
    pub fn answer_leaves(&self, r: &HashRequest, leaves: &[[u8; 32]]) -> Option<Vec<[u8; 32]>> {
        let (first, count) = self.leaf_plan(r)?;
        let bpp = 1usize << self.piece_layer;
        if leaves.len() != count as usize * bpp {
            return None;
        }
        let base = first as usize * bpp;
        // Layers inside the pieces, from the leaves up to the piece layer.
        let mut local = vec![leaves.to_vec()];
        for _ in 0..self.piece_layer {
            let below = local.last()?;
            let next = below
                .chunks_exact(2)
                .map(|p| sha256_pair(&p[0], &p[1]))
                .collect();
            local.push(next);
        }
        let pieces = local.last()?;
        if pieces[..] != self.layers[0][first as usize..(first + count) as usize] {
            return None;
        }
        let index = r.index as usize;
        let mut out = leaves[index - base..index - base + r.length as usize].to_vec();
        let implied = (r.length as usize).next_power_of_two().trailing_zeros() as i64 - 1;
        let mut pos = index;
        for i in 0..r.proof_layers as usize {
            pos >>= 1;
            let layer = i as u32 + 1;
            if (i as i64) < implied {
                continue;
            }
            let node = if layer < self.piece_layer {
                *local
                    .get(layer as usize)?
                    .get((pos ^ 1).checked_sub(base >> layer)?)?
            } else {
                *self
                    .layers
                    .get((layer - self.piece_layer) as usize)?
                    .get(pos ^ 1)?
            };
            out.push(node);
        }
        Some(out)
    }

    /// Bytes a block-layer request makes us read and hash (0 if it is not one we answer from
    /// disk): what the seeder charges against its hashing budget before it starts.
    pub fn disk_cost(&self, r: &HashRequest) -> u64 {
        self.leaf_plan(r).map_or(0, |(first, count)| {
            ((first + count) * self.piece_length).min(self.file_length) - first * self.piece_length
        })
    }

    /// Reads and hashes the pieces a block-layer request covers, and answers it. Blocking; reads
    /// a bounded chunk at a time, so memory does not grow with the request.
    pub fn answer_from_disk(
        &self,
        r: &HashRequest,
        content: &Content,
    ) -> Result<Option<Vec<[u8; 32]>>, StorageError> {
        const READ: u64 = 256 * 1024;
        let Some((first, count)) = self.leaf_plan(r) else {
            return Ok(None);
        };
        let start = first * self.piece_length;
        let end = ((first + count) * self.piece_length).min(self.file_length);
        let bpp = 1usize << self.piece_layer;
        let mut leaves: Vec<[u8; 32]> = Vec::with_capacity(count as usize * bpp);
        let mut data = vec![0u8; READ.min(end - start) as usize];
        let mut at = start;
        while at < end {
            // READ is a multiple of the block size, so every chunk but the last holds whole
            // blocks.
            let n = (end - at).min(READ) as usize;
            content.read_at(self.file_offset + at, &mut data[..n])?;
            leaves.extend(
                data[..n]
                    .chunks(BLOCK_SIZE as usize)
                    .map(|b| -> [u8; 32] { Sha256::digest(b).into() }),
            );
            at += n as u64;
        }
        leaves.resize(count as usize * bpp, [0; 32]);
        Ok(self.answer_leaves(r, &leaves))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::merkle::v2_root_from_layer;

    fn h(i: u8) -> [u8; 32] {
        [i; 32]
    }

    fn req(base: u32, index: u32, length: u32, proof: u32) -> HashRequest {
        HashRequest {
            pieces_root: [0; 32],
            base_layer: base,
            index,
            length,
            proof_layers: proof,
        }
    }

    #[test]
    fn answers_with_hashes_and_uncles() {
        // 64 KiB pieces (4 blocks, piece layer 2); a file of 5 pieces and a bit: 6 pieces,
        // 8-wide piece layer, root at layer 5.
        let piece_length = 4 * BLOCK_SIZE;
        let pieces: Vec<[u8; 32]> = (1..=6).map(h).collect();
        let root = v2_root_from_layer(&pieces, 4);
        let tree =
            FileHashTree::new(root, 0, 5 * piece_length + 100, piece_length, &pieces).unwrap();
        let s = sha256_pair;
        let pad = pad_root(4, [0; 32], sha256_pair);

        // Two hashes at the piece layer with every proof layer below the root: the uncle of the
        // pair (pieces 2-3) at layer 3, then the right half at layer 4.
        let a = tree.answer(&req(2, 0, 2, 2)).unwrap();
        let right_half = s(&s(&pieces[4], &pieces[5]), &s(&pad, &pad));
        assert_eq!(
            a,
            vec![pieces[0], pieces[1], s(&pieces[2], &pieces[3]), right_half]
        );
        // Pieces 4-7 (two pads), whole half: length 4 implies one layer; the uncle is the left half.
        let b = tree.answer(&req(2, 4, 4, 2)).unwrap();
        let left = s(&s(&pieces[0], &pieces[1]), &s(&pieces[2], &pieces[3]));
        assert_eq!(b, vec![pieces[4], pieces[5], pad, pad, left]);
        // Uncles fold to the root.
        let right = s(&s(&b[0], &b[1]), &s(&b[2], &b[3]));
        assert_eq!(s(&b[4], &right), root);
        // All 8 at once, no proof.
        assert_eq!(tree.answer(&req(2, 0, 8, 0)).unwrap().len(), 8);
        // One layer up, with the one uncle below the root.
        assert_eq!(
            tree.answer(&req(3, 2, 2, 1)).unwrap(),
            vec![s(&pieces[4], &pieces[5]), s(&pad, &pad), left]
        );
    }

    #[test]
    fn rejects_what_it_cannot_or_must_not_answer() {
        let piece_length = 4 * BLOCK_SIZE;
        let pieces: Vec<[u8; 32]> = (1..=6).map(h).collect();
        let root = v2_root_from_layer(&pieces, 4);
        let tree =
            FileHashTree::new(root, 0, 5 * piece_length + 100, piece_length, &pieces).unwrap();
        assert!(
            tree.answer(&req(0, 0, 4, 0)).is_none(),
            "block layer: from disk only"
        );
        assert!(tree.answer(&req(5, 0, 1, 0)).is_none(), "the root layer");
        assert!(tree.answer(&req(2, 6, 4, 0)).is_none(), "past the layer");
        assert!(tree.answer(&req(2, u32::MAX, 2, 0)).is_none(), "overflow");
        assert!(tree.answer(&req(2, 0, 2, 3)).is_none(), "proof to the root");
        assert!(tree.answer(&req(2, 0, 0, 0)).is_none());
        assert!(
            FileHashTree::new([9; 32], 0, 5 * piece_length + 100, piece_length, &pieces).is_none()
        );
        // A file of one piece has no layer below its root to serve.
        assert!(FileHashTree::new(pieces[0], 0, 100, piece_length, &pieces[..1]).is_none());
    }

    #[test]
    fn block_layer_answers_from_leaves() {
        // 4 blocks per piece, a file of 6 pieces less a bit: 23 blocks, 32 leaves.
        let piece_length = 4 * BLOCK_SIZE;
        let file_length = 6 * piece_length - 100;
        let leaves: Vec<[u8; 32]> = (0..24u8)
            .map(|i| if i < 23 { [i + 1; 32] } else { [0; 32] })
            .collect();
        let pieces: Vec<[u8; 32]> = leaves
            .chunks(4)
            .map(|c| crate::metainfo::merkle::v2_root(c, 4))
            .collect();
        let root = v2_root_from_layer(&pieces, 4);
        let tree = FileHashTree::new(root, 0, file_length, piece_length, &pieces).unwrap();
        let s = sha256_pair;
        // Two blocks (8, 9) of piece 2 with every proof layer below the root (layers 1..4).
        let r = req(0, 8, 2, 4);
        assert_eq!(tree.leaf_plan(&r), Some((2, 1)));
        let a = tree.answer_leaves(&r, &leaves[8..12]).unwrap();
        let pad = pad_root(4, [0; 32], sha256_pair);
        let right_half = s(&s(&pieces[4], &pieces[5]), &s(&pad, &pad));
        assert_eq!(
            a,
            vec![
                leaves[8],
                leaves[9],
                s(&leaves[10], &leaves[11]),
                pieces[3],
                s(&pieces[0], &pieces[1]),
                right_half
            ]
        );
        // The proof folds to the root.
        let p2 = s(&s(&a[0], &a[1]), &a[2]);
        assert_eq!(s(&s(&a[4], &s(&p2, &a[3])), &a[5]), root);
        // A whole piece's blocks; wrong leaves are refused.
        let w = req(0, 4, 4, 2);
        assert_eq!(tree.leaf_plan(&w), Some((1, 1)));
        assert_eq!(
            tree.answer_leaves(&w, &leaves[4..8]).unwrap()[..4],
            leaves[4..8]
        );
        assert!(tree.answer_leaves(&w, &leaves[8..12]).is_none());
        assert!(
            tree.leaf_plan(&req(0, 24, 8, 0)).is_none(),
            "past the file's pieces"
        );
        assert!(
            tree.leaf_plan(&req(0, 0, 1024, 0)).is_none(),
            "over MAX_LEAVES"
        );
    }
}
