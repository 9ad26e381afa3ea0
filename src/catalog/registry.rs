//! What is published right now, shared by the web face, the tracker and the seeder: by entry name
//! (with hashing progress) and by info hash. Listeners registered at start-up learn of every
//! publish and retire, which is how the tracker and seeder hear of torrents (data flows one way).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, RwLock};

use crate::egress::Offload;
use crate::metainfo::{InfoHash, Metainfo};
use crate::storage::Content;

/// A published torrent and where its bytes are.
#[derive(Debug)]
pub struct Published {
    /// The entry's name in the content folder (a file or folder at its top level).
    pub name: String,
    /// `content/name`.
    pub disk: PathBuf,
    pub meta: Arc<Metainfo>,
    /// The torrent's files under the content folder with the identity each had when hashed, in
    /// `meta.files` order: what the seeder and the web seed read, through the descriptor pool.
    pub content: Arc<Content>,
    /// What the publisher sent of this torrent, by channel.
    pub offload: Arc<Offload>,
    /// A Merkle torrent's piece hashes (it holds only their root), when known: kept with the
    /// entry so the seeder builds its hash tree without reading the content again.
    pub merkle_pieces: Option<Arc<Vec<[u8; 20]>>>,
    /// The SHA-256 of each file, in `meta.files` order without pad files: computed in the same
    /// read as the pieces, and kept in the store. Unset until known: an entry stored before
    /// digests were kept has them read in the background after start.
    pub file_sha256: OnceLock<Vec<[u8; 32]>>,
    /// When this version was published, in Unix seconds (kept in the store across restarts).
    pub published_at: i64,
}

impl Published {
    /// The 20-byte hash trackers and handshakes use.
    pub fn wire_hash(&self) -> InfoHash {
        self.meta.info_hash.wire().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub enum Status {
    /// New, waiting for its turn to be hashed (see `Registry::queue_place`).
    Queued,
    Hashing {
        total: u64,
        done: Arc<AtomicU64>,
    },
    Published(Arc<Published>),
    Failed(String),
}

#[derive(Debug, Clone)]
pub enum Event {
    Published(Arc<Published>),
    Retired(Arc<Published>),
}

type Listener = Box<dyn Fn(&Event) + Send + Sync>;

#[derive(Default)]
pub struct Registry {
    entries: RwLock<BTreeMap<String, Status>>,
    /// Keyed by both the v1 hash and the 20-byte truncated v2 hash.
    by_hash: RwLock<HashMap<InfoHash, Arc<Published>>>,
    listeners: RwLock<Vec<Listener>>,
    /// Bytes hashed since start (a restart over unchanged content hashes none).
    pub hashed_bytes: AtomicU64,
    /// Entries waiting to be looked at: their place (1 is next) and whether a process still
    /// has one of their files open for writing.
    queue: RwLock<HashMap<String, QueuePlace>>,
}

/// Where an entry waits in the catalog's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePlace {
    /// 1 is next.
    pub position: usize,
    /// A process still has one of its files open for writing: it waits for the close.
    pub being_written: bool,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Adds a listener for every publish and retire. Listeners are called on a thread that may
    /// block (never an async task's), in the order of the events.
    pub fn listen(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }

    fn emit(&self, e: &Event) {
        for l in self
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            l(e);
        }
    }

    /// Every entry with its status, in name order.
    pub fn entries(&self) -> Vec<(String, Status)> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Up to `limit` entries after `after` (exclusive) in name order that `keep` accepts, and
    /// how many entries `keep` accepts in all: one page of a long catalog, without copying the
    /// rest of it.
    pub fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&str, &Status) -> bool,
    ) -> (Vec<(String, Status)>, usize) {
        use std::ops::Bound;
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let total = entries.iter().filter(|(k, v)| keep(k, v)).count();
        let start = match after {
            Some(a) => Bound::Excluded(a.to_owned()),
            None => Bound::Unbounded,
        };
        let page = entries
            .range((start, Bound::Unbounded))
            .filter(|(k, v)| keep(k, v))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (page, total)
    }

    /// `page`, in the order of `key` (then name) rather than of names alone: up to `limit`
    /// entries that `keep` accepts and that come after `after` (a key and a name) in that order,
    /// and how many `keep` accepts in all. Every accepted entry's key is looked at, but only the
    /// page is copied out.
    pub fn page_by<K: Ord>(
        &self,
        key: impl Fn(&Status) -> K,
        after: Option<(K, &str)>,
        limit: usize,
        keep: impl Fn(&str, &Status) -> bool,
    ) -> (Vec<(String, Status)>, usize) {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut total = 0;
        let mut found: Vec<(K, &String, &Status)> = Vec::new();
        for (name, status) in entries.iter() {
            if !keep(name, status) {
                continue;
            }
            total += 1;
            let k = key(status);
            let past = match &after {
                Some((ak, an)) => (&k, name.as_str()) > (ak, *an),
                None => true,
            };
            if past {
                found.push((k, name, status));
            }
        }
        let order =
            |a: &(K, &String, &Status), b: &(K, &String, &Status)| (&a.0, a.1).cmp(&(&b.0, b.1));
        if found.len() > limit {
            found.select_nth_unstable_by(limit, order);
            found.truncate(limit);
        }
        found.sort_unstable_by(order);
        let page = found
            .into_iter()
            .map(|(_, n, s)| (n.clone(), s.clone()))
            .collect();
        (page, total)
    }

    /// Entries by status: (published, hashing, failed, queued).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut c = (0, 0, 0, 0);
        for s in entries.values() {
            match s {
                Status::Published(_) => c.0 += 1,
                Status::Hashing { .. } => c.1 += 1,
                Status::Failed(_) => c.2 += 1,
                Status::Queued => c.3 += 1,
            }
        }
        c
    }

    /// The catalog's queue, in order, each with whether it is being written. Names not listed
    /// yet are listed as queued, so a new entry shows up before its turn comes.
    pub fn set_queue(&self, queue: Vec<(String, bool)>) {
        let places: HashMap<String, QueuePlace> = queue
            .into_iter()
            .enumerate()
            .map(|(i, (name, being_written))| {
                let place = QueuePlace {
                    position: i + 1,
                    being_written,
                };
                (name, place)
            })
            .collect();
        {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            for name in places.keys() {
                if !entries.contains_key(name) {
                    entries.insert(name.clone(), Status::Queued);
                }
            }
        }
        *self.queue.write().unwrap_or_else(|p| p.into_inner()) = places;
    }

    /// `name` was looked at: it waits no more (until the catalog's next queue says otherwise),
    /// so the API does not show a place the entry has left.
    fn leave_queue(&self, name: &str) {
        self.queue
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Where `name` waits in the queue, if it does.
    pub fn queue_place(&self, name: &str) -> Option<QueuePlace> {
        self.queue
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }

    pub fn status(&self, name: &str) -> Option<Status> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn published(&self, name: &str) -> Option<Arc<Published>> {
        match self.status(name) {
            Some(Status::Published(p)) => Some(p),
            _ => None,
        }
    }

    /// By 20-byte v1 hash or truncated v2 hash.
    pub fn by_hash(&self, hash: &InfoHash) -> Option<Arc<Published>> {
        self.by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    /// Finds a published torrent by hex info hash (v1: 40, v2: 64 characters).
    pub fn by_hex(&self, hex_hash: &str) -> Option<Arc<Published>> {
        let bytes = hex::decode(hex_hash).ok()?;
        let key = InfoHash::from_slice(bytes.get(..20)?)?;
        let p = self.by_hash(&key)?;
        let full_match = match bytes.len() {
            20 => p.meta.info_hash.v1 == Some(*key.as_bytes()),
            32 => p.meta.info_hash.v2.map(|h| h.to_vec()) == Some(bytes),
            _ => false,
        };
        full_match.then_some(p)
    }

    /// Marks an entry as being hashed; what was published under its name is retired, since its
    /// bytes changed.
    pub fn set_hashing(&self, name: &str, total: u64, done: Arc<AtomicU64>) {
        let old = self
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), Status::Hashing { total, done });
        self.leave_queue(name);
        self.retire_old(old);
    }

    pub fn set_failed(&self, name: &str, why: String) {
        let old = self
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), Status::Failed(why));
        self.leave_queue(name);
        self.retire_old(old);
    }

    /// Publishes `p` under its name, retiring whatever was published under that name before.
    /// Listeners hear of it first, so by the time the API lists it the seeder serves it and the
    /// tracker tracks it (a client that reads the API and announces at once finds the seed).
    pub fn publish(&self, p: Arc<Published>) {
        self.emit(&Event::Published(p.clone()));
        {
            let mut by_hash = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
            for key in hash_keys(&p) {
                by_hash.insert(key, p.clone());
            }
        }
        let old = self
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(p.name.clone(), Status::Published(p.clone()));
        self.leave_queue(&p.name);
        match &old {
            // The same torrent again: nothing to retire.
            Some(Status::Published(old)) if hash_keys(old) == hash_keys(&p) => {}
            _ => self.retire_old(old),
        }
    }

    /// Removes an entry (deleted from the folder).
    pub fn remove(&self, name: &str) {
        let old = self
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.leave_queue(name);
        self.retire_old(old);
    }

    fn retire_old(&self, old: Option<Status>) {
        if let Some(Status::Published(old)) = old {
            {
                let mut by_hash = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
                for key in hash_keys(&old) {
                    if by_hash.get(&key).is_some_and(|p| Arc::ptr_eq(p, &old)) {
                        by_hash.remove(&key);
                    }
                }
            }
            self.emit(&Event::Retired(old));
        }
    }
}

fn hash_keys(p: &Published) -> Vec<InfoHash> {
    p.meta.info_hash.wire_hashes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;

    fn registry(entries: &[(&str, u64)]) -> Registry {
        let r = Registry::default();
        for (name, total) in entries {
            r.entries.write().unwrap().insert(
                (*name).to_owned(),
                Status::Hashing {
                    total: *total,
                    done: Arc::default(),
                },
            );
        }
        r
    }

    fn size(s: &Status) -> Reverse<u64> {
        match s {
            Status::Hashing { total, .. } => Reverse(*total),
            _ => Reverse(0),
        }
    }

    /// Pages in key order (ties by name), each after the last key and name of the one before,
    /// cover every kept entry once; the total counts them all.
    #[test]
    fn pages_by_key_follow_each_other() {
        let r = registry(&[
            ("a", 5),
            ("b", 9),
            ("c", 5),
            ("d", 1),
            ("e", 9),
            ("skip", 7),
        ]);
        let keep = |n: &str, _: &Status| n != "skip";
        let mut after: Option<(Reverse<u64>, String)> = None;
        let mut seen = Vec::new();
        loop {
            let (page, total) =
                r.page_by(size, after.as_ref().map(|(k, n)| (*k, n.as_str())), 2, keep);
            assert_eq!(total, 5);
            let Some((name, status)) = page.last() else {
                break;
            };
            after = Some((size(status), name.clone()));
            seen.extend(page.into_iter().map(|(n, _)| n));
        }
        assert_eq!(seen, ["b", "e", "a", "c", "d"]);
    }
}
