//! A published torrent's files on disk: positioned reads of byte ranges of the piece space (or of
//! one file, for `/files`), through the shared descriptor pool, each file opened beneath the
//! content root and checked against the identity recorded when it was hashed, on open and after
//! every read, so that a file changed since then is never served under the old hashes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use super::open::{FileId, Root};
use super::pool::{FileKey, FilePool};
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
    #[error("`{path}` is or passes through a symbolic link, which content may not")]
    Link { path: PathBuf },
    #[error("`{path}` is outside the content folder")]
    Outside { path: PathBuf },
    #[error("`{path}` is not a regular file")]
    NotAFile { path: PathBuf },
}

/// One file of a torrent on disk: where (under the content root) and what it was when hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentFile {
    pub path: PathBuf,
    pub id: FileId,
}

#[derive(Debug)]
struct DiskFile {
    path: PathBuf,
    id: FileId,
    key: FileKey,
}

/// The files behind a layout, read through the shared descriptor pool. Pad files and v2
/// alignment gaps read as zeros.
pub struct Content {
    layout: Layout,
    root: Arc<Root>,
    /// One per layout file; `None` for pad files and empty files.
    files: Vec<Option<DiskFile>>,
    pool: &'static FilePool,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("files", &self.files.len())
            .finish()
    }
}

impl Drop for Content {
    fn drop(&mut self) {
        for f in self.files.iter().flatten() {
            self.pool.forget(f.key);
        }
    }
}

impl Content {
    /// Files whose identity is known (listed and hashed by the catalog): nothing is opened
    /// until a read, which checks each file against its identity. Sizes must match the layout.
    pub fn new(
        layout: Layout,
        root: Arc<Root>,
        files: Vec<Option<ContentFile>>,
    ) -> Result<Content, StorageError> {
        let pool = FilePool::global();
        let mut disk = Vec::with_capacity(files.len());
        for (lf, file) in layout.files.iter().zip(files) {
            let Some(file) = file.filter(|_| !lf.pad && lf.length > 0) else {
                disk.push(None);
                continue;
            };
            if file.id.size != lf.length {
                return Err(StorageError::WrongSize {
                    path: file.path,
                    expected: lf.length,
                    actual: file.id.size,
                });
            }
            disk.push(Some(DiskFile {
                path: file.path,
                id: file.id,
                key: pool.key(),
            }));
        }
        disk.resize_with(layout.files.len(), || None);
        Ok(Content {
            layout,
            root,
            files: disk,
            pool,
        })
    }

    /// Content the caller vouches for (as `bitseed seed` does): each file is opened once now
    /// and its identity taken. Blocking.
    pub fn vouched(
        layout: Layout,
        root: Arc<Root>,
        paths: &[Option<PathBuf>],
    ) -> Result<Content, StorageError> {
        let mut files = Vec::with_capacity(paths.len());
        for (lf, path) in layout.files.iter().zip(paths) {
            let Some(path) = path.as_ref().filter(|_| !lf.pad && lf.length > 0) else {
                files.push(None);
                continue;
            };
            let file = root.open(path)?;
            let id = FileId::of(&file).map_err(|source| StorageError::Io {
                path: path.clone(),
                source,
            })?;
            files.push(Some(ContentFile {
                path: path.clone(),
                id,
            }));
        }
        Content::new(layout, root, files)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The file at layout index `i`, if it is a real one: its path and identity.
    pub fn file(&self, i: usize) -> Option<(&Path, &FileId)> {
        let f = self.files.get(i)?.as_ref()?;
        Some((&f.path, &f.id))
    }

    /// A path as the operator knows it: under the content folder (an absolute path, for
    /// content named on the command line, stays as it is).
    fn full_path(&self, path: &Path) -> PathBuf {
        self.root.path().join(path)
    }

    /// Opens (or finds open) layout file `i` and checks it against its identity. Blocking.
    pub fn check_file(&self, i: usize) -> Result<(), StorageError> {
        match self.files.get(i) {
            Some(Some(f)) => {
                let file = self.handle(f)?;
                self.check(f, &file)
            }
            _ => Ok(()),
        }
    }

    /// Fills `buf` with the piece-space bytes from `start`. Blocking: call it off the async
    /// runtime's core threads. Each file touched is checked against its identity after the
    /// read, so bytes written during the read are never handed out.
    pub fn read_at(&self, start: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        buf.fill(0);
        for span in self.layout.spans(start, buf.len() as u64) {
            if span.pad {
                continue;
            }
            let lf = &self.layout.files[span.file];
            let at = (lf.offset + span.offset - start) as usize;
            self.read_span(
                span.file,
                span.offset,
                &mut buf[at..at + span.length as usize],
            )?;
        }
        Ok(())
    }

    /// Fills `buf` from offset `offset` of layout file `index` (a pad file reads as zeros).
    /// Blocking, and checked, as `read_at`.
    pub fn read_file_at(
        &self,
        index: usize,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), StorageError> {
        let Some(lf) = self.layout.files.get(index) else {
            return Err(StorageError::Outside {
                path: PathBuf::from(format!("file #{index}")),
            });
        };
        if offset + buf.len() as u64 > lf.length {
            return Err(StorageError::Io {
                path: self.files[index]
                    .as_ref()
                    .map(|f| self.full_path(&f.path))
                    .unwrap_or_default(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "read past the end of the file",
                ),
            });
        }
        if lf.pad || lf.length == 0 {
            buf.fill(0);
            return Ok(());
        }
        self.read_span(index, offset, buf)
    }

    fn read_span(&self, index: usize, offset: u64, dst: &mut [u8]) -> Result<(), StorageError> {
        let Some(Some(f)) = self.files.get(index) else {
            dst.fill(0);
            return Ok(());
        };
        let file = self.handle(f)?;
        file.read_exact_at(dst, offset)
            .map_err(|source| match source.kind() {
                // A file cut short under us is a change, not an I/O fault.
                std::io::ErrorKind::UnexpectedEof => StorageError::Changed {
                    path: self.full_path(&f.path),
                    why: "shorter than when hashed".into(),
                },
                _ => StorageError::Io {
                    path: self.full_path(&f.path),
                    source,
                },
            })?;
        // After the read: a rewrite that began before or during it would otherwise hand out
        // new bytes under the old piece hash.
        self.check(f, &file)
    }

    fn handle(&self, f: &DiskFile) -> Result<Arc<File>, StorageError> {
        self.pool
            .get(f.key, || self.root.open_checked(&f.path, &f.id))
            .map_err(|e| self.name_error(e))
    }

    fn check(&self, f: &DiskFile, file: &File) -> Result<(), StorageError> {
        let now = FileId::of(file).map_err(|source| StorageError::Io {
            path: self.full_path(&f.path),
            source,
        })?;
        match f.id.content_differs(&now) {
            Some(why) => {
                self.pool.forget(f.key);
                Err(StorageError::Changed {
                    path: self.full_path(&f.path),
                    why,
                })
            }
            None => Ok(()),
        }
    }

    /// Errors name files under the content folder as the operator knows them.
    fn name_error(&self, e: StorageError) -> StorageError {
        match e {
            StorageError::Io { path, source } => StorageError::Io {
                path: self.full_path(&path),
                source,
            },
            StorageError::Changed { path, why } => StorageError::Changed {
                path: self.full_path(&path),
                why,
            },
            StorageError::Link { path } => StorageError::Link {
                path: self.full_path(&path),
            },
            StorageError::NotAFile { path } => StorageError::NotAFile {
                path: self.full_path(&path),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vouched(layout: Layout, paths: &[Option<PathBuf>]) -> Result<Content, StorageError> {
        Content::vouched(layout, Arc::new(Root::anywhere()), paths)
    }

    #[test]
    fn reads_across_files_pads_and_detects_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"0123456789").unwrap();
        std::fs::write(&b, b"abcdefghij").unwrap();
        // a (10), a pad of 6, b (10): pieces of 16.
        let layout = Layout::contiguous(16, [(10, false), (6, true), (10, false)]);
        let content = vouched(layout, &[Some(a.clone()), None, Some(b.clone())]).unwrap();
        let mut buf = [0xFFu8; 20];
        content.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf, b"6789\0\0\0\0\0\0abcdefghij");
        let mut one = [0u8; 3];
        content.read_file_at(2, 7, &mut one).unwrap();
        assert_eq!(&one, b"hij");
        content.read_file_at(1, 0, &mut one).unwrap();
        assert_eq!(&one, b"\0\0\0");
        assert!(content.read_file_at(2, 8, &mut one).is_err());

        std::fs::write(&b, b"abcdefghijk").unwrap();
        let err = content.read_at(16, &mut buf[..4]).unwrap_err();
        assert!(
            matches!(&err, StorageError::Changed { path, why } if path == &b && why.contains("10 → 11")),
            "{err}"
        );
        // A read that touches only the unchanged file still works.
        content.read_at(0, &mut buf[..4]).unwrap();
        // A file replaced by another (a new inode) is refused when it is next opened.
        drop(content);
        let layout = Layout::contiguous(16, [(10, false)]);
        let content = vouched(layout, &[Some(a.clone())]).unwrap();
        let replacement = dir.path().join("a2");
        std::fs::write(&replacement, b"9876543210").unwrap();
        std::fs::rename(&replacement, &a).unwrap();
        FilePool::global().forget(content.files[0].as_ref().unwrap().key);
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
            vouched(layout, &[Some(a)]),
            Err(StorageError::WrongSize { .. })
        ));
    }
}
