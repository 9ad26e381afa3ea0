//! The one way content files are opened, by the hasher, the seeder and `/files` alike: relative
//! to a descriptor of the content folder, refusing symbolic links at every component
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or `O_NOFOLLOW` one component at a
//! time where `openat2` is missing), and checked on the open descriptor against the identity the
//! file had when it was listed (device, inode, size, modification time).
//!
//! Checking the path and then opening it again would be two lookups, and a link swapped in
//! between them would be followed; here the descriptor that is checked is the one that is read.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{openat, openat2, Mode, OFlags, ResolveFlags, Stat, CWD};
use rustix::io::Errno;

use super::StorageError;

/// What a file was when it was listed and hashed: a later open or read that sees anything else
/// is refused, so bytes other than the hashed ones are never served under the torrent's hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

impl FileId {
    pub fn from_stat(st: &Stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: stat_mtime(st),
        }
    }

    pub fn from_metadata(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: m.modified().ok(),
        }
    }

    /// The identity of an open file.
    pub fn of(file: &File) -> std::io::Result<FileId> {
        Ok(FileId::from_stat(&rustix::fs::fstat(file)?))
    }

    /// Why `now` is not this file as it was, if it is not: another file (device or inode), or
    /// this one changed (size or modification time).
    pub fn differs(&self, now: &FileId) -> Option<String> {
        if (self.dev, self.ino) != (now.dev, now.ino) {
            return Some("replaced by another file".into());
        }
        self.content_differs(now)
    }

    /// As `differs`, for the same open file: only size and modification time can move.
    pub fn content_differs(&self, now: &FileId) -> Option<String> {
        if self.size != now.size {
            return Some(format!("size {} → {}", self.size, now.size));
        }
        if self.mtime != now.mtime {
            return Some("modification time changed".into());
        }
        None
    }
}

/// The modification time as `std::fs::Metadata::modified` reports it (same seconds and
/// nanoseconds), so identities taken by `stat` and through std compare equal.
pub fn stat_mtime(st: &Stat) -> Option<SystemTime> {
    let nanos = u32::try_from(st.st_mtime_nsec).ok()?;
    // `c_long`: i64 on the 64-bit targets bitseed is built for.
    #[allow(clippy::useless_conversion)]
    let secs = i64::from(st.st_mtime);
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(nanos.into()))
    }
}

/// Where content files are opened from.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    /// The folder's descriptor; `None`: paths are opened as given, links followed, for content
    /// the user named on the command line (`create`, `verify`, `seed`).
    dir: Option<OwnedFd>,
}

impl Root {
    /// Files beneath the folder `path`, opened relative to its descriptor with no link followed.
    pub fn beneath(path: &Path) -> Result<Root, StorageError> {
        let dir = openat(
            CWD,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StorageError::Io {
            path: path.to_owned(),
            source: e.into(),
        })?;
        Ok(Root {
            path: path.to_owned(),
            dir: Some(dir),
        })
    }

    /// Paths opened as given, following links: content the user named.
    pub fn anywhere() -> Root {
        Root {
            path: PathBuf::new(),
            dir: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` relative to the root: a path under `self.path()` loses that prefix, a relative one
    /// is taken as it is. Anything else (absolute elsewhere, `..`) is refused.
    fn relative<'a>(&self, path: &'a Path) -> Option<&'a Path> {
        // Not under the root's own spelling: a relative path is relative to the root.
        let rel = match path.strip_prefix(&self.path) {
            Ok(rel) => rel,
            Err(_) if path.is_relative() => path,
            Err(_) => return None,
        };
        let mut names = 0;
        for c in rel.components() {
            match c {
                Component::Normal(_) => names += 1,
                Component::CurDir => {}
                _ => return None,
            }
        }
        (names > 0).then_some(rel)
    }

    /// Opens the regular file at `path` (under the root) for reading.
    pub fn open(&self, path: &Path) -> Result<File, StorageError> {
        let io = |source: std::io::Error| StorageError::Io {
            path: path.to_owned(),
            source,
        };
        let Some(dir) = &self.dir else {
            let file = File::options()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(path)
                .map_err(io)?;
            return regular(file, path);
        };
        let rel = self.relative(path).ok_or_else(|| StorageError::Outside {
            path: path.to_owned(),
        })?;
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let fd = match openat2(dir, rel, flags, Mode::empty(), how) {
            // Kernels before 5.6, or a seccomp filter that does not know the call.
            Err(Errno::NOSYS) | Err(Errno::PERM) => open_each_component(dir, rel, flags),
            other => other,
        }
        .map_err(|e| match e {
            Errno::LOOP | Errno::XDEV => StorageError::Link {
                path: path.to_owned(),
            },
            e => io(e.into()),
        })?;
        regular(File::from(fd), path)
    }

    /// Opens `path` and checks that it is the file `id` describes.
    pub fn open_checked(&self, path: &Path, id: &FileId) -> Result<File, StorageError> {
        let file = self.open(path)?;
        let now = FileId::of(&file).map_err(|source| StorageError::Io {
            path: path.to_owned(),
            source,
        })?;
        match id.differs(&now) {
            Some(why) => Err(StorageError::Changed {
                path: path.to_owned(),
                why,
            }),
            None => Ok(file),
        }
    }
}

/// Refuses anything but a regular file (a FIFO or a device would block or never end); the open
/// was non-blocking for the same reason, which changes nothing for reads of regular files.
fn regular(file: File, path: &Path) -> Result<File, StorageError> {
    let meta = file.metadata().map_err(|source| StorageError::Io {
        path: path.to_owned(),
        source,
    })?;
    if meta.file_type().is_file() {
        Ok(file)
    } else {
        Err(StorageError::NotAFile {
            path: path.to_owned(),
        })
    }
}

/// `openat2`'s guarantees by hand: one component at a time, each opened with `O_NOFOLLOW`
/// relative to its parent, folders as `O_PATH | O_DIRECTORY`.
fn open_each_component(dir: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let names: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((last, folders)) = names.split_last() else {
        return Err(Errno::INVAL);
    };
    let mut held: Option<OwnedFd> = None;
    for name in folders {
        let parent = held.as_ref().unwrap_or(dir);
        let next = openat(
            parent,
            *name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| if e == Errno::NOTDIR { Errno::LOOP } else { e })?;
        held = Some(next);
    }
    let parent = held.as_ref().unwrap_or(dir);
    openat(parent, *last, flags | OFlags::NOFOLLOW, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_beneath_and_refuses_links_and_escapes() {
        let top = tempfile::tempdir().unwrap();
        let content = top.path().join("content");
        std::fs::create_dir_all(content.join("pack/sub")).unwrap();
        std::fs::write(content.join("one"), b"1").unwrap();
        std::fs::write(content.join("pack/sub/two"), b"22").unwrap();
        std::fs::write(top.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(top.path().join("secret"), content.join("link")).unwrap();
        std::os::unix::fs::symlink(content.join("pack"), content.join("dirlink")).unwrap();
        std::os::unix::fs::symlink("sub/two", content.join("pack/rel")).unwrap();

        let root = Root::beneath(&content).unwrap();
        assert!(root.open(&content.join("one")).is_ok());
        assert!(root.open(Path::new("pack/sub/two")).is_ok());
        for bad in ["link", "dirlink/sub/two", "pack/rel"] {
            let err = root.open(Path::new(bad)).unwrap_err();
            assert!(matches!(err, StorageError::Link { .. }), "{bad}: {err}");
        }
        for outside in [top.path().join("secret"), PathBuf::from("../secret")] {
            let err = root.open(&outside).unwrap_err();
            assert!(matches!(err, StorageError::Outside { .. }), "{err}");
        }
        assert!(matches!(
            root.open(Path::new("pack")).unwrap_err(),
            StorageError::NotAFile { .. }
        ));

        // The fallback walk gives the same answers.
        let dir = root.dir.as_ref().unwrap();
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        assert!(open_each_component(dir, Path::new("pack/sub/two"), flags).is_ok());
        for bad in ["link", "dirlink/sub/two", "pack/rel"] {
            assert_eq!(
                open_each_component(dir, Path::new(bad), flags).unwrap_err(),
                Errno::LOOP,
                "{bad}"
            );
        }
    }

    #[test]
    fn identity_is_checked_on_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"first").unwrap();
        let root = Root::beneath(dir.path()).unwrap();
        let id = FileId::of(&root.open(&a).unwrap()).unwrap();
        assert_eq!(id, FileId::from_metadata(&std::fs::metadata(&a).unwrap()));
        assert!(root.open_checked(&a, &id).is_ok());

        // Same size and mtime, another inode: refused.
        let b = dir.path().join("b");
        std::fs::write(&b, b"other").unwrap();
        let f = File::options().write(true).open(&b).unwrap();
        f.set_modified(id.mtime.unwrap()).unwrap();
        std::fs::rename(&b, &a).unwrap();
        let err = root.open_checked(&a, &id).unwrap_err();
        assert!(matches!(&err, StorageError::Changed { why, .. } if why.contains("replaced")));
    }
}
