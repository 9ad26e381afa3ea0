//! Helpers shared by the integration tests: the real binary, real clients, test data.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bitseed() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bitseed"))
}

/// Runs bitseed with `args`, returning its output.
pub fn run(args: &[&str]) -> Output {
    bitseed().args(args).output().expect("run bitseed")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// True when `program` can run. Under CI=true a missing client fails the test instead: interop
/// tests must never pass by skipping there.
pub fn have_client(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("`{program}` is missing: install it (tests/run.sh does) — interop tests cannot skip in CI");
        }
        eprintln!("skipping: `{program}` is not installed");
    }
    ok
}

pub fn have_libtorrent() -> bool {
    have_client("/usr/bin/python3", &["-c", "import libtorrent"])
}

pub fn have_aria2() -> bool {
    have_client("aria2c", &["--version"])
}

pub fn have_rtorrent() -> bool {
    have_client("rtorrent", &["-h"])
}

pub fn have_nginx() -> bool {
    have_client("nginx", &["-v"])
}

/// aria2c flags for tests: nothing but loopback peers and web seeds (no DHT, LPD or PEX), quiet,
/// stopping once done.
pub const ARIA2C_LOOPBACK: [&str; 7] = [
    "--seed-time=0",
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--enable-peer-exchange=false",
    "--console-log-level=warn",
    "--summary-interval=0",
];

/// aria2c downloading `source` (a .torrent file or a magnet link) into `dir` with
/// `ARIA2C_LOOPBACK`.
pub fn aria2c(dir: &Path, source: impl AsRef<OsStr>) -> Output {
    Command::new("aria2c")
        .args(ARIA2C_LOOPBACK)
        .args(["--bt-stop-timeout=60", "-d"])
        .arg(dir)
        .arg(source)
        .output()
        .expect("run aria2c")
}

/// `magnet` without its web seeds (`ws=`): what is downloaded from it must come over the peer
/// wire, from peers found through its trackers.
pub fn magnet_without_web_seed(magnet: &str) -> String {
    let mut m = bitseed::metainfo::Magnet::parse(magnet).expect("a magnet link");
    m.web_seeds.clear();
    m.to_uri()
}

pub fn interop_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Deterministic bytes that look random enough for hashing tests (xorshift).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `files` (relative path, length) under `root` with distinct contents.
pub fn write_tree(root: &Path, files: &[(&str, usize)]) {
    for (i, (rel, len)) in files.iter().enumerate() {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, data(*len, i as u64 + 1)).expect("write");
    }
}
