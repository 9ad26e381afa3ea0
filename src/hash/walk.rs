//! Which files go into a torrent: a file on its own, or every regular file under a folder, in
//! byte order of their path components (the BEP 52 file tree order, used for every format).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use thiserror::Error;
use walkdir::WalkDir;

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
        content.files.push(SourceFile {
            path: vec![name],
            disk: root.to_owned(),
            length: meta.len(),
            mtime: meta.modified().ok(),
        });
        return Ok(content);
    }
    if !meta.is_dir() {
        return Err(WalkError::NotFileOrFolder(root.to_owned()));
    }

    let mut walker = WalkDir::new(root)
        .follow_links(opts.follow_symlinks)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_owned();
            WalkError::Unreadable {
                path,
                source: e.into(),
            }
        })?;
        if entry.depth() == 0 {
            continue;
        }
        let file_name = entry
            .file_name()
            .to_str()
            .ok_or_else(|| WalkError::NotUtf8(entry.path().to_owned()))?;
        if (!opts.include_hidden && is_hidden(file_name))
            || (opts.skip_temporary && is_temporary(file_name))
        {
            content.skipped_hidden += 1;
            if entry.file_type().is_dir() {
                walker.skip_current_dir();
            }
            continue;
        }
        let ft = entry.file_type();
        if ft.is_symlink() {
            // Only reached when not following links.
            content.skipped_symlinks += 1;
            continue;
        }
        if ft.is_dir() {
            continue;
        }
        if !ft.is_file() {
            content.skipped_special += 1;
            continue;
        }
        let meta = entry.metadata().map_err(|e| WalkError::Unreadable {
            path: entry.path().to_owned(),
            source: e.into(),
        })?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| WalkError::NotUtf8(entry.path().to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        content.files.push(SourceFile {
            path: rel,
            disk: entry.path().to_owned(),
            length: meta.len(),
            mtime: meta.modified().ok(),
        });
    }
    content.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(content)
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
}
