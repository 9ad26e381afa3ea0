//! The handshake over an async stream: the cores fed from reads, their output written, all
//! under one deadline.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::{
    Encryption, Handshaken, Initiator, Mode, MseError, MseStream, Offer, Random, Receiver,
    SkeyLookup,
};

/// Bytes read at a time during the handshake. What a read brings past the handshake's end is
/// kept, so the size only sets how many reads a handshake takes.
const READ_CHUNK: usize = 4096;

/// An accepted connection, ready for the BitTorrent handshake.
#[derive(Debug)]
pub struct Accepted<S> {
    /// Reads the BitTorrent handshake (plaintext or IA) first, then the rest of the stream.
    pub stream: MseStream<S>,
    /// The torrent asked for through MSE: the BitTorrent handshake read next must name the
    /// same one. `None` for a plaintext handshake.
    pub info_hash: Option<[u8; 20]>,
    pub mode: Mode,
}

/// Runs the receiving side of the handshake on an incoming connection: sniffs plaintext or MSE
/// (after `read`, bytes the caller already took from `stream`), answers MSE per `policy`, and
/// finds the torrent through `lookup`. Fails with `MseError::Timeout` at `deadline`.
pub async fn accept<S, L>(
    mut stream: S,
    read: &[u8],
    policy: Encryption,
    lookup: &L,
    deadline: Instant,
) -> Result<Accepted<S>, MseError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    L: SkeyLookup + ?Sized,
{
    let mut receiver = Receiver::new(policy, Random::os()?);
    let exchange = async {
        let mut out = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut done = receiver.feed(read, lookup, &mut out)?;
        loop {
            send(&mut stream, &mut out).await?;
            if let Some(done) = done {
                return Ok(done);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(MseError::Closed);
            }
            done = receiver.feed(&chunk[..n], lookup, &mut out)?;
        }
    };
    let done: Handshaken = tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| MseError::Timeout)??;
    Ok(Accepted {
        info_hash: done.info_hash,
        mode: done.mode,
        stream: MseStream::new(stream, done),
    })
}

/// Runs the initiating side of the handshake on a connection to a peer: offers `offer` and
/// returns the stream in the mode the peer selected. Fails with `MseError::Timeout` at
/// `deadline`.
pub async fn connect<S>(
    mut stream: S,
    offer: Offer,
    deadline: Instant,
) -> Result<MseStream<S>, MseError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    let mut initiator = Initiator::new(offer, Random::os()?, &mut out)?;
    let exchange = async {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            send(&mut stream, &mut out).await?;
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(MseError::Closed);
            }
            if let Some(done) = initiator.feed(&chunk[..n], &mut out)? {
                send(&mut stream, &mut out).await?;
                return Ok(done);
            }
        }
    };
    let done = tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| MseError::Timeout)??;
    Ok(MseStream::new(stream, done))
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>) -> Result<(), MseError> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        stream.flush().await?;
        out.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, BufReader};

    use super::*;
    use crate::metainfo::InfoHash;
    use crate::peer::message::MAX_FRAME;
    use crate::peer::mse::{req2_key, CRYPTO_PLAINTEXT, CRYPTO_RC4};
    use crate::peer::{Handshake, Message};

    const IH: [u8; 20] = [0x5C; 20];

    fn lookup() -> HashMap<[u8; 20], [u8; 20]> {
        [(req2_key(&IH), IH)].into()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed as u8)
            .collect()
    }

    /// Our initiator against `accept` over an in-memory pipe, then a few MiB each way at once.
    async fn transfer(provide: u32, want: Mode) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let hs = Handshake::ours(InfoHash::new(IH), *b"-XX0000-abcdefghijkl", false).serialize();
        let offer = Offer {
            info_hash: IH,
            provide,
            pad_c: Vec::new(),
            ia: hs.to_vec(),
        };
        let map = lookup();
        let (accepted, connected) = tokio::join!(
            accept(server, &[], Encryption::Prefer, &map, soon()),
            connect(client, offer, soon())
        );
        let (accepted, connected) = (accepted.unwrap(), connected.unwrap());
        assert_eq!((accepted.mode, connected.mode()), (want, want));
        assert_eq!(accepted.info_hash, Some(IH));

        let (mut b_rd, mut b_wr) = tokio::io::split(accepted.stream);
        let (mut a_rd, mut a_wr) = tokio::io::split(connected);
        let mut got = [0u8; 68];
        b_rd.read_exact(&mut got).await.unwrap();
        assert_eq!(got, hs, "IA read first");
        let (up, down) = (data(3 << 20, 1), data(5 << 20, 2));
        let (up2, down2) = (up.clone(), down.clone());
        let a_send = tokio::spawn(async move {
            a_wr.write_all(&up2).await.unwrap();
            a_wr.flush().await.unwrap();
            a_wr
        });
        let b_send = tokio::spawn(async move {
            b_wr.write_all(&down2).await.unwrap();
            b_wr.flush().await.unwrap();
            b_wr
        });
        let mut at_b = vec![0u8; up.len()];
        let mut at_a = vec![0u8; down.len()];
        let (r1, r2) = tokio::join!(b_rd.read_exact(&mut at_b), a_rd.read_exact(&mut at_a));
        r1.unwrap();
        r2.unwrap();
        assert!(at_b == up && at_a == down, "bytes arrive intact both ways");
        let _ = (a_send.await.unwrap(), b_send.await.unwrap());
    }

    #[tokio::test]
    async fn rc4_both_ways() {
        transfer(CRYPTO_RC4, Mode::Rc4).await;
    }

    #[tokio::test]
    async fn plaintext_after_mse_both_ways() {
        transfer(CRYPTO_PLAINTEXT, Mode::MsePlaintext).await;
    }

    #[tokio::test]
    async fn plaintext_handshake_is_read_back_from_the_stream() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let hs = Handshake::ours(InfoHash::new(IH), [7; 20], false).serialize();
        client.write_all(&hs[..30]).await.unwrap();
        // The caller sniffed the first 3 bytes already.
        let accepting = tokio::spawn(async move {
            let mut server = server;
            let mut first = [0u8; 3];
            server.read_exact(&mut first).await.unwrap();
            accept(server, &first, Encryption::Prefer, &lookup(), soon()).await
        });
        client.write_all(&hs[30..]).await.unwrap();
        let accepted = accepting.await.unwrap().unwrap();
        assert_eq!((accepted.mode, accepted.info_hash), (Mode::Plaintext, None));
        let mut stream = accepted.stream;
        let mut got = [0u8; 68];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, hs);
        stream.write_all(b"answer").await.unwrap();
        let mut back = [0u8; 6];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"answer");
    }

    #[tokio::test]
    async fn refusals_over_a_stream() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client
            .write_all(&Handshake::ours(InfoHash::new(IH), [7; 20], false).serialize())
            .await
            .unwrap();
        let e = accept(server, &[], Encryption::Require, &lookup(), soon())
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "plaintext_refused");

        let (client, server) = tokio::io::duplex(64 * 1024);
        let offer = Offer {
            info_hash: [1; 20],
            provide: CRYPTO_RC4,
            pad_c: Vec::new(),
            ia: Vec::new(),
        };
        let map = lookup();
        let (accepted, connected) = tokio::join!(
            accept(server, &[], Encryption::Prefer, &map, soon()),
            connect(client, offer, soon())
        );
        assert_eq!(accepted.unwrap_err().reason(), "unknown_info_hash");
        assert_eq!(connected.unwrap_err().reason(), "closed");
    }

    #[tokio::test]
    async fn a_silent_or_slow_peer_times_out() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        // Half a Ya, then nothing.
        client.write_all(&[0x55; 48]).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(200);
        let e = accept(server, &[], Encryption::Prefer, &lookup(), deadline)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "timeout");
        assert!(Instant::now() >= deadline);
        drop(client);
    }

    #[tokio::test]
    async fn a_peer_closing_mid_handshake() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(&[0x55; 50]).await.unwrap();
        drop(client);
        let e = accept(server, &[], Encryption::Prefer, &lookup(), soon())
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "closed");
    }

    /// Seeding-like throughput over TCP loopback, RC4 against MSE-then-plaintext, one
    /// connection, each end on its own worker: `cargo test --release --lib
    /// stream_throughput -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn stream_throughput() {
        const TOTAL: usize = 1 << 30;
        for (provide, name) in [(CRYPTO_PLAINTEXT, "plain"), (CRYPTO_RC4, "rc4")] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let seeder = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let map = lookup();
                let mut s = accept(tcp, &[], Encryption::Prefer, &map, soon())
                    .await
                    .unwrap()
                    .stream;
                // As the session writes: framed batches of up to 256 KiB.
                let batch = vec![0x61u8; 256 * 1024];
                let start = std::time::Instant::now();
                let mut sent = 0;
                while sent < TOTAL {
                    s.write_all(&batch).await.unwrap();
                    sent += batch.len();
                }
                s.flush().await.unwrap();
                start
            });
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let offer = Offer {
                info_hash: IH,
                provide,
                pad_c: Vec::new(),
                ia: Vec::new(),
            };
            let mut s = connect(tcp, offer, soon()).await.unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0;
            while got < TOTAL {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0 && buf[..n].iter().all(|&b| b == 0x61));
                got += n;
            }
            let secs = seeder.await.unwrap().elapsed().as_secs_f64();
            println!(
                "{name}: {} MiB in {secs:.2} s = {:.0} MB/s",
                TOTAL >> 20,
                TOTAL as f64 / secs / 1e6
            );
        }
    }

    /// True when libtorrent's Python bindings are there; under CI=true their absence fails
    /// instead (tests/run.sh installs them): interop must not pass by skipping there.
    fn have_libtorrent() -> bool {
        let ok = std::process::Command::new("/usr/bin/python3")
            .args(["-c", "import libtorrent"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "python3-libtorrent is missing: interop tests cannot skip in CI"
            );
            eprintln!("skipping: python3-libtorrent is not installed");
        }
        ok
    }

    /// libtorrent 2.0 with encryption forced connects to `accept`: the MSE handshake completes,
    /// IA is its BitTorrent handshake for the torrent MSE named, the next message decrypts, and
    /// libtorrent reports the connection encrypted as we selected.
    #[tokio::test]
    async fn libtorrent_forced_encryption() {
        if !have_libtorrent() {
            return;
        }
        for (level, want) in [
            ("rc4", Mode::Rc4),
            ("plaintext", Mode::MsePlaintext),
            // Offered both, `prefer` answers plaintext after the handshake.
            ("both", Mode::MsePlaintext),
        ] {
            libtorrent_connects(level, want).await;
        }
        libtorrent_refused("plaintext", Encryption::Require, "crypto_refused").await;
    }

    /// libtorrent on `port` with `level`, and the torrent's info hash and lookup.
    async fn libtorrent(
        level: &str,
        timeout: &str,
    ) -> (
        tokio::net::TcpListener,
        tokio::process::Child,
        tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        [u8; 20],
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lt_mse.py");
        let mut child = tokio::process::Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--port", &port, "--level", level, "--timeout", timeout])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = json_line(lines.next_line().await.unwrap());
        let ih = hex::decode(first["info_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        (listener, child, lines, ih)
    }

    fn json_line(l: Option<String>) -> serde_json::Value {
        serde_json::from_str(&l.expect("a line from lt_mse.py")).unwrap()
    }

    async fn libtorrent_refused(level: &str, policy: Encryption, reason: &str) {
        let (listener, mut child, _lines, ih) = libtorrent(level, "1").await;
        let map: HashMap<_, _> = [(req2_key(&ih), ih)].into();
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("libtorrent connects")
            .unwrap();
        let e = accept(tcp, &[], policy, &map, soon()).await.unwrap_err();
        assert_eq!(e.reason(), reason, "{level}: {e}");
        assert!(!child.wait().await.unwrap().success());
    }

    async fn libtorrent_connects(level: &str, want: Mode) {
        let (listener, mut child, mut lines, ih) = libtorrent(level, "20").await;
        let map: HashMap<_, _> = [(req2_key(&ih), ih)].into();
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("libtorrent connects")
            .unwrap();
        let accepted = accept(tcp, &[], Encryption::Prefer, &map, soon())
            .await
            .unwrap_or_else(|e| panic!("{level}: {e}"));
        assert_eq!(accepted.mode, want, "{level}");
        assert_eq!(accepted.info_hash, Some(ih));

        let mut stream = accepted.stream;
        let mut hs = [0u8; 68];
        stream.read_exact(&mut hs).await.unwrap();
        let theirs = Handshake::parse(&hs).unwrap().unwrap();
        assert_eq!(
            theirs.info_hash,
            InfoHash::new(ih),
            "IA is libtorrent's BitTorrent handshake"
        );
        let ours = Handshake::ours(InfoHash::new(ih), *b"-BS0100-mse-interop!", false);
        stream.write_all(&ours.serialize()).await.unwrap();
        stream.flush().await.unwrap();
        // Its next message (the extension handshake, or have-none) comes through decrypted.
        let mut buf = Vec::new();
        let msg = loop {
            if let Some((msg, _)) = Message::parse(&buf, MAX_FRAME).unwrap() {
                break msg;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "libtorrent closed: {level}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let msg: String = format!("{msg:?}").chars().take(50).collect();
        eprintln!("{level}: {:?}, then {msg}", accepted.mode);

        let verdict = json_line(lines.next_line().await.unwrap());
        assert_eq!(verdict["ok"], true, "{level}: {verdict}");
        assert_eq!(verdict["rc4"], want == Mode::Rc4, "{level}: {verdict}");
        assert_eq!(
            verdict["plaintext"],
            want == Mode::MsePlaintext,
            "{level}: {verdict}"
        );
        drop(stream);
        assert!(child.wait().await.unwrap().success());
    }
}
