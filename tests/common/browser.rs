//! Headless Chromium over its DevTools pipe, and a tiny HTTP server standing in for a CDN.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

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
                // Its scratch folders (org.chromium.Chromium.*) go to TMPDIR and stay there
                // when it is killed: inside the profile they go with it.
                .env("TMPDIR", profile.path())
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
