//! The data channel as a byte stream for the session code: one end of a `tokio::io::duplex`
//! goes to the session (as TCP and uTP streams do); the browser's driver holds the other end
//! here, with what is on its way in each direction.
//!
//! The channel carries the BitTorrent wire exactly as WebTorrent writes it: each channel
//! message is a piece of the byte stream (it may split or join BitTorrent messages), so
//! messages are joined in order going in and the stream is cut into chunks going out.
//!
//! Bounds: toward the browser, at most one chunk is held here, and none is read from the
//! session until the channel took the last one (the channel takes a chunk only while SCTP's
//! send buffer has room), so the session's own output bounds apply unchanged. Toward the
//! session, SCTP has no way to make the browser wait: what the session has not read yet is
//! held here up to `max_inbound` bytes; a browser that sends more is dropped. It sends
//! requests, not data, so this is never near in an honest session.

use std::collections::VecDeque;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

/// The duplex buffer in each direction.
const DUPLEX: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the browser sent {0} bytes more than the session has read")]
pub struct Overflow(pub usize);

/// What one `step` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Handed this many received bytes to the session.
    Delivered(usize),
    /// Took a chunk from the session for the channel (`outgoing`).
    Taken(usize),
    /// The session closed its stream (or the duplex failed): the connection is over.
    Closed,
}

pub struct Pipe {
    rd: ReadHalf<DuplexStream>,
    wr: WriteHalf<DuplexStream>,
    inbound: VecDeque<Vec<u8>>,
    /// Bytes of the front of `inbound` already delivered.
    front_pos: usize,
    inbound_bytes: usize,
    max_inbound: usize,
    /// The chunk read from the session for the channel: `out[..out_len]`, none when 0 (a read
    /// of 0 bytes is the end of the stream, so a chunk is never empty).
    out: Vec<u8>,
    out_len: usize,
    closed: bool,
}

impl Pipe {
    /// A pipe cutting outgoing bytes into chunks of at most `chunk` bytes; the session's end.
    pub fn new(chunk: usize, max_inbound: usize) -> (Pipe, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(DUPLEX);
        let (rd, wr) = tokio::io::split(ours);
        let pipe = Pipe {
            rd,
            wr,
            inbound: VecDeque::new(),
            front_pos: 0,
            inbound_bytes: 0,
            max_inbound,
            out: vec![0; chunk.max(1)],
            out_len: 0,
            closed: false,
        };
        (pipe, theirs)
    }

    /// Queues a message the browser sent for the session.
    pub fn received(&mut self, data: Vec<u8>) -> Result<(), Overflow> {
        if data.is_empty() {
            return Ok(());
        }
        let total = self.inbound_bytes + data.len();
        if total > self.max_inbound {
            return Err(Overflow(total - self.max_inbound));
        }
        self.inbound_bytes = total;
        self.inbound.push_back(data);
        Ok(())
    }

    /// The chunk waiting for room in the channel.
    pub fn outgoing(&self) -> Option<&[u8]> {
        (self.out_len > 0).then(|| &self.out[..self.out_len])
    }

    /// The channel took the waiting chunk.
    pub fn sent(&mut self) {
        self.out_len = 0;
    }

    /// Bytes received and not yet read by the session.
    #[cfg(test)]
    pub fn inbound_bytes(&self) -> usize {
        self.inbound_bytes
    }

    /// Moves bytes one way or the other: delivers received bytes to the session, or takes the
    /// next chunk from it once the last one went into the channel. Never resolves while there
    /// is nothing it can do. Cancel-safe: a step dropped before it resolves did nothing.
    pub async fn step(&mut self) -> Step {
        let can_take = self.out_len == 0;
        if self.closed || (!can_take && self.inbound.is_empty()) {
            return std::future::pending().await;
        }
        let got = {
            let front = self.inbound.front().map(|f| &f[self.front_pos..]);
            let has_front = front.is_some();
            tokio::select! {
                r = self.rd.read(&mut self.out), if can_take => Ok(r),
                r = self.wr.write(front.unwrap_or_default()), if has_front => Err(r),
            }
        };
        let step = match got {
            Ok(Ok(0) | Err(_)) | Err(Ok(0) | Err(_)) => Step::Closed,
            Ok(Ok(n)) => {
                self.out_len = n;
                Step::Taken(n)
            }
            Err(Ok(n)) => {
                self.front_pos += n;
                self.inbound_bytes -= n;
                if self
                    .inbound
                    .front()
                    .is_some_and(|f| self.front_pos >= f.len())
                {
                    self.inbound.pop_front();
                    self.front_pos = 0;
                }
                Step::Delivered(n)
            }
        };
        if step == Step::Closed {
            self.closed = true;
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs steps until `outgoing` holds a chunk; sends it (the channel took it) and returns it.
    async fn take(pipe: &mut Pipe) -> Vec<u8> {
        loop {
            if let Some(c) = pipe.outgoing() {
                let c = c.to_vec();
                pipe.sent();
                return c;
            }
            assert_ne!(pipe.step().await, Step::Closed);
        }
    }

    #[tokio::test]
    async fn messages_join_into_the_stream_and_the_stream_is_cut_into_chunks() {
        let (mut pipe, mut session) = Pipe::new(5, 1 << 20);
        // A handshake-like message split over three channel messages, then joined with the
        // next: the session reads one byte stream.
        for part in [&b"abc"[..], b"defg", b"h", b"ijklmn"] {
            pipe.received(part.to_vec()).unwrap();
        }
        let mut got = vec![0u8; 14];
        let (read, ()) = tokio::join!(session.read_exact(&mut got), async {
            while pipe.inbound_bytes() > 0 {
                assert!(matches!(pipe.step().await, Step::Delivered(_)));
            }
        });
        read.unwrap();
        assert_eq!(&got, b"abcdefghijklmn");
        // Going out: 12 bytes in chunks of at most 5, in order.
        session.write_all(b"0123456789AB").await.unwrap();
        let mut out = Vec::new();
        while out.len() < 12 {
            let c = take(&mut pipe).await;
            assert!(!c.is_empty() && c.len() <= 5, "{c:?}");
            out.extend(c);
        }
        assert_eq!(&out, b"0123456789AB");
        drop(session);
        assert_eq!(pipe.step().await, Step::Closed);
    }

    #[tokio::test]
    async fn nothing_more_is_read_while_the_channel_has_no_room() {
        let (mut pipe, mut session) = Pipe::new(4, 1 << 20);
        session.write_all(b"abcdefgh").await.unwrap();
        assert_eq!(pipe.step().await, Step::Taken(4));
        // The channel has not taken it: a step has nothing to do.
        let idle = tokio::time::timeout(std::time::Duration::from_millis(50), pipe.step()).await;
        assert!(idle.is_err(), "read past a chunk the channel has not taken");
        assert_eq!(pipe.outgoing(), Some(&b"abcd"[..]));
        pipe.sent();
        assert_eq!(pipe.step().await, Step::Taken(4));
        assert_eq!(pipe.outgoing(), Some(&b"efgh"[..]));
    }

    #[tokio::test]
    async fn a_browser_sending_past_the_bound_overflows() {
        let (mut pipe, _session) = Pipe::new(4, 10);
        pipe.received(vec![1; 6]).unwrap();
        assert_eq!(pipe.received(vec![2; 6]), Err(Overflow(2)));
        pipe.received(vec![3; 4]).unwrap();
        assert_eq!(pipe.inbound_bytes(), 10);
        pipe.received(Vec::new()).unwrap();
    }

    #[tokio::test]
    async fn a_session_that_reads_nothing_holds_the_rest_here() {
        // The duplex takes 64 KiB; the rest waits in the queue, counted.
        let (mut pipe, _session) = Pipe::new(4, 200 * 1024);
        pipe.received(vec![0; 100 * 1024]).unwrap();
        let mut delivered = 0;
        while let Ok(Step::Delivered(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), pipe.step()).await
        {
            delivered += n;
        }
        assert_eq!(delivered, DUPLEX);
        assert_eq!(pipe.inbound_bytes(), 100 * 1024 - DUPLEX);
    }
}
