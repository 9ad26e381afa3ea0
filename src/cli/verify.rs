//! `bitseed verify`: check content on disk against a torrent of any format.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use bitseed::hash::{hash_pieces, Job, Mode};
use bitseed::metainfo::{merkle, Format, Metainfo};

use super::output::{count, human_size};
use super::UsageError;

/// Re-check content against a torrent (v1, merkle, v2 or hybrid); name the bad pieces and the
/// files they touch. Exits 1 on any mismatch.
#[derive(clap::Args)]
pub struct Args {
    /// The .torrent file.
    torrent: PathBuf,
    /// The content: the file itself, or the folder named by the torrent (or the folder holding it).
    path: PathBuf,
    /// Hashing threads [default: number of CPUs].
    #[arg(short, long)]
    threads: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let bytes = std::fs::read(&args.torrent)
        .with_context(|| format!("cannot read `{}`", args.torrent.display()))?;
    let meta = Metainfo::from_bytes(&bytes)
        .with_context(|| format!("`{}` is not a valid torrent", args.torrent.display()))?;
    if !args.path.exists() {
        return Err(UsageError(format!("`{}` does not exist", args.path.display())).into());
    }
    let base = content_base(&meta, &args.path);
    let layout = meta.layout();
    let paths: Vec<Option<PathBuf>> = meta
        .files
        .iter()
        .map(|f| {
            (!f.pad).then(|| {
                if meta.single_file {
                    base.clone()
                } else {
                    f.path.iter().fold(base.clone(), |p, c| p.join(c))
                }
            })
        })
        .collect();

    let mut problems = 0usize;
    // Files missing or of the wrong size: each is one line, not a line per piece it spans
    // (a truncated 1 GB file would otherwise list hundreds of bad pieces).
    let mut misfits = BTreeSet::new();
    for (i, (f, path)) in meta.files.iter().zip(&paths).enumerate() {
        let Some(path) = path else { continue };
        match std::fs::metadata(path) {
            Ok(m) if m.len() == f.length => {}
            Ok(m) => {
                problems += 1;
                misfits.insert(i);
                println!(
                    "size differs: {} is {} bytes, the torrent says {}",
                    path.display(),
                    m.len(),
                    f.length
                );
            }
            Err(e) => {
                problems += 1;
                misfits.insert(i);
                println!("missing: {} ({e})", path.display());
            }
        }
    }

    let progress = AtomicU64::new(0);
    let computed = hash_pieces(&Job {
        layout: &layout,
        root: &bitseed::storage::Root::anywhere(),
        paths: &paths,
        v1: meta.format.hashes_v1_pieces(),
        v2: meta.format.has_v2(),
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        mode: Mode::Lenient,
        progress: &progress,
        cancel: None,
        stamps: None,
    })?;

    let mut bad: BTreeSet<u64> = computed.unreadable.iter().copied().collect();
    if meta.format == Format::Merkle {
        if Some(merkle::bep30_root(&computed.v1)) != meta.root_hash {
            problems += 1;
            println!(
                "root hash mismatch: the content differs from the torrent \
                 (a BEP 30 torrent carries only the root, so the bad pieces cannot be named)"
            );
        }
    } else if meta.format.hashes_v1_pieces() {
        for (i, (got, want)) in computed.v1.iter().zip(&meta.pieces).enumerate() {
            if got != want {
                bad.insert(i as u64);
            }
        }
    }
    if meta.format.has_v2() {
        for (f, lf) in meta.files.iter().zip(&layout.files) {
            let Some(root) = f.pieces_root else { continue };
            let first = lf.offset / meta.piece_length;
            let count = f.length.div_ceil(meta.piece_length);
            let layer = meta.piece_layers.get(&root);
            for k in 0..count {
                let want = match layer {
                    Some(l) => l.get(k as usize).copied(),
                    None => Some(root),
                };
                let got = computed.v2.get((first + k) as usize).copied();
                if got.is_none() || got != want {
                    bad.insert(first + k);
                }
            }
        }
    }

    let mut explained = 0u64;
    for &piece in &bad {
        let of_piece: Vec<usize> = layout
            .files_of_piece(piece)
            .into_iter()
            .filter(|&i| !meta.files[i].pad)
            .collect();
        if !of_piece.is_empty() && of_piece.iter().all(|i| misfits.contains(i)) {
            explained += 1;
            continue;
        }
        let (start, end) = layout.piece_range(piece);
        let files: Vec<String> = of_piece
            .into_iter()
            .map(|i| meta.files[i].display_path())
            .collect();
        println!(
            "bad piece {piece} (bytes {start}..{end}): {}",
            files.join(", ")
        );
    }
    let pieces = layout.piece_count();
    if bad.is_empty() && problems == 0 {
        println!(
            "ok: all {pieces} pieces of `{}` are valid ({})",
            meta.name,
            human_size(meta.total_size())
        );
        Ok(0)
    } else {
        let within = if explained > 0 {
            format!(" ({explained} of them in files missing or of the wrong size, not listed)")
        } else {
            String::new()
        };
        println!(
            "FAILED: {} of {} bad{within}, {} other {}",
            bad.len(),
            count(pieces, "piece", "pieces"),
            problems,
            if problems == 1 { "problem" } else { "problems" }
        );
        Ok(1)
    }
}

/// Where the torrent's files are: a single file is PATH or PATH/NAME; a folder torrent's files
/// are under PATH, or under PATH/NAME when PATH is the folder that holds it.
fn content_base(meta: &Metainfo, path: &Path) -> PathBuf {
    if meta.single_file {
        if path.is_dir() {
            return path.join(&meta.name);
        }
        return path.to_owned();
    }
    let first = meta.files.iter().find(|f| !f.pad);
    let direct = first.is_some_and(|f| {
        f.path
            .iter()
            .fold(path.to_owned(), |p, c| p.join(c))
            .exists()
    });
    let nested = path.join(&meta.name);
    if !direct && nested.is_dir() {
        nested
    } else {
        path.to_owned()
    }
}
