//! The WebRTC side end to end in process, over real UDP sockets on loopback: a "browser" made
//! of str0m itself (the offerer, opening the data channel, as simple-peer does) against a real
//! `Seeder` with a real torrent. Chromium does the same through the page in
//! `tests/browser_download.rs`; here the wire inside the channel is checked message by message
//! and the session's ends are driven directly.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::peer::{BlockRef, Handshake, Message, PeerConfig, Published, Seeder};

/// The browser's side: its Rtc, socket, and what its channel received.
struct Browser {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    channel: Option<ChannelId>,
    received: Vec<u8>,
    closed: bool,
}

impl Browser {
    async fn new() -> (Browser, String, str0m::change::SdpPendingOffer) {
        // Room for a burst of the seeder's window (the default buffer drops some on a busy
        // machine, and SCTP then waits its 1 s retransmission timeout).
        let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        let _ = raw.set_recv_buffer_size(4 << 20);
        raw.set_nonblocking(true).unwrap();
        raw.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let socket = UdpSocket::from_std(raw.into()).unwrap();
        let local = socket.local_addr().unwrap();
        let mut rtc = RtcConfig::new().build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        api.add_channel("webtorrent".into());
        let (offer, pending) = api.apply().unwrap();
        let browser = Browser {
            rtc,
            socket,
            local,
            channel: None,
            received: Vec::new(),
            closed: false,
        };
        (browser, offer.to_sdp_string(), pending)
    }

    /// Drives the Rtc until `done` holds (checked after each input), for 20 s at most.
    async fn until(&mut self, what: &str, done: impl Fn(&Browser) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 2048];
        loop {
            let next = loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination).await;
                    }
                    Output::Event(Event::ChannelOpen(id, _)) => self.channel = Some(id),
                    Output::Event(Event::ChannelData(d)) => self.received.extend(d.data),
                    Output::Event(Event::ChannelClose(_) | Event::Closed) => self.closed = true,
                    Output::Event(_) => {}
                }
            };
            if done(self) {
                return;
            }
            assert!(Instant::now() < deadline, "never {what}");
            let wait = next
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            tokio::select! {
                got = self.socket.recv_from(&mut buf) => {
                    let (n, from) = got.unwrap();
                    let r = Receive::new(Protocol::Udp, from, self.local, &buf[..n]).unwrap();
                    self.rtc.handle_input(Input::Receive(Instant::now(), r)).unwrap();
                }
                _ = tokio::time::sleep(wait) => {
                    self.rtc.handle_input(Input::Timeout(Instant::now())).unwrap();
                }
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let id = self.channel.expect("an open channel");
        let mut ch = self.rtc.channel(id).unwrap();
        assert!(ch.write(true, bytes).unwrap(), "room in the channel");
    }

    /// The messages received after the seeder's handshake (which must be there).
    fn messages(&self) -> Vec<Message> {
        let mut at = crate::peer::handshake::HANDSHAKE_LEN;
        let mut out = Vec::new();
        while let Ok(Some((m, n))) = Message::parse(&self.received[at..], 1 << 20) {
            out.push(m);
            at += n;
        }
        out
    }
}

async fn seeder(
    dir: &std::path::Path,
) -> (Seeder, Arc<Published>, super::WebRtc, CancellationToken) {
    let config = PeerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..PeerConfig::default()
    };
    let seeder = Seeder::new(config);
    let torrent = Arc::new(crate::peer::test_support::v1_torrent(dir));
    seeder.add(torrent.clone());
    let stop = CancellationToken::new();
    let rtc = seeder
        .start_webrtc("127.0.0.1".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    (seeder, torrent, rtc, stop)
}

async fn connect(rtc: &super::WebRtc, torrent: &Published, peer: u8) -> Browser {
    let (mut browser, offer, pending) = Browser::new().await;
    let answer = rtc
        .answer(
            &torrent.info_hash(),
            &[peer; 20],
            browser.local.ip(),
            &offer,
        )
        .unwrap();
    browser
        .rtc
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    browser
        .until("the channel open", |b| b.channel.is_some())
        .await;
    browser
}

/// Waits until the WebRTC side holds no session (each leaves once its close is sent).
async fn no_sessions_left(rtc: &super::WebRtc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while rtc.stats().sessions.load(Ordering::Relaxed) != 0 {
        assert!(Instant::now() < deadline, "a session outlived its browser");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_browser_gets_a_piece_over_the_data_channel_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (_seeder, torrent, rtc, stop) = seeder(dir.path()).await;
    let mut browser = connect(&rtc, &torrent, b'B').await;
    // The handshake split over two channel messages, as a stream may be.
    let hs = Handshake::ours(torrent.info_hash(), [b'B'; 20], false).serialize();
    browser.send(&hs[..30]);
    browser.send(&hs[30..]);
    let mut interested = Vec::new();
    Message::Interested.write_to(&mut interested);
    browser.send(&interested);
    browser
        .until("unchoked", |b| {
            b.received.len() >= 68 && b.messages().contains(&Message::Unchoke)
        })
        .await;
    let theirs = Handshake::parse(&browser.received).unwrap().unwrap();
    assert_eq!(theirs.info_hash, torrent.info_hash());
    assert_eq!(&theirs.peer_id[..8], crate::peer::PEER_ID_PREFIX);
    // Two blocks in one channel message.
    let mut requests = Vec::new();
    for (index, begin, length) in [(0, 0, 16384), (2, 0, 40_000 - 32768)] {
        Message::Request(BlockRef {
            index,
            begin,
            length,
        })
        .write_to(&mut requests);
    }
    browser.send(&requests);
    browser
        .until("two pieces", |b| {
            b.messages()
                .iter()
                .filter(|m| matches!(m, Message::Piece { .. }))
                .count()
                == 2
        })
        .await;
    let file = std::fs::read(dir.path().join("data.bin")).unwrap();
    for m in browser.messages() {
        if let Message::Piece { index, begin, data } = m {
            let at = index as usize * 16384 + begin as usize;
            assert_eq!(&data[..], &file[at..at + data.len()], "piece {index}");
        }
    }
    let stats = rtc.stats();
    assert_eq!(stats.sessions.load(Ordering::Relaxed), 1);
    assert!(stats.sent.load(Ordering::Relaxed) >= 16384 + 40_000 - 32768);
    assert_eq!(stats.opened.load(Ordering::Relaxed), 1);

    // The browser closes: the session ends and leaves the table.
    browser.rtc.close().unwrap();
    browser
        .until("closed", |b| !b.rtc.is_alive() || b.closed)
        .await;
    no_sessions_left(&rtc).await;
    assert!(rtc.wants(&torrent.info_hash(), &[b'B'; 20], browser.local.ip()));
    stop.cancel();
    rtc.closed().await;
}

#[tokio::test]
async fn a_torrent_retired_closes_its_browsers() {
    let dir = tempfile::tempdir().unwrap();
    let (seeder, torrent, rtc, stop) = seeder(dir.path()).await;
    let mut browser = connect(&rtc, &torrent, b'C').await;
    let hs = Handshake::ours(torrent.info_hash(), [b'C'; 20], false).serialize();
    browser.send(&hs);
    browser
        .until("the seeder's handshake", |b| b.received.len() >= 68)
        .await;
    // Not answered twice while connected; another browser is.
    assert!(!rtc.wants(&torrent.info_hash(), &[b'C'; 20], browser.local.ip()));
    assert!(rtc.wants(&torrent.info_hash(), &[b'D'; 20], browser.local.ip()));
    assert!(seeder.remove(&torrent.info_hash()));
    // The session ends, so does the WebRTC connection: the browser is told.
    browser.until("closed by the seeder", |b| b.closed).await;
    no_sessions_left(&rtc).await;
    assert!(!rtc.wants(&torrent.info_hash(), &[b'D'; 20], browser.local.ip()));
    stop.cancel();
    rtc.closed().await;
}

/// More than SCTP's send buffer at once (2 MiB asked for in one go): the seeder's output waits
/// for room in the channel, nothing is lost or reordered.
#[tokio::test]
async fn a_window_larger_than_the_channel_buffer_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = PeerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..PeerConfig::default()
    };
    let seeder = Seeder::new(config);
    const LEN: u32 = 2 << 20;
    let torrent = Arc::new(crate::peer::test_support::torrent(
        dir.path(),
        crate::metainfo::Format::V1,
        LEN,
    ));
    seeder.add(torrent.clone());
    let stop = CancellationToken::new();
    let rtc = seeder
        .start_webrtc("127.0.0.1".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let mut browser = connect(&rtc, &torrent, b'W').await;
    let mut out = Handshake::ours(torrent.info_hash(), [b'W'; 20], false)
        .serialize()
        .to_vec();
    Message::Interested.write_to(&mut out);
    browser.send(&out);
    browser
        .until("unchoked", |b| {
            b.received.len() >= 68 && b.messages().contains(&Message::Unchoke)
        })
        .await;
    let before = browser.received.len();
    let mut requests = Vec::new();
    for index in 0..LEN / 16384 {
        Message::Request(BlockRef {
            index,
            begin: 0,
            length: 16384,
        })
        .write_to(&mut requests);
    }
    browser.send(&requests);
    let want = before + (LEN / 16384) as usize * (13 + 16384);
    browser
        .until("every block", |b| b.received.len() >= want)
        .await;
    let file = std::fs::read(dir.path().join("data.bin")).unwrap();
    let pieces: Vec<(u32, Vec<u8>)> = browser
        .messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::Piece { index, data, .. } => Some((index, data.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(pieces.len(), (LEN / 16384) as usize);
    for (i, (index, data)) in pieces.iter().enumerate() {
        assert_eq!(*index as usize, i, "in the order asked");
        assert_eq!(&data[..], &file[i * 16384..(i + 1) * 16384]);
    }
    stop.cancel();
    rtc.closed().await;
}
