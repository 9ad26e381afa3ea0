//! `bitseed create`, `inspect` and `verify` through the real binary, checked against libtorrent
//! and aria2c.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

const KIB: usize = 1024;

/// A folder with nested files, an empty file and sizes that do not line up with pieces.
fn sample_folder(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("pack");
    write_tree(
        &root,
        &[
            ("a.bin", 100_000),
            ("empty", 0),
            ("sub/b.bin", 50_000),
            ("sub/deeper/c.bin", 16 * KIB),
            ("z.bin", 40_001),
        ],
    );
    root
}

fn create(input: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "create",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-date",
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "create failed: {}", stderr(&o));
}

fn inspect_json(torrent: &Path) -> Value {
    let o = run(&["inspect", "--json", torrent.to_str().unwrap()]);
    assert!(o.status.success(), "inspect failed: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("inspect --json prints JSON")
}

/// (path, length) of the real files, as a torrent-relative list.
fn our_files(j: &Value) -> Vec<(String, u64)> {
    j["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["pad"].as_bool().unwrap())
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["length"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// libtorrent loads the torrent, reports the same hashes and files, and its own check of the data
/// on disk finds every piece valid.
fn check_with_libtorrent(torrent: &Path, save_path: &Path, single_file: bool) {
    let ours = inspect_json(torrent);
    let o = std::process::Command::new("/usr/bin/python3")
        .arg(interop_script("lt_check.py"))
        .arg(torrent)
        .arg(save_path)
        .output()
        .expect("run python3");
    assert!(o.status.success(), "lt_check failed: {}", stderr(&o));
    let lt: Value = serde_json::from_str(&stdout(&o)).expect("lt_check prints JSON");
    assert_eq!(lt["info_hash"], ours["info_hash"], "v1 info hash");
    assert_eq!(lt["info_hash_v2"], ours["info_hash_v2"], "v2 info hash");
    assert_eq!(lt["num_pieces"], ours["piece_count"], "piece count");
    let name = ours["name"].as_str().unwrap();
    let lt_files: Vec<(String, u64)> = lt["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["pad"].as_bool().unwrap())
        .map(|f| {
            let p = f["path"].as_str().unwrap();
            let rel = if single_file {
                p.to_owned()
            } else {
                p.strip_prefix(&format!("{name}/")).unwrap_or(p).to_owned()
            };
            (rel, f["length"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(lt_files, our_files(&ours), "file list");
    assert_eq!(lt["checked"], true, "libtorrent found invalid pieces: {lt}");
}

#[test]
fn libtorrent_agrees_on_every_format() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = sample_folder(dir.path());
    let single = dir.path().join("single.bin");
    std::fs::write(&single, data(3 * 1024 * 1024 + 7, 42)).unwrap();

    for format in ["v1", "v2", "hybrid"] {
        let t = dir.path().join(format!("pack-{format}.torrent"));
        create(&folder, &t, &["--format", format]);
        check_with_libtorrent(&t, dir.path(), false);

        let t = dir.path().join(format!("single-{format}.torrent"));
        create(&single, &t, &["--format", format, "--piece-size", "64K"]);
        check_with_libtorrent(&t, dir.path(), true);
    }
}

#[test]
fn aria2_lists_the_same_files_for_v1() {
    if !have_aria2() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = sample_folder(dir.path());
    let t = dir.path().join("pack.torrent");
    create(&folder, &t, &["-a", "http://127.0.0.1:1/announce"]);
    let o = std::process::Command::new("aria2c")
        .arg("-S")
        .arg(&t)
        .output()
        .expect("run aria2c");
    assert!(o.status.success(), "aria2c -S failed: {}", stderr(&o));
    let listing = stdout(&o);
    // aria2c prints "  N|./pack/path" then a size line per file.
    let listed: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_once("|./pack/").map(|(_, p)| p.trim().to_owned()))
        .collect();
    let ours: Vec<String> = our_files(&inspect_json(&t))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(listed, ours, "aria2c listing:\n{listing}");
    let ih = inspect_json(&t)["info_hash"].as_str().unwrap().to_owned();
    assert!(listing.contains(&ih), "aria2c shows info hash {ih}");
}

#[test]
fn verify_names_the_piece_of_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let folder = sample_folder(dir.path());
    // Byte 40,000 of sub/b.bin, which follows a.bin (100,000 bytes) and an empty file.
    let victim = folder.join("sub/b.bin");
    let original = std::fs::read(&victim).unwrap();

    for (format, expected) in [
        // v1: stream offset 140,000 is in piece 8 (of 16 KiB).
        ("v1", "bad piece 8 "),
        // v2 and hybrid: a.bin fills pieces 0-6, b.bin starts on piece 7; 40,000 is 2 pieces in.
        ("hybrid", "bad piece 9 "),
        ("v2", "bad piece 9 "),
        ("merkle", "root hash mismatch"),
    ] {
        let t = dir.path().join(format!("{format}.torrent"));
        create(&folder, &t, &["--format", format, "--piece-size", "16K"]);
        let ok = run(&["verify", t.to_str().unwrap(), folder.to_str().unwrap()]);
        assert!(ok.status.success(), "{format}: {}", stdout(&ok));
        assert!(stdout(&ok).starts_with("ok: all "), "{}", stdout(&ok));

        let mut bad = original.clone();
        bad[40_000] ^= 0x01;
        std::fs::write(&victim, &bad).unwrap();
        let o = run(&["verify", t.to_str().unwrap(), folder.to_str().unwrap()]);
        std::fs::write(&victim, &original).unwrap();
        assert_eq!(o.status.code(), Some(1), "{format}: {}", stdout(&o));
        let report = stdout(&o);
        assert!(report.contains(expected), "{format}: {report}");
        if format != "merkle" {
            assert!(report.contains("sub/b.bin"), "{format}: {report}");
            assert_eq!(report.matches("bad piece").count(), 1, "{format}: {report}");
        }
    }
}

#[test]
fn no_date_output_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let folder = sample_folder(dir.path());
    for format in ["v1", "merkle", "v2", "hybrid"] {
        let a = dir.path().join(format!("a-{format}.torrent"));
        let b = dir.path().join(format!("b-{format}.torrent"));
        create(&folder, &a, &["--format", format, "--threads", "1"]);
        create(&folder, &b, &["--format", format, "--threads", "2"]);
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{format}"
        );
    }
}

#[test]
fn trackers_web_seeds_and_flags_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = sample_folder(dir.path());
    let t = dir.path().join("t.torrent");
    create(
        &folder,
        &t,
        &[
            "--format",
            "hybrid",
            "-a",
            "http://127.0.0.1:1/announce",
            "-a",
            "udp://127.0.0.1:2",
            "-w",
            "http://127.0.0.1:3/files/",
            "--private",
            "--source",
            "SRC",
            "--comment",
            "hello",
        ],
    );
    let j = inspect_json(&t);
    assert_eq!(
        j["trackers"],
        serde_json::json!([["http://127.0.0.1:1/announce"], ["udp://127.0.0.1:2"]])
    );
    assert_eq!(
        j["web_seeds"],
        serde_json::json!(["http://127.0.0.1:3/files/"])
    );
    assert_eq!(j["private"], true);
    assert_eq!(j["source"], "SRC");
    assert_eq!(j["comment"], "hello");
    let magnet = j["magnet"].as_str().unwrap();
    assert!(magnet.contains(&format!("xt=urn:btih:{}", j["info_hash"].as_str().unwrap())));
    assert!(magnet.contains(&format!(
        "xt=urn:btmh:1220{}",
        j["info_hash_v2"].as_str().unwrap()
    )));
    assert!(magnet.contains("&dn=pack&tr=http://127.0.0.1:1/announce&tr=udp://127.0.0.1:2&ws="));
    // The magnet link itself can be inspected back.
    let m = run(&["inspect", "--json", magnet]);
    let mj: Value = serde_json::from_str(&stdout(&m)).unwrap();
    assert_eq!(mj["info_hash"], j["info_hash"]);
    assert_eq!(mj["info_hash_v2"], j["info_hash_v2"]);
}

#[test]
fn hidden_files_and_symlinks_are_skipped_and_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let folder = sample_folder(dir.path());
    std::fs::write(folder.join(".secret"), b"x").unwrap();
    std::os::unix::fs::symlink(folder.join("a.bin"), folder.join("link")).unwrap();
    let t = dir.path().join("t.torrent");
    let o = run(&[
        "create",
        folder.to_str().unwrap(),
        "-o",
        t.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let err = stderr(&o);
    assert_eq!(err.matches("skipped 1 hidden").count(), 1, "{err}");
    assert_eq!(err.matches("skipped 1 symbolic link").count(), 1, "{err}");
    assert_eq!(our_files(&inspect_json(&t)).len(), 5);

    let t2 = dir.path().join("t2.torrent");
    let o = run(&[
        "create",
        folder.to_str().unwrap(),
        "-o",
        t2.to_str().unwrap(),
        "--include-hidden",
        "--follow-symlinks",
    ]);
    assert!(o.status.success());
    assert_eq!(our_files(&inspect_json(&t2)).len(), 7);
}

/// Each bad input: one line naming the problem, the documented exit code, no file left behind.
#[test]
fn bad_input_gets_one_line_and_the_right_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let folder = sample_folder(d);
    let empty = d.join("empty-dir");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("zero"), b"").unwrap();
    let existing = d.join("existing.torrent");
    std::fs::write(&existing, b"keep me").unwrap();
    let out = d.join("out.torrent");
    let (f, o, e, x) = (
        folder.to_str().unwrap(),
        out.to_str().unwrap(),
        empty.to_str().unwrap(),
        existing.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["create", "/nonexistent/path", "-o", o],
            2,
            "does not exist",
        ),
        (vec!["create", e, "-o", o], 1, "zero bytes"),
        (vec!["create", f, "-o", x], 2, "already exists"),
        (
            vec!["create", f, "-o", o, "--piece-size", "100000"],
            2,
            "not a power of two",
        ),
        (
            vec!["create", f, "-o", o, "--piece-size", "8K"],
            2,
            "out of range",
        ),
        (
            vec!["create", f, "-o", o, "--piece-size", "128M"],
            2,
            "out of range",
        ),
        (
            vec![
                "create",
                f,
                "-o",
                o,
                "--format",
                "merkle",
                "-w",
                "http://x/",
            ],
            2,
            "web seed",
        ),
        (vec!["create", f, "-o", o, "--format", "v3"], 2, "v3"),
    ];
    for (args, code, needle) in cases {
        let r = run(&args);
        let err = stderr(&r);
        assert_eq!(r.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: one line, got {err}"
        );
        assert!(!out.exists(), "{args:?} left a file");
    }
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    // --force overwrites.
    let r = run(&["create", f, "-o", x, "--force"]);
    assert!(r.status.success(), "{}", stderr(&r));

    // Malformed and truncated torrents.
    let good = std::fs::read(&existing).unwrap();
    let truncated = d.join("truncated.torrent");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let garbage = d.join("garbage.torrent");
    std::fs::write(&garbage, b"this is not bencode").unwrap();
    let no_info = d.join("noinfo.torrent");
    std::fs::write(&no_info, b"d8:announce3:abce").unwrap();
    for t in [&truncated, &garbage, &no_info] {
        for args in [
            vec!["inspect", t.to_str().unwrap()],
            vec!["verify", t.to_str().unwrap(), f],
        ] {
            let r = run(&args);
            let err = stderr(&r);
            assert_eq!(r.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains("is not a valid torrent"), "{args:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        }
    }
    let r = run(&["inspect", "magnet:?xt=urn:btih:xyz"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("bad `xt`"));
}

#[test]
fn verify_reports_missing_and_resized_files() {
    let dir = tempfile::tempdir().unwrap();
    let folder = sample_folder(dir.path());
    let t = dir.path().join("t.torrent");
    create(&folder, &t, &["--format", "hybrid"]);
    std::fs::remove_file(folder.join("z.bin")).unwrap();
    std::fs::write(folder.join("a.bin"), data(10, 1)).unwrap();
    let o = run(&["verify", t.to_str().unwrap(), folder.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let report = stdout(&o);
    assert!(
        report.contains("missing:") && report.contains("z.bin"),
        "{report}"
    );
    assert!(
        report.contains("size differs") && report.contains("a.bin"),
        "{report}"
    );
    // The folder holding the content works as PATH too.
    let o = run(&["verify", t.to_str().unwrap(), dir.path().to_str().unwrap()]);
    assert!(stdout(&o).contains("a.bin"));
}
