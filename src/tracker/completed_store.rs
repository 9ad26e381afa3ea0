//! `completed` counts on disk (SQLite in the state folder), so they survive a restart. Written in
//! batches by the maintenance task, never on the announce path.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection};

use super::http_request::InfoHash;

const FILE: &str = "tracker.sqlite3";

#[derive(Debug, thiserror::Error)]
#[error("tracker store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    source: rusqlite::Error,
}

pub struct CompletedStore {
    path: PathBuf,
    // rusqlite's Connection is not Sync; only the maintenance task and startup use it.
    conn: Mutex<Connection>,
}

impl CompletedStore {
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join(FILE);
        let wrap = |source| StoreError {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(wrap)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS tracker_completed (
                 info_hash BLOB PRIMARY KEY NOT NULL,
                 completed INTEGER NOT NULL
             );",
        )
        .map_err(wrap)?;
        Ok(CompletedStore {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// Every stored count.
    pub fn load(&self) -> Result<Vec<(InfoHash, u64)>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows = Vec::new();
        let mut stmt = conn
            .prepare("SELECT info_hash, completed FROM tracker_completed")
            .map_err(|e| self.err(e))?;
        let mut query = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = query.next().map_err(|e| self.err(e))? {
            let hash: Vec<u8> = row.get(0).map_err(|e| self.err(e))?;
            let count: i64 = row.get(1).map_err(|e| self.err(e))?;
            // A row we did not write (wrong length) is skipped rather than trusted.
            if let (Some(hash), Ok(count)) = (InfoHash::from_slice(&hash), u64::try_from(count)) {
                rows.push((hash, count));
            }
        }
        Ok(rows)
    }

    /// Adds `increments` to the stored counts in one transaction.
    pub fn add(&self, increments: &[(InfoHash, u64)]) -> Result<(), StoreError> {
        if increments.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO tracker_completed (info_hash, completed) VALUES (?1, ?2)
                     ON CONFLICT (info_hash) DO UPDATE SET completed = completed + excluded.completed",
                )
                .map_err(|e| self.err(e))?;
            for (hash, n) in increments {
                let n = i64::try_from(*n).unwrap_or(i64::MAX);
                stmt.execute(params![hash.as_bytes().as_slice(), n])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = CompletedStore::open(dir.path()).unwrap();
        store
            .add(&[(InfoHash::new([1; 20]), 2), (InfoHash::new([2; 20]), 1)])
            .unwrap();
        store.add(&[(InfoHash::new([1; 20]), 3)]).unwrap();
        drop(store);
        let mut rows = CompletedStore::open(dir.path()).unwrap().load().unwrap();
        rows.sort();
        assert_eq!(
            rows,
            vec![(InfoHash::new([1; 20]), 5), (InfoHash::new([2; 20]), 1)]
        );
    }
}
