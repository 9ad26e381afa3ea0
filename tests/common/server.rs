//! `bitseed serve` run by a test, and plain HTTP to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitseed::metainfo::InfoHash;
use serde_json::Value;

use super::*;

/// A running `bitseed serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub http: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(content: &Path, state: &Path, extra: &[&str]) -> Server {
        let mut cmd = bitseed();
        cmd.args(Self::args(content, state, extra));
        Server::spawn(cmd)
    }

    /// `start` with environment variables set, as a container's settings are.
    pub fn start_env(d: &Dirs, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = bitseed();
        cmd.args(Self::args(&d.content, &d.state, extra))
            .envs(env.iter().copied());
        Server::spawn(cmd)
    }

    /// `start` with `toml` as its configuration file (written beside the state folder), as an
    /// operator would set it.
    pub fn with_config(d: &Dirs, toml: &str) -> Server {
        let config = d.state.with_extension("toml");
        std::fs::write(&config, toml).unwrap();
        Server::start(
            &d.content,
            &d.state,
            &["--config", config.to_str().unwrap()],
        )
    }

    /// The value of a `/metrics` line that starts with `series` (a name, with its labels if it
    /// has any) followed by a space.
    pub fn metric(&self, series: &str) -> Option<u64> {
        let m = String::from_utf8(self.get("/metrics").body).unwrap();
        let value = m
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{series} ")));
        value.and_then(|v| v.trim().parse().ok())
    }

    /// Waits up to 30 s for `/metrics` to show `series` with a value `want` accepts; returns it.
    pub fn wait_metric(&self, series: &str, want: impl Fn(u64) -> bool) -> u64 {
        crate::common::poll(Duration::from_secs(30), Duration::from_millis(100), || {
            let v = self.metric(series);
            v.filter(|&v| want(v)).ok_or_else(|| {
                format!(
                    "{series} stayed at {v:?}; log:\n{}",
                    self.log.lock().unwrap()
                )
            })
        })
    }

    /// `start` from a shell whose soft limit on open files is `soft`.
    pub fn start_with_soft_fd_limit(content: &Path, state: &Path, soft: u32) -> Server {
        Server::start_with_fd_limit(content, state, &format!("ulimit -Sn {soft}"))
    }

    /// `start` from a shell that first runs `ulimit` (e.g. `ulimit -n 256`, soft and hard).
    pub fn start_with_fd_limit(content: &Path, state: &Path, ulimit: &str) -> Server {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{ulimit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_bitseed"))
            .args(Self::args(content, state, &[]));
        Server::spawn(cmd)
    }

    fn args(content: &Path, state: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "serve".into(),
            "--content".into(),
            content.into(),
            "--state".into(),
            state.into(),
        ];
        for (flag, value) in [
            ("--http", "127.0.0.1:0"),
            ("--udp", "127.0.0.1:0"),
            ("--peer", "127.0.0.1:0"),
            ("--settle", "0.5"),
        ] {
            if !extra.contains(&flag) {
                args.extend([flag.into(), value.into()]);
            }
        }
        args.extend(extra.iter().map(Into::into));
        args
    }

    fn spawn(mut cmd: std::process::Command) -> Server {
        // The DHT stays off unless a test turns it on (with loopback bootstrap nodes): no test
        // may reach the default routers.
        if !cmd
            .get_envs()
            .any(|(k, _)| k.to_str().is_some_and(|k| k.starts_with("BITSEED_DHT__")))
        {
            cmd.env("BITSEED_DHT__ENABLED", "false");
        }
        let mut child = cmd
            .env(
                "RUST_LOG",
                "info,bitseed::peer=debug,bitseed::tracker=debug",
            )
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start bitseed serve");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut server = Server {
            child,
            http: "127.0.0.1:1".parse().unwrap(),
            log,
        };
        server.http = server.logged_addr("http listening on ");
        server
    }

    /// Waits until `name` is published; its v1 (or truncated v2) info hash as bytes.
    pub fn published_hash(&self, name: &str) -> InfoHash {
        let t = self.wait_published(name, None);
        let hex = t["info_hash"].as_str().expect("info_hash in the API");
        InfoHash::from_hex(hex).expect("a 20-byte hex info hash")
    }

    /// The address logged after `needle` (e.g. "peer listening on "), waiting for the line.
    pub fn logged_addr(&self, needle: &str) -> SocketAddr {
        let line = self.wait_log(needle, Duration::from_secs(20));
        line.split(needle)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address after {needle:?} in {line:?}"))
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .log
                .lock()
                .unwrap()
                .lines()
                .find(|l| l.contains(needle))
            {
                return l.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}; log:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn get(&self, path: &str) -> Response {
        http_get(self.http, path, &[])
    }

    /// Every entry of the API, following its `next` links page by page.
    pub fn torrents(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut path = "/api/torrents?limit=1000".to_owned();
        loop {
            let r = self.get(&path);
            assert_eq!(r.status, 200);
            let page = serde_json::from_slice::<Value>(&r.body).expect("JSON");
            all.extend(page.as_array().cloned().unwrap_or_default());
            let next = r.header("link").and_then(|l| {
                let (url, rel) = l.split_once(';')?;
                rel.contains("next")
                    .then(|| url.trim().trim_matches(['<', '>']).to_owned())
            });
            match next {
                Some(n) => path = n,
                None => return all,
            }
        }
    }

    /// Every entry (the first 1,000) as the publisher sees them, with `page.admin_token` =
    /// `token`: those not published (queued, hashing, failed) too.
    pub fn publisher_torrents(&self, token: &str) -> Vec<Value> {
        let bearer = format!("Bearer {token}");
        let r = http_get(
            self.http,
            "/api/torrents?limit=1000",
            &[("Authorization", &bearer)],
        );
        assert_eq!(r.status, 200);
        serde_json::from_slice::<Value>(&r.body)
            .expect("JSON")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the entry `path` is published (optionally with a different info hash than
    /// `not`), and returns its API entry.
    pub fn wait_published(&self, path: &str, not: Option<&str>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(t) = self.torrents().into_iter().find(|t| {
                t["path"] == path
                    && t["status"] == "published"
                    && not.is_none_or(|h| t["info_hash"].as_str() != Some(h))
            }) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never published; log:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let pid = self.child.id() as i32;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 GET with the path sent exactly as given (no client-side clean-up of `..`).
pub fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    http_request(addr, "GET", path, headers)
}

/// One request with any method, on a new connection that is closed after it.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let s = TcpStream::connect(addr).expect("connect");
    request_on(s, addr, method, path, headers)
}

/// One request on `s` (already connected to `addr`), reading the response to the end.
pub fn request_on(
    mut s: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    req.push_str("Connection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// `/announce` for a hex info hash, as a leecher on port 6881.
pub fn leecher_announce(hex_hash: &str) -> String {
    let bytes = (0..hex_hash.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex_hash[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    let enc: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
    format!(
        "/announce?info_hash={enc}&peer_id=-XX0001-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=100&compact=1"
    )
}

pub struct Dirs {
    _tmp: tempfile::TempDir,
    pub content: PathBuf,
    pub state: PathBuf,
}

pub fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let content = tmp.path().join("content");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&content).unwrap();
    Dirs {
        content,
        state,
        _tmp: tmp,
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc")
}

/// Sends a keep-alive GET /healthz on `s`; the status, or `None` when the server closes the
/// connection (or says nothing within `wait`) instead of answering.
pub fn ask(s: &mut TcpStream, wait: Duration) -> Option<u16> {
    s.set_read_timeout(Some(wait)).unwrap();
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: bitseed\r\n\r\n")
        .is_err()
    {
        return None;
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let len: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).ok()?;
    Some(status)
}
