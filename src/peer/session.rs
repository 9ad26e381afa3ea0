//! One peer connection's I/O: reads frames into the `Connection` core, writes what it returns,
//! runs its disk reads on the blocking pool, and enforces timeouts and buffer bounds.
//!
//! The session runs over any byte stream (its read and write halves), not a TCP socket: the
//! listener hands it TCP today and may hand it uTP or an encrypted stream.
//!
//! Output is bounded per message, not per read: whole messages are taken from the input only
//! while the answers queued for the peer are under `OUT_CONTROL` (and the seeder's total under
//! its cap), and nothing more is read from a peer whose output is full, so a burst of cheap
//! requests (metadata, hashes, rejects) cannot queue more than a message's worth past the bound.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::config::SuperSeedMode;
use super::counts::Refusal;
use super::extended::ut_pex::{self, PexState};
use super::handshake::{HANDSHAKE_LEN, PLAIN_HEADER};
use super::listener::{Incoming, PeerRead, PeerWrite};
use super::mse::{self, rc4::Rc4, Encryption, Mode, MseError};
use super::published::Published;
use super::shared::{lock, Entry, Inner, SessionView, Slot};
use super::standing::Place;
use super::super_seed::{Reported, Waited};
use super::{Connection, Handshake, HashRequest, Message, PeerConfig, ReadJob, WireError};
use crate::egress::Channel;
use crate::metainfo::{Format, InfoHash};
use crate::storage::StorageError;

/// Data queued for the peer (and being read for it) below which the next disk read starts.
const OUT_LOW: usize = 512 * 1024;
/// Answers queued for the peer below which its next message is taken: past it, its messages
/// wait in the input buffer (and its socket) until the output drains.
const OUT_CONTROL: usize = 256 * 1024;
/// Output past which the peer is dropped: only reachable if the bounds above fail, since each
/// bound is checked before adding at most one message or one read.
const OUT_HARD: usize = 4 << 20;
/// One disk read (and the blocks framed from it): large enough for the page cache and disk to
/// be used well, small enough to share the rate limit fairly.
const READ_MAX: usize = 256 * 1024;
const READ_MAX_LIMITED: usize = 64 * 1024;
/// Batches read ahead per connection: hides the blocking pool's hand-off latency from clients
/// that keep few requests outstanding (aria2c).
const READS_IN_FLIGHT: usize = 4;
const KEEPALIVE: Duration = Duration::from_secs(90);
/// How long a connection that found the caps full may wait for room, answered but choked.
const PROBATION: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(500);

/// A batch of blocks being read and framed on the blocking pool.
type DiskRead = JoinHandle<Result<Vec<u8>, StorageError>>;
/// A block-layer hash answer being read and hashed on the blocking pool.
type HashJob = JoinHandle<Result<Option<Vec<[u8; 32]>>, StorageError>>;

#[derive(Debug, Error)]
enum SessionError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("no handshake within the timeout")]
    HandshakeTimeout,
    #[error("closed during the handshake")]
    HandshakeEof,
    #[error("unknown info hash {0}")]
    UnknownTorrent(String),
    #[error("encryption handshake: {0}")]
    Mse(#[from] MseError),
    #[error("the BitTorrent handshake names another torrent than its encryption handshake")]
    MseHashMismatch,
    #[error("no room under max_connections or max_connections_per_torrent")]
    NoRoom,
    #[error("closed while waiting for room, for newer connections")]
    PushedOut,
    #[error("closed to make room for a new peer (idle, uninterested or a seed)")]
    Evicted,
    #[error("the torrent was replaced or removed")]
    Retired,
    #[error("no whole message received for the idle timeout")]
    Idle,
    #[error("a message took longer than the frame timeout to arrive")]
    SlowFrame,
    #[error("peer accepts no data: send timeout")]
    SendStall,
    #[error("peer reads nothing: {0} bytes queued")]
    OutputOverflow(usize),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("disk read task failed")]
    Join,
    #[error("internal error (a bug): {0}")]
    Internal(&'static str),
}

/// Serves one peer until it leaves, misbehaves or `shutdown`.
pub(super) async fn run(inner: Arc<Inner>, incoming: Incoming, shutdown: CancellationToken) {
    let Incoming { rd, wr, addr, via } = incoming;
    match serve(&inner, rd, wr, addr, shutdown).await {
        Ok(mode) => debug!(%addr, via = via.name(), mode = mode.name(), "peer disconnected"),
        Err((e, mode)) => {
            if let Some(why) = e.refused() {
                inner.refusals.handshake(why);
            }
            let mode = mode.map_or("none", Mode::name);
            debug!(%addr, via = via.name(), mode, "peer dropped: {e}");
        }
    }
}

impl SessionError {
    /// The reason to count when the connection ended at its handshake.
    fn refused(&self) -> Option<Refusal> {
        Some(match self {
            SessionError::HandshakeTimeout => Refusal::Timeout,
            SessionError::HandshakeEof => Refusal::Closed,
            SessionError::UnknownTorrent(_) => Refusal::UnknownInfoHash,
            SessionError::Wire(WireError::BadHandshake) => Refusal::NotBitTorrent,
            SessionError::MseHashMismatch => Refusal::BadEncryption,
            SessionError::Mse(e) => match e {
                MseError::PlaintextRefused => Refusal::PlaintextRefused,
                MseError::EncryptionRefused | MseError::CryptoRefused(_) => {
                    Refusal::EncryptionRefused
                }
                MseError::UnknownInfoHash => Refusal::UnknownInfoHash,
                MseError::Timeout => Refusal::Timeout,
                MseError::Closed | MseError::Io(_) => Refusal::Closed,
                _ => Refusal::BadEncryption,
            },
            _ => return None,
        })
    }
}

/// Outgoing bytes as a queue of chunks (control messages and framed block batches), counted
/// in the seeder's total as well as here.
///
/// In RC4 mode the chunks are encrypted in place, the front one just before it is written
/// (so in the order the bytes go out, whatever order they were queued in).
struct Out<'a> {
    chunks: VecDeque<Vec<u8>>,
    pos: usize,
    bytes: usize,
    total: &'a std::sync::atomic::AtomicUsize,
    cipher: Option<Rc4>,
    /// Whether the front chunk is encrypted already.
    sealed: bool,
}

impl<'a> Out<'a> {
    fn new(total: &'a std::sync::atomic::AtomicUsize, cipher: Option<Rc4>) -> Self {
        Out {
            chunks: VecDeque::new(),
            pos: 0,
            bytes: 0,
            total,
            cipher,
            sealed: false,
        }
    }
    /// Encrypts `bytes` written around the queue (they go out before its front).
    fn seal(&mut self, bytes: &mut [u8]) {
        if let Some(c) = &mut self.cipher {
            c.apply_keystream(bytes);
        }
    }
    /// Encrypts the front chunk, once, before it is written.
    fn seal_front(&mut self) {
        if self.sealed {
            return;
        }
        if let (Some(c), Some(chunk)) = (&mut self.cipher, self.chunks.front_mut()) {
            c.apply_keystream(&mut chunk[self.pos..]);
            self.sealed = true;
        }
    }
    fn push(&mut self, chunk: Vec<u8>) {
        self.bytes += chunk.len();
        self.total.fetch_add(chunk.len(), Ordering::Relaxed);
        self.chunks.push_back(chunk);
    }
    /// Queues `msgs` in one chunk; returns its length.
    fn push_msgs(&mut self, msgs: Vec<Message>) -> usize {
        if msgs.is_empty() {
            return 0;
        }
        let mut buf = Vec::new();
        for m in msgs {
            m.write_to(&mut buf);
        }
        let n = buf.len();
        self.push(buf);
        n
    }
    fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| &c[self.pos..])
    }
    fn advance(&mut self, n: usize) {
        self.pos += n;
        self.bytes -= n;
        self.total.fetch_sub(n, Ordering::Relaxed);
        if self.chunks.front().is_some_and(|c| self.pos >= c.len()) {
            self.chunks.pop_front();
            self.pos = 0;
            self.sealed = false;
        }
    }
    fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

impl Drop for Out<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Bytes being read from disk for this peer, counted in the seeder's total until they are
/// queued (or the read is dropped with the session).
struct InFlight<'a> {
    bytes: usize,
    total: &'a std::sync::atomic::AtomicUsize,
}

impl<'a> InFlight<'a> {
    fn add(&mut self, n: usize) {
        self.bytes += n;
        self.total.fetch_add(n, Ordering::Relaxed);
    }
    fn done(&mut self, n: usize) {
        self.bytes -= n;
        self.total.fetch_sub(n, Ordering::Relaxed);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A slot under the connection caps, with the session registered with the choker; both are
/// given back when dropped.
struct Held<'a> {
    inner: &'a Inner,
    entry: &'a Entry,
    key: u64,
    slot: Arc<Slot>,
    /// The peer's address, on the torrent's wire while the slot is held (see `Offload`).
    ip: IpAddr,
}

impl<'a> Held<'a> {
    /// A slot for the session if `Inner::establish` gives one (making room for a peer that
    /// is `interested`): registered with the choker, told the peer's interest, and off the
    /// pending list.
    fn take(
        inner: &'a Inner,
        entry: &'a Arc<Entry>,
        view: &Arc<SessionView>,
        pending: &Pending<'_>,
        interested: bool,
    ) -> Option<Held<'a>> {
        if !inner.establish(entry, interested) {
            return None;
        }
        let (key, slot) = inner.register(view.clone());
        if interested {
            inner.set_interested(key, true);
        }
        inner.unpend(pending.id);
        entry.torrent.offload.joined_wire(pending.ip);
        Some(Held {
            inner,
            entry,
            key,
            slot,
            ip: pending.ip,
        })
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.inner.unregister(self.key);
        self.inner.release(self.entry);
        self.entry.torrent.offload.left_wire(self.ip);
    }
}

/// A connection on the pending list until it holds a slot or ends.
struct Pending<'a> {
    inner: &'a Inner,
    id: u64,
    ip: IpAddr,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.inner.unpend(self.id);
    }
}

async fn read_handshake<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Handshake, SessionError> {
    loop {
        if let Some(h) = Handshake::parse(buf)? {
            buf.drain(..HANDSHAKE_LEN);
            return Ok(h);
        }
        buf.reserve(4096);
        if rd.read_buf(buf).await? == 0 {
            return Err(SessionError::HandshakeEof);
        }
    }
}

/// Writes the front of the output queue, or flushes when it is empty.
async fn write_or_flush(wr: &mut PeerWrite, front: &[u8]) -> std::io::Result<usize> {
    if front.is_empty() {
        wr.flush().await.map(|()| 0)
    } else {
        wr.write(front).await
    }
}

/// A session's part in its torrent's super-seeding: what the peer reported to the picker
/// (taken back when it goes), and where it stands among the downloading peers (for what it is
/// shown, and its turn at a contended budget).
struct Seeding<'a> {
    reported: Option<Reported<'a>>,
    place: Place<'a>,
}

/// How long a peer is alone on its torrent before `auto` super-seeding shows it everything.
const ALONE: Duration = Duration::from_secs(3);

/// Super-seeding: shows the peer its next piece when it is ready for one; under `auto`, every
/// piece once it has been alone on its torrent a while (nobody to pass pieces to).
fn offer_next(
    inner: &Inner,
    entry: &Entry,
    view: &SessionView,
    conn: &mut Connection,
    out: &mut Out<'_>,
    seeding: &mut Seeding<'_>,
) {
    let Seeding { reported, place } = seeding;
    let Some(reported) = reported else {
        return;
    };
    let picker = reported.picker();
    let now = Instant::now();
    if inner.config.super_seed == SuperSeedMode::Auto
        && entry.connections.load(Ordering::Acquire) <= 1
        && now.saturating_duration_since(view.connected) >= ALONE
    {
        let shown = conn.reveal_all();
        if !shown.is_empty() {
            debug!("super-seeding: alone on the torrent, shown every piece");
            out.push_msgs(shown);
        }
        return;
    }
    // The web seed's claims, read once the peer is ready for a piece (most calls show none):
    // pieces its own client lately asked the web seed for are not shown (it asks no one else
    // for them until that request ends, see `egress::WEB_CLAIM_HOLD`), and other clients'
    // go out last (see `SuperSeed::pick`).
    let mut claims: Option<(Option<Range<u32>>, Waited)> = None;
    // While the first copy goes out, several pieces are shown at once (see
    // `Connection::offer_wanted`); so are pieces of any rarity to a peer the swarm does not
    // feed, and, while the wave has spare offers, rare ones to a peer behind the average (a
    // rate-limited libtorrent asks a peer for about as much as it lately got from it, so
    // one piece at a time leaves the seed's idle upload to the peers ahead).
    let (first_copy, spare) = {
        let p = picker.lock().unwrap_or_else(|e| e.into_inner());
        (p.first_copy(), p.spare())
    };
    let fed = conn.swarm_feeds(now);
    let wide = first_copy || !fed || (spare && place.behind() == Some(true));
    // Fill the peer's window of shown pieces, one rarest piece at a time.
    let mut shown_any = false;
    while let Some((mut has, new_haves)) = conn.offer_wanted(now, wide) {
        let (claimed, waited) = claims.get_or_insert_with(|| {
            let offload = &entry.torrent.offload;
            (
                offload.web_claim(view.ip, now),
                Waited::new(&offload.web_claims(now)),
            )
        });
        if let Some(r) = claimed {
            let end = (r.end as usize).min(has.len());
            if let Some(s) = has.get_mut(r.start as usize..end) {
                s.fill(true);
            }
        }
        let piece = {
            let mut picker = picker.lock().unwrap_or_else(|e| e.into_inner());
            for p in new_haves {
                reported.seen(&mut picker, p);
            }
            picker.pick(&has, waited, !fed)
        };
        match piece {
            Some(p) => {
                debug!(piece = p, "super-seeding: showing a piece");
                out.push_msgs(conn.offer(p, now));
                shown_any = true;
            }
            None => break,
        }
    }
    // libtorrent picks blocks to request when unchoked and when a block arrives, not on a
    // `have`: a peer asking us for nothing (what it was shown before, it took elsewhere or
    // waits for from its web seed) would leave these unrequested. An unchoke repeated makes
    // it pick again; to other clients it changes nothing.
    if shown_any && !conn.choking() && conn.queued() == 0 {
        out.push_msgs(vec![Message::Unchoke]);
    }
}

/// Takes whole messages from `inbuf` into the connection while the peer's answers have room
/// (checked before each message, so at most one message's answers pass the bound); returns how
/// many it took and whether it stopped for room. What it leaves is a partial frame, or messages
/// waiting for room.
fn consume(
    inbuf: &mut Vec<u8>,
    conn: &mut Connection,
    torrent: &Published,
    out: &mut Out<'_>,
    inner: &Inner,
    key: u64,
    view: &SessionView,
) -> Result<Taken, SessionError> {
    let mut at = 0;
    let mut taken = Taken::default();
    loop {
        if out.bytes >= OUT_CONTROL || !inner.has_room() {
            taken.stopped_for_room = true;
            break;
        }
        let Some((msg, used)) = Message::parse(&inbuf[at..], conn.max_frame())? else {
            break;
        };
        at += used;
        taken.messages += 1;
        // What keeps a connection from being evicted: wanting something (keep-alives, haves
        // and the like do not count).
        if matches!(
            msg,
            Message::Interested
                | Message::Request(_)
                | Message::HashRequest(_)
                | Message::Extended { .. }
        ) {
            view.touch();
        }
        let was = conn.interested();
        let sent = out.push_msgs(conn.on_message(msg, torrent)?);
        // Metadata and hash answers are upload too: later blocks wait for them.
        inner.charge_upload(sent as u64);
        if conn.interested() != was {
            inner.set_interested(key, conn.interested());
            view.interested.store(conn.interested(), Ordering::Relaxed);
        }
    }
    view.seed.store(conn.peer_is_seed(), Ordering::Relaxed);
    inbuf.drain(..at);
    Ok(taken)
}

/// What `consume` did.
#[derive(Default)]
struct Taken {
    messages: usize,
    stopped_for_room: bool,
}

async fn serve(
    inner: &Inner,
    rd: PeerRead,
    wr: PeerWrite,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<Mode, (SessionError, Option<Mode>)> {
    let cfg: &PeerConfig = &inner.config;
    let mut inbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // No slot yet: on the pending list, from which the oldest are pushed out by newcomers.
    let (pend_id, pushed_out) = inner.pend(addr.ip());
    let pending = Pending {
        inner,
        id: pend_id,
        ip: addr.ip(),
    };

    let handshake_timeout = PeerConfig::secs(cfg.handshake_timeout);
    let deadline = tokio::time::Instant::now() + handshake_timeout;
    let (rd, wr, tx, theirs, mode) = tokio::select! {
        _ = shutdown.cancelled() => return Ok(Mode::Plaintext),
        _ = pushed_out.cancelled() => return Err((SessionError::PushedOut, None)),
        r = tokio::time::timeout_at(deadline, open(inner, rd, wr, &mut inbuf, deadline)) => {
            r.map_err(|_| (SessionError::HandshakeTimeout, None))?.map_err(|e| (e, None))?
        }
    };
    inner.refusals.opened(mode);
    serve_open(
        inner, rd, wr, tx, theirs, inbuf, addr, pending, pushed_out, shutdown,
    )
    .await
    .map(|()| mode)
    .map_err(|e| (e, Some(mode)))
}

/// Reads the peer's handshake: a plaintext one, or an MSE handshake (per `peer.encryption`)
/// and the BitTorrent handshake inside it. Returns the halves to go on with (decrypting and
/// encrypting in RC4 mode) and what was agreed.
async fn open(
    inner: &Inner,
    mut rd: PeerRead,
    wr: PeerWrite,
    inbuf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<(PeerRead, PeerWrite, Option<Rc4>, Handshake, Mode), SessionError> {
    // Enough bytes to tell a plaintext handshake (its 20-byte header) from an MSE key, which
    // differs from it at some byte (a key may start with the header's first bytes).
    while inbuf.len() < PLAIN_HEADER.len() && PLAIN_HEADER.starts_with(inbuf) {
        inbuf.reserve(4096);
        if rd.read_buf(inbuf).await? == 0 {
            return Err(SessionError::HandshakeEof);
        }
    }
    let policy = inner.config.encryption;
    if inbuf.starts_with(PLAIN_HEADER) {
        if policy == Encryption::Require {
            return Err(MseError::PlaintextRefused.into());
        }
        let theirs = read_handshake(&mut rd, inbuf).await?;
        return Ok((rd, wr, None, theirs, Mode::Plaintext));
    }
    if policy == Encryption::Disable {
        return Err(WireError::BadHandshake.into());
    }
    let sniffed = std::mem::take(inbuf);
    let lookup = |req2: &[u8; 20]| inner.skey(req2).map(<[u8; 20]>::from);
    let accepted =
        mse::accept(tokio::io::join(rd, wr), &sniffed, policy, &lookup, deadline).await?;
    let asked = accepted.info_hash;
    let mode = accepted.mode;
    let (rd, wr) = accepted.stream.into_split(|joined| joined.into_inner());
    // From here the session encrypts in place in its own buffers (`Out`); the handshake
    // flushed everything it wrote.
    let (wr, tx) = wr.into_raw().ok_or(SessionError::Internal(
        "MSE bytes pending after the handshake",
    ))?;
    let (mut rd, wr): (PeerRead, PeerWrite) = (Box::new(rd), Box::new(wr));
    let theirs = read_handshake(&mut rd, inbuf).await?;
    if asked != Some(*theirs.info_hash.as_bytes()) {
        return Err(SessionError::MseHashMismatch);
    }
    Ok((rd, wr, tx, theirs, mode))
}

/// This session's peer in its torrent's swarm list (by its listen address), while it lasts.
struct Listed {
    entry: Arc<Entry>,
    id: usize,
}

impl Drop for Listed {
    fn drop(&mut self) {
        lock(&self.entry.swarm).remove(&self.id);
    }
}

/// PEX at a tick: lists the peer once its listen port is known, and when a message is due,
/// tells it the swarm's other peers (connected ones, and the tracker's).
fn exchange(
    inner: &Inner,
    listed: &Listed,
    state: &mut PexState,
    conn: &Connection,
    addr: SocketAddr,
    info_hash: &InfoHash,
    now: Instant,
) -> Vec<Message> {
    let ext = conn.peer_extensions();
    let mine = ext.listen_port.map(|p| SocketAddr::new(addr.ip(), p));
    if let Some(mine) = mine {
        lock(&listed.entry.swarm).entry(listed.id).or_insert(mine);
    }
    let Some(id) = ext.ut_pex else {
        return Vec::new();
    };
    if !state.is_due(now) {
        return Vec::new();
    }
    let mut swarm: Vec<SocketAddr> = lock(&listed.entry.swarm).values().copied().collect();
    let source = lock(&inner.swarm_peers).clone();
    if let Some(source) = source {
        swarm.extend(source.peers(info_hash, ut_pex::MAX_PER_MESSAGE));
    }
    match state.due(now, &swarm, mine) {
        Some((added, dropped)) => vec![Message::Extended {
            id,
            payload: ut_pex::encode(&added, &dropped),
        }],
        None => Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_open(
    inner: &Inner,
    mut rd: PeerRead,
    mut wr: PeerWrite,
    tx: Option<Rc4>,
    theirs: Handshake,
    mut inbuf: Vec<u8>,
    addr: SocketAddr,
    pending: Pending<'_>,
    pushed_out: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(), SessionError> {
    let cfg: &PeerConfig = &inner.config;
    let entry = inner
        .lookup(&theirs.info_hash)
        .ok_or_else(|| SessionError::UnknownTorrent(hex::encode(theirs.info_hash)))?;
    let view = Arc::new(SessionView {
        entry: Arc::as_ptr(&entry) as usize,
        ip: addr.ip(),
        connected: Instant::now(),
        interested: AtomicBool::new(false),
        seed: AtomicBool::new(false),
        last_useful_ms: AtomicU64::new(0),
        evict: CancellationToken::new(),
    });
    let torrent = entry.torrent.clone();
    let mut conn = Connection::new(
        &theirs,
        &torrent,
        cfg.max_request_queue,
        if entry.super_seed.is_some() {
            cfg.super_seed_window.max(1)
        } else {
            0
        },
    );

    // Its place is kept up to date before each read is asked of the budget.
    let mut seeding = Seeding {
        reported: entry.super_seed.as_ref().map(Reported::new),
        place: Place::new(&entry.standing, torrent.piece_count()),
    };

    let mut out = Out::new(&inner.queued, tx);
    let mut in_flight_bytes = InFlight {
        bytes: 0,
        total: &inner.queued,
    };
    let mut ours = Handshake::ours(
        theirs.info_hash,
        inner.peer_id,
        torrent.metainfo.format == Format::Hybrid,
    );
    // BEP 5: our DHT node's port, to peers that run one too; never for a private torrent
    // (BEP 27).
    let dht_port = (*lock(&inner.dht_port)).filter(|_| !torrent.metainfo.private);
    if dht_port.is_some() {
        ours = ours.with_dht();
    }
    let your_ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    out.push_msgs(conn.greeting(&torrent, Some(your_ip)));
    if let Some(port) = dht_port.filter(|_| theirs.dht()) {
        out.push_msgs(vec![Message::Port(port)]);
    }
    offer_next(inner, &entry, &view, &mut conn, &mut out, &mut seeding);

    // A slot now if both caps have room. Otherwise the peer is answered but waits, choked,
    // until it shows it wants something and a less useful session makes room for it, or its
    // probation ends (or newer connections push it out).
    let mut held = Held::take(inner, &entry, &view, &pending, false);
    let probation_ends = Instant::now() + PROBATION;
    // The handshake goes out once the slot is decided (a peer that has it may connect again at
    // once), and on its own, before the greeting: Transmission 3.00 over uTP with
    // encryption loses the messages that arrive in the same packet as the handshake.
    let send_timeout = PeerConfig::secs(cfg.send_timeout);
    let mut ours_bytes = ours.serialize();
    out.seal(&mut ours_bytes);
    let handshake = async {
        wr.write_all(&ours_bytes).await?;
        wr.flush().await
    };
    tokio::time::timeout(send_timeout, handshake)
        .await
        .map_err(|_| SessionError::SendStall)??;
    inner.egress.sent(Channel::Peer, HANDSHAKE_LEN as u64);
    torrent.offload.sent(Channel::Peer, HANDSHAKE_LEN as u64);

    // BEP 11 peer exchange, never on a private torrent (BEP 27).
    let mut pex = (!torrent.metainfo.private).then(|| PexState::new(Instant::now()));
    let listed = Listed {
        entry: entry.clone(),
        id: Arc::as_ptr(&view) as usize,
    };

    let idle = PeerConfig::secs(cfg.idle_timeout);
    let frame_timeout = PeerConfig::secs(cfg.frame_timeout);
    let read_max = if inner.limited() {
        READ_MAX_LIMITED
    } else {
        READ_MAX
    };
    // Only whole messages count as received: a peer trickling bytes that never finish a frame
    // must not hold its connection (and its slot) open forever.
    let mut last_recv = Instant::now();
    // Since when a partial frame has sat in `inbuf`.
    let mut partial_since: Option<Instant> = None;
    let mut last_sent = Instant::now();
    // Reads in flight, oldest first (up to READS_IN_FLIGHT), so the next batches are being read
    // while the last one is written, and frames still go out in request order.
    let mut reading: VecDeque<(DiskRead, usize)> = VecDeque::new();
    let mut waiting_job: Option<ReadJob> = None;
    // One block-layer hash request read and hashed at a time, after the hashing budget
    // granted it.
    let mut hashing: Option<(HashJob, HashRequest)> = None;
    let mut hash_waiting: Option<(HashRequest, Pin<Box<Sleep>>)> = None;
    let mut rate_sleep: Option<Pin<Box<Sleep>>> = None;
    let mut tick = tokio::time::interval(TICK);
    // Messages that came in the handshake's read are taken at once, not at the next read.
    let mut input_waiting = !inbuf.is_empty();
    // Written since the last flush: a writer that buffers (RC4 encrypts ahead of the socket)
    // sends its last bytes when flushed, once nothing else is queued.
    let mut unflushed = false;

    loop {
        if out.bytes > OUT_HARD {
            return Err(SessionError::OutputOverflow(out.bytes));
        }
        // Input left waiting for room (or sent with the handshake): take it now if there is
        // room, so it does not wait for the peer's next bytes.
        if input_waiting && out.bytes < OUT_CONTROL && inner.has_room() {
            let now = Instant::now();
            let key = held.as_ref().map_or(0, |h| h.key);
            let taken = consume(&mut inbuf, &mut conn, &torrent, &mut out, inner, key, &view)?;
            if taken.messages > 0 {
                last_recv = now;
                partial_since = None;
            }
            input_waiting = false;
            if !inbuf.is_empty() {
                // What is left is a partial frame, unless taking stopped for room: only then
                // can a whole message be waiting (looked at again only in that case).
                if taken.stopped_for_room && Message::parse(&inbuf, conn.max_frame())?.is_some() {
                    input_waiting = true;
                } else {
                    partial_since.get_or_insert(now);
                }
            }
            offer_next(inner, &entry, &view, &mut conn, &mut out, &mut seeding);
            if held.is_none() && conn.interested() {
                held = Held::take(inner, &entry, &view, &pending, true);
            }
        }
        seeding.place.set(conn.has_count());
        // Start the next disk read when the socket has room for it.
        let mut in_flight: usize = reading.iter().map(|r| r.1).sum();
        while reading.len() < READS_IN_FLIGHT
            && rate_sleep.is_none()
            && out.bytes + in_flight < OUT_LOW
            && inner.has_room()
            && !conn.choking()
        {
            let job = waiting_job
                .take()
                .or_else(|| conn.next_job(&torrent, read_max));
            if let Some(job) = job {
                match inner.take_upload(job.len as u64, &seeding.place) {
                    Ok(()) => {
                        let t = torrent.clone();
                        let len = job.len;
                        let handle =
                            tokio::task::spawn_blocking(move || job.read_frames(&t.content));
                        reading.push_back((handle, len));
                        in_flight += len;
                        in_flight_bytes.add(len);
                    }
                    Err(wait) => {
                        waiting_job = Some(job);
                        rate_sleep = Some(Box::pin(tokio::time::sleep(wait)));
                    }
                }
            } else {
                break;
            }
        }

        if hashing.is_none() && hash_waiting.is_none() {
            if let Some(r) = conn.next_hash_job() {
                let cost = torrent
                    .v2_trees
                    .get(&r.pieces_root)
                    .map_or(0, |t| t.disk_cost(&r));
                match inner.take_hash_work(cost) {
                    Ok(()) => {
                        let t = torrent.clone();
                        let handle = tokio::task::spawn_blocking(move || {
                            match t.v2_trees.get(&r.pieces_root) {
                                Some(tree) => tree.answer_from_disk(&r, &t.content),
                                None => Ok(None),
                            }
                        });
                        hashing = Some((handle, r));
                    }
                    Err(wait) => hash_waiting = Some((r, Box::pin(tokio::time::sleep(wait)))),
                }
            }
        }

        // In RC4 mode: the next bytes to write, encrypted where they lie.
        out.seal_front();
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = async { hash_waiting.as_mut().map(|h| &mut h.1).expect("guarded").await }, if hash_waiting.is_some() => {
                // The budget has room again: the request goes back to the front of the queue.
                if let Some((r, _)) = hash_waiting.take() {
                    conn.retry_hash_job(r);
                }
            }
            done = async { hashing.as_mut().map(|h| &mut h.0).expect("guarded").await }, if hashing.is_some() => {
                let Some((_, request)) = hashing.take() else { continue };
                match done {
                    Ok(Ok(Some(hashes))) => {
                        let sent = out.push_msgs(vec![Message::Hashes { request, hashes }]);
                        inner.charge_upload(sent as u64);
                    }
                    Ok(Ok(None)) => {
                        out.push_msgs(vec![Message::HashReject(request)]);
                    }
                    Ok(Err(e @ StorageError::Changed { .. })) => {
                        inner.retire(&theirs.info_hash, &e.to_string());
                        return Err(e.into());
                    }
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err(SessionError::Join),
                }
            }
            _ = entry.retired.cancelled() => return Err(SessionError::Retired),
            _ = view.evict.cancelled() => return Err(SessionError::Evicted),
            // Nothing is read from a peer whose answers are waiting for room: its requests stay
            // in its socket (and TCP slows it down) rather than in our memory.
            r = rd.read_buf(&mut inbuf), if !input_waiting && inbuf.len() < conn.max_frame() as usize + 4 => {
                if r? == 0 {
                    return Ok(());
                }
                input_waiting = true;
                inbuf.reserve(32 * 1024);
            }
            w = write_or_flush(&mut wr, out.front()), if !out.is_empty() || unflushed => {
                let n = w?;
                unflushed = n > 0;
                out.advance(n);
                // What left for the socket, counted as the publisher's egress.
                inner.egress.sent(Channel::Peer, n as u64);
                torrent.offload.sent(Channel::Peer, n as u64);
                last_sent = Instant::now();
            }
            done = async { reading.front_mut().map(|r| &mut r.0).expect("guarded").await }, if !reading.is_empty() => {
                let len = reading.pop_front().map_or(0, |r| r.1);
                in_flight_bytes.done(len);
                match done {
                    Ok(Ok(frames)) => {
                        if let Some(h) = &held {
                            inner.sent(h.key, len as u64);
                        }
                        out.push(frames);
                    }
                    Ok(Err(e @ StorageError::Changed { .. })) => {
                        inner.retire(&theirs.info_hash, &e.to_string());
                        return Err(e.into());
                    }
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err(SessionError::Join),
                }
            }
            _ = async { rate_sleep.as_mut().expect("guarded").await }, if rate_sleep.is_some() => {
                rate_sleep = None;
            }
            _ = pushed_out.cancelled(), if held.is_none() => return Err(SessionError::PushedOut),
            _ = async { held.as_ref().expect("guarded").slot.notify.notified().await }, if held.is_some() => {
                let unchoke = held.as_ref().is_some_and(|h| h.slot.unchoked.load(Ordering::Acquire));
                // Rejects of a dropped queue: small and bounded by the request queue.
                out.push_msgs(conn.set_choking(!unchoke));
                if !unchoke {
                    waiting_job = None;
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if held.is_none() {
                    // Room may have been freed meanwhile.
                    held = Held::take(inner, &entry, &view, &pending, conn.interested());
                    if held.is_none() && now > probation_ends {
                        return Err(SessionError::NoRoom);
                    }
                }
                if now.duration_since(last_recv) > idle {
                    return Err(SessionError::Idle);
                }
                if partial_since.is_some_and(|t| now.duration_since(t) > frame_timeout) {
                    return Err(SessionError::SlowFrame);
                }
                if !out.is_empty() && now.duration_since(last_sent) > send_timeout {
                    return Err(SessionError::SendStall);
                }
                if out.is_empty() && now.duration_since(last_sent) > KEEPALIVE {
                    out.push_msgs(vec![Message::KeepAlive]);
                }
                // A shown piece left unrequested frees its place in time (super-seeding).
                offer_next(inner, &entry, &view, &mut conn, &mut out, &mut seeding);
                // A peer's DHT node (BEP 5 PORT), for a public torrent: our node pings it.
                if let Some(port) = conn.take_dht_port().filter(|_| !torrent.metainfo.private) {
                    let nodes = lock(&inner.dht_nodes).clone();
                    if let Some(nodes) = nodes {
                        nodes.heard_of(SocketAddr::new(addr.ip(), port));
                    }
                }
                if let Some(state) = pex.as_mut() {
                    out.push_msgs(exchange(inner, &listed, state, &conn, addr, &theirs.info_hash, now));
                }
            }
        }
    }
}
