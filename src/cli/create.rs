//! `bitseed create`: make a .torrent from a file or a folder.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bitseed::hash::walk::{self, WalkOptions};
use bitseed::hash::{self, CreateOptions};
use bitseed::metainfo::{piece_size, Format};
use indicatif::{ProgressBar, ProgressStyle};

use super::output::{count, folder_of, human_size, write_atomic};
use super::UsageError;

/// Create a .torrent file from a file or a folder.
///
/// Files are listed in byte order of their path, the same order as the v2 file tree, so the same
/// input and options always give the same info hash (and, with --no-date, the same file).
#[derive(clap::Args)]
pub struct Args {
    /// The file or folder to share.
    path: PathBuf,
    /// Where to write the torrent [default: NAME.torrent in the current folder].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Tracker announce URL; repeat for more (each becomes its own tier in announce-list).
    #[arg(short, long = "announce", value_name = "URL")]
    announce: Vec<String>,
    /// BEP 19 web seed URL (url-list); repeat for more. Not allowed with --format merkle.
    #[arg(short = 'w', long = "web-seed", value_name = "URL")]
    web_seed: Vec<String>,
    /// Piece size: `auto`, or a power of two from 16 KiB to 64 MiB in bytes (suffixes K and M
    /// allowed, e.g. 256K). `auto` takes the smallest power of two that keeps the count at or
    /// under 2,000 pieces, between 16 KiB and 16 MiB: 1 GiB gets 1 MiB pieces, 2 GiB 2 MiB.
    #[arg(short = 'p', long, default_value = "auto", value_parser = parse_piece_size, value_name = "auto|BYTES")]
    piece_size: PieceSize,
    /// v1 (BEP 3), merkle (BEP 30 root hash), v2 (BEP 52), or hybrid (v1 + v2 with pad files).
    #[arg(short, long, default_value = "v1", value_parser = ["v1", "merkle", "v2", "hybrid"])]
    format: String,
    /// Mark the torrent private (BEP 27): clients use only its trackers.
    #[arg(long)]
    private: bool,
    /// A comment stored in the torrent.
    #[arg(short, long)]
    comment: Option<String>,
    /// `source` in the info dict (changes the info hash; used by private trackers).
    #[arg(short, long)]
    source: Option<String>,
    /// Leave out the creation date, so the output is byte-identical for the same input.
    #[arg(long)]
    no_date: bool,
    /// Hashing threads [default: number of CPUs].
    #[arg(short, long)]
    threads: Option<usize>,
    /// Include hidden files and folders (names starting with '.').
    #[arg(long)]
    include_hidden: bool,
    /// Follow symbolic links inside the folder (they are skipped otherwise).
    #[arg(long)]
    follow_symlinks: bool,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy)]
pub enum PieceSize {
    Auto,
    Fixed(u64),
}

fn parse_piece_size(s: &str) -> Result<PieceSize, String> {
    if s == "auto" {
        return Ok(PieceSize::Auto);
    }
    let (digits, mult) = match s.strip_suffix(['K', 'k']) {
        Some(d) => (d, 1024),
        None => match s.strip_suffix(['M', 'm']) {
            Some(d) => (d, 1024 * 1024),
            None => (s, 1),
        },
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not `auto` or a number of bytes"))?;
    piece_size::check(n.saturating_mul(mult)).map(PieceSize::Fixed)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let format: Format = args.format.parse().map_err(UsageError)?;
    if format == Format::Merkle && !args.web_seed.is_empty() {
        return Err(UsageError(
            "--format merkle cannot have --web-seed: BEP 30 rules web seeds out".into(),
        )
        .into());
    }
    for url in &args.announce {
        check_url(
            url,
            "--announce",
            &["http", "https", "udp"],
            "udp://tracker.example.com:6969/announce",
        )?;
    }
    for url in &args.web_seed {
        check_url(
            url,
            "--web-seed",
            &["http", "https"],
            "https://example.com/files/",
        )?;
    }
    if !args.path.exists() {
        return Err(UsageError(format!("`{}` does not exist", args.path.display())).into());
    }
    // Checked before hashing, which can take minutes: the output's folder must be there.
    if let Some(out) = &args.output {
        let folder = folder_of(out);
        if !folder.is_dir() {
            return Err(UsageError(format!(
                "cannot write `{}`: the folder `{}` does not exist (create it first, or give \
                 another -o)",
                out.display(),
                folder.display()
            ))
            .into());
        }
    }
    let content = walk::collect(
        &args.path,
        WalkOptions {
            include_hidden: args.include_hidden,
            follow_symlinks: args.follow_symlinks,
            skip_temporary: false,
        },
    )?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", content.name)));
    if output.exists() && !args.force {
        return Err(UsageError(format!(
            "`{}` already exists (use --force to overwrite)",
            output.display()
        ))
        .into());
    }
    say_skipped(&content);

    let total = content.total();
    let opts = CreateOptions {
        format,
        piece_length: match args.piece_size {
            PieceSize::Auto => None,
            PieceSize::Fixed(n) => Some(n),
        },
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1),
        private: args.private,
        source: args.source,
        trackers: args.announce,
        web_seeds: args.web_seed,
        comment: args.comment,
        created_by: Some(format!("bitseed {}", env!("CARGO_PKG_VERSION"))),
        creation_date: (!args.no_date).then(unix_now),
    };

    let progress = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let meta = std::thread::scope(|scope| {
        if std::io::stderr().is_terminal() {
            scope.spawn(|| show_progress(&progress, &done, total));
        }
        let result = hash::create(&content, &opts, &progress, None);
        done.store(true, Ordering::Relaxed);
        result
    })?;
    let elapsed = started.elapsed();

    write_atomic(&output, &meta.to_bytes())
        .with_context(|| format!("cannot write `{}`", output.display()))?;

    let rate = total as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6;
    let mut hashes = Vec::new();
    if let Some(h) = meta.info_hash.v1 {
        hashes.push(format!("v1 {}", hex::encode(h)));
    }
    if let Some(h) = meta.info_hash.v2 {
        hashes.push(format!("v2 {}", hex::encode(h)));
    }
    eprintln!(
        "created {}: {} torrent of {} in {}, {} of {}, hashed in {:.2} s ({:.0} MB/s); info hash {}",
        output.display(),
        format,
        human_size(total),
        count(content.files.len() as u64, "file", "files"),
        count(meta.piece_count(), "piece", "pieces"),
        human_size(meta.piece_length),
        elapsed.as_secs_f64(),
        rate,
        hashes.join(", ")
    );
    Ok(0)
}

fn say_skipped(content: &walk::Content) {
    if content.skipped_hidden > 0 {
        eprintln!(
            "skipped {} (use --include-hidden to add them)",
            count(
                content.skipped_hidden as u64,
                "hidden entry",
                "hidden entries"
            )
        );
    }
    if content.skipped_symlinks > 0 {
        eprintln!(
            "skipped {} (use --follow-symlinks to add them)",
            count(
                content.skipped_symlinks as u64,
                "symbolic link",
                "symbolic links"
            )
        );
    }
    if content.skipped_special > 0 {
        eprintln!(
            "skipped {} that {} not a regular file",
            count(content.skipped_special as u64, "entry", "entries"),
            if content.skipped_special == 1 {
                "is"
            } else {
                "are"
            }
        );
    }
}

/// A tracker or web seed URL: one of `schemes`, then `://` and a host. Checked before hashing,
/// so a typo costs nothing; the message shows the form wanted.
fn check_url(url: &str, flag: &str, schemes: &[&str], example: &str) -> Result<(), UsageError> {
    let host = url.split_once("://").and_then(|(scheme, rest)| {
        schemes
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
            .then(|| rest.split(['/', '?', '#']).next().unwrap_or(""))
    });
    match host {
        Some(h) if !h.is_empty() && !h.starts_with(':') && !url.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => {
            let forms: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
            let (last, rest) = forms
                .split_last()
                .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
            Err(UsageError(format!(
                "{flag} `{url}` is not a URL: give an {} or {last} URL, e.g. {example}",
                rest.join(", ")
            )))
        }
    }
}

fn show_progress(progress: &AtomicU64, done: &AtomicBool, total: u64) {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "hashing [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    while !done.load(Ordering::Relaxed) {
        bar.set_position(progress.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
