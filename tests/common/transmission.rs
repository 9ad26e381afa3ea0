//! Transmission 3.00 in a network namespace of its own (it refuses 127.0.0.0/8 peers), joined
//! to the host by a veth pair the test makes and removes.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;

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
            // Its session-id file goes to TMPDIR; a killed daemon leaves it behind.
            .env("TMPDIR", &root)
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
