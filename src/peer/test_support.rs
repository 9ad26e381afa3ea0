//! Test helpers shared by the peer modules' unit tests.

use std::path::Path;

use super::Published;
use crate::metainfo::Metainfo;

/// A real v1 torrent of 40 000 bytes in 16 KiB pieces (3 pieces), made by our own creator.
pub fn v1_torrent(dir: &Path) -> Published {
    torrent(dir, crate::metainfo::Format::V1, 40_000)
}

/// A real torrent of `format` over one file of `len` bytes in 16 KiB pieces.
pub fn torrent(dir: &Path, format: crate::metainfo::Format, len: u32) -> Published {
    torrent_with(dir, format, len, 16384)
}

/// A real torrent of `format` over one file of `len` bytes in pieces of `piece_length`.
pub fn torrent_with(
    dir: &Path,
    format: crate::metainfo::Format,
    len: u32,
    piece_length: u64,
) -> Published {
    let file = dir.join("data.bin");
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 991) as u8).collect();
    std::fs::write(&file, bytes).unwrap();
    let content =
        crate::hash::walk::collect(&file, crate::hash::walk::WalkOptions::default()).unwrap();
    let opts = crate::hash::CreateOptions {
        piece_length: Some(piece_length),
        ..crate::hash::CreateOptions::new(format)
    };
    let progress = std::sync::atomic::AtomicU64::new(0);
    let meta = crate::hash::create(&content, &opts, &progress, None).unwrap();
    // Through the bytes, as a published torrent is loaded.
    let meta = Metainfo::from_bytes(&meta.to_bytes()).unwrap();
    Published::open(meta, &file).unwrap()
}
