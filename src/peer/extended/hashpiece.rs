//! BEP 30 `Tr_hashpiece`: a Merkle torrent's blocks, the first of each piece carrying the hash
//! list that proves the piece against the root hash.
//!
//! ```text
//! +-------+-------+----------------+---------------------+------------+
//! | index | begin | hash list len  | bencoded hash list  | block data |
//! +-------+-------+----------------+---------------------+------------+
//! ```
//!
//! The hash list is `[[offset, hash], ...]`: the piece's own hash, its sibling, then each uncle up
//! to and including the root, offsets numbering the tree breadth-first from 0 at the root.

use crate::bencode::{decode_prefix, Value};
use crate::metainfo::merkle::sha1_pair;
use crate::peer::WireError;

pub const NAME: &str = "Tr_hashpiece";

/// The whole BEP 30 tree of a Merkle torrent, kept so hash lists cost no hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bep30Tree {
    /// Breadth-first: node 0 is the root, leaves start at `width - 1`.
    nodes: Vec<[u8; 20]>,
    width: usize,
}

impl Bep30Tree {
    pub fn new(piece_hashes: &[[u8; 20]]) -> Self {
        let width = piece_hashes.len().max(1).next_power_of_two();
        let mut nodes = vec![[0u8; 20]; 2 * width - 1];
        nodes[width - 1..width - 1 + piece_hashes.len()].copy_from_slice(piece_hashes);
        for n in (0..width - 1).rev() {
            nodes[n] = sha1_pair(&nodes[2 * n + 1], &nodes[2 * n + 2]);
        }
        Bep30Tree { nodes, width }
    }

    pub fn root(&self) -> [u8; 20] {
        self.nodes[0]
    }

    /// (offset, hash) pairs for `piece`: itself, sibling, uncles, root. `None` past the end.
    pub fn hash_list(&self, piece: u32) -> Option<Vec<(u32, [u8; 20])>> {
        let piece = piece as usize;
        if piece >= self.width {
            return None;
        }
        let mut n = self.width - 1 + piece;
        let mut out = vec![(n as u32, self.nodes[n])];
        while n > 0 {
            let sibling = if n % 2 == 1 { n + 1 } else { n - 1 };
            out.push((sibling as u32, self.nodes[sibling]));
            n = (n - 1) / 2;
        }
        out.push((0, self.nodes[0]));
        Some(out)
    }
}

fn encode_list(list: &[(u32, [u8; 20])]) -> Vec<u8> {
    Value::List(
        list.iter()
            .map(|(o, h)| Value::List(vec![Value::Int((*o).into()), Value::Bytes(h.to_vec())]))
            .collect(),
    )
    .encode()
}

/// The head of a `Tr_hashpiece` payload (everything before the block data).
pub fn header(index: u32, begin: u32, list: &[(u32, [u8; 20])]) -> Vec<u8> {
    let encoded = encode_list(list);
    let mut out = Vec::with_capacity(12 + encoded.len());
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&begin.to_be_bytes());
    out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    out.extend_from_slice(&encoded);
    out
}

/// A received `Tr_hashpiece` (the client side, used by tests and any future downloader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashPiece {
    pub index: u32,
    pub begin: u32,
    pub hashes: Vec<(u32, [u8; 20])>,
    pub data: Vec<u8>,
}

/// Longest hash list accepted: 64 levels of 20-byte hashes with their offsets.
const MAX_LIST: usize = 64 * 40;

pub fn parse(payload: &[u8]) -> Result<HashPiece, WireError> {
    let bad = WireError::BadExtended("malformed Tr_hashpiece");
    if payload.len() < 12 {
        return Err(bad);
    }
    let be = |at: usize| {
        u32::from_be_bytes([
            payload[at],
            payload[at + 1],
            payload[at + 2],
            payload[at + 3],
        ])
    };
    let (index, begin, len) = (be(0), be(4), be(8) as usize);
    if len > MAX_LIST || payload.len() < 12 + len {
        return Err(bad);
    }
    let (node, used) = decode_prefix(&payload[12..12 + len]).map_err(|_| bad.clone())?;
    if used != len {
        return Err(bad);
    }
    let mut hashes = Vec::new();
    for pair in node.as_list().ok_or(bad.clone())? {
        let pair = pair.as_list().filter(|p| p.len() == 2).ok_or(bad.clone())?;
        let offset = pair[0]
            .as_int()
            .and_then(|o| u32::try_from(o).ok())
            .ok_or(bad.clone())?;
        let hash: [u8; 20] = pair[1]
            .as_bytes()
            .and_then(|h| h.try_into().ok())
            .ok_or(bad.clone())?;
        hashes.push((offset, hash));
    }
    Ok(HashPiece {
        index,
        begin,
        hashes,
        data: payload[12 + len..].to_vec(),
    })
}

/// Checks a piece's SHA-1 against `root` through a received hash list: true when the list starts
/// at the piece's own leaf with that hash and folding in each sibling/uncle reaches `root`.
pub fn verify(
    piece: u32,
    piece_count: u32,
    piece_hash: [u8; 20],
    list: &[(u32, [u8; 20])],
    root: [u8; 20],
) -> bool {
    let width = (piece_count.max(1) as usize).next_power_of_two();
    let Some(((first, h), rest)) = list.split_first() else {
        return false;
    };
    let mut n = width - 1 + piece as usize;
    if *first as usize != n || *h != piece_hash || piece >= piece_count {
        return false;
    }
    let mut acc = piece_hash;
    for (offset, hash) in rest {
        if n == 0 {
            // The last entry is the root itself.
            return *offset == 0 && *hash == root && acc == root;
        }
        let sibling = if n % 2 == 1 { n + 1 } else { n - 1 };
        if *offset as usize != sibling {
            return false;
        }
        acc = if n % 2 == 1 {
            sha1_pair(&acc, hash)
        } else {
            sha1_pair(hash, &acc)
        };
        n = (n - 1) / 2;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::merkle::bep30_root;
    use sha1::{Digest, Sha1};

    fn h(i: u8) -> [u8; 20] {
        Sha1::digest([i]).into()
    }

    #[test]
    fn hash_list_follows_bep30_figure() {
        // The figure of BEP 30: 13 pieces in a 16-leaf tree; piece 8 is node 23.
        let pieces: Vec<[u8; 20]> = (0..13).map(h).collect();
        let tree = Bep30Tree::new(&pieces);
        assert_eq!(tree.root(), bep30_root(&pieces));
        let list = tree.hash_list(8).unwrap();
        let offsets: Vec<u32> = list.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, vec![23, 24, 12, 6, 1, 0]);
        assert_eq!(list[0].1, pieces[8]);
        assert_eq!(list[1].1, pieces[9]);
        assert_eq!(list[5].1, tree.root());
        assert!(verify(8, 13, pieces[8], &list, tree.root()));
        assert!(!verify(8, 13, pieces[9], &list, tree.root()));
        assert!(!verify(9, 13, pieces[8], &list, tree.root()));
        let mut forged = list.clone();
        forged[2].1 = [0; 20];
        assert!(!verify(8, 13, pieces[8], &forged, tree.root()));
        assert!(tree.hash_list(16).is_none());
        // A one-piece tree: the leaf is the root.
        let one = Bep30Tree::new(&pieces[..1]);
        let list = one.hash_list(0).unwrap();
        assert_eq!(list, vec![(0, pieces[0]), (0, pieces[0])]);
        assert!(verify(0, 1, pieces[0], &list, pieces[0]));
    }

    #[test]
    fn header_round_trips_byte_exact() {
        let list = vec![(1u32, [0xAB; 20]), (0, [0xCD; 20])];
        let head = header(3, 0, &list);
        let mut expected = vec![0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 58];
        expected.extend_from_slice(b"lli1e20:");
        expected.extend_from_slice(&[0xAB; 20]);
        expected.extend_from_slice(b"eli0e20:");
        expected.extend_from_slice(&[0xCD; 20]);
        expected.extend_from_slice(b"ee");
        assert_eq!(head, expected);
        let mut payload = head;
        payload.extend_from_slice(b"data");
        let parsed = parse(&payload).unwrap();
        assert_eq!(parsed.hashes, list);
        assert_eq!(parsed.data, b"data");
        assert_eq!(header(3, 16384, &[])[8..], [0, 0, 0, 2, b'l', b'e']);
        assert!(parse(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
