//! The hashing pipeline: worker threads claim pieces in order, read their spans with positioned
//! reads into a small per-thread buffer (so the bytes are hashed while still in cache), and compute
//! the piece's SHA-1 and, for v2, the SHA-256 of each 16 KiB block folded into the piece's subtree.
//!
//! Plain threads, not the async runtime: this is CPU work, and the pool is bounded by `threads`.
//! The catalog also has each file's SHA-256 computed from the same reads (`FileDigests`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use sha1::{Digest, Sha1};
use sha2::Sha256;
use thiserror::Error;

use super::FileDigests;
use crate::metainfo::merkle::{self, BLOCK_SIZE};
use crate::storage::{FileId, Layout, Root, StorageError};

/// Bytes read at a time: a multiple of the v2 block size, small enough to stay in L2.
const CHUNK: usize = 256 * 1024;
/// Pieces are claimed in runs of about this many bytes, so that small files are mostly opened
/// by one worker, not by every worker whose piece touches them.
const CLAIM_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Error)]
pub enum HashError {
    #[error("cannot open `{path}`: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{0}` became shorter while it was being hashed")]
    Shrunk(PathBuf),
    #[error("`{0}` changed while it was being hashed")]
    Changed(PathBuf),
    #[error("hashing was cancelled")]
    Cancelled,
    #[error(transparent)]
    Refused(StorageError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Any read failure stops the job (creating a torrent).
    Strict,
    /// A piece that cannot be read is recorded as unreadable and the job goes on (verifying).
    Lenient,
}

pub struct Job<'a> {
    pub layout: &'a Layout,
    /// Where the files are opened from: beneath the content folder (the catalog), or anywhere
    /// (content the user named).
    pub root: &'a Root,
    /// The file on disk for each layout file; `None` for pad files.
    pub paths: &'a [Option<PathBuf>],
    pub v1: bool,
    pub v2: bool,
    pub threads: usize,
    pub mode: Mode,
    /// Bytes hashed so far, for progress displays.
    pub progress: &'a AtomicU64,
    /// Set from outside to stop the job early.
    pub cancel: Option<&'a AtomicBool>,
    /// Per layout file, its identity when listed (device, inode, size, mtime): each worker
    /// checks the descriptor it opens against it, and again when done with it, so a file
    /// swapped or rewritten while being read is an error (`Strict` mode) rather than a torrent
    /// of mixed bytes or of another file's bytes.
    pub stamps: Option<&'a [FileId]>,
}

/// Per-piece results, indexed by piece.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PieceHashes {
    /// SHA-1 of each piece (empty unless `v1`).
    pub v1: Vec<[u8; 20]>,
    /// Per piece: the root of its blocks' subtree, padded to the piece's width, or for a file no
    /// larger than one piece, padded to the next power of two (then it is the file's root).
    /// Empty unless `v2`.
    pub v2: Vec<[u8; 32]>,
    /// Pieces that could not be read (lenient mode only), in order.
    pub unreadable: Vec<u64>,
}

struct PieceResult {
    index: u64,
    v1: [u8; 20],
    v2: [u8; 32],
    readable: bool,
}

pub fn hash_pieces(job: &Job) -> Result<PieceHashes, HashError> {
    hash_pieces_with(job, None)
}

/// `hash_pieces`, also feeding every byte read to `digests` (each file's SHA-256), in the same
/// read of the data. `Strict` jobs only: a lenient job hashes zeros for what it cannot read.
pub fn hash_pieces_with(
    job: &Job,
    digests: Option<&FileDigests>,
) -> Result<PieceHashes, HashError> {
    let digests = digests.filter(|_| job.mode == Mode::Strict);
    let count = job.layout.piece_count();
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<HashError>> = Mutex::new(None);
    let threads = job.threads.clamp(1, count.max(1) as usize);
    let run = (CLAIM_BYTES / job.layout.piece_length).max(1);

    let mut results: Vec<PieceResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let fail = |e: HashError| {
                        failed.store(true, Ordering::Relaxed);
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert(e);
                    };
                    // A worker that leaves before the work is done (an error, a cancel, a
                    // panic) may hold the chunk the others' digests wait for: it stops them.
                    let mut stop = StopDigests(digests);
                    let mut worker = Worker::new(job, digests);
                    let mut out = Vec::new();
                    loop {
                        if failed.load(Ordering::Relaxed)
                            || job.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
                        {
                            break;
                        }
                        let first = next.fetch_add(run, Ordering::Relaxed);
                        if first >= count {
                            stop.0 = None;
                            break;
                        }
                        let end = (first + run).min(count);
                        if let Err(e) = worker.pieces(first..end, &mut out) {
                            fail(e);
                            break;
                        }
                    }
                    if let Err(e) = worker.close() {
                        stop.0 = digests;
                        fail(e);
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });

    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    if job.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) || results.len() as u64 != count {
        return Err(HashError::Cancelled);
    }
    results.sort_unstable_by_key(|r| r.index);
    let mut out = PieceHashes::default();
    for r in results {
        if job.v1 {
            out.v1.push(r.v1);
        }
        if job.v2 {
            out.v2.push(r.v2);
        }
        if !r.readable {
            out.unreadable.push(r.index);
        }
    }
    Ok(out)
}

/// Stops the file digests when dropped while armed (see `hash_pieces_with`).
struct StopDigests<'a>(Option<&'a FileDigests>);

impl Drop for StopDigests<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.0 {
            d.stop();
        }
    }
}

/// Bytes of chunks that may wait for their file's digest: about two claims per worker, so a
/// worker rarely waits for another's run to be hashed, within a bound.
pub fn digest_backlog(layout: &Layout, threads: usize) -> usize {
    let claim = CLAIM_BYTES.max(layout.piece_length) as usize;
    (threads.max(1) * 2 * claim).clamp(4 * CHUNK, 64 << 20)
}

struct Worker<'a> {
    job: &'a Job<'a>,
    digests: Option<&'a FileDigests>,
    buf: Vec<u8>,
    open: Option<(usize, File)>,
    leaves: Vec<[u8; 32]>,
}

impl<'a> Worker<'a> {
    fn new(job: &'a Job<'a>, digests: Option<&'a FileDigests>) -> Self {
        Worker {
            job,
            digests,
            buf: vec![0; CHUNK],
            open: None,
            leaves: Vec::new(),
        }
    }

    fn pieces(
        &mut self,
        range: std::ops::Range<u64>,
        out: &mut Vec<PieceResult>,
    ) -> Result<(), HashError> {
        for index in range {
            out.push(self.piece(index)?);
        }
        Ok(())
    }

    fn piece(&mut self, index: u64) -> Result<PieceResult, HashError> {
        let layout = self.job.layout;
        let (start, end) = layout.piece_range(index);
        let mut sha1 = Sha1::new();
        self.leaves.clear();
        let mut readable = true;
        let mut v2_file = None;

        for span in layout.spans(start, end - start) {
            if span.pad {
                if self.job.v1 {
                    feed_zeros(&mut sha1, span.length);
                }
                continue;
            }
            v2_file.get_or_insert(span.file);
            let mut done = 0u64;
            while done < span.length {
                let n = (span.length - done).min(CHUNK as u64) as usize;
                match self.read(span.file, span.offset + done, n) {
                    Ok(()) => {}
                    Err(e) if self.job.mode == Mode::Lenient => {
                        let _ = e;
                        readable = false;
                        self.buf[..n].fill(0);
                    }
                    Err(e) => return Err(e),
                }
                let data = &self.buf[..n];
                if self.job.v1 {
                    sha1.update(data);
                }
                if self.job.v2 {
                    // Spans of v2 files start on block boundaries (files are piece-aligned).
                    self.leaves.extend(
                        data.chunks(BLOCK_SIZE as usize)
                            .map(|b| -> [u8; 32] { Sha256::digest(b).into() }),
                    );
                }
                if let Some(d) = self.digests {
                    d.feed(span.file, span.offset + done, data);
                }
                self.job.progress.fetch_add(n as u64, Ordering::Relaxed);
                done += n as u64;
            }
        }

        let v2 = match v2_file {
            Some(f) if self.job.v2 => {
                let file_len = layout.files[f].length;
                let width = if file_len <= layout.piece_length {
                    self.leaves.len().max(1).next_power_of_two()
                } else {
                    (layout.piece_length / BLOCK_SIZE) as usize
                };
                merkle::v2_root(&self.leaves, width)
            }
            _ => [0; 32],
        };
        Ok(PieceResult {
            index,
            v1: if self.job.v1 {
                sha1.finalize().into()
            } else {
                [0; 20]
            },
            v2,
            readable,
        })
    }

    /// Checks the open file against its stamp (after this worker's last read of it) and closes it.
    fn close(&mut self) -> Result<(), HashError> {
        let Some((i, f)) = self.open.take() else {
            return Ok(());
        };
        let Some(stamp) = self.job.stamps.and_then(|s| s.get(i)) else {
            return Ok(());
        };
        match FileId::of(&f) {
            Ok(now) if stamp.content_differs(&now).is_none() => Ok(()),
            _ => Err(HashError::Changed(
                self.job.paths[i].clone().unwrap_or_default(),
            )),
        }
    }

    fn read(&mut self, file: usize, offset: u64, n: usize) -> Result<(), HashError> {
        let path = self.job.paths[file].as_deref().unwrap_or(Path::new(""));
        if self.open.as_ref().map(|(i, _)| *i) != Some(file) {
            self.close()?;
            let opened = match self.job.stamps.and_then(|s| s.get(file)) {
                Some(id) => self.job.root.open_checked(path, id),
                None => self.job.root.open(path),
            };
            let f = opened.map_err(|e| match e {
                StorageError::Io { path, source } => HashError::Open { path, source },
                StorageError::Changed { path, .. } => HashError::Changed(path),
                other => HashError::Refused(other),
            })?;
            self.open = Some((file, f));
        }
        let Some((_, f)) = &self.open else {
            unreachable!("a file was opened just above")
        };
        f.read_exact_at(&mut self.buf[..n], offset)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::UnexpectedEof {
                    HashError::Shrunk(path.to_owned())
                } else {
                    HashError::Read {
                        path: path.to_owned(),
                        source,
                    }
                }
            })
    }
}

fn feed_zeros(sha1: &mut Sha1, mut n: u64) {
    const ZEROS: [u8; 4096] = [0; 4096];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        sha1.update(&ZEROS[..k]);
        n -= k as u64;
    }
}
