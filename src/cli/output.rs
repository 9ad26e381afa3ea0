//! Small helpers shared by subcommands: sizes for people, and writing a file atomically.

use std::io::Write;
use std::path::Path;

pub use bitseed::units::human_size;

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: readers see
/// either no file or the whole file, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
