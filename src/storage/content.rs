//! A published torrent's files on disk: positioned reads of byte ranges of the piece space, and
//! the size/mtime recorded when the content was hashed, checked on every read so that a file
//! changed since then is never served under the old hashes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use thiserror::Error;

use super::Layout;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("I/O error at `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` changed since it was hashed ({why})")]
    Changed { path: PathBuf, why: String },
    #[error("`{path}` is {actual} bytes, the torrent says {expected}")]
    WrongSize {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
}

/// What a file looked like when it was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

impl Stamp {
    pub fn of(path: &Path) -> Result<Stamp, StorageError> {
        let meta = std::fs::metadata(path).map_err(|source| StorageError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Stamp {
            size: meta.len(),
            mtime: meta.modified().ok(),
        })
    }

    /// Why `now` differs from `self`, if it does.
    fn differs(&self, now: &Stamp) -> Option<String> {
        if self.size != now.size {
            return Some(format!("size {} → {}", self.size, now.size));
        }
        if self.mtime != now.mtime {
            return Some("modification time changed".into());
        }
        None
    }
}

struct DiskFile {
    path: PathBuf,
    stamp: Stamp,
    file: File,
}

/// The files behind a layout. Pad files and v2 alignment gaps read as zeros.
pub struct Content {
    layout: Layout,
    /// One per layout file; `None` for pad files and empty files.
    files: Vec<Option<DiskFile>>,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("files", &self.files.len())
            .finish()
    }
}

impl Content {
    /// Opens every file. `stamps` are what the files looked like when hashed (`None`: take them
    /// now, for content the caller vouches for, as `bitseed seed` does). Sizes must match the
    /// layout.
    pub fn open(
        layout: Layout,
        paths: &[Option<PathBuf>],
        stamps: Option<&[Stamp]>,
    ) -> Result<Content, StorageError> {
        let mut files = Vec::with_capacity(paths.len());
        for (i, (lf, path)) in layout.files.iter().zip(paths).enumerate() {
            let Some(path) = path.as_ref().filter(|_| !lf.pad && lf.length > 0) else {
                files.push(None);
                continue;
            };
            let stamp = match stamps.and_then(|s| s.get(i)) {
                Some(s) => *s,
                None => Stamp::of(path)?,
            };
            if stamp.size != lf.length {
                return Err(StorageError::WrongSize {
                    path: path.clone(),
                    expected: lf.length,
                    actual: stamp.size,
                });
            }
            let file = File::open(path).map_err(|source| StorageError::Io {
                path: path.clone(),
                source,
            })?;
            files.push(Some(DiskFile {
                path: path.clone(),
                stamp,
                file,
            }));
        }
        let content = Content { layout, files };
        content.check_all()?;
        Ok(content)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Checks every file against its stamp.
    pub fn check_all(&self) -> Result<(), StorageError> {
        for f in self.files.iter().flatten() {
            check(f)?;
        }
        Ok(())
    }

    /// Fills `buf` with the piece-space bytes from `start`. Blocking: call it off the async
    /// runtime's core threads. Each file touched is checked against its stamp before and after.
    pub fn read_at(&self, start: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        buf.fill(0);
        for span in self.layout.spans(start, buf.len() as u64) {
            if span.pad {
                continue;
            }
            let Some(Some(f)) = self.files.get(span.file) else {
                continue;
            };
            check(f)?;
            let lf = &self.layout.files[span.file];
            let at = (lf.offset + span.offset - start) as usize;
            let dst = &mut buf[at..at + span.length as usize];
            f.file
                .read_exact_at(dst, span.offset)
                .map_err(|source| match source.kind() {
                    // A file cut short under us is a change, not an I/O fault.
                    std::io::ErrorKind::UnexpectedEof => StorageError::Changed {
                        path: f.path.clone(),
                        why: "shorter than when hashed".into(),
                    },
                    _ => StorageError::Io {
                        path: f.path.clone(),
                        source,
                    },
                })?;
            // And after: a rewrite that began between the first check and the read would
            // otherwise hand out new bytes under the old piece hash.
            check(f)?;
        }
        Ok(())
    }
}

fn check(f: &DiskFile) -> Result<(), StorageError> {
    let now = Stamp::of(&f.path).map_err(|e| match e {
        StorageError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            StorageError::Changed {
                path,
                why: "removed".into(),
            }
        }
        other => other,
    })?;
    match f.stamp.differs(&now) {
        Some(why) => Err(StorageError::Changed {
            path: f.path.clone(),
            why,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_files_pads_and_detects_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"0123456789").unwrap();
        std::fs::write(&b, b"abcdefghij").unwrap();
        // a (10), a pad of 6, b (10): pieces of 16.
        let layout = Layout::contiguous(16, [(10, false), (6, true), (10, false)]);
        let content =
            Content::open(layout, &[Some(a.clone()), None, Some(b.clone())], None).unwrap();
        let mut buf = [0xFFu8; 20];
        content.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf, b"6789\0\0\0\0\0\0abcdefghij");

        std::fs::write(&b, b"abcdefghijk").unwrap();
        let err = content.read_at(16, &mut buf[..4]).unwrap_err();
        assert!(
            matches!(&err, StorageError::Changed { path, why } if path == &b && why.contains("10 → 11")),
            "{err}"
        );
        // A read that touches only the unchanged file still works.
        content.read_at(0, &mut buf[..4]).unwrap();
        std::fs::remove_file(&a).unwrap();
        assert!(matches!(
            content.read_at(0, &mut buf[..4]),
            Err(StorageError::Changed { .. })
        ));
    }

    #[test]
    fn refuses_a_file_of_the_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"short").unwrap();
        let layout = Layout::contiguous(16, [(10, false)]);
        assert!(matches!(
            Content::open(layout, &[Some(a)], None),
            Err(StorageError::WrongSize { .. })
        ));
    }
}
