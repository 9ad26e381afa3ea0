//! `bitseed inspect`: what a .torrent or magnet link holds.

use std::path::PathBuf;

use anyhow::Context;
use bitseed::metainfo::{Magnet, Metainfo};
use serde::Serialize;

use super::output::human_size;

/// Show a torrent's name, format, info hashes, pieces, files, trackers, web seeds and magnet link.
///
/// The torrent is validated while loading: piece counts, v1 against v2 files, and BEP 52 piece
/// layers against their roots.
#[derive(clap::Args)]
pub struct Args {
    /// A .torrent file, or a magnet link.
    torrent: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Summary {
    name: Option<String>,
    format: Option<String>,
    info_hash: Option<String>,
    info_hash_v2: Option<String>,
    piece_length: Option<u64>,
    piece_count: Option<u64>,
    size: Option<u64>,
    private: bool,
    files: Vec<FileSummary>,
    trackers: Vec<Vec<String>>,
    web_seeds: Vec<String>,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
    source: Option<String>,
    magnet: String,
}

#[derive(Serialize)]
struct FileSummary {
    path: String,
    length: u64,
    pad: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let summary = if args.torrent.starts_with("magnet:") {
        let m = Magnet::parse(&args.torrent)?;
        Summary {
            name: m.name.clone(),
            format: None,
            info_hash: m.info_hash.v1.map(hex::encode),
            info_hash_v2: m.info_hash.v2.map(hex::encode),
            piece_length: None,
            piece_count: None,
            size: None,
            private: false,
            files: Vec::new(),
            trackers: m.trackers.iter().map(|t| vec![t.clone()]).collect(),
            web_seeds: m.web_seeds.clone(),
            comment: None,
            created_by: None,
            creation_date: None,
            source: None,
            magnet: m.to_uri(),
        }
    } else {
        let path = PathBuf::from(&args.torrent);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let meta = Metainfo::from_bytes(&bytes)
            .with_context(|| format!("`{}` is not a valid torrent", path.display()))?;
        summarize(&meta)
    };

    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_text(&summary);
    }
    Ok(0)
}

fn summarize(meta: &Metainfo) -> Summary {
    Summary {
        name: Some(meta.name.clone()),
        format: Some(meta.format.to_string()),
        info_hash: meta.info_hash.v1.map(hex::encode),
        info_hash_v2: meta.info_hash.v2.map(hex::encode),
        piece_length: Some(meta.piece_length),
        piece_count: Some(meta.piece_count()),
        size: Some(meta.total_size()),
        private: meta.private,
        files: meta
            .files
            .iter()
            .map(|f| FileSummary {
                path: f.display_path(),
                length: f.length,
                pad: f.pad,
            })
            .collect(),
        trackers: meta.trackers.clone(),
        web_seeds: meta.web_seeds.clone(),
        comment: meta.comment.clone(),
        created_by: meta.created_by.clone(),
        creation_date: meta.creation_date,
        source: meta.source.clone(),
        magnet: meta.magnet().to_uri(),
    }
}

fn print_text(s: &Summary) {
    let row = |k: &str, v: &str| println!("{k:<14}{v}");
    if let Some(n) = &s.name {
        row("name:", n);
    }
    if let Some(f) = &s.format {
        row("format:", f);
    }
    if let Some(h) = &s.info_hash {
        row("info hash:", h);
    }
    if let Some(h) = &s.info_hash_v2 {
        row("info hash v2:", h);
    }
    if let (Some(len), Some(count)) = (s.piece_length, s.piece_count) {
        row(
            "pieces:",
            &format!("{count} of {} ({len} bytes)", human_size(len)),
        );
    }
    if let Some(size) = s.size {
        row("size:", &format!("{} ({size} bytes)", human_size(size)));
    }
    if s.format.is_some() {
        row("private:", if s.private { "yes" } else { "no" });
    }
    for (k, v) in [
        ("source:", &s.source),
        ("comment:", &s.comment),
        ("created by:", &s.created_by),
    ] {
        if let Some(v) = v {
            row(k, v);
        }
    }
    if let Some(d) = s.creation_date {
        row("created:", &d.to_string());
    }
    for (i, tier) in s.trackers.iter().enumerate() {
        row(if i == 0 { "trackers:" } else { "" }, &tier.join(" "));
    }
    for (i, w) in s.web_seeds.iter().enumerate() {
        row(if i == 0 { "web seeds:" } else { "" }, w);
    }
    if !s.files.is_empty() {
        println!("files ({}):", s.files.iter().filter(|f| !f.pad).count());
        for f in &s.files {
            let mark = if f.pad { "  [pad]" } else { "" };
            println!("  {:>14}  {}{}", f.length, f.path, mark);
        }
    }
    row("magnet:", &s.magnet);
}
