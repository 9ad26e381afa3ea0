//! Which files go into a torrent: a file on its own, or every regular file under a folder, in
//! byte order of their path components (the BEP 52 file tree order, used for every format).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{openat, statat, AtFlags, Dir, FileType, Mode, OFlags};

use crate::storage::FileId;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WalkError {
    #[error("`{0}` does not exist")]
    NotFound(PathBuf),
    #[error("cannot read `{path}`: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{0}` has a name that is not UTF-8")]
    NotUtf8(PathBuf),
    #[error("`{0}` is neither a file nor a folder")]
    NotFileOrFolder(PathBuf),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct WalkOptions {
    pub include_hidden: bool,
    pub follow_symlinks: bool,
    /// Also skip names of files still being written (`*.part`, `*.tmp`, `*.crdownload`, `~*`).
    pub skip_temporary: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Components under the torrent's folder (for a single file, just its name).
    pub path: Vec<String>,
    pub disk: PathBuf,
    pub length: u64,
    pub mtime: Option<SystemTime>,
    /// Device and inode, for the identity the hasher checks on the descriptor it reads.
    pub dev: u64,
    pub ino: u64,
}

impl SourceFile {
    /// The file as listed: what every later open of it must find.
    pub fn id(&self) -> FileId {
        FileId {
            dev: self.dev,
            ino: self.ino,
            size: self.length,
            mtime: self.mtime,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Content {
    pub name: String,
    pub single_file: bool,
    pub files: Vec<SourceFile>,
    pub skipped_hidden: usize,
    pub skipped_symlinks: usize,
    pub skipped_special: usize,
}

impl Content {
    pub fn total(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }
}

pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Names that downloaders and editors give files while they are still being written.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('~')
        || [".part", ".tmp", ".crdownload"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Lists the files of `root`. The root itself is taken even if hidden or a symlink: it was named.
pub fn collect(root: &Path, opts: WalkOptions) -> Result<Content, WalkError> {
    let meta = std::fs::metadata(root).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => WalkError::NotFound(root.to_owned()),
        _ => WalkError::Unreadable {
            path: root.to_owned(),
            source,
        },
    })?;
    // A name for "." or "dir/.." comes from the canonical path.
    let named = std::fs::canonicalize(root).map_err(|source| WalkError::Unreadable {
        path: root.to_owned(),
        source,
    })?;
    let name = named
        .file_name()
        .ok_or_else(|| WalkError::NotFileOrFolder(root.to_owned()))?
        .to_str()
        .ok_or_else(|| WalkError::NotUtf8(root.to_owned()))?
        .to_owned();

    let mut content = Content {
        name: name.clone(),
        single_file: meta.is_file(),
        files: Vec::new(),
        skipped_hidden: 0,
        skipped_symlinks: 0,
        skipped_special: 0,
    };
    if meta.is_file() {
        let id = FileId::from_metadata(&meta);
        content.files.push(SourceFile {
            path: vec![name],
            disk: root.to_owned(),
            length: id.size,
            mtime: id.mtime,
            dev: id.dev,
            ino: id.ino,
        });
        return Ok(content);
    }
    if !meta.is_dir() {
        return Err(WalkError::NotFileOrFolder(root.to_owned()));
    }

    let dir = std::fs::File::open(root)
        .and_then(|f| Dir::new(OwnedFd::from(f)).map_err(std::io::Error::from))
        .map_err(|source| WalkError::Unreadable {
            path: root.to_owned(),
            source,
        })?;
    let mut walker = Walker {
        opts,
        content: &mut content,
        ancestors: Vec::new(),
    };
    walker.folder(dir, root, &mut Vec::new())?;
    content.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(content)
}

/// Folders nested deeper than this are refused: each level holds a descriptor while it is read.
const MAX_DEPTH: usize = 256;

/// Reads folders relative to their parent's descriptor (`openat`, `fstatat`): one path component
/// per lookup instead of the whole path, which is most of a walk's cost on many small files.
struct Walker<'a> {
    opts: WalkOptions,
    content: &'a mut Content,
    /// (device, inode) of the folders above, to refuse a symlink loop when following links.
    ancestors: Vec<(u64, u64)>,
}

impl Walker<'_> {
    /// Lists `dir` (at `disk`, `rel` under the root) in byte order of names, depth first: the
    /// torrent's file order.
    fn folder(
        &mut self,
        mut dir: Dir,
        disk: &Path,
        rel: &mut Vec<String>,
    ) -> Result<(), WalkError> {
        let unreadable = |path: &Path, e: rustix::io::Errno| WalkError::Unreadable {
            path: path.to_owned(),
            source: e.into(),
        };
        if rel.len() >= MAX_DEPTH {
            return Err(WalkError::Unreadable {
                path: disk.to_owned(),
                source: std::io::Error::other(format!("folders nested over {MAX_DEPTH} deep")),
            });
        }
        let mut entries: Vec<(Vec<u8>, FileType)> = Vec::new();
        for entry in dir.by_ref() {
            let entry = entry.map_err(|e| unreadable(disk, e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                entries.push((name.to_vec(), entry.file_type()));
            }
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let fd = dir.fd().map_err(|e| unreadable(disk, e))?;
        for (name, mut kind) in entries {
            let path = disk.join(OsStr::from_bytes(&name));
            let Ok(name_str) = std::str::from_utf8(&name) else {
                return Err(WalkError::NotUtf8(path));
            };
            if (!self.opts.include_hidden && is_hidden(name_str))
                || (self.opts.skip_temporary && is_temporary(name_str))
            {
                self.content.skipped_hidden += 1;
                continue;
            }
            let mut stat = None;
            if kind == FileType::Unknown {
                let st = statat(fd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| unreadable(&path, e))?;
                kind = FileType::from_raw_mode(st.st_mode as _);
            }
            if kind == FileType::Symlink {
                if !self.opts.follow_symlinks {
                    self.content.skipped_symlinks += 1;
                    continue;
                }
                let st = statat(fd, name.as_slice(), AtFlags::empty())
                    .map_err(|e| unreadable(&path, e))?;
                kind = FileType::from_raw_mode(st.st_mode as _);
                stat = Some(st);
            }
            let no_follow = if self.opts.follow_symlinks {
                AtFlags::empty()
            } else {
                AtFlags::SYMLINK_NOFOLLOW
            };
            match kind {
                FileType::Directory => {
                    let flags = OFlags::RDONLY
                        | OFlags::DIRECTORY
                        | OFlags::CLOEXEC
                        | if self.opts.follow_symlinks {
                            OFlags::empty()
                        } else {
                            OFlags::NOFOLLOW
                        };
                    let sub = openat(fd, name.as_slice(), flags, Mode::empty())
                        .map_err(|e| unreadable(&path, e))?;
                    let st = rustix::fs::fstat(&sub).map_err(|e| unreadable(&path, e))?;
                    let id = (st.st_dev as u64, st.st_ino as u64);
                    if self.ancestors.contains(&id) {
                        return Err(WalkError::Unreadable {
                            path,
                            source: std::io::Error::other("a symlink loops back to a folder above"),
                        });
                    }
                    let sub = Dir::new(sub).map_err(|e| unreadable(&path, e))?;
                    self.ancestors.push(id);
                    rel.push(name_str.to_owned());
                    let walked = self.folder(sub, &path, rel);
                    rel.pop();
                    self.ancestors.pop();
                    walked?;
                }
                FileType::RegularFile => {
                    let st = match stat {
                        Some(st) => st,
                        None => statat(fd, name.as_slice(), no_follow)
                            .map_err(|e| unreadable(&path, e))?,
                    };
                    // Replaced since the folder was read: counted as the walk would have.
                    if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
                        self.content.skipped_special += 1;
                        continue;
                    }
                    let mut components = rel.clone();
                    components.push(name_str.to_owned());
                    let id = FileId::from_stat(&st);
                    self.content.files.push(SourceFile {
                        path: components,
                        disk: path,
                        length: id.size,
                        mtime: id.mtime,
                        dev: id.dev,
                        ino: id.ino,
                    });
                }
                _ => self.content.skipped_special += 1,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_hidden_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pack");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("a.txt"), b"1").unwrap();
        std::fs::write(root.join("a/b"), b"22").unwrap();
        std::fs::write(root.join("B"), b"").unwrap();
        std::fs::write(root.join(".hidden"), b"x").unwrap();
        std::fs::write(root.join(".git/config"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("link")).unwrap();

        let c = collect(&root, WalkOptions::default()).unwrap();
        let paths: Vec<String> = c.files.iter().map(|f| f.path.join("/")).collect();
        // Component order: "B" < "a" (bytes), and "a/b" before "a.txt" since "a" < "a.txt".
        assert_eq!(paths, vec!["B", "a/b", "a.txt"]);
        assert_eq!(c.name, "pack");
        assert_eq!((c.skipped_hidden, c.skipped_symlinks), (2, 1));
        assert_eq!(c.total(), 3);

        let all = collect(
            &root,
            WalkOptions {
                include_hidden: true,
                follow_symlinks: true,
                skip_temporary: false,
            },
        )
        .unwrap();
        assert_eq!(all.files.len(), 6);
    }

    #[test]
    fn stamps_match_std_and_odd_trees_are_refused_not_followed_forever() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"abc").unwrap();
        let c = collect(&root, WalkOptions::default()).unwrap();
        let std_meta = std::fs::metadata(root.join("d/f")).unwrap();
        // The pipeline and the catalog compare these stamps with ones read through std.
        assert_eq!(c.files[0].mtime, std_meta.modified().ok());
        assert_eq!(c.files[0].length, 3);

        // A symlink back up the tree: skipped by default, an error (not a hang) when followed.
        std::os::unix::fs::symlink(&root, root.join("d/up")).unwrap();
        assert_eq!(
            collect(&root, WalkOptions::default()).unwrap().files.len(),
            1
        );
        let follow = WalkOptions {
            follow_symlinks: true,
            ..WalkOptions::default()
        };
        assert!(matches!(
            collect(&root, follow),
            Err(WalkError::Unreadable { .. })
        ));
        std::fs::remove_file(root.join("d/up")).unwrap();

        // A name that is not UTF-8 is named in the error.
        let bad = root.join(std::ffi::OsStr::from_bytes(b"bad\xff"));
        std::fs::write(&bad, b"x").unwrap();
        assert!(
            matches!(collect(&root, WalkOptions::default()), Err(WalkError::NotUtf8(p)) if p == bad)
        );
        std::fs::remove_file(&bad).unwrap();

        // Folders nested past MAX_DEPTH are refused.
        let mut deep = root.join("deep");
        for _ in 0..=MAX_DEPTH {
            deep.push("x");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), b"1").unwrap();
        assert!(matches!(
            collect(&root, WalkOptions::default()),
            Err(WalkError::Unreadable { .. })
        ));
    }
}
