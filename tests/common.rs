//! Helpers shared by the integration tests: the real binary, real clients, test data.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod server;
mod tracker_client;
mod wire;

pub use server::*;
pub use tracker_client::*;
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

/// True when the tests can make network namespaces (root, and `ip` from iproute2).
pub fn have_netns() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        return missing("root (to make a network namespace)");
    }
    have_client("ip", &["netns", "list"])
}

/// A network namespace of the test's own, joined to this one by a veth pair: `host`
/// (10.199.X.1/30) on this side, `inside` (10.199.X.2/30) in the namespace, which has nothing
/// else but its own loopback. For clients that refuse loopback peers (Transmission calls
/// 127.0.0.0/8 "martian"): bitseed listens on `host`, the client runs in the namespace.
///
/// X is claimed by creating the veth pair `bsh<X>`/`bsn<X>`: interface names are unique on the
/// machine, so parallel tests, and test runs side by side, never share a subnet. Dropped (also
/// on panic), it kills what still runs inside and deletes the namespace and the veth pair.
pub struct Netns {
    pub name: String,
    pub host: Ipv4Addr,
    pub inside: Ipv4Addr,
    veth: String,
}

impl Netns {
    pub fn new() -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let start = std::process::id() as usize + NEXT.fetch_add(1, Ordering::Relaxed);
        let x = (0..256)
            .map(|i| (start + i) % 256)
            .find(|x| {
                let out = Command::new("ip")
                    .args(["link", "add", &format!("bsh{x}"), "type", "veth"])
                    .args(["peer", "name", &format!("bsn{x}")])
                    .output()
                    .expect("run ip");
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success() || err.contains("exists"),
                    "ip link add bsh{x}: {err}"
                );
                out.status.success()
            })
            .expect("a free 10.199.X.0/30 (bsh0..bsh255 all exist)");
        let ns = Netns {
            name: format!("bitseed-test-{x}"),
            host: Ipv4Addr::new(10, 199, x as u8, 1),
            inside: Ipv4Addr::new(10, 199, x as u8, 2),
            veth: format!("bsh{x}"),
        };
        // A namespace of this name can only be a leftover of a run that was killed.
        let _ = Command::new("ip").args(["netns", "del", &ns.name]).output();
        let (name, inner) = (ns.name.as_str(), format!("bsn{x}"));
        let (host, inside) = (format!("{}/30", ns.host), format!("{}/30", ns.inside));
        ip(&["netns", "add", name]);
        ip(&["link", "set", &inner, "netns", name]);
        ip(&["addr", "add", &host, "dev", &ns.veth]);
        ip(&["link", "set", &ns.veth, "up"]);
        ip(&["-n", name, "addr", "add", &inside, "dev", &inner]);
        ip(&["-n", name, "link", "set", &inner, "up"]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        ns
    }

    /// `program`, to be run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// transmission-daemon and transmission-remote (Debian's 3.00), in a network namespace.
pub fn have_transmission() -> bool {
    have_client("transmission-daemon", &["--version"])
        && have_client("transmission-remote", &["--version"])
        && have_netns()
}

/// Transmission's `encryption` setting.
#[derive(Debug, Clone, Copy)]
pub enum Encryption {
    /// 1, its default: an MSE handshake first, plaintext after it fails.
    Preferred = 1,
    /// 2: MSE only.
    Required = 2,
}

/// What a Transmission download is told beside its defaults.
#[derive(Debug, Clone, Copy)]
pub struct TransmissionSettings {
    /// `utp-enabled` (true by default: uTP tried before TCP).
    pub utp: bool,
    pub encryption: Encryption,
}

/// Transmission 3.00 (`transmission-daemon`), run in `ns`, downloads `torrents` into
/// `work/transmission/download`, with no DHT, LPD, PEX or port mapping: peers come from the
/// torrents' trackers only. Waits (at most `timeout`) until every torrent is complete, then stops
/// the daemon, so every byte is on disk; returns the download folder. Otherwise the error says what
/// Transmission saw: each torrent's state, its log, and its deep log's lines about its peers.
pub fn transmission_download(
    ns: &Netns,
    work: &Path,
    torrents: &[PathBuf],
    settings: TransmissionSettings,
    timeout: Duration,
) -> Result<PathBuf, String> {
    let root = work.join("transmission");
    let (config, download) = (root.join("config"), root.join("download"));
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(&download).unwrap();
    let settings_json = serde_json::json!({
        "dht-enabled": false,
        "lpd-enabled": false,
        "pex-enabled": false,
        "port-forwarding-enabled": false,
        "utp-enabled": settings.utp,
        "encryption": settings.encryption as u8,
        "download-dir": download,
        "incomplete-dir-enabled": false,
        "watch-dir-enabled": false,
        "start-added-torrents": true,
        "rename-partial-files": true,
        "blocklist-enabled": false,
        "peer-port": 51413,
        "peer-port-random-on-start": false,
        "rpc-enabled": true,
        "rpc-bind-address": "127.0.0.1",
        "rpc-port": 9091,
        "rpc-authentication-required": false,
        "rpc-whitelist-enabled": false,
        "rpc-host-whitelist-enabled": false,
        "message-level": 3,
    });
    std::fs::write(config.join("settings.json"), settings_json.to_string()).unwrap();
    let (log, deep) = (root.join("transmission.log"), root.join("deep.log"));
    // TR_DEBUG_FD: every handshake step, uTP and peer-io event, on its standard error.
    let mut daemon = KillOnDrop(
        ns.command("transmission-daemon")
            .arg("-f")
            .arg("--config-dir")
            .arg(&config)
            .arg("--logfile")
            .arg(&log)
            .env("TR_DEBUG_FD", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&deep).unwrap())
            .spawn()
            .expect("start transmission-daemon"),
    );
    let started = Instant::now();
    let deadline = started + timeout;
    let remote = |args: &[&std::ffi::OsStr]| {
        let mut cmd = ns.command("transmission-remote");
        cmd.arg("127.0.0.1:9091").args(args);
        output_within(&mut cmd, Duration::from_secs(10))
    };
    let report = |why: &str| {
        let info = remote(&["-t".as_ref(), "all".as_ref(), "-i".as_ref()]);
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let log_tail: Vec<&str> = log.lines().rev().take(40).collect();
        let deep = String::from_utf8_lossy(&std::fs::read(&deep).unwrap_or_default()).into_owned();
        let peer_lines: Vec<&str> = deep
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                [
                    "handshake",
                    "utp",
                    "µtp",
                    "unreachable",
                    "error",
                    "plaintext",
                    "outgoing",
                ]
                .iter()
                .any(|k| l.contains(k))
                    && !l.contains("refcount")
                    && !l.contains("reconnect interval")
            })
            .take(200)
            .collect();
        format!(
            "Transmission ({settings:?}) {why} after {:.1} s\n--- transmission-remote -i:\n{}\n\
             --- its log (last 40 lines, newest first):\n{}\n--- its deep log on peers:\n{}",
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&info.stdout),
            log_tail.join("\n"),
            peer_lines.join("\n")
        )
    };
    for t in torrents {
        // The daemon takes a moment to listen for RPC.
        loop {
            let o = remote(&["-a".as_ref(), t.as_os_str()]);
            if o.status.success() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(report(&format!(
                    "never took {}: {}{}",
                    t.display(),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    loop {
        let info = remote(&["-t".as_ref(), "all".as_ref(), "-i".as_ref()]);
        let info = String::from_utf8_lossy(&info.stdout);
        if info.matches("Percent Done: 100%").count() == torrents.len() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(report("did not finish"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "transmission: {} torrent(s) complete in {:.1} s",
        torrents.len(),
        started.elapsed().as_secs_f64()
    );
    // A clean stop writes out what its cache still holds.
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status();
    let stop = Instant::now() + Duration::from_secs(10);
    while daemon.0.try_wait().expect("wait").is_none() && Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(download)
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

/// Headless Chromium driven over its DevTools protocol on a pipe (`--remote-debugging-pipe`:
/// fd 3 in, fd 4 out, messages ended by NUL), so a test can set the viewport, run script in the
/// page and take screenshots in one browser. Killed when dropped.
pub struct Browser {
    _child: KillOnDrop,
    to: std::process::ChildStdin,
    from: mpsc::Receiver<Value>,
    next: u64,
    session: String,
    /// Events seen while waiting for answers.
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

/// How long one answer from the browser may take before the test gives up (a hang guard, not a
/// measure: nothing is asserted about how long anything takes).
pub const BROWSER_PATIENCE: Duration = Duration::from_secs(60);

impl Browser {
    pub fn start() -> Browser {
        Browser::start_with(&[])
    }

    /// `start` with more Chromium flags.
    pub fn start_with(flags: &[&str]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        // The shell moves the pipes to the descriptors Chromium reads and writes the protocol
        // on, and gives it nothing on its standard input and output.
        let mut child = KillOnDrop(
            Command::new("sh")
                .arg("-c")
                .arg("exec \"$0\" \"$@\" 3<&0 4>&1 0</dev/null 1>/dev/null")
                .arg("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--hide-scrollbars",
                    "--remote-debugging-pipe",
                ])
                .args(flags)
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromium"),
        );
        let to = child.0.stdin.take().unwrap();
        let out = child.0.stdout.take().unwrap();
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            loop {
                let mut msg = Vec::new();
                match r.read_until(0, &mut msg) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                msg.pop();
                if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let mut b = Browser {
            _child: child,
            to,
            from,
            next: 0,
            session: String::new(),
            events: Vec::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let id = target["targetId"].as_str().unwrap().to_owned();
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": id, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    pub fn recv(&mut self) -> Value {
        self.from
            .recv_timeout(BROWSER_PATIENCE)
            .expect("chromium answers over its DevTools pipe")
    }

    /// Sends a command (to the page's session once there is one) and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let m = self.answer(method, params);
        assert!(m.get("error").is_none(), "{method}: {m}");
        m["result"].clone()
    }

    /// Sends a command and returns the whole answer, an error among them.
    pub fn answer(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        loop {
            let m = self.recv();
            if m["id"] == id {
                return m;
            }
            self.events.push(m);
        }
    }

    /// Loads `url` in a viewport of `width` × `height` CSS pixels (a phone's when narrow) and
    /// waits until a page of `origin` has loaded (after any redirect).
    pub fn open(&mut self, url: &str, origin: &str, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1,
                   "mobile": width < 600}),
        );
        self.call("Page.navigate", json!({"url": "about:blank"}));
        self.events.clear();
        self.call("Page.navigate", json!({"url": url}));
        let loaded = format!(
            "document.readyState === 'complete' && location.href.startsWith({})",
            json!(origin)
        );
        let deadline = Instant::now() + BROWSER_PATIENCE;
        // Asked again until it holds; an answer lost to the navigation counts as not yet.
        while self.answer(
            "Runtime.evaluate",
            json!({"expression": loaded, "returnByValue": true}),
        )["result"]["result"]["value"]
            != json!(true)
        {
            assert!(Instant::now() < deadline, "{url} never loaded");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of a script run in the page.
    pub fn eval(&mut self, script: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": script, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{script}: {r}");
        r["result"]["value"].clone()
    }

    /// A PNG of the whole page, saved at `path`; its width and height in pixels.
    pub fn screenshot(&mut self, path: &Path) -> (u32, u32) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64_decode(r["data"].as_str().unwrap());
        std::fs::write(path, &png).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        (be(16), be(20))
    }

    /// Dialogs opened and exceptions thrown by the page since it was opened.
    pub fn trouble(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| {
                e["method"] == "Page.javascriptDialogOpening"
                    || e["method"] == "Runtime.exceptionThrown"
            })
            .collect()
    }
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(value(*c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Standard base64 with padding (for Subresource Integrity hashes).
pub fn base64_encode(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A one-thread HTTP server on loopback for tests: each request's head (bounded to 64 KiB) is
/// handed to `answer`, which gives the whole response; one request per connection, one at a
/// time. Stopped when dropped.
pub struct TinyHttp {
    pub addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TinyHttp {
    pub fn serve(mut answer: impl FnMut(&[u8]) -> Vec<u8> + Send + 'static) -> TinyHttp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65_536 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(&answer(&req));
            }
        });
        TinyHttp {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// One file at any path, readable from any origin (as a CDN serves a script).
    pub fn file(body: Vec<u8>, content_type: &str) -> TinyHttp {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
            body.len()
        );
        TinyHttp::serve(move |req| {
            let mut res = head.as_bytes().to_vec();
            if !req.starts_with(b"HEAD ") {
                res.extend_from_slice(&body);
            }
            res
        })
    }
}

impl Drop for TinyHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

/// Whether `redis-server` (Debian package `redis-server`) is installed; false (the test skips)
/// or, under CI=true, a panic when it is not.
pub fn have_redis() -> bool {
    have_client("redis-server", &["--version"])
}

/// A `redis-server` on a loopback port, without persistence, stopped (and reaped) when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it again on the same port (empty: no persistence), waiting until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (SIGKILL, reaped): as if the machine went away.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One command over RESP; the reply's first line (or the bulk string it announces).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end().to_owned();
        let Some(len) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) else {
            return Some(line);
        };
        let mut body = vec![0; len + 2];
        r.read_exact(&mut body).ok()?;
        body.truncate(len);
        String::from_utf8(body).ok()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
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
