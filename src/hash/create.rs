//! Making a torrent from listed content: plan the piece space, hash it, build the metainfo, and
//! check that no file changed while it was read.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};

use thiserror::Error;

use super::walk::Content;
use super::{content_hashes, hash_pieces, HashError, Job, Mode};
use crate::metainfo::{piece_size, plan_files, Format, Metainfo, MetainfoError, NewTorrent};
use crate::storage::Layout;

#[derive(Debug, Error)]
pub enum CreateError {
    #[error("`{0}` has no content (zero bytes in total)")]
    Empty(String),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Metainfo(#[from] MetainfoError),
    #[error("`{0}` changed while it was being hashed")]
    Changed(PathBuf),
}

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub format: Format,
    /// `None` picks by the rule in `piece_size::auto`.
    pub piece_length: Option<u64>,
    pub threads: usize,
    pub private: bool,
    pub source: Option<String>,
    pub trackers: Vec<String>,
    pub web_seeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

pub fn create(
    content: &Content,
    opts: &CreateOptions,
    progress: &AtomicU64,
    cancel: Option<&AtomicBool>,
) -> Result<Metainfo, CreateError> {
    let total = content.total();
    if total == 0 {
        return Err(CreateError::Empty(content.name.clone()));
    }
    let piece_length = opts.piece_length.unwrap_or_else(|| piece_size::auto(total));
    let listed: Vec<(Vec<String>, u64)> = content
        .files
        .iter()
        .map(|f| (f.path.clone(), f.length))
        .collect();
    let planned = plan_files(&listed, opts.format, piece_length);
    let mut real = content.files.iter();
    let paths: Vec<Option<PathBuf>> = planned
        .iter()
        .map(|f| {
            if f.pad {
                None
            } else {
                real.next().map(|s| s.disk.clone())
            }
        })
        .collect();
    let layout = if opts.format == Format::V2 {
        Layout::aligned(piece_length, planned.iter().map(|f| f.length))
    } else {
        Layout::contiguous(piece_length, planned.iter().map(|f| (f.length, f.pad)))
    };

    let pieces = hash_pieces(&Job {
        layout: &layout,
        paths: &paths,
        v1: opts.format.hashes_v1_pieces(),
        v2: opts.format.has_v2(),
        threads: opts.threads,
        mode: Mode::Strict,
        progress,
        cancel,
    })?;

    // A file that grew, or was rewritten in place, was hashed as a mix of old and new bytes.
    for f in &content.files {
        let now = std::fs::metadata(&f.disk).ok();
        if now.as_ref().map(|m| m.len()) != Some(f.length)
            || now.and_then(|m| m.modified().ok()) != f.mtime
        {
            return Err(CreateError::Changed(f.disk.clone()));
        }
    }

    Ok(NewTorrent {
        name: content.name.clone(),
        format: opts.format,
        piece_length,
        single_file: content.single_file,
        files: planned,
        hashes: content_hashes(&layout, pieces),
        private: opts.private,
        source: opts.source.clone(),
        trackers: opts.trackers.clone(),
        web_seeds: opts.web_seeds.clone(),
        comment: opts.comment.clone(),
        created_by: opts.created_by.clone(),
        creation_date: opts.creation_date,
    }
    .build()?)
}
