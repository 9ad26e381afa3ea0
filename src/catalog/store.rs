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
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
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
            .prepare("SELECT name, fingerprint, content_key, options, torrent FROM entries")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredEntry {
                    name: r.get(0)?,
                    fingerprint: r.get(1)?,
                    content_key: r.get(2)?,
                    options: r.get(3)?,
                    torrent: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    pub fn get(&self, name: &str) -> Result<Option<StoredEntry>, StoreError> {
        self.conn
            .query_row(
                "SELECT name, fingerprint, content_key, options, torrent FROM entries WHERE name = ?1",
                params![name],
                |r| {
                    Ok(StoredEntry {
                        name: r.get(0)?,
                        fingerprint: r.get(1)?,
                        content_key: r.get(2)?,
                        options: r.get(3)?,
                        torrent: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Inserts or replaces an entry (one transaction).
    pub fn put(&mut self, e: &StoredEntry) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.conn
            .execute(
                "INSERT OR REPLACE INTO entries
                 (name, fingerprint, content_key, options, torrent, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    e.name,
                    e.fingerprint,
                    e.content_key,
                    e.options,
                    e.torrent,
                    now
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM entries WHERE name = ?1", params![name])
            .map_err(|e| self.err(e))?;
        Ok(())
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
        assert_eq!(s.all().unwrap(), vec![e]);
        assert_eq!(s.get("b").unwrap(), None);
    }
}
