//! The catalog: what in the content folder is published. A walk at start, then a recursive watch;
//! each top-level entry (a file, or a folder of files) is one torrent, hashed once it has stopped
//! changing for the settle time, and remembered in the store so a restart hashes nothing that did
//! not change.

mod fingerprint;
mod job;
pub mod planner;
pub mod registry;
pub mod shared;
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
use planner::{PlannedJob, Planner};
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
    #[error(
        "the content folder `{0}` is a file, not a folder: give the folder to publish (each file \
         or folder in it becomes a torrent) with --content"
    )]
    NotAFolder(PathBuf),
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
/// Entries handed to one job at most: small entries are looked at, hashed and stored together
/// (one store transaction per job).
const BATCH: usize = 64;
/// Bytes one job hashes before it hands the rest of its batch back, so a big entry does not
/// hold small ones behind it for long.
const BATCH_BYTES: u64 = 64 << 20;
/// Torrents of entries that went away, kept for a rename: at most this many, for at most
/// `RETIRED_FOR`.
const RETIRED_MAX: usize = 1000;
const RETIRED_FOR: Duration = Duration::from_secs(3600);

pub struct Catalog {
    content: PathBuf,
    /// `content` with every link resolved: what a followed link's target must be beneath.
    canonical: PathBuf,
    /// Publish top-level symbolic links whose target is beneath the content folder
    /// (`catalog.follow_symlinks`).
    follow_symlinks: bool,
    /// The content folder's descriptor: every file is hashed and served beneath it.
    root: Arc<Root>,
    options: TorrentOptions,
    registry: Arc<Registry>,
    store: Mutex<Store>,
    state: Mutex<State>,
    /// Cluster mode: hashing shared with the other nodes (`shared`).
    shared: std::sync::OnceLock<Arc<dyn shared::SharedHashing>>,
}

struct State {
    /// Which entries to look at, and when.
    planner: Planner,
    /// Fingerprint digests of what is published.
    published: HashMap<String, [u8; 32]>,
    /// Torrents of entries that went away, by content key: a rename reuses their hashes.
    retired: HashMap<String, Retired>,
    /// Followed links: link name → the top-level entry its target is in. A change there is a
    /// change of the link's entry too.
    links: HashMap<String, String>,
    /// Why entries were skipped, each said once (a skipped link would be said at every rescan).
    said: std::collections::HashSet<String>,
}

impl State {
    fn retire(&mut self, key: String, retired: Retired) {
        self.retired.insert(key, retired);
        if self.retired.len() > RETIRED_MAX {
            let now = Instant::now();
            self.retired
                .retain(|_, r| now.saturating_duration_since(r.at) < RETIRED_FOR);
            while self.retired.len() > RETIRED_MAX {
                let Some(oldest) = self
                    .retired
                    .iter()
                    .min_by_key(|(_, r)| r.at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.retired.remove(&oldest);
            }
        }
    }
}

/// A torrent that went away, kept for a rename.
#[derive(Debug, Clone)]
struct Retired {
    torrent: Vec<u8>,
    /// A Merkle torrent's piece hashes (the torrent holds only their root).
    merkle_pieces: Option<Vec<[u8; 20]>>,
    /// Its files' SHA-256, when known.
    file_sha256: Option<Vec<[u8; 32]>>,
    at: Instant,
}

/// What is kept beside an entry's torrent (in the store, and in the published entry).
struct Kept {
    /// A Merkle torrent's piece hashes (it holds only their root).
    merkle_pieces: Option<Vec<[u8; 20]>>,
    /// Its files' SHA-256, when known.
    file_sha256: Option<Vec<[u8; 32]>>,
    /// Unix seconds.
    published_at: i64,
}

/// A job's results, and the entries it handed back unlooked-at.
struct Done {
    job: PlannedJob,
    results: Vec<(String, JobResult)>,
    deferred: Vec<String>,
}

/// What a background job found.
enum JobResult {
    Unchanged,
    Gone,
    Publish {
        published: Box<Published>,
        fingerprint: fingerprint::Encoded,
        /// The fingerprint's content key (see `Fingerprint::content_key`).
        content_key: String,
        /// Hashed now, rather than rebuilt from a renamed entry's hashes.
        hashed: bool,
    },
    Failed(String),
}

impl Catalog {
    pub fn open(
        content: PathBuf,
        state_dir: &Path,
        settle: Duration,
        options: TorrentOptions,
        follow_symlinks: bool,
        registry: Arc<Registry>,
    ) -> Result<Arc<Catalog>, CatalogError> {
        match std::fs::metadata(&content) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(CatalogError::NotAFolder(content)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&content).map_err(|source| CatalogError::Content {
                    path: content.clone(),
                    source,
                })?;
                // Said, because a mistyped --content would otherwise publish nothing, silently.
                tracing::warn!(
                    "the content folder `{}` did not exist: created it, empty",
                    content.display()
                );
            }
            Err(source) => {
                return Err(CatalogError::Content {
                    path: content,
                    source,
                })
            }
        }
        let store = Store::open(state_dir)?;
        let root = Arc::new(Root::beneath(&content)?);
        let canonical =
            std::fs::canonicalize(&content).map_err(|source| CatalogError::Content {
                path: content.clone(),
                source,
            })?;
        let hash_jobs = options.hash_jobs;
        Ok(Arc::new(Catalog {
            root,
            canonical,
            follow_symlinks,
            content,
            options,
            registry,
            store: Mutex::new(store),
            shared: std::sync::OnceLock::new(),
            state: Mutex::new(State {
                planner: Planner::new(settle, hash_jobs, BATCH),
                published: HashMap::new(),
                retired: HashMap::new(),
                links: HashMap::new(),
                said: std::collections::HashSet::new(),
            }),
        }))
    }

    /// Cluster mode: entries are hashed once for all nodes (call before `run`).
    pub fn set_shared_hashing(&self, shared: Arc<dyn shared::SharedHashing>) {
        let _ = self.shared.set(shared);
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

        let (tx, mut rx) = mpsc::channel::<Change>(EVENT_QUEUE);
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
                let Some(kind) = ChangeKind::of(&event.kind) else {
                    return;
                };
                for path in event.paths {
                    if let Some(name) = top_level_name(&watch_root, &path) {
                        if tx.try_send(Change { name, path, kind }).is_err() {
                            watch_overflow.store(true, Ordering::Relaxed);
                        }
                    }
                }
            })?;
        watcher.watch(&root, RecursiveMode::Recursive)?;
        // The watch starts before the scan, so nothing created in between is missed (events
        // wait in the queue and only mark entries to look at again).
        let this = self.clone();
        let without_digests = tokio::task::spawn_blocking(move || this.startup()).await??;
        let this = self.clone();
        let stop = shutdown.clone();
        let backfill = (!without_digests.is_empty()).then(|| {
            tokio::task::spawn_blocking(move || this.read_digests(without_digests, &stop))
        });

        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        // Watch overflows are checked this often; settled entries start when they settle.
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        self.start_ready_jobs(&done_tx);
        let mut queue_moved = true;
        loop {
            let due = self.state().planner.next_due();
            let until = due.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                tokio::time::Instant::from_std,
            );
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(change) = rx.recv() => {
                    let now = Instant::now();
                    for name in self.touched(change.name) {
                        let planner = &mut self.state().planner;
                        match change.kind {
                            ChangeKind::Wrote => planner.wrote(&name, &change.path, now),
                            ChangeKind::Closed => planner.closed(&name, &change.path, now),
                            ChangeKind::Other => planner.changed(&name, now),
                        }
                    }
                    queue_moved = true;
                }
                Some(done) = done_rx.recv() => {
                    queue_moved = true;
                    self.finish(done);
                    // The next job starts when one ends, not at the next tick.
                    self.start_ready_jobs(&done_tx);
                }
                _ = tokio::time::sleep_until(until) => self.start_ready_jobs(&done_tx),
                _ = ticker.tick() => {
                    if overflow.swap(false, Ordering::Relaxed) {
                        tracing::warn!("watch events overflowed; rescanning the content folder");
                        self.state().planner.clear_writers();
                        self.mark_all_dirty();
                    }
                    self.start_ready_jobs(&done_tx);
                    // The queue the page shows, at most twice a second: sorting a long queue
                    // on every event would cost more than the events.
                    if std::mem::take(&mut queue_moved) {
                        self.show_queue();
                    }
                }
            }
        }
        drop(watcher);
        if let Some(task) = backfill {
            let _ = task.await;
        }
        Ok(())
    }

    /// Publishes every entry that is unchanged since it was stored, and marks the rest to hash.
    /// Returns the entries published from rows stored before file digests were kept, with
    /// their torrent: their digests are read in the background (`read_digests`).
    fn startup(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let stored: HashMap<String, StoredEntry> = self
            .store()
            .all()?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        let names = self.list_entries()?;
        let (mut reused, mut queued) = (0, 0);
        let mut without_digests = Vec::new();
        for name in &names {
            let path = match self.source(name) {
                Source::At(path) => path,
                Source::Gone | Source::Skipped => continue,
            };
            let content = match self.collect(name, &path) {
                Ok(c) => c,
                Err(e) => {
                    // Its job will say why it cannot be published, in the API and the page.
                    tracing::warn!("cannot read `{}`: {e}", path.display());
                    self.state().planner.due_now(name, Instant::now());
                    queued += 1;
                    continue;
                }
            };
            let fp = Fingerprint::of(&content).encoded();
            let reuse = stored
                .get(name)
                .filter(|s| s.fingerprint == fp.text && s.options == self.options.key());
            match reuse.and_then(|s| Metainfo::from_bytes(&s.torrent).ok().map(|m| (m, s))) {
                Some((meta, s)) => {
                    let pieces = s.merkle_pieces();
                    let digests = s.file_sha256(content.files.len());
                    if digests.is_none() {
                        without_digests.push((name.clone(), s.torrent.clone()));
                    }
                    let kept = Kept {
                        merkle_pieces: pieces,
                        file_sha256: digests,
                        published_at: s.published_at,
                    };
                    self.publish_now(name, &content, meta, kept, fp);
                    reused += 1;
                }
                None => {
                    self.state().planner.changed(name, Instant::now());
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
                let file_sha256 = s
                    .sha256
                    .as_ref()
                    .filter(|d| d.len() % 32 == 0)
                    .map(|d| d.len() / 32)
                    .and_then(|n| s.file_sha256(n));
                let retired = Retired {
                    torrent: s.torrent,
                    merkle_pieces,
                    file_sha256,
                    at: Instant::now(),
                };
                let key = fingerprint::content_key_of(&s.content_key);
                self.state().retire(key, retired);
            }
        }
        tracing::info!(
            "catalog: {} unchanged since last run (nothing to hash), {queued} to hash",
            crate::units::count(reused as u64, "entry", "entries")
        );
        give_back_freed_memory();
        Ok(without_digests)
    }

    /// Reads the files of entries published from rows stored before file digests were kept, for
    /// their SHA-256, and keeps them (in the entry, and in its row if it still holds the same
    /// torrent). One file at a time, on this one blocking thread; an entry that changed or went
    /// away meanwhile is left to its new version. Stops at `stop`.
    fn read_digests(&self, entries: Vec<(String, Vec<u8>)>, stop: &CancellationToken) {
        tracing::info!(
            "reading the SHA-256 of {} stored before file digests were kept",
            crate::units::count(entries.len() as u64, "entry", "entries")
        );
        for (name, torrent) in entries {
            if stop.is_cancelled() {
                return;
            }
            let Some(p) = self.registry.published(&name) else {
                continue;
            };
            if p.file_sha256.get().is_some() {
                continue;
            }
            let digests = match file_digests(&p.content, stop) {
                Ok(Some(d)) => d,
                Ok(None) => return,
                Err(e) => {
                    // Its next change re-hashes it, with digests.
                    tracing::warn!("cannot read `{name}` for its SHA-256: {e}");
                    continue;
                }
            };
            match self.store().set_sha256(&name, &torrent, &digests.concat()) {
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot store the SHA-256 of `{name}`: {e}"),
            }
            let _ = p.file_sha256.set(digests);
        }
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
                if entry.file_type().is_ok_and(|t| t.is_symlink()) && !self.follow_symlinks {
                    self.say_once(name, "a symbolic link (catalog.follow_symlinks is off)");
                    continue;
                }
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Where entry `name` is read from: `content/name`, or for a symbolic link (with
    /// `catalog.follow_symlinks`) the path its target has beneath the content folder, with no
    /// link left on it, so every later open of its files refuses links as for any entry.
    pub(super) fn source(&self, name: &str) -> Source {
        let path = self.content.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            self.state().links.remove(name);
            return Source::Gone;
        };
        if !meta.file_type().is_symlink() {
            self.state().links.remove(name);
            return Source::At(path);
        }
        if !self.follow_symlinks {
            self.say_once(name, "a symbolic link (catalog.follow_symlinks is off)");
            return Source::Skipped;
        }
        match link_target(&self.canonical, &path) {
            Ok(rel) => {
                if let Some(top) = rel.components().next() {
                    let top = top.as_os_str().to_string_lossy().into_owned();
                    self.state().links.insert(name.to_owned(), top);
                }
                Source::At(self.content.join(rel))
            }
            Err(why) => {
                self.state().links.remove(name);
                self.say_once(name, &why);
                Source::Skipped
            }
        }
    }

    /// The files of entry `name`, read at `path` (its `source`), under the entry's own name: a
    /// followed link's torrent is named after the link, as its URLs are.
    pub(super) fn collect(&self, name: &str, path: &Path) -> Result<Content, walk::WalkError> {
        let mut content = walk::collect(path, WALK)?;
        if content.single_file {
            if let Some(f) = content.files.first_mut() {
                f.path = vec![name.to_owned()];
            }
        }
        content.name = name.to_owned();
        Ok(content)
    }

    /// Logs once per entry and reason why an entry is not published.
    fn say_once(&self, name: &str, why: &str) {
        if self.state().said.insert(format!("{name}\0{why}")) {
            tracing::info!("not publishing `{name}`: {why}");
        }
    }

    /// `name` and the followed links whose target is in it: the entries a change of `name`
    /// touches.
    fn touched(&self, name: String) -> Vec<String> {
        let st = self.state();
        let mut names: Vec<String> = st
            .links
            .iter()
            .filter(|(_, target)| **target == name)
            .map(|(link, _)| link.clone())
            .collect();
        names.push(name);
        names
    }

    /// Hands the registry the entries waiting to be looked at, in order, for the page and API.
    fn show_queue(&self) {
        let queue: Vec<(String, bool)> = {
            let st = self.state();
            st.planner
                .queue()
                .into_iter()
                // Temporary and hidden names are looked at only to be found unpublishable.
                .filter(|n| publishable_name(n))
                .map(|n| (n.to_owned(), st.planner.being_written(n)))
                .collect()
        };
        self.registry.set_queue(queue);
    }

    fn mark_all_dirty(&self) {
        let names = self.list_entries().unwrap_or_default();
        let now = Instant::now();
        let mut st = self.state();
        let known: Vec<String> = st.published.keys().cloned().collect();
        for name in names.iter().chain(&known) {
            st.planner.changed(name, now);
        }
    }

    /// Starts the jobs the planner says are due, each on a blocking thread.
    fn start_ready_jobs(self: &Arc<Self>, done: &mpsc::UnboundedSender<Done>) {
        let jobs = self.state().planner.start(Instant::now());
        for job in jobs {
            let this = self.clone();
            let done = done.clone();
            tokio::task::spawn_blocking(move || {
                // Entries gone from the folder first: an entry renamed within the batch then
                // finds the old name's torrent kept, and reuses its hashes.
                let mut names = job.names.clone();
                names.sort_by_key(|n| std::fs::symlink_metadata(this.content.join(n)).is_ok());
                let mut results = Vec::with_capacity(job.names.len());
                let mut hashed = 0u64;
                let mut deferred = Vec::new();
                for name in &names {
                    if hashed >= BATCH_BYTES {
                        deferred.push(name.clone());
                        continue;
                    }
                    let result = this.job(name);
                    if let JobResult::Publish {
                        published,
                        hashed: true,
                        ..
                    } = &result
                    {
                        hashed += published.meta.total_size();
                    }
                    results.push((name.clone(), result));
                }
                let _ = done.send(Done {
                    job,
                    results,
                    deferred,
                });
            });
        }
    }

    /// Publishes a stored entry found unchanged, with what the store kept beside its torrent.
    fn publish_now(
        &self,
        name: &str,
        content: &Content,
        meta: Metainfo,
        kept: Kept,
        fp: fingerprint::Encoded,
    ) {
        match self.published(name, content, meta, kept) {
            Ok(p) => {
                self.state().published.insert(name.to_owned(), fp.digest);
                self.registry.publish(Arc::new(p));
            }
            Err(e) => {
                tracing::warn!("cannot publish `{name}`: {e}");
                self.state().planner.due_now(name, Instant::now());
            }
        }
    }

    /// Takes in a finished job: the results that still stand (their entry did not change
    /// again meanwhile; those are looked at once more) are stored in one transaction, then
    /// published, retired or marked failed.
    fn finish(&self, done: Done) {
        let stands: HashMap<String, bool> = {
            let mut st = self.state();
            let stands = st.planner.finished(&done.job).into_iter().collect();
            let now = Instant::now();
            for name in &done.deferred {
                st.planner.due_now(name, now);
            }
            stands
        };
        let mut puts = Vec::new();
        let mut removes = Vec::new();
        let mut publish = Vec::new();
        for (name, result) in done.results {
            if !stands.get(&name).copied().unwrap_or(false) {
                continue;
            }
            match result {
                JobResult::Unchanged => {}
                JobResult::Gone => {
                    self.unpublish(&name);
                    removes.push(name);
                }
                JobResult::Failed(why) => {
                    tracing::warn!("cannot publish `{name}`: {why}");
                    let why = self.without_content_path(&why);
                    self.state().published.remove(&name);
                    tokio::task::block_in_place(|| self.registry.set_failed(&name, why));
                }
                JobResult::Publish {
                    published: p,
                    fingerprint,
                    content_key,
                    hashed,
                } => {
                    puts.push(StoredEntry {
                        name: name.clone(),
                        fingerprint: fingerprint.text,
                        content_key,
                        options: self.options.key(),
                        torrent: p.meta.to_bytes(),
                        pieces: p.merkle_pieces.as_ref().map(|h| h.concat()),
                        sha256: p.file_sha256.get().map(|d| d.concat()),
                        published_at: p.published_at,
                    });
                    tracing::info!(
                        "published `{name}`: {} torrent, {} bytes, info hash {}{}",
                        p.meta.format,
                        p.meta.total_size(),
                        hex::encode(p.wire_hash()),
                        if hashed { "" } else { " (hashes reused)" }
                    );
                    self.state().published.insert(name, fingerprint.digest);
                    publish.push(p);
                }
            }
        }
        // Stored before they are published: what the page shows survives a crash.
        if let Err(e) = self.store().apply(&puts, &removes) {
            tracing::error!("cannot store {} catalog entries: {e}", puts.len());
        }
        drop(puts);
        let files: usize = publish.iter().map(|p| p.meta.files.len()).sum();
        for p in publish {
            // Listeners (seeder, tracker) may block while they take the torrent on.
            tokio::task::block_in_place(|| self.registry.publish(Arc::new(*p)));
        }
        if files >= TRIM_AFTER_FILES {
            give_back_freed_memory();
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

    /// Keeps the torrent of an entry found gone, by its content key, so that the entry it was
    /// renamed to (looked at in the same job or a later one) reuses its hashes. Blocking.
    pub(super) fn keep_for_rename(&self, name: &str) {
        if !self.state().published.contains_key(name) {
            return;
        }
        let Some(Status::Published(p)) = self.registry.status(name) else {
            return;
        };
        if let Ok(Some(stored)) = self.store().get(name) {
            let retired = Retired {
                torrent: p.meta.to_bytes(),
                merkle_pieces: p.merkle_pieces.as_ref().map(|h| h.to_vec()),
                file_sha256: p.file_sha256.get().cloned(),
                at: Instant::now(),
            };
            let key = fingerprint::content_key_of(&stored.content_key);
            self.state().retire(key, retired);
        }
    }

    /// Takes an entry gone from the folder off the registry (its store row is removed by the
    /// caller; its torrent was kept for a rename when the job found it gone).
    fn unpublish(&self, name: &str) {
        self.state().published.remove(name);
        if let Some(Status::Published(_)) = self.registry.status(name) {
            tracing::info!("unpublished `{name}` (gone from the content folder)");
        }
        tokio::task::block_in_place(|| self.registry.remove(name));
    }
}

/// The SHA-256 of each file of `content` (pad files left out), read one after the other through
/// the content's checked reads (beneath the content folder, each read checked against the
/// identity the file was hashed with). `None` when stopped.
fn file_digests(
    content: &crate::storage::Content,
    stop: &CancellationToken,
) -> Result<Option<Vec<[u8; 32]>>, StorageError> {
    use sha2::{Digest, Sha256};
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = Vec::new();
    for (i, lf) in content.layout().files.iter().enumerate() {
        if lf.pad {
            continue;
        }
        let mut hasher = Sha256::new();
        let mut at = 0u64;
        while at < lf.length {
            if stop.is_cancelled() {
                return Ok(None);
            }
            let n = (lf.length - at).min(buf.len() as u64) as usize;
            content.read_file_at(i, at, &mut buf[..n])?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        out.push(hasher.finalize().into());
    }
    Ok(Some(out))
}

/// Files published in one job past which the memory freed after building them (file lists,
/// fingerprints, bencode trees: hundreds of bytes per file) is handed back to the system.
const TRIM_AFTER_FILES: usize = 10_000;

/// Returns memory the allocator holds free to the system: after a big torrent is built, its
/// transient lists are gone, but glibc keeps their pages, and RSS would stay at the peak.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A top-level name that may become a torrent: not hidden, not a file still being written.
pub fn publishable_name(name: &str) -> bool {
    !walk::is_hidden(name) && !walk::is_temporary(name)
}

/// Where an entry's files are.
pub(super) enum Source {
    /// Nothing by that name.
    Gone,
    /// Not published: a link not followed, or one that leads outside (said in the log).
    Skipped,
    At(PathBuf),
}

/// A symbolic link's target relative to the content folder (`root`, canonical), if it is
/// beneath it (never the folder itself or outside it, whatever `..` and links lead through) and
/// has no hidden or temporary name on the way, which no entry may have either.
fn link_target(root: &Path, link: &Path) -> Result<PathBuf, String> {
    let target = std::fs::canonicalize(link)
        .map_err(|e| format!("a symbolic link that cannot be followed ({e})"))?;
    let rel = target
        .strip_prefix(root)
        .ok()
        .filter(|r| !r.as_os_str().is_empty())
        .ok_or("a symbolic link to outside the content folder (never followed)")?;
    for (i, c) in rel.components().enumerate() {
        let part = c.as_os_str().to_str().unwrap_or(".");
        if walk::is_hidden(part) || (i == 0 && !publishable_name(part)) {
            return Err(format!(
                "a symbolic link to `{}`, a hidden or temporary name",
                rel.display()
            ));
        }
    }
    Ok(rel.to_owned())
}

/// A watch event, as the catalog needs it.
#[derive(Debug)]
struct Change {
    /// The top-level entry the path is in.
    name: String,
    path: PathBuf,
    kind: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    /// Data written (`IN_MODIFY`): its writer has the file open.
    Wrote,
    /// Closed after writing (`IN_CLOSE_WRITE`), deleted, or renamed away: no writer holds it.
    Closed,
    /// Created, renamed here, attributes changed.
    Other,
}

impl ChangeKind {
    /// What a watch event means for an entry; `None` for events that change nothing (opening,
    /// reading and closing after reading: our own hashing and serving among them).
    fn of(kind: &notify::EventKind) -> Option<ChangeKind> {
        use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
        use notify::EventKind;
        match kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(ChangeKind::Closed),
            EventKind::Access(_) => None,
            EventKind::Modify(ModifyKind::Data(_)) => Some(ChangeKind::Wrote),
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                Some(ChangeKind::Closed)
            }
            _ => Some(ChangeKind::Other),
        }
    }
}

/// The top-level entry of the content folder that `path` belongs to.
fn top_level_name(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let first = rel.components().next()?;
    first.as_os_str().to_str().map(str::to_owned)
}
