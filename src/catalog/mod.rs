//! The catalog: what in the content folder is published. A walk at start, then a recursive watch;
//! each top-level entry (a file, or a folder of files) is one torrent, hashed once it has stopped
//! changing for the settle time, and remembered in the store so a restart hashes nothing that did
//! not change.

mod fingerprint;
mod job;
pub mod registry;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use fingerprint::Fingerprint;
pub use registry::{Event, Published, Registry, Status};
use store::{Store, StoreError, StoredEntry};

use crate::hash::walk::{self, Content, WalkOptions};
use crate::metainfo::{Format, Metainfo};
use crate::storage::{Root, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("content folder `{path}`: {source}")]
    Content {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Root(#[from] StorageError),
}

/// How torrents are made from entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentOptions {
    pub format: Format,
    /// 0: the automatic rule.
    pub piece_size: u64,
    pub private: bool,
    pub hash_threads: usize,
    pub hash_jobs: usize,
}

impl TorrentOptions {
    /// What a stored torrent must match to be reused as it is.
    fn key(&self) -> String {
        format!("{}/{}/{}", self.format, self.piece_size, self.private)
    }
}

const WALK: WalkOptions = WalkOptions {
    include_hidden: false,
    follow_symlinks: false,
    skip_temporary: true,
};

/// Watcher events waiting to be handled; past this the catalog rescans everything instead.
const EVENT_QUEUE: usize = 4096;

pub struct Catalog {
    content: PathBuf,
    /// The content folder's descriptor: every file is hashed and served beneath it.
    root: Arc<Root>,
    settle: Duration,
    options: TorrentOptions,
    registry: Arc<Registry>,
    store: Mutex<Store>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Entries with a change not yet handled, and when it was last seen.
    dirty: HashMap<String, Instant>,
    /// Entries with a job running, and when it started.
    running: HashMap<String, Instant>,
    /// Fingerprints of what is published.
    published: HashMap<String, Fingerprint>,
    /// Torrents of entries that went away, by content key: a rename reuses their hashes.
    retired: HashMap<String, Retired>,
}

/// A torrent that went away, kept for a rename.
#[derive(Debug, Clone)]
struct Retired {
    torrent: Vec<u8>,
    /// A Merkle torrent's piece hashes (the torrent holds only their root).
    merkle_pieces: Option<Vec<[u8; 20]>>,
}

/// What a background job found.
enum JobResult {
    Unchanged,
    Gone,
    Publish(Box<Published>, Fingerprint, bool),
    Failed(String),
}

impl Catalog {
    pub fn open(
        content: PathBuf,
        state_dir: &Path,
        settle: Duration,
        options: TorrentOptions,
        registry: Arc<Registry>,
    ) -> Result<Arc<Catalog>, CatalogError> {
        let store = Store::open(state_dir)?;
        std::fs::create_dir_all(&content).map_err(|source| CatalogError::Content {
            path: content.clone(),
            source,
        })?;
        let root = Arc::new(Root::beneath(&content)?);
        Ok(Arc::new(Catalog {
            root,
            content,
            settle,
            options,
            registry,
            store: Mutex::new(store),
            state: Mutex::new(State::default()),
        }))
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs until `shutdown`: the start-up scan, then the watch loop.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.content)?;

        let (tx, mut rx) = mpsc::channel::<String>(EVENT_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let root = std::fs::canonicalize(&self.content)?;
        let watch_root = root.clone();
        let watch_overflow = overflow.clone();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let Ok(event) = res else {
                    watch_overflow.store(true, Ordering::Relaxed);
                    return;
                };
                // Opening and reading (our own hashing and serving among them) change nothing.
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                for path in event.paths {
                    if let Some(name) = top_level_name(&watch_root, &path) {
                        if tx.try_send(name).is_err() {
                            watch_overflow.store(true, Ordering::Relaxed);
                        }
                    }
                }
            })?;
        watcher.watch(&root, RecursiveMode::Recursive)?;
        // The watch starts before the scan, so nothing created in between is missed (events
        // wait in the queue and only mark entries to look at again).
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.startup()).await??;

        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Instant, JobResult)>();
        let tick = (self.settle / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
        let mut ticker = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(name) = rx.recv() => {
                    self.state().dirty.insert(name, Instant::now());
                }
                Some((name, started, result)) = done_rx.recv() => {
                    self.finish(name, started, result);
                    // The next job starts when one ends, not at the next tick.
                    self.start_ready_jobs(&done_tx);
                }
                _ = ticker.tick() => {
                    if overflow.swap(false, Ordering::Relaxed) {
                        tracing::warn!("watch events overflowed; rescanning the content folder");
                        self.mark_all_dirty();
                    }
                    self.start_ready_jobs(&done_tx);
                }
            }
        }
        drop(watcher);
        Ok(())
    }

    /// Publishes every entry that is unchanged since it was stored, and marks the rest to hash.
    fn startup(&self) -> anyhow::Result<()> {
        let stored: HashMap<String, StoredEntry> = self
            .store()
            .all()?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        let names = self.list_entries()?;
        let (mut reused, mut queued) = (0, 0);
        for name in &names {
            let path = self.content.join(name);
            let content = match walk::collect(&path, WALK) {
                Ok(c) => c,
                Err(e) => {
                    // Its job will say why it cannot be published, in the API and the page.
                    tracing::warn!("cannot read `{}`: {e}", path.display());
                    self.state().dirty.insert(name.clone(), Instant::now());
                    queued += 1;
                    continue;
                }
            };
            let fp = Fingerprint::of(&content);
            let reuse = stored
                .get(name)
                .filter(|s| s.fingerprint == fp.encode() && s.options == self.options.key());
            match reuse.and_then(|s| Metainfo::from_bytes(&s.torrent).ok().map(|m| (m, s))) {
                Some((meta, s)) => {
                    let pieces = s.merkle_pieces();
                    self.publish_now(name, &content, meta, pieces, fp);
                    reused += 1;
                }
                None => {
                    self.state().dirty.insert(name.clone(), Instant::now());
                    queued += 1;
                }
            }
        }
        // Stored entries no longer in the folder: forget them, but keep their hashes for a rename.
        let present: std::collections::HashSet<&String> = names.iter().collect();
        for (name, s) in stored {
            if !present.contains(&name) {
                self.store().remove(&name)?;
                let merkle_pieces = s.merkle_pieces();
                let retired = Retired {
                    torrent: s.torrent,
                    merkle_pieces,
                };
                self.state().retired.insert(s.content_key, retired);
            }
        }
        tracing::info!(
            "catalog: {reused} entries unchanged since last run (nothing to hash), {queued} to hash"
        );
        Ok(())
    }

    /// Top-level names in the content folder that can be published (symbolic links never are:
    /// they could point anywhere).
    fn list_entries(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.content)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                if !publishable_name(name) {
                    continue;
                }
                if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                    tracing::debug!("skipping `{name}`: a symbolic link");
                    continue;
                }
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn mark_all_dirty(&self) {
        let names = self.list_entries().unwrap_or_default();
        let now = Instant::now();
        let mut st = self.state();
        let known: Vec<String> = st.published.keys().cloned().collect();
        for name in names.into_iter().chain(known) {
            st.dirty.insert(name, now);
        }
    }

    fn start_ready_jobs(
        self: &Arc<Self>,
        done: &mpsc::UnboundedSender<(String, Instant, JobResult)>,
    ) {
        let now = Instant::now();
        let ready: Vec<String> = {
            let st = self.state();
            let free = self.options.hash_jobs.saturating_sub(st.running.len());
            let mut ready: Vec<(&String, &Instant)> = st
                .dirty
                .iter()
                .filter(|(name, last)| {
                    now.duration_since(**last) >= self.settle && !st.running.contains_key(*name)
                })
                .collect();
            ready.sort_by_key(|(_, last)| **last);
            ready
                .into_iter()
                .take(free)
                .map(|(n, _)| n.clone())
                .collect()
        };
        for name in ready {
            {
                let mut st = self.state();
                st.dirty.remove(&name);
                st.running.insert(name.clone(), now);
            }
            let this = self.clone();
            let done = done.clone();
            tokio::task::spawn_blocking(move || {
                let result = this.job(&name);
                let _ = done.send((name, now, result));
            });
        }
    }

    fn publish_now(
        &self,
        name: &str,
        content: &Content,
        meta: Metainfo,
        merkle_pieces: Option<Vec<[u8; 20]>>,
        fp: Fingerprint,
    ) {
        match self.published(name, content, meta, merkle_pieces) {
            Ok(p) => {
                self.state().published.insert(name.to_owned(), fp);
                self.registry.publish(Arc::new(p));
            }
            Err(e) => {
                tracing::warn!("cannot publish `{name}`: {e}");
                self.state().dirty.insert(name.to_owned(), Instant::now());
            }
        }
    }

    /// Handles a finished job, unless the entry changed again meanwhile (it is then redone).
    fn finish(&self, name: String, started: Instant, result: JobResult) {
        let changed_since = {
            let mut st = self.state();
            st.running.remove(&name);
            st.dirty.get(&name).is_some_and(|t| *t > started)
        };
        if changed_since {
            return;
        }
        match result {
            JobResult::Unchanged => {}
            JobResult::Gone => self.unpublish(&name),
            JobResult::Failed(why) => {
                tracing::warn!("cannot publish `{name}`: {why}");
                let why = self.without_content_path(&why);
                self.state().published.remove(&name);
                tokio::task::block_in_place(|| self.registry.set_failed(&name, why));
            }
            JobResult::Publish(p, fp, hashed) => {
                let entry = StoredEntry {
                    name: name.clone(),
                    fingerprint: fp.encode(),
                    content_key: fp.content_key(),
                    options: self.options.key(),
                    torrent: p.meta.to_bytes(),
                    pieces: p.merkle_pieces.as_ref().map(|h| h.concat()),
                };
                if let Err(e) = self.store().put(&entry) {
                    tracing::error!("cannot store `{name}`: {e}");
                }
                tracing::info!(
                    "published `{name}`: {} torrent, {} bytes, info hash {}{}",
                    p.meta.format,
                    p.meta.total_size(),
                    hex::encode(p.wire_hash()),
                    if hashed { "" } else { " (hashes reused)" }
                );
                self.state().published.insert(name, fp);
                // Listeners (seeder, tracker) may block while they take the torrent on.
                tokio::task::block_in_place(|| self.registry.publish(Arc::new(*p)));
            }
        }
    }

    /// `why` with the content folder's path taken out: what visitors of the page and the API
    /// may see of an error (the log keeps the whole path).
    fn without_content_path(&self, why: &str) -> String {
        let mut out = why.to_owned();
        let canonical = std::fs::canonicalize(&self.content).ok();
        for root in std::iter::once(self.content.clone()).chain(canonical) {
            let root = root.display().to_string();
            let root = root.trim_end_matches('/');
            if !root.is_empty() {
                out = out.replace(&format!("{root}/"), "");
            }
        }
        out
    }

    fn unpublish(&self, name: &str) {
        let known = self.state().published.remove(name);
        if let Some(Status::Published(p)) = self.registry.status(name) {
            if let Some(fp) = &known {
                let retired = Retired {
                    torrent: p.meta.to_bytes(),
                    merkle_pieces: p.merkle_pieces.as_ref().map(|h| h.to_vec()),
                };
                self.state().retired.insert(fp.content_key(), retired);
            }
            tracing::info!("unpublished `{name}` (gone from the content folder)");
        }
        tokio::task::block_in_place(|| self.registry.remove(name));
        if let Err(e) = self.store().remove(name) {
            tracing::error!("cannot remove `{name}` from the store: {e}");
        }
    }
}

/// A top-level name that may become a torrent: not hidden, not a file still being written.
pub fn publishable_name(name: &str) -> bool {
    !walk::is_hidden(name) && !walk::is_temporary(name)
}

/// The top-level entry of the content folder that `path` belongs to.
fn top_level_name(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let first = rel.components().next()?;
    first.as_os_str().to_str().map(str::to_owned)
}
