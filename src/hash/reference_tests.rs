//! Property tests: the hashing pipeline agrees with a straightforward reference (hash the whole
//! concatenation, build trees by recursion) for random file sets, piece sizes and formats, and
//! every torrent it makes loads back to the same model.

use std::sync::atomic::AtomicU64;

use proptest::prelude::*;
use sha1::{Digest, Sha1};
use sha2::Sha256;

use super::walk::{collect, WalkOptions};
use super::{create, CreateOptions};
use crate::metainfo::{merkle, Format, Metainfo};

const BLOCK: usize = 16 * 1024;

/// Root of `leaves` padded with zero hashes to a power of two, by recursion.
fn reference_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    fn go(nodes: &[[u8; 32]]) -> [u8; 32] {
        if nodes.len() == 1 {
            return nodes[0];
        }
        let (l, r) = nodes.split_at(nodes.len() / 2);
        let mut h = Sha256::new();
        h.update(go(l));
        h.update(go(r));
        h.finalize().into()
    }
    let mut padded = leaves.to_vec();
    padded.resize(leaves.len().next_power_of_two(), [0; 32]);
    go(&padded)
}

fn leaves(data: &[u8]) -> Vec<[u8; 32]> {
    data.chunks(BLOCK)
        .map(|b| Sha256::digest(b).into())
        .collect()
}

fn file_set() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::vec((0usize..90_000, any::<u8>()), 1..5).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (len, seed))| {
                let data = (0..len)
                    .map(|j| (j as u8).wrapping_mul(seed | 1).wrapping_add(seed))
                    .collect();
                (format!("d{}/f{i}", i % 2), data)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn pipeline_matches_the_reference(
        files in file_set(),
        piece_exp in 14u32..18,
        format in prop_oneof![Just(Format::V1), Just(Format::Merkle), Just(Format::V2), Just(Format::Hybrid)],
        threads in 1usize..4,
    ) {
        let total: usize = files.iter().map(|(_, d)| d.len()).sum();
        prop_assume!(total > 0);
        let piece = 1usize << piece_exp;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        for (name, data) in &files {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let content = collect(&root, WalkOptions::default()).unwrap();
        let opts = CreateOptions {
            piece_length: Some(piece as u64),
            threads,
            ..CreateOptions::new(format)
        };
        let meta = create(&content, &opts, &AtomicU64::new(0), None).unwrap();
        prop_assert_eq!(Metainfo::from_bytes(&meta.to_bytes()).unwrap(), meta.clone());

        // Files in the order the torrent lists them (path component order).
        let mut sorted = files.clone();
        sorted.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));

        // v1: SHA-1 over the concatenation, with hybrid pad zeros before unaligned files.
        let mut stream = Vec::new();
        for (_, data) in &sorted {
            if format == Format::Hybrid && !data.is_empty() && stream.len() % piece != 0 {
                stream.resize(stream.len().next_multiple_of(piece), 0);
            }
            stream.extend_from_slice(data);
        }
        let pieces: Vec<[u8; 20]> = stream.chunks(piece).map(|p| Sha1::digest(p).into()).collect();
        match format {
            Format::V1 | Format::Hybrid => prop_assert_eq!(&meta.pieces, &pieces),
            Format::Merkle => prop_assert_eq!(meta.root_hash, Some(merkle::bep30_root(&pieces))),
            Format::V2 => {}
        }
        // v2: each file's root and layer from its own leaves.
        if format.has_v2() {
            let real: Vec<_> = meta.files.iter().filter(|f| !f.pad).collect();
            for ((_, data), f) in sorted.iter().zip(real) {
                if data.is_empty() {
                    prop_assert_eq!(f.pieces_root, None);
                    continue;
                }
                let l = leaves(data);
                prop_assert_eq!(f.pieces_root, Some(reference_root(&l)));
                if data.len() > piece {
                    let per = piece / BLOCK;
                    let mut padded = l.clone();
                    padded.resize(l.len().next_multiple_of(per), [0; 32]);
                    let layer: Vec<[u8; 32]> = padded.chunks(per).map(reference_root).collect();
                    prop_assert_eq!(&meta.piece_layers[&f.pieces_root.unwrap()], &layer);
                }
            }
        }
    }
}
