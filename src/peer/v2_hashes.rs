//! BEP 52 hash requests answered from a file's piece layer: the layers from the pieces up to the
//! `pieces root` are built once when a torrent is published, so an answer costs no hashing.
//!
//! Layers are counted from the leaves (16 KiB blocks, layer 0); the piece layer is
//! `log2(piece length / 16 KiB)`. A seed answers requests at the piece layer and above; block-layer
//! requests (sent by clients only after a piece failed its check) are rejected.

use crate::metainfo::merkle::{pad_root, sha256_pair, BLOCK_SIZE};

use super::message::HashRequest;

/// Largest `length` answered: libtorrent's own bound on what it requests.
pub const MAX_HASHES: u32 = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashTree {
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
        let tree = FileHashTree::new(root, 5 * piece_length + 100, piece_length, &pieces).unwrap();
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
        let tree = FileHashTree::new(root, 5 * piece_length + 100, piece_length, &pieces).unwrap();
        assert!(tree.answer(&req(0, 0, 4, 0)).is_none(), "block layer");
        assert!(tree.answer(&req(5, 0, 1, 0)).is_none(), "the root layer");
        assert!(tree.answer(&req(2, 6, 4, 0)).is_none(), "past the layer");
        assert!(tree.answer(&req(2, u32::MAX, 2, 0)).is_none(), "overflow");
        assert!(tree.answer(&req(2, 0, 2, 3)).is_none(), "proof to the root");
        assert!(tree.answer(&req(2, 0, 0, 0)).is_none());
        assert!(
            FileHashTree::new([9; 32], 5 * piece_length + 100, piece_length, &pieces).is_none()
        );
        // A file of one piece has no layer below its root to serve.
        assert!(FileHashTree::new(pieces[0], 100, piece_length, &pieces[..1]).is_none());
    }
}
