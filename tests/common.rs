//! Helpers shared by the integration tests: the real binary, real clients, test data.

use std::ffi::OsStr;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod browser;
mod redis;
mod server;
mod tracker_client;
mod transmission;
mod wire;

pub use bitseed::metainfo::InfoHash;
pub use browser::*;
pub use redis::*;
pub use server::*;
pub use tracker_client::*;
pub use transmission::*;
pub use wire::*;

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

/// Polls `check` every 100 ms until it holds, for up to `within`; fails the test with
/// `failure` otherwise.
pub fn eventually(within: Duration, failure: &str, mut check: impl FnMut() -> bool) {
    poll(within, Duration::from_millis(100), || {
        check().then_some(()).ok_or_else(|| failure.to_owned())
    })
}

/// Calls `check` every `every` until it returns `Ok(value)`, and returns that; once `within` has
/// passed, fails with the message of its last `Err` (what it saw, for the failure to say).
pub fn poll<T>(
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "{why}"),
        }
        std::thread::sleep(every);
    }
}

/// True when `program` can run. Under CI=true a missing client fails the test instead: interop
/// tests must never pass by skipping there.
pub fn have_client(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    ok || missing(&format!("`{program}`"))
}

/// Says that `what` is missing and returns false (the test skips), or panics under CI=true.
fn missing(what: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{what} is missing: install it (tests/run.sh does) — interop tests cannot skip in CI"
        );
    }
    eprintln!("skipping: {what} is not installed");
    false
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

/// An info hash given in hex (a v2 one truncated to its first 20 bytes, as on the wire).
pub fn hex20(hex: &str) -> [u8; 20] {
    let bytes = hex::decode(&hex[..40.min(hex.len())]).expect("hex");
    bytes.try_into().expect("20 bytes")
}

/// A tracker answer's `failure reason`, if it has one.
pub fn failure_reason(body: &[u8]) -> Option<String> {
    let top = bitseed::bencode::decode(body).expect("bencoded answer");
    top.get("failure reason")
        .and_then(|f| f.as_bytes())
        .map(|f| String::from_utf8_lossy(f).into_owned())
}

/// Writes `files` (relative path, length) under `root` with distinct contents.
pub fn write_tree(root: &Path, files: &[(&str, usize)]) {
    for (i, (rel, len)) in files.iter().enumerate() {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, data(*len, i as u64 + 1)).expect("write");
    }
}

/// The torrent `name` as `server` serves it, without its web seed, written into `dir`: what is
/// downloaded must come over the peer wire.
pub fn torrent_without_web_seed(server: &Server, name: &str, dir: &Path) -> PathBuf {
    let r = server.get(&format!("/torrents/{}.torrent", name.replace(' ', "%20")));
    assert_eq!(r.status, 200);
    let mut meta = bitseed::metainfo::Metainfo::from_bytes(&r.body).unwrap();
    meta.web_seeds.clear();
    let path = dir.join(format!("{name}.torrent"));
    std::fs::write(&path, meta.to_bytes()).unwrap();
    path
}

/// A child process killed (and reaped) when dropped, even when the test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` to its end, or kills it after `timeout`; its output either way (a killed process
/// has no exit code).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = KillOnDrop(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}")),
    );
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.0.stdout.take().unwrap()));
    let err = drain(Box::new(child.0.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.0.kill();
            break child.0.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// WebTorrent 3 (`tests/interop/webtorrent`, installed by `npm ci` there) and Node.js.
pub fn have_webtorrent() -> bool {
    have_client("node", &["--version"])
        && (interop_script("webtorrent/node_modules/webtorrent/package.json").is_file()
            || missing("webtorrent (`npm ci` in tests/interop/webtorrent)"))
}

/// WebTorrent downloading `torrent` into `out` with `flags` (see wt_download.mjs: `--no-webseed`,
/// `--no-tracker`, `--secure=0|1|2`); it gives up after 30 s, and is killed after 45.
pub fn webtorrent_download(torrent: &Path, out: &Path, flags: &[&str]) -> Output {
    let mut cmd = Command::new("node");
    cmd.arg(interop_script("webtorrent/wt_download.mjs"))
        .arg(torrent)
        .arg(out)
        .args(flags)
        .arg("--timeout=30");
    output_within(&mut cmd, Duration::from_secs(45))
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.x), so one test can be
/// several clients.
pub fn connect_from(
    from: impl Into<std::net::IpAddr>,
    to: std::net::SocketAddr,
) -> std::net::TcpStream {
    let from = from.into();
    let domain = socket2::Domain::for_address(to);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
    s.bind(&std::net::SocketAddr::new(from, 0).into())
        .unwrap_or_else(|e| panic!("binding {from}: {e}"));
    s.connect(&to.into())
        .unwrap_or_else(|e| panic!("connecting {to} from {from}: {e}"));
    let s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A WebSocket tracker connection (`ws://ADDR/announce`) as a browser opens it, its reads
/// bounded by `read_timeout`.
pub type Ws = tungstenite::WebSocket<std::net::TcpStream>;

pub fn ws_connect(http: std::net::SocketAddr, read_timeout: Duration) -> Ws {
    let stream = std::net::TcpStream::connect(http).expect("connect to the HTTP port");
    stream.set_read_timeout(Some(read_timeout)).unwrap();
    let (ws, response) =
        tungstenite::client(format!("ws://{http}/announce"), stream).expect("WebSocket upgrade");
    assert_eq!(response.status(), 101);
    ws
}

pub fn ws_send(ws: &mut Ws, message: &serde_json::Value) {
    ws.send(tungstenite::Message::text(message.to_string()))
        .expect("send on the WebSocket");
}

/// The next JSON message (pings answered on the way), or None once the read timeout has passed
/// without one (pings do not count) or the connection is closed.
pub fn ws_recv(ws: &mut Ws) -> Option<serde_json::Value> {
    let patience = ws.get_ref().read_timeout().ok().flatten();
    let deadline = Instant::now() + patience.unwrap_or(Duration::from_secs(60));
    loop {
        if Instant::now() >= deadline {
            return None;
        }
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                return Some(serde_json::from_str(t.as_str()).expect("JSON from the tracker"))
            }
            Ok(tungstenite::Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A 20-byte "binary string" as WebTorrent writes one in JSON: each byte one character.
pub fn binary_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Each of `files` (paths relative to both folders) holds the same bytes in `got` as in `want`.
pub fn assert_same_files(got: &Path, want: &Path, files: &[&str], label: &str) {
    for rel in files {
        assert_eq!(
            std::fs::read(got.join(rel)).unwrap(),
            std::fs::read(want.join(rel)).unwrap(),
            "{label}: {rel}"
        );
    }
}

/// A free loopback TCP port (bound and let go: a port the test then hands to a server that
/// must know its own URL before it starts, as a cluster node does).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// nginx in the foreground (no daemon, no master process) with one site configuration, its
/// prefix (pid, logs, temp files) in a folder of its own; stopped (and reaped) when dropped.
pub struct Nginx {
    child: Child,
    /// Where the site listens: the caller wrote `listen 127.0.0.1:{port};` into it.
    pub addr: std::net::SocketAddr,
    prefix: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx on `site`, which listens on 127.0.0.1:`port`, and waits until it accepts.
    pub fn start(site: &str, port: u16) -> Nginx {
        let prefix = Nginx::prefix_with(site);
        let p = prefix.path();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(p.join("nginx.conf"))
            .arg("-p")
            .arg(p)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let n = Nginx {
            child,
            addr: std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(n.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                n.errors()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    /// A prefix folder with `site` as the one site of a foreground nginx's configuration
    /// (`nginx.conf`; pid, logs and temporary files in the folder too).
    fn prefix_with(site: &str) -> tempfile::TempDir {
        let prefix = tempfile::tempdir().unwrap();
        let p = prefix.path();
        std::fs::write(p.join("site.conf"), site).unwrap();
        std::fs::write(
            p.join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\npid {0}/nginx.pid;\nerror_log {0}/error.log;\n\
                 events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {0};\n  \
                 proxy_temp_path {0};\n  include {0}/site.conf;\n}}\n",
                p.display()
            ),
        )
        .unwrap();
        prefix
    }

    /// `nginx -t` on `site`: panics with nginx's complaint when it does not pass.
    pub fn check(site: &str) {
        let prefix = Nginx::prefix_with(site);
        let p = prefix.path();
        let o = Command::new("nginx")
            .args(["-t", "-q", "-c"])
            .arg(p.join("nginx.conf"))
            .arg("-p")
            .arg(p)
            .output()
            .expect("run nginx -t");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// Its error log, for failure messages.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
