//! The SHA-256 of each whole file, computed in the pipeline's one read of the data.
//!
//! A file's SHA-256 is one chain over its bytes in order, while the pipeline's workers read
//! pieces in parallel and finish them out of order. So the chunks they read are handed here
//! keyed by (file, offset): the chunk at the cursor is hashed at once, from the worker's own
//! buffer; one that arrives early is copied and waits until the cursor reaches it. The copies
//! are bounded (`backlog`): past it an early worker waits for the cursor, which always moves,
//! because the chunk at the cursor is never made to wait (its owner hashes it, or hands it to
//! the worker already hashing). Pieces are claimed in order, so what arrives early is about one
//! claim per worker: a few MiB.
//!
//! Not derivable from v2 data: BEP 52's `pieces root` is a Merkle root of 16 KiB blocks, not
//! the SHA-256 people compare a download with.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::storage::Layout;

pub struct FileDigests {
    state: Mutex<Stream>,
    /// The cursor moved, a copy was taken, or the job stopped.
    moved: Condvar,
    /// Most bytes held in early copies.
    backlog: usize,
}

struct Stream {
    /// Files with bytes, in layout order: the order of the one stream of data.
    order: Vec<usize>,
    /// Index in `order` of the file being hashed, and the offset of the next byte it needs.
    at: usize,
    offset: u64,
    lengths: Vec<u64>,
    /// Taken out by the worker hashing, so the lock is not held while it hashes.
    hasher: Option<Sha256>,
    /// Chunks that arrived before the cursor reached them.
    early: BTreeMap<(usize, u64), Vec<u8>>,
    early_bytes: usize,
    /// Per layout file: its SHA-256 once its last byte was hashed (pad files: never).
    done: Vec<Option<[u8; 32]>>,
    /// The job failed or was cancelled: nobody waits any more.
    stopped: bool,
}

impl Stream {
    fn cursor(&self) -> Option<(usize, u64)> {
        self.order.get(self.at).map(|&f| (f, self.offset))
    }

    /// Moves the cursor past `n` bytes just hashed with `hasher`, finishing the file when they
    /// were its last.
    fn advance(&mut self, n: u64, hasher: &mut Sha256) {
        let Some(&file) = self.order.get(self.at) else {
            return;
        };
        self.offset += n;
        if self.offset >= self.lengths[file] {
            self.done[file] = Some(hasher.finalize_reset().into());
            self.at += 1;
            self.offset = 0;
        }
    }
}

impl FileDigests {
    /// For the files of `layout` (pad files get none; an empty file's is known at once), with at
    /// most `backlog` bytes copied while they wait for their turn.
    pub fn new(layout: &Layout, backlog: usize) -> FileDigests {
        let empty: [u8; 32] = Sha256::digest(b"").into();
        let done = layout
            .files
            .iter()
            .map(|f| (!f.pad && f.length == 0).then_some(empty))
            .collect();
        let order = (0..layout.files.len())
            .filter(|&i| !layout.files[i].pad && layout.files[i].length > 0)
            .collect();
        FileDigests {
            state: Mutex::new(Stream {
                order,
                at: 0,
                offset: 0,
                lengths: layout.files.iter().map(|f| f.length).collect(),
                hasher: Some(Sha256::new()),
                early: BTreeMap::new(),
                early_bytes: 0,
                done,
                stopped: false,
            }),
            moved: Condvar::new(),
            backlog,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Stream> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the bytes `data` of layout file `file` at `offset`. Every byte of every file must
    /// be fed exactly once, in chunks that follow each other within a file (the pipeline's
    /// spans); may block while the early copies are at their bound.
    pub fn feed(&self, file: usize, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let key = (file, offset);
        let mut st = self.lock();
        loop {
            if st.stopped {
                return;
            }
            let at_cursor = st.cursor() == Some(key);
            if at_cursor {
                if let Some(hasher) = st.hasher.take() {
                    self.hash_run(st, hasher, data);
                    return;
                }
            }
            // At the cursor while another worker is hashing: it takes the copy before it stops,
            // so this chunk never waits (else the cursor could stall).
            if at_cursor || st.early_bytes + data.len() <= self.backlog {
                st.early_bytes += data.len();
                st.early.insert(key, data.to_vec());
                return;
            }
            st = self.moved.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Hashes `first` (the chunk at the cursor), then every early copy that the cursor reaches,
    /// without the lock held while hashing.
    fn hash_run<'a>(&'a self, mut st: MutexGuard<'a, Stream>, mut hasher: Sha256, first: &[u8]) {
        let mut owned: Option<Vec<u8>> = None;
        let mut n = first.len();
        loop {
            drop(st);
            hasher.update(owned.as_deref().unwrap_or(first));
            st = self.lock();
            st.advance(n as u64, &mut hasher);
            self.moved.notify_all();
            let next = st.cursor().and_then(|c| st.early.remove(&c));
            match next {
                Some(chunk) if !st.stopped => {
                    st.early_bytes -= chunk.len();
                    n = chunk.len();
                    owned = Some(chunk);
                }
                _ => {
                    st.hasher = Some(hasher);
                    return;
                }
            }
        }
    }

    /// The job ended early (an error, a cancel, a worker gone): wakes every waiting worker, and
    /// no digest will be complete.
    pub fn stop(&self) {
        let mut st = self.lock();
        st.stopped = true;
        st.early.clear();
        st.early_bytes = 0;
        self.moved.notify_all();
    }

    /// Per layout file its SHA-256 (`None` for pad files), when every file was hashed to its end.
    pub fn finish(self) -> Option<Vec<Option<[u8; 32]>>> {
        let st = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        (!st.stopped && st.at == st.order.len()).then_some(st.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(files: &[(u64, bool)]) -> Layout {
        Layout::contiguous(16 * 1024, files.iter().copied())
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
    }

    /// Chunks fed in any order, across files and pads, give each file's plain SHA-256.
    #[test]
    fn out_of_order_chunks_give_each_files_sha256() {
        let a = bytes(10_000, 1);
        let b = bytes(25_000, 2);
        let l = layout(&[
            (a.len() as u64, false),
            (3000, true),
            (0, false),
            (b.len() as u64, false),
        ]);
        let mut chunks: Vec<(usize, u64, &[u8])> = Vec::new();
        for (file, data) in [(0, &a), (3, &b)] {
            for (i, c) in data.chunks(4096).enumerate() {
                chunks.push((file, i as u64 * 4096, c));
            }
        }
        // Last first: everything but the cursor's chunk waits as a copy.
        chunks.reverse();
        let d = FileDigests::new(&l, usize::MAX);
        for (f, o, c) in &chunks {
            d.feed(*f, *o, c);
        }
        let done = d.finish().expect("complete");
        let sha = |x: &[u8]| -> [u8; 32] { Sha256::digest(x).into() };
        assert_eq!(
            done,
            vec![Some(sha(&a)), None, Some(sha(b"")), Some(sha(&b))]
        );
    }

    /// Workers on threads with a backlog smaller than what arrives early: the bound makes them
    /// wait, never for ever, and the digests are right.
    #[test]
    fn a_small_backlog_makes_workers_wait_not_stall() {
        let data = bytes(1 << 20, 3);
        let l = layout(&[(data.len() as u64, false)]);
        let d = FileDigests::new(&l, 8192);
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(c) = data.chunks(4096).nth(i) else {
                        break;
                    };
                    d.feed(0, i as u64 * 4096, c);
                });
            }
        });
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(d.finish(), Some(vec![Some(want)]));
    }

    #[test]
    fn a_stopped_job_has_no_digests() {
        let l = layout(&[(100, false)]);
        let d = FileDigests::new(&l, 100);
        d.feed(0, 50, &[0; 50]);
        d.stop();
        d.feed(0, 0, &[0; 50]);
        assert_eq!(d.finish(), None);
    }
}
