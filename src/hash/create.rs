//! Making a torrent from listed content: plan the piece space, hash it, build the metainfo, and
//! check that no file changed while it was read.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};

use thiserror::Error;

use super::walk::Content;
use super::{content_hashes, digest_backlog, hash_pieces_with, FileDigests, HashError, Job, Mode};
use crate::metainfo::{piece_size, plan_files, Format, Metainfo, MetainfoError, NewTorrent};
use crate::storage::{FileId, Layout, Root};

#[derive(Debug, Error)]
pub enum CreateError {
    #[error("`{0}` has no content (zero bytes in total)")]
    Empty(String),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Metainfo(#[from] MetainfoError),
}

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub format: Format,
    /// `None` picks by the rule in `piece_size::auto`.
    pub piece_length: Option<u64>,
    pub threads: usize,
    pub private: bool,
    pub source: Option<String>,
    pub trackers: Vec<String>,
    pub web_seeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

impl CreateOptions {
    /// `format` with the defaults: automatic piece size, one thread, public, no trackers, web
    /// seeds, comment, creator or date.
    pub fn new(format: Format) -> Self {
        CreateOptions {
            format,
            piece_length: None,
            threads: 1,
            private: false,
            source: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
        }
    }
}

pub fn create(
    content: &Content,
    opts: &CreateOptions,
    progress: &AtomicU64,
    cancel: Option<&AtomicBool>,
) -> Result<Metainfo, CreateError> {
    make(content, &Root::anywhere(), opts, progress, cancel, false).map(|c| c.meta)
}

/// A torrent made by `create_with_digests`, with what the catalog keeps beside it.
#[derive(Debug)]
pub struct Created {
    pub meta: Metainfo,
    /// The SHA-1 of every piece: a BEP 30 torrent keeps only their root, and the seeder needs
    /// them all to send hash lists (kept, it need not read the content again).
    pub pieces: Vec<[u8; 20]>,
    /// The SHA-256 of each file, in `content.files` order (pad files have none).
    pub file_sha256: Vec<[u8; 32]>,
}

/// `create`, also computing the SHA-256 of every file in the same read of the data (and keeping
/// the piece hashes). Files are opened from `root` and checked against the identity the walk
/// listed.
pub fn create_with_digests(
    content: &Content,
    root: &Root,
    opts: &CreateOptions,
    progress: &AtomicU64,
    cancel: Option<&AtomicBool>,
) -> Result<Created, CreateError> {
    make(content, root, opts, progress, cancel, true)
}

fn make(
    content: &Content,
    root: &Root,
    opts: &CreateOptions,
    progress: &AtomicU64,
    cancel: Option<&AtomicBool>,
    with_digests: bool,
) -> Result<Created, CreateError> {
    let total = content.total();
    if total == 0 {
        return Err(CreateError::Empty(content.name.clone()));
    }
    let piece_length = opts.piece_length.unwrap_or_else(|| piece_size::auto(total));
    let listed: Vec<(Vec<String>, u64)> = content
        .files
        .iter()
        .map(|f| (f.path.clone(), f.length))
        .collect();
    let planned = plan_files(&listed, opts.format, piece_length);
    let mut real = content.files.iter();
    let (paths, stamps): (Vec<Option<PathBuf>>, Vec<FileId>) = planned
        .iter()
        .map(|f| match if f.pad { None } else { real.next() } {
            Some(s) => (Some(s.disk.clone()), s.id()),
            None => (None, FileId::default()),
        })
        .unzip();
    let layout = if opts.format == Format::V2 {
        Layout::aligned(piece_length, planned.iter().map(|f| f.length))
    } else {
        Layout::contiguous(piece_length, planned.iter().map(|f| (f.length, f.pad)))
    };

    let digests =
        with_digests.then(|| FileDigests::new(&layout, digest_backlog(&layout, opts.threads)));
    let job = Job {
        layout: &layout,
        root,
        paths: &paths,
        v1: opts.format.hashes_v1_pieces(),
        v2: opts.format.has_v2(),
        threads: opts.threads,
        mode: Mode::Strict,
        progress,
        cancel,
        // A file that grew, or was rewritten in place, would give a mix of old and new bytes.
        stamps: Some(&stamps),
    };
    let pieces = hash_pieces_with(&job, digests.as_ref())?;
    let file_sha256 = match digests {
        Some(d) => d
            .finish()
            .ok_or(HashError::Cancelled)?
            .into_iter()
            .zip(&planned)
            .filter(|(_, f)| !f.pad)
            .map(|(d, _)| d.ok_or(HashError::Cancelled))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };

    let hashes = content_hashes(&layout, pieces);
    let v1_pieces = hashes.pieces.clone();
    let meta = NewTorrent {
        name: content.name.clone(),
        format: opts.format,
        piece_length,
        single_file: content.single_file,
        files: planned,
        hashes,
        private: opts.private,
        source: opts.source.clone(),
        trackers: opts.trackers.clone(),
        web_seeds: opts.web_seeds.clone(),
        comment: opts.comment.clone(),
        created_by: opts.created_by.clone(),
        creation_date: opts.creation_date,
    }
    .build()?;
    Ok(Created {
        meta,
        pieces: v1_pieces,
        file_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::walk::{collect, WalkOptions};
    use sha1::Sha1;
    use sha2::{Digest, Sha256};

    fn h(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }
    fn pair(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut x = a.to_vec();
        x.extend_from_slice(b);
        h(&x)
    }
    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }
    fn opts(format: Format, piece_length: u64) -> CreateOptions {
        CreateOptions {
            piece_length: Some(piece_length),
            threads: 2,
            ..CreateOptions::new(format)
        }
    }
    fn make(files: &[(&str, &[u8])], format: Format, piece_length: u64) -> Metainfo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        for (name, data) in files {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let content = collect(&root, WalkOptions::default()).unwrap();
        create(
            &content,
            &opts(format, piece_length),
            &AtomicU64::new(0),
            None,
        )
        .unwrap()
    }

    const B: usize = 16 * 1024;

    // Roots worked out from the definition in BEP 52, block by block.
    #[test]
    fn v2_roots_by_hand() {
        let one = bytes(1, 1);
        let block = bytes(B, 2);
        let block_plus = bytes(B + 1, 3);
        let big = bytes(5 * B, 4); // 80 KiB in 32 KiB pieces: 3 pieces
        let meta = make(
            &[("a", &one), ("b", &block), ("c", &block_plus), ("d", &big)],
            Format::V2,
            2 * B as u64,
        );
        let roots: Vec<[u8; 32]> = meta.files.iter().map(|f| f.pieces_root.unwrap()).collect();
        assert_eq!(roots[0], h(&one));
        assert_eq!(roots[1], h(&block));
        assert_eq!(roots[2], pair(&h(&block_plus[..B]), &h(&block_plus[B..])));
        let l: Vec<[u8; 32]> = big.chunks(B).map(h).collect();
        let z = [0u8; 32];
        let p = [pair(&l[0], &l[1]), pair(&l[2], &l[3]), pair(&l[4], &z)];
        let zero_piece = pair(&z, &z);
        assert_eq!(meta.piece_layers[&roots[3]], p.to_vec());
        assert_eq!(
            roots[3],
            pair(&pair(&p[0], &p[1]), &pair(&p[2], &zero_piece))
        );
        // Only the file larger than a piece has a layer.
        assert_eq!(meta.piece_layers.len(), 1);
    }

    // v1 pieces over files laid end to end, compared with SHA-1 of the plain concatenation.
    #[test]
    fn v1_pieces_cross_files_like_the_concatenation() {
        let a = bytes(B + 100, 5);
        let b = bytes(10, 6);
        let c = bytes(3 * B, 7);
        let meta = make(&[("x/a", &a), ("x/b", &b), ("y", &c)], Format::V1, B as u64);
        let all = [a, b, c].concat();
        let expected: Vec<[u8; 20]> = all.chunks(B).map(|p| Sha1::digest(p).into()).collect();
        assert_eq!(meta.pieces, expected);
        let merkle = make(&[("x/a", &all)], Format::Merkle, B as u64);
        assert_eq!(
            merkle.root_hash,
            Some(crate::metainfo::merkle::bep30_root(&expected))
        );
    }

    // Hybrid: v1 pieces include the pad files' zeros, and v2 roots equal a v2-only torrent's.
    #[test]
    fn hybrid_pads_hash_as_zeros() {
        let a = bytes(100, 8);
        let b = bytes(B + 5, 9);
        let hybrid = make(&[("a", &a), ("b", &b)], Format::Hybrid, B as u64);
        let v2 = make(&[("a", &a), ("b", &b)], Format::V2, B as u64);
        let mut stream = a.clone();
        stream.resize(B, 0);
        stream.extend_from_slice(&b);
        let expected: Vec<[u8; 20]> = stream.chunks(B).map(|p| Sha1::digest(p).into()).collect();
        assert_eq!(hybrid.pieces, expected);
        let roots = |m: &Metainfo| -> Vec<[u8; 32]> {
            m.files.iter().filter_map(|f| f.pieces_root).collect()
        };
        assert_eq!(roots(&hybrid), roots(&v2));
        assert_eq!(hybrid.files.iter().filter(|f| f.pad).count(), 1);
    }

    // A file rewritten between listing and reading is refused, not hashed as a mix.
    #[test]
    fn a_file_changed_after_listing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes(3 * B, 1)).unwrap();
        let content = collect(&path, WalkOptions::default()).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let err = create(
            &content,
            &opts(Format::V1, B as u64),
            &AtomicU64::new(0),
            None,
        );
        assert!(
            matches!(
                err,
                Err(CreateError::Hash(crate::hash::HashError::Changed(_)))
            ),
            "{err:?}"
        );
    }

    /// Each file's SHA-256 comes out of the same read, for every format, pad files and empty
    /// files among them, with several workers finishing pieces out of order.
    #[test]
    fn every_files_sha256_is_computed_while_hashing() {
        let files: [(&str, Vec<u8>); 4] = [
            ("t/a", bytes(3 * B + 17, 1)),
            ("t/b", Vec::new()),
            ("t/c", bytes(100, 2)),
            ("t/d", bytes(40 * B + 5, 3)),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, data) in &files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let content = collect(&dir.path().join("t"), WalkOptions::default()).unwrap();
        let want: Vec<[u8; 32]> = content
            .files
            .iter()
            .map(|f| Sha256::digest(std::fs::read(&f.disk).unwrap()).into())
            .collect();
        for format in [Format::V1, Format::Merkle, Format::V2, Format::Hybrid] {
            let made = create_with_digests(
                &content,
                &Root::anywhere(),
                &CreateOptions {
                    threads: 3,
                    ..opts(format, B as u64)
                },
                &AtomicU64::new(0),
                None,
            )
            .unwrap();
            assert_eq!(made.file_sha256, want, "{format}");
        }
    }

    #[test]
    fn empty_content_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("e"), b"").unwrap();
        let content = collect(dir.path(), WalkOptions::default()).unwrap();
        let err = create(
            &content,
            &opts(Format::V1, B as u64),
            &AtomicU64::new(0),
            None,
        );
        assert!(matches!(err, Err(CreateError::Empty(_))));
    }
}
