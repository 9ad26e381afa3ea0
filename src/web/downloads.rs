//! Per-entry counts of .torrent fetches and direct downloads, by entry name (so a new version
//! of a file goes on counting where the old one left off). Counted in memory on the request
//! path; written to SQLite in the state folder (`downloads.sqlite`) by `serve` once a minute and
//! at shutdown, so a restart loses at most a minute of counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{params, Connection};

const FILE: &str = "downloads.sqlite";

#[derive(Debug, thiserror::Error)]
#[error("download counts store `{path}`: {source}")]
pub struct StoreError {
    path: PathBuf,
    source: rusqlite::Error,
}

/// One entry's counts.
#[derive(Debug, Default)]
pub struct Counts {
    /// .torrent files sent (a GET answered 200; a 304 to a client that has it is not counted).
    pub torrent_fetches: AtomicU64,
    /// Files sent whole over HTTP to clients that are not BitTorrent clients (a web seed's
    /// ranges are not downloads of their own).
    pub direct_downloads: AtomicU64,
    /// What the store holds, to write only what changed.
    saved: [AtomicU64; 2],
}

impl Counts {
    fn now(&self) -> [u64; 2] {
        [
            self.torrent_fetches.load(Ordering::Relaxed),
            self.direct_downloads.load(Ordering::Relaxed),
        ]
    }
}

pub struct Downloads {
    counts: RwLock<HashMap<String, Arc<Counts>>>,
    /// `None`: in memory only.
    store: Option<(PathBuf, Mutex<Connection>)>,
}

impl Downloads {
    pub fn in_memory() -> Downloads {
        Downloads {
            counts: RwLock::default(),
            store: None,
        }
    }

    /// The counts stored in `state_dir`, with the store kept open for `flush`.
    pub fn open(state_dir: &Path) -> Result<Downloads, StoreError> {
        let path = state_dir.join(FILE);
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS downloads (
                 name TEXT PRIMARY KEY NOT NULL,
                 torrent_fetches INTEGER NOT NULL,
                 direct_downloads INTEGER NOT NULL
             );",
        )
        .map_err(err)?;
        let mut counts = HashMap::new();
        {
            let mut stmt = conn
                .prepare("SELECT name, torrent_fetches, direct_downloads FROM downloads")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(err)?;
            for row in rows {
                let (name, torrents, direct) = row.map_err(err)?;
                let (t, d) = (torrents.max(0) as u64, direct.max(0) as u64);
                let c = Counts {
                    torrent_fetches: AtomicU64::new(t),
                    direct_downloads: AtomicU64::new(d),
                    saved: [AtomicU64::new(t), AtomicU64::new(d)],
                };
                counts.insert(name, Arc::new(c));
            }
        }
        Ok(Downloads {
            counts: RwLock::new(counts),
            store: Some((path, Mutex::new(conn))),
        })
    }

    /// The counts of `name`, made on first use. Call it only for published names: the map
    /// grows with what is counted.
    pub fn of(&self, name: &str) -> Arc<Counts> {
        if let Some(c) = self
            .counts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return c.clone();
        }
        self.counts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// (.torrent fetches, direct downloads) of `name`.
    pub fn get(&self, name: &str) -> (u64, u64) {
        self.counts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map_or((0, 0), |c| {
                let [t, d] = c.now();
                (t, d)
            })
    }

    /// Writes the counts that changed since the last flush, in one transaction. Blocking.
    pub fn flush(&self) -> Result<(), StoreError> {
        let Some((path, conn)) = &self.store else {
            return Ok(());
        };
        let changed: Vec<(String, Arc<Counts>, [u64; 2])> = self
            .counts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(name, c)| {
                let now = c.now();
                let saved = [0, 1].map(|i| c.saved[i].load(Ordering::Relaxed));
                (now != saved).then(|| (name.clone(), c.clone(), now))
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(err)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO downloads (name, torrent_fetches, direct_downloads)
                     VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for (name, _, [t, d]) in &changed {
                put.execute(params![name, *t as i64, *d as i64])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        for (_, c, now) in changed {
            for (i, v) in now.into_iter().enumerate() {
                c.saved[i].store(v, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_reopen_and_only_changes_are_written() {
        let dir = tempfile::tempdir().unwrap();
        {
            let d = Downloads::open(dir.path()).unwrap();
            d.of("a").torrent_fetches.fetch_add(2, Ordering::Relaxed);
            d.of("b").direct_downloads.fetch_add(1, Ordering::Relaxed);
            d.flush().unwrap();
            d.of("a").direct_downloads.fetch_add(5, Ordering::Relaxed);
            d.flush().unwrap();
            d.flush().unwrap();
        }
        let d = Downloads::open(dir.path()).unwrap();
        assert_eq!(d.get("a"), (2, 5));
        assert_eq!(d.get("b"), (0, 1));
        assert_eq!(d.get("c"), (0, 0));
    }
}
