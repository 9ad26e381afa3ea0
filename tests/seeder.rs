//! The seeder against real clients (aria2c, libtorrent) and hostile peers, on loopback.
//!
//! Clients missing: with CI=true the test fails; otherwise it says so and skips. Every process a
//! test starts is held by a guard that kills it when the test ends, however it ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use bitseed::metainfo::{InfoHash, Metainfo};
use bitseed::peer::{BlockRef, Handshake, Message, PeerConfig, PeerListener, Published, Seeder};
use sha1::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_bitseed");
const LT_DOWNLOAD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt_download.py");
const PYTHON: &str = "/usr/bin/python3";
/// Longest any client process may run before the test kills it and fails.
const CLIENT_DEADLINE: Duration = Duration::from_secs(120);

/// A child process killed (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Waits for the process to exit, killing it at the deadline; returns its success.
    fn wait_bounded(&mut self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = self.0.kill();
                    return false;
                }
            }
        }
    }
}

/// Writes a single file `name` or, with several lengths, a folder `name` of files.
fn make_content(dir: &Path, name: &str, lengths: &[usize]) -> PathBuf {
    let path = dir.join(name);
    if lengths.len() == 1 {
        std::fs::write(&path, data(lengths[0], 1)).unwrap();
    } else {
        std::fs::create_dir_all(path.join("sub")).unwrap();
        for (i, len) in lengths.iter().enumerate() {
            let file = if i % 2 == 0 {
                path.join(format!("f{i}.bin"))
            } else {
                path.join("sub").join(format!("g{i}.bin"))
            };
            std::fs::write(file, data(*len, i as u64 + 7)).unwrap();
        }
    }
    path
}

/// `bitseed create` with the given extra arguments; returns the torrent's path.
fn create(content: &Path, out: &Path, args: &[&str]) -> PathBuf {
    let status = Command::new(BIN)
        .arg("create")
        .arg(content)
        .arg("-o")
        .arg(out)
        .args(["--no-date", "--force"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "bitseed create {args:?}");
    out.to_owned()
}

/// `bitseed seed` on a free loopback port: the process and its address.
fn seed(torrent: &Path, content: &Path, announce: bool, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(BIN);
    cmd.arg("seed")
        .arg(torrent)
        .arg(content)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    if !announce {
        cmd.arg("--no-announce");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (proc, addr)
}

/// Starts the libtorrent downloader (torrent file or magnet link) towards `peer`, with
/// `client` options of lt_download.py (`--transport utp`, `--encryption forced`).
fn lt_download(source: &str, save: &Path, peer: SocketAddr, client: &[&str]) -> Proc {
    let kind = if source.starts_with("magnet:") {
        "--magnet"
    } else {
        "--torrent"
    };
    let child = Command::new(PYTHON)
        .arg(LT_DOWNLOAD)
        .args([kind, source])
        .arg("--save")
        .arg(save)
        .args(["--peer", &peer.to_string(), "--timeout", "100"])
        .args(client)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

/// Every file under `a` equals the file at the same place under `b`.
fn assert_same_tree(a: &Path, b: &Path) {
    if a.is_file() {
        let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert!(x == y, "{} differs from {}", b.display(), a.display());
        return;
    }
    for entry in std::fs::read_dir(a).unwrap() {
        let entry = entry.unwrap();
        assert_same_tree(&entry.path(), &b.join(entry.file_name()));
    }
}

fn magnet(torrent: &Path) -> String {
    let bytes = std::fs::read(torrent).unwrap();
    Metainfo::from_bytes(&bytes).unwrap().magnet().to_uri()
}

fn libtorrent_case(format: &str, lengths: &[usize], piece: &str, by_magnet: bool, extra: &[&str]) {
    libtorrent_case_with(format, lengths, piece, by_magnet, extra, &[]);
}

/// libtorrent downloads a `format` torrent of files of `lengths` from `bitseed seed` (started
/// with `extra`), run with `client` options of lt_download.py.
fn libtorrent_case_with(
    format: &str,
    lengths: &[usize],
    piece: &str,
    by_magnet: bool,
    extra: &[&str],
    client: &[&str],
) {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = make_content(dir.path(), "payload", lengths);
    let torrent = create(
        &src,
        &dir.path().join("t.torrent"),
        &["--format", format, "-p", piece],
    );
    let (_seed, addr) = seed(&torrent, &src, false, extra);
    let save = dir.path().join("dl");
    std::fs::create_dir(&save).unwrap();
    let source = if by_magnet {
        magnet(&torrent)
    } else {
        torrent.display().to_string()
    };
    let mut downloader = lt_download(&source, &save, addr, client);
    assert!(
        downloader.wait_bounded(CLIENT_DEADLINE),
        "libtorrent ({client:?}) did not complete {format}"
    );
    assert_same_tree(&src, &save.join("payload"));
}

#[test]
fn libtorrent_downloads_v1() {
    libtorrent_case("v1", &[3_000_000, 1, 70_000, 0, 500_000], "32K", false, &[]);
}

#[test]
fn libtorrent_downloads_v2() {
    libtorrent_case("v2", &[3_000_000, 1, 70_000, 500_000], "64K", false, &[]);
}

#[test]
fn libtorrent_downloads_hybrid() {
    libtorrent_case(
        "hybrid",
        &[3_000_000, 1, 70_000, 500_000],
        "32K",
        false,
        &[],
    );
}

/// libtorrent with TCP off: everything over uTP (BEP 29) on the peer port's UDP side.
#[test]
fn libtorrent_downloads_v1_over_utp() {
    let utp = ["--transport", "utp"];
    libtorrent_case_with(
        "v1",
        &[3_000_000, 1, 70_000, 0, 500_000],
        "32K",
        false,
        &[],
        &utp,
    );
}

#[test]
fn libtorrent_downloads_v2_over_utp() {
    let utp = ["--transport", "utp"];
    libtorrent_case_with(
        "v2",
        &[3_000_000, 1, 70_000, 500_000],
        "64K",
        false,
        &[],
        &utp,
    );
}

#[test]
fn libtorrent_downloads_hybrid_over_utp() {
    let utp = ["--transport", "utp"];
    libtorrent_case_with("hybrid", &[3_000_000, 70_000], "32K", false, &[], &utp);
}

/// libtorrent with encryption forced (RC4 only, plaintext refused), over TCP and over uTP.
#[test]
fn libtorrent_downloads_with_rc4_forced_over_tcp() {
    let rc4 = ["--encryption", "forced"];
    libtorrent_case_with("hybrid", &[3_000_000, 70_000], "32K", false, &[], &rc4);
}

#[test]
fn libtorrent_downloads_with_rc4_forced_over_utp() {
    let rc4 = ["--encryption", "forced", "--transport", "utp"];
    libtorrent_case_with("v2", &[3_000_000, 70_000], "32K", false, &[], &rc4);
}

/// A seed with `--encryption require` serves a client that encrypts.
#[test]
fn a_seed_requiring_encryption_serves_libtorrent_with_rc4() {
    let rc4 = ["--encryption", "forced"];
    libtorrent_case_with(
        "v1",
        &[1_000_000],
        "32K",
        false,
        &["--encryption", "require"],
        &rc4,
    );
}

#[test]
fn libtorrent_downloads_a_v1_magnet_link() {
    libtorrent_case("v1", &[2_000_000], "16K", true, &[]);
}

#[test]
fn libtorrent_downloads_a_v2_magnet_link() {
    // Several pieces per file, so the piece layers come from our BEP 52 hash answers.
    libtorrent_case("v2", &[2_000_000, 300_000], "32K", true, &[]);
}

#[test]
fn libtorrent_downloads_from_a_super_seed() {
    libtorrent_case("v1", &[1_000_000], "32K", false, &["--super-seed"]);
}

#[test]
fn five_concurrent_libtorrent_downloaders_complete() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = make_content(dir.path(), "payload.bin", &[4_000_000]);
    let torrent = create(&src, &dir.path().join("t.torrent"), &["-p", "32K"]);
    let (_seed, addr) = seed(&torrent, &src, false, &[]);
    let mut clients = Vec::new();
    for i in 0..5 {
        let save = dir.path().join(format!("dl{i}"));
        std::fs::create_dir(&save).unwrap();
        clients.push((
            lt_download(&torrent.display().to_string(), &save, addr, &[]),
            save,
        ));
    }
    for (client, save) in &mut clients {
        assert!(
            client.wait_bounded(CLIENT_DEADLINE),
            "a downloader did not complete"
        );
        assert_same_tree(&src, &save.join("payload.bin"));
    }
}

/// A one-answer HTTP tracker: every announce gets back the one peer it was made with.
struct Tracker {
    url: String,
    /// The request line of every announce received.
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    _server: crate::common::TinyHttp,
}

impl Tracker {
    fn start(peer: Arc<std::sync::Mutex<Option<SocketAddr>>>) -> Tracker {
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let server = crate::common::TinyHttp::serve(move |req| {
            let line = String::from_utf8_lossy(req);
            if let Some(first) = line.lines().next() {
                seen.lock().unwrap().push(first.to_string());
            }
            let mut body = b"d8:intervali60e5:peers".to_vec();
            match *peer.lock().unwrap() {
                Some(SocketAddr::V4(a)) => {
                    body.extend_from_slice(b"6:");
                    body.extend_from_slice(&a.ip().octets());
                    body.extend_from_slice(&a.port().to_be_bytes());
                }
                _ => body.extend_from_slice(b"0:"),
            }
            body.push(b'e');
            let mut res = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            res.extend_from_slice(&body);
            res
        });
        Tracker {
            url: format!("http://{}/announce", server.addr),
            requests,
            _server: server,
        }
    }
}

fn aria2c_case(lengths: &[usize], name: &str) {
    if !have_aria2() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = make_content(dir.path(), name, lengths);
    let peer = Arc::new(std::sync::Mutex::new(None));
    let tracker = Tracker::start(peer.clone());
    let torrent = create(
        &src,
        &dir.path().join("t.torrent"),
        &["-p", "32K", "-a", &tracker.url],
    );
    let (_seed, addr) = seed(&torrent, &src, true, &[]);
    *peer.lock().unwrap() = Some(addr);
    let save = dir.path().join("dl");
    let child = Command::new("aria2c")
        .arg(format!("--dir={}", save.display()))
        .args(crate::common::ARIA2C_LOOPBACK)
        .args(["--bt-stop-timeout=100", "--listen-port=40000-49999"])
        .arg(&torrent)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut client = Proc(child);
    assert!(
        client.wait_bounded(CLIENT_DEADLINE),
        "aria2c did not complete"
    );
    assert_same_tree(&src, &save.join(name));
    drop(tracker);
}

#[test]
fn aria2c_downloads_a_single_file_torrent() {
    aria2c_case(&[3_000_000], "single.bin");
}

#[test]
fn aria2c_downloads_a_multi_file_torrent() {
    aria2c_case(&[1_000_000, 1, 70_000, 0, 800_000], "multi");
}

// ---- in-process: our own client, BEP 30, hostile peers ----

/// A seeder in this process on a loopback port; stopped on drop.
struct InProcess {
    addr: SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    _runtime: tokio::runtime::Runtime,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn in_process(config: PeerConfig, torrent: Published) -> InProcess {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let config = PeerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let listener = runtime.block_on(PeerListener::bind(&config)).unwrap();
    let addr = listener.local_addr();
    let seeder = Seeder::new(config);
    seeder.add(Arc::new(torrent));
    let token = stop.clone();
    runtime.spawn(async move { seeder.run(listener, token).await });
    InProcess {
        addr,
        stop,
        _runtime: runtime,
    }
}

fn published(dir: &Path, lengths: &[usize], args: &[&str]) -> (PathBuf, Metainfo) {
    let src = make_content(dir, "payload", lengths);
    let torrent = create(&src, &dir.join("t.torrent"), args);
    let meta = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    (src, meta)
}

#[test]
fn merkle_torrent_is_served_with_hash_lists_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    // 13 pieces: a tree with filler leaves, as in BEP 30's figure.
    let (src, meta) = published(
        dir.path(),
        &[13 * 16384 - 100],
        &["--format", "merkle", "-p", "16K"],
    );
    let seeder = in_process(
        PeerConfig::default(),
        Published::open(meta.clone(), &src).unwrap(),
    );
    let data = download(seeder.addr, &meta);
    assert_eq!(data, std::fs::read(&src).unwrap());
}

/// Expects the seeder to close the connection: reads (draining whatever it sent) until EOF or
/// reset. Bounded by the socket's read timeout, which fails the test.
fn expect_dropped(s: &mut TcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{what}: not dropped ({e})"),
        }
    }
}

#[test]
fn hostile_peers_are_dropped_while_a_good_download_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (src, meta) = published(dir.path(), &[3_000_000], &["-p", "32K"]);
    let config = PeerConfig {
        handshake_timeout: 1.0,
        max_request_queue: 500,
        ..PeerConfig::default()
    };
    let seeder = in_process(config, Published::open(meta.clone(), &src).unwrap());
    let addr = seeder.addr;
    let ih = meta.info_hash.wire().unwrap();
    let expected = std::fs::read(&src).unwrap();

    let good = {
        let meta = meta.clone();
        std::thread::spawn(move || download(addr, &meta))
    };

    // Garbage instead of a handshake.
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    expect_dropped(&mut garbage, "garbage handshake");

    // A silent peer: connects and says nothing.
    let mut silent = TcpStream::connect(addr).unwrap();
    expect_dropped(&mut silent, "silent peer");

    // A 4 GiB length prefix.
    let (mut huge, _) = connect(addr, ih);
    huge.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 7, 0, 0]).unwrap();
    expect_dropped(&mut huge, "4 GiB length prefix");

    // A request past the end of the torrent.
    let (mut past, mut buf) = connect(addr, ih);
    wait_unchoke(&mut past, &mut buf);
    past.write_all(&request(meta.pieces.len() as u32 + 3, 0, 16384))
        .unwrap();
    expect_dropped(&mut past, "request past the end");

    // 10,000 requests, never reading the answers.
    let (mut flood, mut buf) = connect(addr, ih);
    wait_unchoke(&mut flood, &mut buf);
    let mut out = Vec::new();
    for i in 0..10_000u32 {
        Message::Request(BlockRef {
            index: i % meta.pieces.len() as u32,
            begin: 0,
            length: 16384,
        })
        .write_to(&mut out);
    }
    // The seeder may close mid-write; that is the point.
    let _ = flood.write_all(&out);
    expect_dropped(&mut flood, "request flood");

    assert_eq!(good.join().unwrap(), expected);
    // And it still serves a new peer afterwards.
    assert_eq!(download(addr, &meta), expected);
}

#[test]
fn a_file_changed_on_disk_is_no_longer_served() {
    let dir = tempfile::tempdir().unwrap();
    let (src, meta) = published(dir.path(), &[200_000], &["-p", "16K"]);
    let seeder = in_process(
        PeerConfig::default(),
        Published::open(meta.clone(), &src).unwrap(),
    );
    assert_eq!(download(seeder.addr, &meta), std::fs::read(&src).unwrap());
    std::fs::write(&src, data(200_001, 99)).unwrap();
    // The next download's first read sees the change: the connection closes, and the torrent is
    // gone, so a further handshake for it is refused.
    let (mut s, mut buf) = connect(seeder.addr, meta.info_hash.wire().unwrap());
    wait_unchoke(&mut s, &mut buf);
    s.write_all(&request(0, 0, 16384)).unwrap();
    expect_dropped(&mut s, "connection of a changed torrent");
    let mut again = TcpStream::connect(seeder.addr).unwrap();
    again
        .write_all(&Handshake::ours(meta.info_hash.wire().unwrap(), [3; 20], false).serialize())
        .unwrap();
    expect_dropped(&mut again, "handshake for a retired torrent");
}

#[test]
fn an_upload_slot_passes_to_a_waiting_peer_when_its_holder_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (src, meta) = published(dir.path(), &[100_000], &["-p", "16K"]);
    let config = PeerConfig {
        upload_slots: 1,
        ..PeerConfig::default()
    };
    let seeder = in_process(config, Published::open(meta.clone(), &src).unwrap());
    let ih = meta.info_hash.wire().unwrap();
    let (mut a, mut abuf) = connect(seeder.addr, ih);
    wait_unchoke(&mut a, &mut abuf);

    // B is interested, but the one slot is A's: its request is rejected (BEP 6), not served.
    let (mut b, mut bbuf) = connect(seeder.addr, ih);
    let block = BlockRef {
        index: 0,
        begin: 0,
        length: 16384,
    };
    let mut out = Vec::new();
    Message::Interested.write_to(&mut out);
    Message::Request(block).write_to(&mut out);
    b.write_all(&out).unwrap();
    loop {
        match read_message(&mut b, &mut bbuf) {
            Some(Message::Reject(r)) => {
                assert_eq!(r, block);
                break;
            }
            Some(Message::Unchoke) => panic!("unchoked while the only slot is taken"),
            Some(Message::Piece { .. }) => panic!("served while choked"),
            Some(_) => continue,
            None => panic!("B dropped"),
        }
    }
    drop(a);
    loop {
        match read_message(&mut b, &mut bbuf) {
            Some(Message::Unchoke) => break,
            Some(_) => continue,
            None => panic!("B dropped"),
        }
    }
}

/// A BEP 15 tracker that answers every connect and announce and records (event, port) of each
/// announce.
struct UdpTracker {
    url: String,
    events: Arc<std::sync::Mutex<Vec<(u32, u16)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpTracker {
    fn start() -> UdpTracker {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let url = format!("udp://{}/announce", socket.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, seen) = (stop.clone(), events.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let p = &buf[..n];
                let be32 = |at: usize| u32::from_be_bytes(p[at..at + 4].try_into().unwrap());
                let mut reply = Vec::new();
                if n == 16 && be32(8) == 0 {
                    reply.extend_from_slice(&[0, 0, 0, 0]);
                    reply.extend_from_slice(&p[12..16]);
                    reply.extend_from_slice(&0x5EED_u64.to_be_bytes());
                } else if n == 98 && be32(8) == 1 {
                    let port = u16::from_be_bytes([p[96], p[97]]);
                    seen.lock().unwrap().push((be32(80), port));
                    reply.extend_from_slice(&[0, 0, 0, 1]);
                    reply.extend_from_slice(&p[12..16]);
                    reply.extend_from_slice(&[0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 1]);
                }
                let _ = socket.send_to(&reply, from);
            }
        });
        UdpTracker {
            url,
            events,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn seed_announces_started_and_stopped_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_content(dir.path(), "a.bin", &[50_000]);
    let tracker = Tracker::start(Arc::new(std::sync::Mutex::new(None)));
    let udp = UdpTracker::start();
    let torrent = create(
        &src,
        &dir.path().join("t.torrent"),
        &["-a", &tracker.url, "-a", &udp.url],
    );
    let meta = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    let escaped: String = meta
        .info_hash
        .wire()
        .unwrap()
        .as_bytes()
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (mut seed, addr) = seed(&torrent, &src, true, &[]);
    let started = format!("info_hash={escaped}");
    let port = format!("port={}", addr.port());
    let has = |event: &str| {
        tracker.requests.lock().unwrap().iter().any(|r| {
            r.contains(&started) && r.contains(&port) && r.contains(&format!("event={event}"))
        })
    };
    // Bounded waits: the announce happens right after start, the stop right after the signal.
    let udp_has = |event: u32| udp.events.lock().unwrap().contains(&(event, addr.port()));
    poll(Duration::from_secs(60), Duration::from_millis(20), || {
        (has("started") && udp_has(2))
            .then_some(())
            .ok_or("no started announce (HTTP and UDP)".into())
    });
    let status = Command::new("kill")
        .args(["-TERM", &seed.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        seed.wait_bounded(Duration::from_secs(60)),
        "seed did not exit cleanly on SIGTERM"
    );
    assert!(has("stopped"), "no event=stopped announce over HTTP");
    assert!(udp_has(3), "no stopped announce over UDP");
}

#[test]
fn connections_over_the_per_torrent_cap_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (src, meta) = published(dir.path(), &[100_000], &["-p", "16K"]);
    let config = PeerConfig {
        max_connections_per_torrent: 1,
        ..PeerConfig::default()
    };
    let seeder = in_process(config, Published::open(meta.clone(), &src).unwrap());
    let ih = meta.info_hash.wire().unwrap();
    let (_first, _) = connect(seeder.addr, ih);
    let mut second = TcpStream::connect(seeder.addr).unwrap();
    second
        .write_all(&Handshake::ours(ih, [4; 20], false).serialize())
        .unwrap();
    expect_dropped(&mut second, "connection over the cap");
}

#[test]
fn a_rate_limited_seed_still_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (src, meta) = published(dir.path(), &[600_000], &["-p", "16K"]);
    // The test's downloader asks for every piece at once: no super-seeding (`auto` would
    // super-seed under the cap).
    let config = PeerConfig {
        max_upload_rate: 2_000_000,
        super_seed: bitseed::peer::SuperSeedMode::Off,
        ..PeerConfig::default()
    };
    let seeder = in_process(config, Published::open(meta.clone(), &src).unwrap());
    assert_eq!(download(seeder.addr, &meta), std::fs::read(&src).unwrap());
}

/// Under a cap, `auto` super-seeding hides the pieces (one shown at a time), until the peer has
/// been alone on the torrent a few seconds: then it is shown every piece.
#[test]
fn auto_super_seeding_shows_a_lone_peer_everything() {
    let dir = tempfile::tempdir().unwrap();
    // 64 pieces: more than a super-seeded peer is shown in 3 s (8 at a time while the first
    // copy goes out, 8 more when those are left unrequested for 2 s).
    let (src, meta) = published(dir.path(), &[1 << 20], &["-p", "16K"]);
    let config = PeerConfig {
        max_upload_rate: 2_000_000,
        ..PeerConfig::default()
    };
    let seeder = in_process(config, Published::open(meta.clone(), &src).unwrap());
    let (mut s, mut buf) = connect(seeder.addr, meta.info_hash.wire().unwrap());
    s.write_all(&Message::Interested.to_bytes()).unwrap();
    let start = Instant::now();
    let mut shown = 0;
    loop {
        match read_message(&mut s, &mut buf).expect("seeder closed") {
            Message::Bitfield(_) => panic!("a super-seed shows pieces one by one"),
            Message::Have(_) => shown += 1,
            // Our client speaks the fast extension: everything at once.
            Message::HaveAll => break,
            _ => {}
        }
    }
    assert!((1..=16).contains(&shown), "{shown} pieces shown one by one");
    assert!(
        start.elapsed() > Duration::from_secs(2),
        "shown everything too soon"
    );
}

/// A super-seeded peer that asks for none of the pieces it was shown (libtorrent leaves alone
/// the pieces it waits on its web seed for) is shown others, and unchoked again after them:
/// libtorrent picks what to request on an unchoke or an arriving block, never on a `have`.
#[test]
fn super_seeding_unchokes_again_after_showing_pieces_to_a_peer_asking_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, meta) = published(dir.path(), &[1 << 20], &["-p", "16K"]);
    let config = PeerConfig {
        super_seed: bitseed::peer::SuperSeedMode::On,
        ..PeerConfig::default()
    };
    let seeder = in_process(config, Published::open(meta.clone(), &src).unwrap());
    let (mut s, mut buf) = connect(seeder.addr, meta.info_hash.wire().unwrap());
    s.write_all(&Message::Interested.to_bytes()).unwrap();
    // The first pieces shown, then (2 s later, unrequested) others: is an unchoke after them?
    let mut first: Vec<u32> = Vec::new();
    let mut later = 0;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let m = read_message(&mut s, &mut buf).expect("seeder closed");
        seen.push(format!("{m:?}"));
        match m {
            Message::Have(p) if later == 0 && first.len() < 8 => first.push(p),
            Message::Have(p) => {
                assert!(!first.contains(&p), "shown again: {seen:?}");
                later += 1;
            }
            Message::Unchoke if later > 0 => return,
            _ => {}
        }
    }
    panic!("no unchoke after the later pieces: {seen:?}");
}

#[test]
fn v2_block_hashes_are_answered_from_disk_with_proofs() {
    use bitseed::peer::HashRequest;
    use sha2::Sha256;
    let dir = tempfile::tempdir().unwrap();
    // 32 KiB pieces: two blocks each, so block hashes are below the piece layer.
    let (src, meta) = published(dir.path(), &[300_000], &["--format", "v2", "-p", "32K"]);
    let seeder = in_process(
        PeerConfig::default(),
        Published::open(meta.clone(), &src).unwrap(),
    );
    let (mut s, mut buf) = connect(seeder.addr, meta.info_hash.wire().unwrap());
    let root = meta.files[0].pieces_root.unwrap();
    // 19 blocks → 32 leaves → the root is 5 layers up; ask for blocks 4-5 with 4 proof layers.
    let r = HashRequest {
        pieces_root: root,
        base_layer: 0,
        index: 4,
        length: 2,
        proof_layers: 4,
    };
    let mut out = Vec::new();
    Message::HashRequest(r).write_to(&mut out);
    s.write_all(&out).unwrap();
    let hashes = loop {
        match read_message(&mut s, &mut buf) {
            Some(Message::Hashes { request, hashes }) => {
                assert_eq!(request, r);
                break hashes;
            }
            Some(Message::HashReject(_)) => panic!("block-layer hash request rejected"),
            Some(_) => continue,
            None => panic!("closed"),
        }
    };
    let data = std::fs::read(&src).unwrap();
    let leaf = |i: usize| -> [u8; 32] { Sha256::digest(&data[i * 16384..(i + 1) * 16384]).into() };
    assert_eq!(hashes[..2], [leaf(4), leaf(5)]);
    // Fold the proof up to the pieces root: 2 hashes + 4 uncles.
    assert_eq!(hashes.len(), 6);
    let pair = bitseed::metainfo::merkle::sha256_pair;
    let mut node = pair(&hashes[0], &hashes[1]);
    let mut pos = 4 >> 1;
    for uncle in &hashes[2..] {
        node = if pos % 2 == 0 {
            pair(&node, uncle)
        } else {
            pair(uncle, &node)
        };
        pos >>= 1;
    }
    assert_eq!(node, root);
}

/// A client that says it is interested only after a pause (Transmission waits about 10 s) is
/// unchoked, over each transport and encryption: the session keeps reading a stream whose next
/// bytes come long after the handshake.
#[test]
fn interest_sent_after_a_pause_is_answered_over_tcp_and_utp_plain_and_rc4() {
    use bitseed::peer::mse::{self, Offer, CRYPTO_PLAINTEXT, CRYPTO_RC4};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let (src, meta) = published(dir.path(), &[100_000], &["-p", "32K"]);
    let ih = meta.info_hash.wire_hashes()[0];
    let seeder = in_process(PeerConfig::default(), Published::open(meta, &src).unwrap());
    let addr = seeder.addr;
    let runtime = tokio::runtime::Runtime::new().unwrap();

    async fn until_unchoke<S: AsyncRead + AsyncWrite + Unpin>(
        mut s: S,
        plain_handshake: bool,
        ih: InfoHash,
    ) {
        let ours = Handshake::ours(ih, *b"-TC0001-testclient00", false).serialize();
        if plain_handshake {
            s.write_all(&ours).await.unwrap();
            s.flush().await.unwrap();
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Their handshake, then whatever greeting they send at once.
        while buf.len() < 68 {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the handshake");
            buf.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(Handshake::parse(&buf[..68]).unwrap().unwrap().info_hash, ih);
        buf.drain(..68);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.write_all(&[0, 0, 0, 1, 2]).await.unwrap(); // interested
        s.flush().await.unwrap();
        loop {
            while let Some((m, used)) = Message::parse(&buf, 1 << 20).unwrap() {
                buf.drain(..used);
                if m == Message::Unchoke {
                    return;
                }
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before unchoking");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    for (utp, provide) in [
        (false, None),
        (false, Some(CRYPTO_RC4)),
        (true, None),
        (true, Some(CRYPTO_RC4)),
        (true, Some(CRYPTO_PLAINTEXT)),
    ] {
        let what = format!("utp {utp}, provide {provide:?}");
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            let offer = |p| Offer {
                info_hash: ih.into(),
                provide: p,
                pad_c: Vec::new(),
                ia: Handshake::ours(ih, *b"-TC0001-testclient00", false)
                    .serialize()
                    .to_vec(),
            };
            let run = async {
                if utp {
                    let sock = librqbit_utp::UtpSocketUdp::new_udp("127.0.0.1:0".parse().unwrap())
                        .await
                        .unwrap();
                    // Two connections from one socket (one address and port), as Transmission
                    // opens one per torrent.
                    let one = || async {
                        let s = sock.connect(addr).await.unwrap();
                        match provide {
                            None => until_unchoke(s, true, ih).await,
                            Some(p) => {
                                let s = mse::connect(s, offer(p), deadline).await.unwrap();
                                until_unchoke(s, false, ih).await
                            }
                        }
                    };
                    tokio::join!(one(), one());
                } else {
                    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    match provide {
                        None => until_unchoke(s, true, ih).await,
                        Some(p) => {
                            let s = mse::connect(s, offer(p), deadline).await.unwrap();
                            until_unchoke(s, false, ih).await
                        }
                    }
                }
            };
            tokio::time::timeout_at(deadline, run)
                .await
                .unwrap_or_else(|_| panic!("{what}: no unchoke"));
        });
    }
}

/// `peer.encryption = require` closes a plaintext handshake; `disable` closes an encrypted one.
/// Both are counted by reason.
#[test]
fn encryption_policy_refuses_the_other_kind() {
    use bitseed::peer::mse::{self, Encryption, Offer, CRYPTO_RC4};

    let dir = tempfile::tempdir().unwrap();
    let (src, meta) = published(dir.path(), &[50_000], &["-p", "16K"]);
    let ih = meta.info_hash.wire_hashes()[0];

    let require = in_process(
        PeerConfig {
            encryption: Encryption::Require,
            ..PeerConfig::default()
        },
        Published::open(meta.clone(), &src).unwrap(),
    );
    let mut s = TcpStream::connect(require.addr).unwrap();
    s.write_all(&Handshake::ours(ih, *b"-TC0001-testclient00", false).serialize())
        .unwrap();
    expect_dropped(&mut s, "plaintext handshake under require");

    let disable = in_process(
        PeerConfig {
            encryption: Encryption::Disable,
            ..PeerConfig::default()
        },
        Published::open(meta, &src).unwrap(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let refused = runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(disable.addr).await.unwrap();
        let offer = Offer {
            info_hash: ih.into(),
            provide: CRYPTO_RC4,
            pad_c: Vec::new(),
            ia: Vec::new(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        mse::connect(tcp, offer, deadline).await
    });
    assert!(
        refused.is_err(),
        "an MSE handshake under disable is refused"
    );
}

/// A fresh super-seeded torrent whose 4 pieces two connected peers report having: how one
/// more peer, interested and holding nothing, connects and tells its pieces.
struct SpreadSwarm {
    seeder: InProcess,
    ih: InfoHash,
}

impl SpreadSwarm {
    fn new(dir: &Path) -> Self {
        let (src, meta) = published(dir, &[64 << 10], &["-p", "16K"]);
        let config = PeerConfig {
            max_upload_rate: 2_000_000,
            ..PeerConfig::default()
        };
        let seeder = in_process(config, Published::open(meta.clone(), &src).unwrap());
        SpreadSwarm {
            seeder,
            ih: meta.info_hash.wire().unwrap(),
        }
    }

    /// A peer that says it is interested and has `pieces`.
    fn join(&self, pieces: std::ops::Range<u32>) -> (TcpStream, Vec<u8>) {
        let (mut s, buf) = connect(self.seeder.addr, self.ih);
        let mut out = Vec::new();
        Message::Interested.write_to(&mut out);
        for p in pieces {
            Message::Have(p).write_to(&mut out);
        }
        s.write_all(&out).unwrap();
        (s, buf)
    }
}

/// The first piece the seed shows a peer within `within`, if any.
fn first_shown(peer: &mut (TcpStream, Vec<u8>), within: Duration) -> Option<u32> {
    let (s, buf) = peer;
    s.set_read_timeout(Some(within)).unwrap();
    loop {
        match read_message(s, buf)? {
            Message::Have(p) => return Some(p),
            Message::HaveAll | Message::Bitfield(_) => return Some(0),
            _ => {}
        }
    }
}

/// Super-seeding counts a piece as spread only while the peers that have it are connected:
/// once the leechers that had every piece have left, newcomers are shown pieces again. (It
/// once kept counting departed peers, so two newcomers together were shown nothing, ever.)
#[test]
fn super_seeding_shows_again_what_departed_peers_had() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = SpreadSwarm::new(dir.path());
    // Two leechers that got all 4 pieces (from each other, say) tell the seed so, then go.
    let first = [swarm.join(0..4), swarm.join(0..4)];
    std::thread::sleep(Duration::from_millis(500));
    drop(first);
    std::thread::sleep(Duration::from_millis(500));
    // Two newcomers at once (so neither is alone on the torrent): each is shown a piece.
    for (i, mut peer) in [swarm.join(0..0), swarm.join(0..0)].into_iter().enumerate() {
        let shown = first_shown(&mut peer, Duration::from_secs(5));
        assert!(shown.is_some(), "newcomer {i} was shown no piece in 5 s");
    }
}

/// A super-seeded peer that gets no piece from anyone else (it cannot reach the peers that have
/// them, or they keep it choked) is shown pieces that have spread, after a while: the seed
/// does not leave it waiting on a swarm that does not feed it.
#[test]
fn super_seeding_feeds_a_peer_the_swarm_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = SpreadSwarm::new(dir.path());
    // Two peers with every piece stay connected, so every piece counts as spread.
    let _spread = [swarm.join(0..4), swarm.join(0..4)];
    std::thread::sleep(Duration::from_millis(500));
    let mut cut_off = swarm.join(0..0);
    let start = Instant::now();
    let shown = first_shown(&mut cut_off, Duration::from_secs(20));
    assert!(
        shown.is_some(),
        "a peer fed by no one was shown nothing in 20 s"
    );
    // Not at once, though: a newcomer usually gets them from the swarm.
    assert!(
        start.elapsed() > Duration::from_secs(5),
        "shown a spread piece after {:?}",
        start.elapsed()
    );
}
