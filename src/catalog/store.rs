//! The embedded store: one SQLite file in the state folder. Every write is one transaction, and
//! the journal is WAL, so a `kill -9` at any moment leaves either the old row or the new one.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot create the state folder `{path}`: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state store `{path}`: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// One published entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub name: String,
    /// What the entry looked like when hashed (see `Fingerprint::encode`).
    pub fingerprint: String,
    /// The fingerprint without the entry's own name, to recognise a renamed entry.
    pub content_key: String,
    /// The torrent options it was made with (format, piece size, private).
    pub options: String,
    pub torrent: Vec<u8>,
    /// A Merkle torrent's piece hashes, 20 bytes each (it holds only their root).
    pub pieces: Option<Vec<u8>>,
    /// The SHA-256 of each file, 32 bytes each in the torrent's order (pad files left out);
    /// `None` in a row stored before they were kept.
    pub sha256: Option<Vec<u8>>,
    /// When this version was published, in Unix seconds (the `updated_at` column).
    pub published_at: i64,
}

impl StoredEntry {
    /// The stored piece hashes, when there are some in whole 20-byte hashes.
    pub fn merkle_pieces(&self) -> Option<Vec<[u8; 20]>> {
        let raw = self.pieces.as_ref()?;
        if raw.len() % 20 != 0 {
            return None;
        }
        raw.chunks_exact(20)
            .map(|c| <[u8; 20]>::try_from(c).ok())
            .collect()
    }

    /// The stored file digests, when there are `files` of them.
    pub fn file_sha256(&self, files: usize) -> Option<Vec<[u8; 32]>> {
        let raw = self.sha256.as_ref()?;
        if raw.len() != files * 32 {
            return None;
        }
        raw.chunks_exact(32)
            .map(|c| <[u8; 32]>::try_from(c).ok())
            .collect()
    }
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// The columns `entry` reads, in its order.
const COLUMNS: &str =
    "name, fingerprint, content_key, options, torrent, pieces, sha256, updated_at";

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry {
        name: r.get(0)?,
        fingerprint: r.get(1)?,
        content_key: r.get(2)?,
        options: r.get(3)?,
        torrent: r.get(4)?,
        pieces: r.get(5)?,
        sha256: r.get(6)?,
        published_at: r.get(7)?,
    })
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Folder {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join("catalog.sqlite");
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS entries (
                 name TEXT PRIMARY KEY,
                 fingerprint TEXT NOT NULL,
                 content_key TEXT NOT NULL,
                 options TEXT NOT NULL,
                 torrent BLOB NOT NULL,
                 updated_at INTEGER NOT NULL
             );",
        )
        .map_err(err)?;
        // Added after the first release of the table: a store written before gets them.
        for column in ["pieces", "sha256"] {
            let has = conn
                .prepare("SELECT 1 FROM pragma_table_info('entries') WHERE name = ?1")
                .and_then(|mut s| s.exists([column]))
                .map_err(err)?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE entries ADD COLUMN {column} BLOB;"))
                    .map_err(err)?;
            }
        }
        Ok(Store { conn, path })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub fn all(&self) -> Result<Vec<StoredEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM entries"))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], entry).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    pub fn get(&self, name: &str) -> Result<Option<StoredEntry>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM entries WHERE name = ?1"),
                params![name],
                entry,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Inserts or replaces an entry (one transaction).
    pub fn put(&mut self, e: &StoredEntry) -> Result<(), StoreError> {
        self.apply(std::slice::from_ref(e), &[])
    }

    /// Sets the file digests of the row `name` if it still holds `torrent` (a row stored before
    /// digests were kept, read for them later): a row replaced meanwhile keeps its own.
    pub fn set_sha256(
        &mut self,
        name: &str,
        torrent: &[u8],
        sha256: &[u8],
    ) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "UPDATE entries SET sha256 = ?3 WHERE name = ?1 AND torrent = ?2",
                params![name, torrent, sha256],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    pub fn remove(&mut self, name: &str) -> Result<(), StoreError> {
        self.apply(&[], &[name.to_owned()])
    }

    /// Inserts or replaces `puts` and deletes `removes`, all in one transaction: a batch of
    /// small entries costs one commit.
    pub fn apply(&mut self, puts: &[StoredEntry], removes: &[String]) -> Result<(), StoreError> {
        if puts.is_empty() && removes.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO entries
                     (name, fingerprint, content_key, options, torrent, updated_at, pieces,
                      sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            for e in puts {
                insert
                    .execute(params![
                        e.name,
                        e.fingerprint,
                        e.content_key,
                        e.options,
                        e.torrent,
                        e.published_at,
                        e.pieces,
                        e.sha256
                    ])
                    .map_err(err)?;
            }
            let mut delete = tx
                .prepare_cached("DELETE FROM entries WHERE name = ?1")
                .map_err(err)?;
            for name in removes {
                delete.execute(params![name]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_remove_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let e = StoredEntry {
            name: "a".into(),
            fingerprint: "f".into(),
            content_key: "k".into(),
            options: "o".into(),
            torrent: vec![1, 2, 3],
            pieces: Some(vec![7; 40]),
            sha256: Some(vec![5; 64]),
            published_at: 1_790_000_000,
        };
        {
            let mut s = Store::open(dir.path()).unwrap();
            s.put(&e).unwrap();
            s.put(&StoredEntry {
                name: "b".into(),
                ..e.clone()
            })
            .unwrap();
            s.remove("b").unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get("a").unwrap(), Some(e.clone()));
        assert_eq!(s.all().unwrap(), vec![e.clone()]);
        assert_eq!(s.get("b").unwrap(), None);
        assert_eq!(e.merkle_pieces(), Some(vec![[7; 20], [7; 20]]));
        assert_eq!(e.file_sha256(2), Some(vec![[5; 32], [5; 32]]));
        assert_eq!(e.file_sha256(3), None);
    }

    /// A store written before the `pieces` and `sha256` columns existed opens, keeps its rows,
    /// and takes the columns; digests are filled in later, only over the torrent they were read
    /// for.
    #[test]
    fn a_store_without_the_later_columns_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("catalog.sqlite")).unwrap();
            conn.execute_batch(
                "CREATE TABLE entries (name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
                 content_key TEXT NOT NULL, options TEXT NOT NULL, torrent BLOB NOT NULL,
                 updated_at INTEGER NOT NULL);
                 INSERT INTO entries VALUES ('old', 'f', 'k', 'o', x'01', 0);",
            )
            .unwrap();
        }
        let mut s = Store::open(dir.path()).unwrap();
        let old = s.get("old").unwrap().unwrap();
        assert_eq!(
            (old.torrent, old.pieces, old.sha256, old.published_at),
            (vec![1], None, None, 0)
        );
        assert!(!s.set_sha256("old", &[2], &[3; 32]).unwrap());
        assert!(s.set_sha256("old", &[1], &[3; 32]).unwrap());
        s.put(&StoredEntry {
            name: "new".into(),
            fingerprint: "f".into(),
            content_key: "k".into(),
            options: "o".into(),
            torrent: vec![2],
            pieces: Some(vec![9; 20]),
            sha256: None,
            published_at: 5,
        })
        .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get("new").unwrap().unwrap().pieces, Some(vec![9; 20]));
        assert_eq!(s.get("old").unwrap().unwrap().sha256, Some(vec![3; 32]));
    }
}
