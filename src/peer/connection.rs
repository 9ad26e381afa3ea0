//! One peer connection's state, with no socket in it: messages in, messages and disk-read jobs
//! out. The I/O shell (`session`) feeds it what the peer sent and writes what it returns.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::extended::{self, hashpiece, ut_metadata, OurHandshake, PeerExtensions};
use super::message::{write_piece_header, BlockRef, HashRequest, Message, BLOCK, MAX_FRAME};

/// Block-layer hash requests a peer may have waiting for the disk; more are rejected.
const MAX_HASH_JOBS: usize = 4;
use super::published::Published;
use super::{Handshake, WireError};
use crate::storage::{Content, StorageError};

/// A batch of consecutive requested blocks, read from disk in one positioned read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadJob {
    /// Offset of the first block in the piece space.
    pub start: u64,
    /// Bytes of block data in the batch.
    pub len: usize,
    /// Per block, in order: the frame bytes before its data, and its data length.
    pub blocks: Vec<(Vec<u8>, u32)>,
}

impl ReadJob {
    /// Reads the batch with one positioned read (per file it spans) into the tail of the frame
    /// buffer, then slides each block left into place behind its header. Blocking.
    pub fn read_frames(&self, content: &Content) -> Result<Vec<u8>, StorageError> {
        let heads: usize = self.blocks.iter().map(|(h, _)| h.len()).sum();
        let mut out = vec![0u8; heads + self.len];
        content.read_at(self.start, &mut out[heads..])?;
        // The gap between where block i goes and where it was read is the headers still to
        // write (i and after), so a header never lands on data not yet moved.
        let (mut dst, mut src) = (0, heads);
        for (head, len) in &self.blocks {
            let len = *len as usize;
            out[dst..dst + head.len()].copy_from_slice(head);
            dst += head.len();
            out.copy_within(src..src + len, dst);
            dst += len;
            src += len;
        }
        Ok(out)
    }

    /// Frames the blocks around `data` (the `len` bytes read from `start`).
    pub fn frames(&self, data: &[u8]) -> Vec<u8> {
        let total: usize = self.blocks.iter().map(|(h, l)| h.len() + *l as usize).sum();
        let mut out = Vec::with_capacity(total);
        let mut at = 0;
        for (head, len) in &self.blocks {
            out.extend_from_slice(head);
            out.extend_from_slice(&data[at..at + *len as usize]);
            at += *len as usize;
        }
        out
    }
}

/// How long a piece shown to an unchoked peer may go unrequested before it stops holding the
/// peer's window: a client may take it elsewhere (libtorrent claims whole ranges for its web
/// seed), and waiting for it to report the piece would stall the peer's share of the seed.
const SHOWN_UNREQUESTED: Duration = Duration::from_secs(2);
/// Pieces shown to a super-seeded peer at a time while the first copy is still going out.
const WIDE_WINDOW: usize = 8;
/// How long a super-seeded peer may go without a piece from anyone but us before the seed stops
/// counting on the swarm for it: it may reach none of the peers that have the rest (NAT), or
/// they keep it choked.
const CUT_OFF: Duration = Duration::from_secs(10);

/// A piece shown to a super-seeded peer.
#[derive(Debug, Clone)]
struct Shown {
    piece: u32,
    at: Instant,
    /// The peer asked us for a block of it.
    requested: bool,
}

/// BEP 16 state of one super-seeded peer.
#[derive(Debug, Clone)]
struct SuperPeer {
    has: Vec<bool>,
    /// Pieces shown and not yet reported had. Those requested, or shown lately, are held to
    /// `window`: a few at a time keep the peer's requests flowing while each piece is still
    /// handed out rarest first.
    shown: Vec<Shown>,
    window: usize,
    /// Pieces the peer reported since the shell last collected them.
    new_haves: Vec<u32>,
    /// How many of `has` are set.
    count: u64,
    /// The peer reported a piece it was not shown (so got elsewhere) since the shell last
    /// looked (`swarm_feeds`).
    fed: bool,
    /// When the peer last got a piece elsewhere, as the shell saw it (first: when it looked
    /// first).
    fed_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Connection {
    fast: bool,
    extended: bool,
    peer_ext: PeerExtensions,
    /// We are choking the peer.
    choking: bool,
    /// The peer is interested in our pieces.
    interested: bool,
    /// The peer's DHT port (BEP 5 PORT), until the session takes it.
    dht_port: Option<u16>,
    queue: VecDeque<BlockRef>,
    max_queue: usize,
    /// Requests refused while choked since the last unchoke: a peer that keeps sending them
    /// is flooding.
    refused: usize,
    piece_count: u32,
    piece_length: u64,
    super_peer: Option<SuperPeer>,
    /// Block-layer hash requests waiting to be answered from disk (bounded).
    hash_jobs: VecDeque<HashRequest>,
    /// End of the requestable piece space. A v2-only torrent's last piece counts as whole: its
    /// tail, like the gaps between files, is zeros, and libtorrent requests it as such.
    total: u64,
    /// The peer said it has every piece (HaveAll, or a full bitfield): it wants nothing of us.
    peer_seed: bool,
}

impl Connection {
    /// After the peer's handshake `theirs` for `torrent`; `super_seed` > 0 hides our pieces
    /// (BEP 16), showing that many at a time.
    pub fn new(
        theirs: &Handshake,
        torrent: &Published,
        max_queue: usize,
        super_seed: usize,
    ) -> Self {
        let layout = torrent.content.layout();
        let piece_count = torrent.piece_count();
        Connection {
            fast: theirs.fast(),
            extended: theirs.extended(),
            peer_ext: PeerExtensions::default(),
            choking: true,
            interested: false,
            dht_port: None,
            queue: VecDeque::new(),
            max_queue: max_queue.max(1),
            refused: 0,
            piece_count,
            hash_jobs: VecDeque::new(),
            super_peer: (super_seed > 0).then(|| SuperPeer {
                has: vec![false; piece_count as usize],
                shown: Vec::new(),
                window: super_seed,
                new_haves: Vec::new(),
                count: 0,
                fed: false,
                fed_at: None,
            }),
            piece_length: layout.piece_length,
            peer_seed: false,
            total: if torrent.metainfo.format == crate::metainfo::Format::V2 {
                layout.piece_count() * layout.piece_length
            } else {
                layout.total
            },
        }
    }

    /// Largest frame accepted from this peer: one block's piece message, or its bitfield.
    pub fn max_frame(&self) -> u32 {
        MAX_FRAME.max(1 + self.piece_count.div_ceil(8))
    }

    pub fn interested(&self) -> bool {
        self.interested
    }

    pub fn choking(&self) -> bool {
        self.choking
    }

    /// The DHT port the peer sent (BEP 5), once.
    pub fn take_dht_port(&mut self) -> Option<u16> {
        self.dht_port.take()
    }

    /// What the peer's extended handshake said (ids, listen port).
    pub fn peer_extensions(&self) -> PeerExtensions {
        self.peer_ext
    }

    /// The peer has every piece: a seed like us, which needs nothing from us.
    pub fn peer_is_seed(&self) -> bool {
        self.peer_seed
    }

    /// How many pieces the peer reported having, while super-seeding (which follows them).
    pub fn has_count(&self) -> Option<u64> {
        self.super_peer.as_ref().map(|sp| sp.count)
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// What we send right after our handshake: HaveAll to a fast peer, a full bitfield to
    /// others (BEP 6 wants it first), then our extended handshake.
    pub fn greeting(&self, torrent: &Published, your_ip: Option<Vec<u8>>) -> Vec<Message> {
        let mut out = Vec::new();
        if self.super_peer.is_some() {
            // Super-seeding: we pose as a peer with nothing; pieces are shown one by one.
            if self.fast {
                out.push(Message::HaveNone);
            }
        } else if self.fast {
            out.push(Message::HaveAll);
        } else {
            out.push(Message::Bitfield(full_bitfield(self.piece_count)));
        }
        if self.extended {
            let hs = OurHandshake {
                metadata_size: Some(torrent.metainfo.info_bytes.len() as u64),
                hashpiece: torrent.bep30.is_some(),
                reqq: self.max_queue as u32,
                client: concat!("bitseed ", env!("CARGO_PKG_VERSION")).into(),
                your_ip,
                // BEP 27: no peer exchange on a private torrent.
                pex: !torrent.metainfo.private,
            };
            out.push(Message::Extended {
                id: extended::HANDSHAKE_ID,
                payload: hs.encode(),
            });
        }
        out
    }

    /// Chokes or unchokes the peer. Choking drops its queue: a fast peer gets a reject for each
    /// request (BEP 6), others know that a choke discards requests (BEP 3).
    pub fn set_choking(&mut self, choke: bool) -> Vec<Message> {
        if choke == self.choking {
            return Vec::new();
        }
        self.choking = choke;
        if !choke {
            self.refused = 0;
            return vec![Message::Unchoke];
        }
        let mut out = vec![Message::Choke];
        let dropped = std::mem::take(&mut self.queue);
        if self.fast {
            out.extend(dropped.into_iter().map(Message::Reject));
        }
        out
    }

    fn piece_len(&self, index: u32) -> u64 {
        let start = u64::from(index) * self.piece_length;
        (start + self.piece_length)
            .min(self.total)
            .saturating_sub(start)
    }

    /// Handles one message from the peer; returns what to send back now.
    pub fn on_message(
        &mut self,
        msg: Message,
        torrent: &Published,
    ) -> Result<Vec<Message>, WireError> {
        let mut out = Vec::new();
        match msg {
            Message::Port(port) if port != 0 => self.dht_port = Some(port),
            Message::Interested => self.interested = true,
            Message::NotInterested => self.interested = false,
            Message::Request(r) => {
                if r.index >= self.piece_count
                    || r.length == 0
                    || r.length > BLOCK
                    || u64::from(r.begin) + u64::from(r.length) > self.piece_len(r.index)
                {
                    return Err(WireError::BadRequest(r));
                }
                if self.queue.len() + self.refused >= 2 * self.max_queue {
                    return Err(WireError::RequestFlood(self.queue.len() + self.refused));
                }
                let hidden = self.super_peer.as_mut().is_some_and(|sp| {
                    let shown = sp.shown.iter_mut().find(|s| s.piece == r.index);
                    let had = sp.has[r.index as usize];
                    match shown {
                        Some(s) => {
                            s.requested = true;
                            false
                        }
                        None => !had,
                    }
                });
                if self.choking || hidden || self.queue.len() >= self.max_queue {
                    self.refused += 1;
                    if self.fast {
                        out.push(Message::Reject(r));
                    }
                } else if !self.queue.contains(&r) {
                    self.queue.push_back(r);
                } else {
                    // A duplicate: refused, and counted, so repeating requests is a flood too.
                    self.refused += 1;
                    if self.fast {
                        out.push(Message::Reject(r));
                    }
                }
            }
            Message::Cancel(r) => {
                if let Some(at) = self.queue.iter().position(|q| *q == r) {
                    self.queue.remove(at);
                    if self.fast {
                        out.push(Message::Reject(r));
                    }
                }
            }
            Message::Piece { .. } => return Err(WireError::Unsolicited("piece")),
            Message::Extended { id, payload } => {
                self.on_extended(id, &payload, torrent, &mut out)?
            }
            Message::Have(i) => self.peer_has(&[i]),
            Message::HaveAll => {
                self.peer_seed = true;
                let all: Vec<u32> = (0..self.piece_count).collect();
                self.peer_has(&all);
            }
            Message::Bitfield(bits) => {
                let set: Vec<u32> = (0..self.piece_count)
                    .filter(|&i| {
                        bits.get(i as usize / 8)
                            .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
                    })
                    .collect();
                self.peer_seed = set.len() as u32 == self.piece_count;
                self.peer_has(&set);
            }
            Message::HashRequest(r) => {
                let tree = torrent.v2_trees.get(&r.pieces_root);
                match tree.and_then(|t| t.answer(&r)) {
                    Some(hashes) => out.push(Message::Hashes { request: r, hashes }),
                    None if tree.is_some_and(|t| t.leaf_plan(&r).is_some())
                        && self.hash_jobs.len() < MAX_HASH_JOBS =>
                    {
                        self.hash_jobs.push_back(r);
                    }
                    None => out.push(Message::HashReject(r)),
                }
            }
            // A seed needs nothing else a peer says: what it has, its choking of us, hashes we
            // never asked for.
            _ => {}
        }
        Ok(out)
    }

    fn on_extended(
        &mut self,
        id: u8,
        payload: &[u8],
        torrent: &Published,
        out: &mut Vec<Message>,
    ) -> Result<(), WireError> {
        if !self.extended {
            return Err(WireError::Unsolicited("extended message without BEP 10"));
        }
        match id {
            extended::HANDSHAKE_ID => self.peer_ext = PeerExtensions::parse(payload)?,
            extended::UT_METADATA_ID => {
                if let ut_metadata::Incoming::Request(piece) = ut_metadata::parse(payload)? {
                    if let Some(their_id) = self.peer_ext.ut_metadata {
                        out.push(Message::Extended {
                            id: their_id,
                            payload: ut_metadata::answer(piece, &torrent.metainfo.info_bytes),
                        });
                    }
                }
            }
            // Tr_hashpiece sent to a seed, or ids we never gave out: nothing to do.
            _ => {}
        }
        Ok(())
    }

    fn peer_has(&mut self, pieces: &[u32]) {
        let Some(sp) = self.super_peer.as_mut() else {
            return;
        };
        for &p in pieces {
            let Some(slot) = sp.has.get_mut(p as usize) else {
                continue;
            };
            if !*slot {
                *slot = true;
                sp.count += 1;
                sp.new_haves.push(p);
                sp.fed |= !sp.shown.iter().any(|s| s.piece == p);
            }
            sp.shown.retain(|s| s.piece != p);
        }
    }

    /// The next block-layer hash request to answer from disk (`v2_hashes::answer_from_disk`).
    pub fn next_hash_job(&mut self) -> Option<HashRequest> {
        self.hash_jobs.pop_front()
    }

    /// Puts back a hash request taken by `next_hash_job` that could not start yet.
    pub fn retry_hash_job(&mut self, r: HashRequest) {
        self.hash_jobs.push_front(r);
    }

    /// Super-seeding: when the peer is ready for another piece (fewer than its window shown
    /// and not yet had, not counting pieces it left unrequested while unchoked), returns what
    /// it has and is shown (for the torrent-wide picker) and the pieces it reported since the
    /// last call.
    ///
    /// `wide` (the shell's call: while the first copy goes out, such pieces duplicate nothing)
    /// makes the window at least `WIDE_WINDOW`: one piece at a time leaves the seed's upload
    /// idle between a peer's `have` and its next request (a rate-limited libtorrent reads every
    /// half second).
    pub fn offer_wanted(&mut self, now: Instant, wide: bool) -> Option<(Vec<bool>, Vec<u32>)> {
        let choking = self.choking;
        let sp = self.super_peer.as_mut()?;
        let window = if wide {
            sp.window.max(WIDE_WINDOW)
        } else {
            sp.window
        };
        let holding = sp
            .shown
            .iter()
            .filter(|s| {
                s.requested || choking || now.saturating_duration_since(s.at) < SHOWN_UNREQUESTED
            })
            .count();
        if holding >= window {
            return None;
        }
        let mut known = sp.has.clone();
        for s in &sp.shown {
            if let Some(k) = known.get_mut(s.piece as usize) {
                *k = true;
            }
        }
        Some((known, std::mem::take(&mut sp.new_haves)))
    }

    /// Super-seeding: whether the swarm feeds the peer, so the seed may leave it pieces that
    /// have spread: it got a piece from someone else within `CUT_OFF`, or it is new, or it
    /// lacks nothing.
    pub fn swarm_feeds(&mut self, now: Instant) -> bool {
        let Some(sp) = self.super_peer.as_mut() else {
            return true;
        };
        let at = sp.fed_at.get_or_insert(now);
        if std::mem::take(&mut sp.fed) {
            *at = now;
        }
        now.saturating_duration_since(*at) < CUT_OFF || sp.count == sp.has.len() as u64
    }

    /// Shows the peer `piece` (super-seeding).
    pub fn offer(&mut self, piece: u32, now: Instant) -> Vec<Message> {
        let fast = self.fast;
        let Some(sp) = self.super_peer.as_mut() else {
            return Vec::new();
        };
        sp.shown.push(Shown {
            piece,
            at: now,
            requested: false,
        });
        let last = sp
            .has
            .iter()
            .enumerate()
            .all(|(i, &h)| h || sp.shown.iter().any(|s| s.piece == i as u32));
        if last && fast {
            // The peer lacks only this piece, so we now look like a seed. libtorrent drops a peer
            // that turns into a seed through a `have` before it recomputes its interest, but
            // handles HaveAll like any seed's greeting.
            vec![Message::HaveAll]
        } else {
            vec![Message::Have(piece)]
        }
    }

    /// Ends super-seeding for this peer: shows it every piece (HaveAll to a fast peer, a Have
    /// for each piece it lacks otherwise).
    pub fn reveal_all(&mut self) -> Vec<Message> {
        let Some(sp) = self.super_peer.take() else {
            return Vec::new();
        };
        if self.fast {
            return vec![Message::HaveAll];
        }
        let shown = |i: u32| sp.shown.iter().any(|s| s.piece == i);
        (0..self.piece_count)
            .filter(|&i| !sp.has[i as usize] && !shown(i))
            .map(Message::Have)
            .collect()
    }

    /// The next batch of queued requests to read, up to `max_bytes` of data (at least one block).
    pub fn next_job(&mut self, torrent: &Published, max_bytes: usize) -> Option<ReadJob> {
        if self.choking {
            return None;
        }
        let first = self.queue.pop_front()?;
        let start = u64::from(first.index) * self.piece_length + u64::from(first.begin);
        let mut job = ReadJob {
            start,
            len: 0,
            blocks: Vec::new(),
        };
        let hashpiece = torrent.bep30.as_ref().zip(self.peer_ext.hashpiece);
        let push = |r: BlockRef, job: &mut ReadJob| {
            let mut head = Vec::with_capacity(13);
            match hashpiece {
                Some((tree, ext_id)) => {
                    // BEP 30: only a piece's first block carries the hash list.
                    let list = if r.begin == 0 {
                        tree.hash_list(r.index).unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    let payload_head = hashpiece::header(r.index, r.begin, &list);
                    let len = 2 + payload_head.len() as u32 + r.length;
                    head.extend_from_slice(&len.to_be_bytes());
                    head.push(20);
                    head.push(ext_id);
                    head.extend_from_slice(&payload_head);
                }
                None => write_piece_header(&mut head, r.index, r.begin, r.length),
            }
            job.blocks.push((head, r.length));
            job.len += r.length as usize;
        };
        push(first, &mut job);
        while let Some(next) = self.queue.front().copied() {
            let at = u64::from(next.index) * self.piece_length + u64::from(next.begin);
            if at != job.start + job.len as u64 || job.len + next.length as usize > max_bytes {
                break;
            }
            self.queue.pop_front();
            push(next, &mut job);
        }
        Some(job)
    }
}

fn full_bitfield(pieces: u32) -> Vec<u8> {
    let mut bits = vec![0xFFu8; pieces.div_ceil(8) as usize];
    let spare = (bits.len() * 8) as u32 - pieces;
    if let Some(last) = bits.last_mut() {
        *last = 0xFFu8.checked_shl(spare).unwrap_or(0);
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::InfoHash;
    use std::path::Path;

    fn torrent(dir: &Path) -> Published {
        crate::peer::test_support::v1_torrent(dir)
    }

    fn peer(fast: bool) -> Handshake {
        let mut h = Handshake::ours(InfoHash::new([0; 20]), [1; 20], false);
        if !fast {
            h.reserved[7] = 0;
        }
        h
    }

    fn req(index: u32, begin: u32, length: u32) -> Message {
        Message::Request(BlockRef {
            index,
            begin,
            length,
        })
    }

    /// BEP 11 is offered in the extended handshake, except for a private torrent (BEP 27).
    #[test]
    fn pex_is_offered_for_public_torrents_only() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let offers_pex = |t: &Published| {
            let g = Connection::new(&peer(true), t, 10, 0).greeting(t, None);
            let Some(Message::Extended { payload, .. }) = g.last() else {
                panic!("no extended handshake")
            };
            payload.windows(6).any(|w| w == b"ut_pex")
        };
        assert!(offers_pex(&t));
        let mut meta = (*t.metainfo).clone();
        meta.private = true;
        let private = Published::open(meta, &dir.path().join("data.bin")).unwrap();
        assert!(!offers_pex(&private));
    }

    #[test]
    fn greets_fast_peers_with_have_all_and_others_with_a_bitfield() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let fast = Connection::new(&peer(true), &t, 10, 0);
        let g = fast.greeting(&t, None);
        assert_eq!(g[0], Message::HaveAll);
        assert!(matches!(&g[1], Message::Extended { id: 0, .. }));
        let slow = Connection::new(&peer(false), &t, 10, 0);
        assert_eq!(
            slow.greeting(&t, None)[0],
            Message::Bitfield(vec![0b1110_0000])
        );
        assert_eq!(full_bitfield(16), vec![0xFF, 0xFF]);
        assert_eq!(full_bitfield(9), vec![0xFF, 0x80]);
    }

    #[test]
    fn requests_are_queued_only_when_unchoked_and_served_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let mut c = Connection::new(&peer(true), &t, 10, 0);
        c.on_message(Message::Interested, &t).unwrap();
        assert!(c.interested());
        // Choked: a fast peer's request is rejected.
        assert_eq!(
            c.on_message(req(0, 0, 16384), &t).unwrap(),
            vec![Message::Reject(BlockRef {
                index: 0,
                begin: 0,
                length: 16384
            })]
        );
        assert_eq!(c.set_choking(false), vec![Message::Unchoke]);
        for (i, len) in [(0, 16384), (1, 16384), (2, 40_000 - 32768)] {
            assert!(c.on_message(req(i, 0, len), &t).unwrap().is_empty());
        }
        let job = c.next_job(&t, 32768).unwrap();
        assert_eq!((job.start, job.len, job.blocks.len()), (0, 32768, 2));
        let mut head = vec![0, 0, 0x40, 0x09, 7, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(job.blocks[1].0, head);
        let job = c.next_job(&t, 32768).unwrap();
        assert_eq!((job.start, job.len), (32768, 40_000 - 32768));
        assert!(c.next_job(&t, 32768).is_none());

        // Framing puts each header before its block, read straight from disk or around data.
        let frames = job.frames(&vec![9u8; job.len]);
        let from_disk = job.read_frames(&t.content).unwrap();
        assert_eq!(from_disk[..13], frames[..13]);
        let on_disk = std::fs::read(dir.path().join("data.bin")).unwrap();
        assert_eq!(from_disk[13..], on_disk[32768..]);
        // A batch of several blocks: the same bytes as framing around one plain read.
        let mut c = Connection::new(&peer(true), &t, 10, 0);
        c.set_choking(false);
        for (i, begin) in [(0, 0), (0, 100), (0, 16000), (1, 0)] {
            let len = if i == 1 { 16384 } else { 100 };
            c.on_message(req(i, begin, len), &t).unwrap();
        }
        let batch = c.next_job(&t, 1 << 20).unwrap();
        assert_eq!((batch.start, batch.blocks.len()), (0, 2), "contiguous only");
        let mut data = vec![0u8; batch.len];
        t.content.read_at(batch.start, &mut data).unwrap();
        assert_eq!(batch.read_frames(&t.content).unwrap(), batch.frames(&data));
        let tail = c.next_job(&t, 1 << 20).unwrap();
        assert_eq!(tail.start, 16000);
        let mut data = vec![0u8; tail.len];
        t.content.read_at(tail.start, &mut data).unwrap();
        assert_eq!(tail.read_frames(&t.content).unwrap(), tail.frames(&data));
        head = vec![0, 0, 0x1c, 0x49, 7, 0, 0, 0, 2, 0, 0, 0, 0];
        assert_eq!(&frames[..13], &head[..]);
        let (m, used) = Message::parse(&frames, c.max_frame()).unwrap().unwrap();
        assert_eq!(used, frames.len());
        assert!(matches!(m, Message::Piece { index: 2, begin: 0, data } if data.len() == 7232));
    }

    #[test]
    fn bad_requests_and_floods_are_protocol_errors() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let mut c = Connection::new(&peer(false), &t, 4, 0);
        c.set_choking(false);
        assert!(
            c.on_message(req(3, 0, 16384), &t).is_err(),
            "past the last piece"
        );
        assert!(c.on_message(req(2, 0, 16384), &t).is_err(), "past the end");
        assert!(c.on_message(req(0, 0, 16385), &t).is_err(), "over 16 KiB");
        assert!(c.on_message(req(0, 0, 0), &t).is_err());
        assert!(c.on_message(req(0, u32::MAX, 16384), &t).is_err());
        assert!(c
            .on_message(
                Message::Piece {
                    index: 0,
                    begin: 0,
                    data: vec![]
                },
                &t
            )
            .is_err());
        for i in 0..8u32 {
            c.on_message(req(0, i, 1), &t).unwrap();
        }
        assert_eq!(
            c.queued(),
            4,
            "over the queue, a non-fast peer's requests are dropped"
        );
        assert!(matches!(
            c.on_message(req(0, 9, 1), &t),
            Err(WireError::RequestFlood(8))
        ));
        // Twice the advertised queue is a flood... of a queue that is kept full.
        let mut f = Connection::new(&peer(false), &t, 1, 0);
        f.set_choking(false);
        f.queue.extend(
            [BlockRef {
                index: 0,
                begin: 0,
                length: 1,
            }; 2],
        );
        assert!(matches!(
            f.on_message(req(0, 5, 1), &t),
            Err(WireError::RequestFlood(2))
        ));
    }

    #[test]
    fn choke_rejects_queued_requests_of_fast_peers_and_cancel_answers() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let mut c = Connection::new(&peer(true), &t, 10, 0);
        c.set_choking(false);
        c.on_message(req(0, 0, 100), &t).unwrap();
        c.on_message(req(0, 100, 100), &t).unwrap();
        let b = BlockRef {
            index: 0,
            begin: 0,
            length: 100,
        };
        assert_eq!(
            c.on_message(Message::Cancel(b), &t).unwrap(),
            vec![Message::Reject(b)]
        );
        let out = c.set_choking(true);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], Message::Choke);
        assert_eq!(c.queued(), 0);
        assert!(c.next_job(&t, 1 << 20).is_none());
    }

    #[test]
    fn super_seeding_shows_one_piece_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let mut c = Connection::new(&peer(true), &t, 10, 1);
        let t0 = Instant::now();
        assert_eq!(c.greeting(&t, None)[0], Message::HaveNone);
        let (has, new) = c.offer_wanted(t0, false).unwrap();
        assert_eq!((has.to_vec(), new), (vec![false; 3], vec![]));
        assert_eq!(c.offer(1, t0), vec![Message::Have(1)]);
        assert!(c.offer_wanted(t0, false).is_none(), "one shown at a time");
        c.set_choking(false);
        // A piece not shown is refused; the shown one is served.
        assert_eq!(c.on_message(req(0, 0, 100), &t).unwrap().len(), 1);
        assert!(c.on_message(req(1, 0, 100), &t).unwrap().is_empty());
        assert_eq!(c.queued(), 1);
        // Once the peer has it, it is ready for the next.
        c.on_message(Message::Have(1), &t).unwrap();
        let (has, new) = c.offer_wanted(t0, false).unwrap();
        assert_eq!((has.to_vec(), new), (vec![false, true, false], vec![1]));
        assert_eq!(c.offer(0, t0), vec![Message::Have(0)]);
        c.on_message(Message::Have(0), &t).unwrap();
        // The last piece the peer lacks is shown as HaveAll.
        assert!(c.offer_wanted(t0, false).is_some());
        assert_eq!(c.offer(2, t0), vec![Message::HaveAll]);
    }

    #[test]
    fn the_swarm_feeds_a_peer_that_gets_pieces_it_was_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let mut c = Connection::new(&peer(true), &t, 10, 1);
        let t0 = Instant::now();
        assert!(c.swarm_feeds(t0), "a newcomer");
        // A piece we showed it is ours, not the swarm's.
        c.offer(1, t0);
        c.on_message(Message::Have(1), &t).unwrap();
        assert!(!c.swarm_feeds(t0 + CUT_OFF));
        // One it got elsewhere.
        c.on_message(Message::Have(0), &t).unwrap();
        assert!(c.swarm_feeds(t0 + CUT_OFF));
        assert!(c.swarm_feeds(t0 + CUT_OFF * 2 - Duration::from_millis(1)));
        assert!(!c.swarm_feeds(t0 + CUT_OFF * 2));
        // A peer with every piece needs no one.
        c.on_message(Message::Have(2), &t).unwrap();
        assert!(c.swarm_feeds(t0 + CUT_OFF * 9));
    }

    #[test]
    fn super_seeding_moves_on_from_a_piece_left_unrequested() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let mut c = Connection::new(&peer(true), &t, 10, 1);
        let t0 = Instant::now();
        c.greeting(&t, None);
        c.offer_wanted(t0, false).unwrap();
        c.offer(0, t0);
        let later = t0 + SHOWN_UNREQUESTED + Duration::from_millis(1);
        // Choked, the peer could not ask: the piece still holds the window.
        assert!(c.offer_wanted(later, false).is_none());
        c.set_choking(false);
        assert!(c.offer_wanted(t0, false).is_none(), "shown just now");
        let (known, _) = c.offer_wanted(later, false).expect("left unrequested");
        assert_eq!(known, vec![true, false, false], "still counted as shown");
        c.offer(1, later);
        // A piece the peer asked for holds the window until it has it.
        assert!(c.on_message(req(1, 0, 100), &t).unwrap().is_empty());
        let much_later = later + 10 * SHOWN_UNREQUESTED;
        assert!(c.offer_wanted(much_later, false).is_none());
        c.on_message(Message::Have(1), &t).unwrap();
        assert!(c.offer_wanted(much_later, false).is_some());
    }

    #[test]
    fn revealing_all_ends_super_seeding() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let t0 = Instant::now();
        for (fast, shown) in [
            (true, vec![Message::HaveAll]),
            (false, vec![Message::Have(0), Message::Have(2)]),
        ] {
            let mut c = Connection::new(&peer(fast), &t, 10, 1);
            c.greeting(&t, None);
            c.offer(1, t0);
            assert_eq!(c.reveal_all(), shown);
            assert!(
                c.offer_wanted(t0, false).is_none(),
                "no longer super-seeding"
            );
            assert!(c.reveal_all().is_empty());
            c.set_choking(false);
            assert!(c.on_message(req(0, 0, 100), &t).unwrap().is_empty());
            assert_eq!(c.queued(), 1);
        }
    }

    #[test]
    fn super_seeding_shows_up_to_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let mut c = Connection::new(&peer(true), &t, 10, 2);
        let t0 = Instant::now();
        c.greeting(&t, None);
        let (has, _) = c.offer_wanted(t0, false).unwrap();
        assert_eq!(has, vec![false; 3]);
        assert_eq!(c.offer(0, t0), vec![Message::Have(0)]);
        // The picker is told what is shown, so it picks another piece.
        let (has, _) = c.offer_wanted(t0, false).unwrap();
        assert_eq!(has, vec![true, false, false]);
        assert_eq!(c.offer(1, t0), vec![Message::Have(1)]);
        assert!(
            c.offer_wanted(t0, false).is_none(),
            "two shown, the window is full"
        );
        c.set_choking(false);
        assert!(c.on_message(req(1, 0, 100), &t).unwrap().is_empty());
        assert_eq!(
            c.on_message(req(2, 0, 100), &t).unwrap().len(),
            1,
            "not shown"
        );
        c.on_message(Message::Have(0), &t).unwrap();
        let (has, new) = c.offer_wanted(t0, false).unwrap();
        assert_eq!((has, new), (vec![true, true, false], vec![0]));
        // The last piece it lacks makes it see a seed.
        assert_eq!(c.offer(2, t0), vec![Message::HaveAll]);
    }

    #[test]
    fn v2_hash_requests_are_answered_from_the_piece_layer() {
        use crate::metainfo::{merkle, Format};
        use crate::peer::message::HashRequest;
        let dir = tempfile::tempdir().unwrap();
        // 5 pieces of 16 KiB (the piece layer is the block layer), padded to 8.
        let t = crate::peer::test_support::torrent(dir.path(), Format::V2, 70_000);
        let file = &t.metainfo.files[0];
        let root = file.pieces_root.unwrap();
        let layer = t.metainfo.piece_layers[&root].clone();
        let mut c = Connection::new(&peer(true), &t, 10, 0);
        let r = HashRequest {
            pieces_root: root,
            base_layer: 0,
            index: 4,
            length: 4,
            proof_layers: 2,
        };
        let out = c.on_message(Message::HashRequest(r), &t).unwrap();
        let [Message::Hashes { request, hashes }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(*request, r);
        // Pieces 4..8 (three of them padding), then the uncle: the root of pieces 0..4.
        assert_eq!(hashes.len(), 5);
        assert_eq!(hashes[0], layer[4]);
        assert_eq!(hashes[1..4], [[0u8; 32]; 3]);
        assert_eq!(hashes[4], merkle::v2_root(&layer[..4], 4));
        let right = merkle::v2_root(&hashes[..4], 4);
        assert_eq!(merkle::sha256_pair(&hashes[4], &right), root);
        // Unknown roots and impossible ranges get a hash reject.
        let bad = HashRequest {
            pieces_root: [1; 32],
            ..r
        };
        assert_eq!(
            c.on_message(Message::HashRequest(bad), &t).unwrap(),
            vec![Message::HashReject(bad)]
        );
        // Block-layer requests of larger pieces go to the disk, then are answered there.
        let t32 = {
            let d = tempfile::tempdir().unwrap();
            let t = crate::peer::test_support::torrent_with(d.path(), Format::V2, 200_000, 32768);
            (d, t)
        };
        let t2 = &t32.1;
        let root2 = t2.metainfo.files[0].pieces_root.unwrap();
        let mut c2 = Connection::new(&peer(true), t2, 10, 0);
        let leaf = HashRequest {
            pieces_root: root2,
            base_layer: 0,
            index: 2,
            length: 2,
            proof_layers: 3,
        };
        assert!(c2
            .on_message(Message::HashRequest(leaf), t2)
            .unwrap()
            .is_empty());
        let job = c2.next_hash_job().unwrap();
        let hashes = t2.v2_trees[&root2]
            .answer_from_disk(&job, &t2.content)
            .unwrap()
            .unwrap();
        let data = std::fs::read(t32.0.path().join("data.bin")).unwrap();
        let block = |i: usize| -> [u8; 32] {
            sha2::Sha256::digest(&data[i * 16384..((i + 1) * 16384).min(data.len())]).into()
        };
        assert_eq!(hashes[..2], [block(2), block(3)]);
        assert_eq!(
            hashes[2], t2.metainfo.piece_layers[&root2][0],
            "uncle: piece 0"
        );
        use sha2::Digest;
        let past = HashRequest { index: 8, ..r };
        assert_eq!(
            c.on_message(Message::HashRequest(past), &t).unwrap(),
            vec![Message::HashReject(past)]
        );
    }

    #[test]
    fn metadata_is_served_to_peers_that_ask() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent(dir.path());
        let mut c = Connection::new(&peer(true), &t, 10, 0);
        c.on_message(
            Message::Extended {
                id: 0,
                payload: b"d1:md11:ut_metadatai7eee".to_vec(),
            },
            &t,
        )
        .unwrap();
        let out = c
            .on_message(
                Message::Extended {
                    id: extended::UT_METADATA_ID,
                    payload: b"d8:msg_typei0e5:piecei0ee".to_vec(),
                },
                &t,
            )
            .unwrap();
        let [Message::Extended { id: 7, payload }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(payload.ends_with(&t.metainfo.info_bytes));
    }
}
