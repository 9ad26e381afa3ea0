//! A bounded pool of open content files, shared by the seeder and `/files`: a published file is
//! opened when it is read and kept while it is among the most recently used, so a catalog of
//! 100,000 files costs at most the pool's size in descriptors, not one each for life.
//!
//! The pool is sized from the process's open-files limit, keeping most of it for sockets
//! (peers, HTTP clients) and the stores. Each open goes through `Root::open_checked`, so a file
//! reopened after eviction is checked against its identity like the first time.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use lru::LruCache;

/// A published file's place in the pool.
pub type FileKey = u64;

pub struct FilePool {
    files: Mutex<LruCache<FileKey, Arc<std::fs::File>>>,
    next_key: AtomicU64,
    capacity: usize,
    /// Opens since start (misses), for metrics.
    pub opens: AtomicU64,
}

impl std::fmt::Debug for FilePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePool")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl FilePool {
    pub fn new(capacity: usize) -> FilePool {
        let capacity = capacity.max(1);
        FilePool {
            files: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            next_key: AtomicU64::new(1),
            capacity,
            opens: AtomicU64::new(0),
        }
    }

    /// The process-wide pool, sized on first use from the soft open-files limit (`serve` and
    /// `seed` raise it to the hard limit first): a quarter of it, from 16 to 4,096 files.
    pub fn global() -> &'static FilePool {
        static POOL: OnceLock<FilePool> = OnceLock::new();
        POOL.get_or_init(|| FilePool::new(Self::capacity_for(open_files_limit())))
    }

    /// Pool size for a limit of `limit` open files: the rest is the reserve for sockets, the
    /// stores, the hasher and the runtime.
    pub fn capacity_for(limit: u64) -> usize {
        (limit / 4).clamp(16, 4096) as usize
    }

    /// Files open in the pool now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new key, for a file that was never in the pool.
    pub fn key(&self) -> FileKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// The open file for `key`, opened with `open` when it is not in the pool (the least
    /// recently used file is closed to make room; readers holding it finish first).
    pub fn get<E>(
        &self,
        key: FileKey,
        open: impl FnOnce() -> Result<std::fs::File, E>,
    ) -> Result<Arc<std::fs::File>, E> {
        if let Some(f) = self.lock().get(&key) {
            return Ok(f.clone());
        }
        // Opened outside the lock: an open can block on a slow disk.
        let file = Arc::new(open()?);
        self.opens.fetch_add(1, Ordering::Relaxed);
        self.lock().put(key, file.clone());
        Ok(file)
    }

    /// Closes `key`'s file (its torrent is gone, or the file changed).
    pub fn forget(&self, key: FileKey) {
        self.lock().pop(&key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<FileKey, Arc<std::fs::File>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The soft limit on open files (unlimited counts as a large number).
pub fn open_files_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recently_used_files_open() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..5)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, [i as u8]).unwrap();
                p
            })
            .collect();
        let pool = FilePool::new(3);
        let keys: Vec<FileKey> = paths.iter().map(|_| pool.key()).collect();
        let open = |i: usize| pool.get(keys[i], || std::fs::File::open(&paths[i]));
        for i in 0..5 {
            open(i).unwrap();
        }
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.opens.load(Ordering::Relaxed), 5);
        // 2, 3, 4 are open: using them opens nothing; 0 was closed and is opened again.
        open(4).unwrap();
        open(2).unwrap();
        assert_eq!(pool.opens.load(Ordering::Relaxed), 5);
        open(0).unwrap();
        assert_eq!(pool.opens.load(Ordering::Relaxed), 6);
        pool.forget(keys[0]);
        assert_eq!(pool.len(), 2);
        // A failed open is not cached.
        assert!(pool
            .get(pool.key(), || std::fs::File::open(
                dir.path().join("missing")
            ))
            .is_err());
        assert_eq!(pool.len(), 2);
        assert_eq!(FilePool::capacity_for(1024), 256);
        assert_eq!(FilePool::capacity_for(20), 16);
        assert_eq!(FilePool::capacity_for(1 << 30), 4096);
    }
}
