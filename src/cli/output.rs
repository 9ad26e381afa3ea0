//! Small helpers shared by subcommands: sizes and counts for people, and writing a file
//! atomically.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub use bitseed::units::{count, human_size};

/// The folder `path` is written in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: readers see
/// either no file or the whole file, never a partial one. The file gets the mode a plain
/// create would (0666 less the umask, so a web server's user can read it), not the temporary
/// file's private 0600. Errors say what went wrong without the temporary file's name, which
/// means nothing to the user.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let plain = |e: std::io::Error| {
        let why = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (the folder is not writable by this user)".to_owned()
            }
            std::io::ErrorKind::NotFound => "the folder does not exist".to_owned(),
            kind => kind.to_string(),
        };
        std::io::Error::new(e.kind(), why)
    };
    let mut tmp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(folder_of(path))
        .map_err(plain)?;
    tmp.write_all(bytes).map_err(plain)?;
    tmp.as_file().sync_all().map_err(plain)?;
    tmp.persist(path).map_err(|e| plain(e.error))?;
    Ok(())
}
