//! Merkle trees over fixed-width leaves: BEP 30's SHA-1 tree of piece hashes and BEP 52's
//! SHA-256 tree of 16 KiB blocks share one shape (a complete binary tree whose missing leaves are
//! filled with a given pad value).

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// BEP 52 block size: the leaves of a v2 file's tree hash 16 KiB each.
pub const BLOCK_SIZE: u64 = 16 * 1024;

pub fn sha1_pair(left: &[u8; 20], right: &[u8; 20]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(left);
    h.update(right);
    h.finalize().into()
}

pub fn sha256_pair(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the complete binary tree of `width` leaves (a power of two, at least `leaves.len()`)
/// whose first leaves are `leaves` and the rest `pad`; parents are `pair(left, right)`.
pub fn root<const N: usize>(
    leaves: &[[u8; N]],
    width: usize,
    pad: [u8; N],
    pair: fn(&[u8; N], &[u8; N]) -> [u8; N],
) -> [u8; N] {
    debug_assert!(width.is_power_of_two() && width >= leaves.len());
    if leaves.is_empty() {
        return pad_root(width, pad, pair);
    }
    let mut level: Vec<[u8; N]> = leaves.to_vec();
    let mut pad = pad;
    let mut width = width;
    while width > 1 {
        if level.len() % 2 == 1 {
            level.push(pad);
        }
        level = level.chunks_exact(2).map(|p| pair(&p[0], &p[1])).collect();
        pad = pair(&pad, &pad);
        width /= 2;
    }
    level[0]
}

/// Root of a tree of `width` leaves that are all `pad`.
pub fn pad_root<const N: usize>(
    width: usize,
    pad: [u8; N],
    pair: fn(&[u8; N], &[u8; N]) -> [u8; N],
) -> [u8; N] {
    let mut node = pad;
    let mut width = width;
    while width > 1 {
        node = pair(&node, &node);
        width /= 2;
    }
    node
}

/// BEP 30 root hash: piece hashes from the left, 20 zero bytes for the remaining leaves.
pub fn bep30_root(piece_hashes: &[[u8; 20]]) -> [u8; 20] {
    let width = piece_hashes.len().max(1).next_power_of_two();
    root(piece_hashes, width, [0; 20], sha1_pair)
}

/// BEP 52 root of a piece's (or a small file's) blocks: leaves padded with zero hashes to `width`.
pub fn v2_root(leaves: &[[u8; 32]], width: usize) -> [u8; 32] {
    root(leaves, width, [0; 32], sha256_pair)
}

/// BEP 52 `pieces root` of a file larger than one piece, from its piece layer: pieces past the end
/// of the file stand for subtrees of zero leaves, `blocks_per_piece` wide.
pub fn v2_root_from_layer(layer: &[[u8; 32]], blocks_per_piece: usize) -> [u8; 32] {
    let pad = pad_root(blocks_per_piece, [0; 32], sha256_pair);
    root(
        layer,
        layer.len().max(1).next_power_of_two(),
        pad,
        sha256_pair,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u8) -> [u8; 20] {
        Sha1::digest([i]).into()
    }

    const Z: [u8; 20] = [0; 20];

    // Each expected root is written out as the tree of BEP 30's figure, level by level.
    #[test]
    fn bep30_roots_by_hand() {
        let p: Vec<[u8; 20]> = (0..8).map(h).collect();
        let s = sha1_pair;

        assert_eq!(bep30_root(&p[..1]), p[0]);
        assert_eq!(bep30_root(&p[..2]), s(&p[0], &p[1]));
        // 3 pieces: 4 leaves, the last a zero filler.
        assert_eq!(bep30_root(&p[..3]), s(&s(&p[0], &p[1]), &s(&p[2], &Z)));
        // 5 pieces: 8 leaves; the right half is p4 then three fillers.
        let zz = s(&Z, &Z);
        assert_eq!(
            bep30_root(&p[..5]),
            s(
                &s(&s(&p[0], &p[1]), &s(&p[2], &p[3])),
                &s(&s(&p[4], &Z), &zz)
            )
        );
        // 8 pieces: a full tree.
        assert_eq!(
            bep30_root(&p[..8]),
            s(
                &s(&s(&p[0], &p[1]), &s(&p[2], &p[3])),
                &s(&s(&p[4], &p[5]), &s(&p[6], &p[7]))
            )
        );
    }

    #[test]
    fn v2_layer_root_pads_with_zero_subtrees() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let c = [3u8; 32];
        // Pieces of 4 blocks: a missing piece is the root of 4 zero leaves.
        let z = [0u8; 32];
        let zp = sha256_pair(&sha256_pair(&z, &z), &sha256_pair(&z, &z));
        assert_eq!(
            v2_root_from_layer(&[a, b, c], 4),
            sha256_pair(&sha256_pair(&a, &b), &sha256_pair(&c, &zp))
        );
        assert_eq!(v2_root(&[a], 1), a);
        assert_eq!(
            v2_root(&[a, b, c], 4),
            sha256_pair(&sha256_pair(&a, &b), &sha256_pair(&c, &z))
        );
    }
}
