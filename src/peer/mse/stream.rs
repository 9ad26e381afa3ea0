//! The stream after an MSE handshake: replays the handshake's leftover plaintext first, then
//! RC4-decrypts what it reads and RC4-encrypts what it writes (or passes bytes through in the
//! plaintext modes).
//!
//! Writes in RC4 mode encrypt into a buffer of their own (the caller's bytes are borrowed):
//! once encrypted, bytes count as written, since the keystream has moved past them, and what
//! the inner stream has not taken yet goes out first at the next write, flush or shutdown. So a
//! writer must flush when it has nothing more to write, as with any buffered `AsyncWrite`.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::rc4::Rc4;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Handshaken, Mode};

/// Bytes encrypted per write at most: bounds the buffer each RC4 connection holds, while
/// keeping writes large enough for few system calls.
const MAX_PENDING: usize = 64 * 1024;

/// A stream after the handshake, read and written through RC4 or plain.
pub struct MseStream<S> {
    inner: S,
    rd: ReadSide,
    wr: WriteSide,
    mode: Mode,
}

/// The read half of an [`MseStream`], from [`MseStream::into_split`].
pub struct MseReader<R> {
    inner: R,
    side: ReadSide,
}

/// The write half of an [`MseStream`], from [`MseStream::into_split`].
pub struct MseWriter<W> {
    inner: W,
    side: WriteSide,
}

impl<S> MseStream<S> {
    /// The stream over `inner` after `done`: its prefix is read first.
    pub fn new(inner: S, done: Handshaken) -> Self {
        let (rx, tx) = done
            .ciphers
            .map_or((None, None), |(r, t)| (Some(r), Some(t)));
        MseStream {
            inner,
            rd: ReadSide {
                prefix: done.prefix,
                pos: 0,
                rc4: rx,
            },
            wr: WriteSide {
                rc4: tx,
                pending: Vec::new(),
                sent: 0,
            },
            mode: done.mode,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The inner stream, for its addresses and socket options.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Splits into halves over the inner stream's own halves, e.g.
    /// `stream.into_split(TcpStream::into_split)`: the RC4 streams of the two directions are
    /// independent, so no lock is shared between the halves.
    pub fn into_split<R, W>(self, split: impl FnOnce(S) -> (R, W)) -> (MseReader<R>, MseWriter<W>) {
        let (r, w) = split(self.inner);
        (
            MseReader {
                inner: r,
                side: self.rd,
            },
            MseWriter {
                inner: w,
                side: self.wr,
            },
        )
    }
}

impl<W> MseWriter<W> {
    /// The inner writer and the RC4 stream that encrypts what goes to it, for a caller that
    /// encrypts in place in buffers of its own (no copy into ours); `None` while bytes
    /// encrypted earlier are still pending (they would be lost).
    pub fn into_raw(self) -> Option<(W, Option<Rc4>)> {
        (self.side.sent == self.side.pending.len()).then_some((self.inner, self.side.rc4))
    }
}

impl<S> std::fmt::Debug for MseStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MseStream")
            .field("mode", &self.mode)
            .field("prefix_left", &(self.rd.prefix.len() - self.rd.pos))
            .field("pending", &(self.wr.pending.len() - self.wr.sent))
            .finish()
    }
}

struct ReadSide {
    /// Plaintext read before the inner stream: what the handshake took past its end.
    prefix: Vec<u8>,
    pos: usize,
    rc4: Option<Rc4>,
}

impl ReadSide {
    fn poll_read<R: AsyncRead>(
        &mut self,
        inner: Pin<&mut R>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            buf.put_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(inner.poll_read(cx, buf))?;
        if let Some(rc4) = &mut self.rc4 {
            // In place, over whatever the read brought at once.
            rc4.apply_keystream(&mut buf.filled_mut()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

struct WriteSide {
    rc4: Option<Rc4>,
    /// Encrypted bytes, reported written, of which `pending[sent..]` the inner stream has yet
    /// to take.
    pending: Vec<u8>,
    sent: usize,
}

impl WriteSide {
    /// Hands the inner stream every pending byte.
    fn poll_drain<W: AsyncWrite>(
        &mut self,
        mut inner: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(inner.as_mut().poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_write<W: AsyncWrite>(
        &mut self,
        mut inner: Pin<&mut W>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.rc4.is_none() {
            return inner.poll_write(cx, buf);
        }
        // Earlier bytes first: nothing new is encrypted (or taken) until they are out.
        ready!(self.poll_drain(inner.as_mut(), cx))?;
        let n = buf.len().min(MAX_PENDING);
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        self.pending.extend_from_slice(&buf[..n]);
        if let Some(rc4) = &mut self.rc4 {
            rc4.apply_keystream(&mut self.pending);
        }
        // The n bytes are encrypted, so they are written as far as the caller knows; what the
        // inner stream does not take now stays pending (its waker is registered).
        if let Poll::Ready(Err(e)) = self.poll_drain(inner, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush<W: AsyncWrite>(
        &mut self,
        mut inner: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(inner.as_mut(), cx))?;
        inner.poll_flush(cx)
    }

    fn poll_shutdown<W: AsyncWrite>(
        &mut self,
        mut inner: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(inner.as_mut(), cx))?;
        inner.poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MseStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.rd.poll_read(Pin::new(&mut this.inner), cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MseStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.wr.poll_write(Pin::new(&mut this.inner), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.wr.poll_flush(Pin::new(&mut this.inner), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.wr.poll_shutdown(Pin::new(&mut this.inner), cx)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for MseReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.side.poll_read(Pin::new(&mut this.inner), cx, buf)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for MseWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.side.poll_write(Pin::new(&mut this.inner), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.side.poll_flush(Pin::new(&mut this.inner), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.side.poll_shutdown(Pin::new(&mut this.inner), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::mse::keys;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn rc4_done(prefix: &[u8]) -> Handshaken {
        Handshaken {
            mode: Mode::Rc4,
            info_hash: None,
            prefix: prefix.to_vec(),
            ciphers: Some(keys::streams(&[1; 96], &[2; 20])),
        }
    }

    /// The peer's (write, read) streams: keyA, which the stream reads with, and keyB.
    fn peer_streams() -> (Rc4, Rc4) {
        keys::streams(&[1; 96], &[2; 20])
    }

    /// Takes at most `max` bytes a call, and says Pending (waking at once) every other call.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            if self.calls % 2 == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Partial writes and Pending from the inner stream lose, repeat or reorder nothing: every
    /// byte reported written is encrypted once and reaches the peer in order after a flush.
    #[tokio::test]
    async fn partial_writes_keep_the_keystream_in_step() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 / 7) as u8).collect();
        for max in [1, 3, 1000, 70_000] {
            let inner = Trickle {
                got: Vec::new(),
                max,
                calls: 0,
            };
            let mut s = MseStream::new(inner, rc4_done(b""));
            let mut at = 0;
            // Writes of odd sizes, as a session writes frames.
            while at < data.len() {
                let end = (at + 12_345).min(data.len());
                s.write_all(&data[at..end]).await.unwrap();
                at = end;
                if max < 10 && at > 20_000 {
                    break;
                }
            }
            s.flush().await.unwrap();
            let (_, mut peer_rx) = peer_streams();
            let mut got = s.inner.got.clone();
            assert_eq!(got.len(), at, "max {max}");
            peer_rx.apply_keystream(&mut got);
            assert!(got == data[..at], "max {max}");
        }
    }

    /// The raw writer and cipher are handed over only with nothing pending, and the cipher
    /// goes on where the stream's writes left it.
    #[tokio::test]
    async fn into_raw_hands_over_the_keystream_in_step() {
        let mut s = MseStream::new(
            Trickle {
                got: Vec::new(),
                max: 10,
                calls: 0,
            },
            rc4_done(b""),
        );
        s.write_all(b"first, through the stream").await.unwrap();
        // Flushed (as the handshake is), nothing is pending: handed over.
        s.flush().await.unwrap();
        let (_, wr) = s.into_split(|t| ((), t));
        let (mut raw, tx) = wr.into_raw().expect("nothing pending");
        let mut tx = tx.expect("RC4 mode");
        let mut then = b"then in place".to_vec();
        tx.apply_keystream(&mut then);
        raw.write_all(&then).await.unwrap();
        let (_, mut peer_rx) = peer_streams();
        let mut got = raw.got.clone();
        peer_rx.apply_keystream(&mut got);
        assert_eq!(got, b"first, through the streamthen in place");

        // With bytes pending (the inner writer took only some of them), no hand-over.
        let mut s = MseStream::new(
            Trickle {
                got: Vec::new(),
                max: 4,
                calls: 0,
            },
            rc4_done(b""),
        );
        let n = s.write(b"more than four bytes").await.unwrap();
        assert_eq!(n, 20, "encrypted, so written as far as the caller knows");
        let (_, wr) = s.into_split(|t| ((), t));
        assert!(wr.into_raw().is_none());
    }

    #[tokio::test]
    async fn prefix_first_then_decrypted_reads() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut s = MseStream::new(server, rc4_done(b"handshake"));
        let (mut peer_tx, _) = peer_streams();
        let mut msg = b"then a message".to_vec();
        peer_tx.apply_keystream(&mut msg);
        let mut client = client;
        client.write_all(&msg).await.unwrap();
        drop(client);
        let mut small = [0u8; 4];
        let n = s.read(&mut small).await.unwrap();
        assert_eq!(&small[..n], b"hand");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"shakethen a message");
    }

    #[tokio::test]
    async fn plaintext_passes_through_after_the_prefix() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let done = Handshaken {
            mode: Mode::Plaintext,
            info_hash: None,
            prefix: b"sniffed".to_vec(),
            ciphers: None,
        };
        let s = MseStream::new(server, done);
        let (mut rd, mut wr) = s.into_split(tokio::io::split);
        client.write_all(b" and read").await.unwrap();
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        while got.len() < 16 {
            let n = rd.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"sniffed and read");
        wr.write_all(b"plain").await.unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"plain");
    }

    /// RC4 speed on this machine: `cargo test --release --lib rc4_throughput -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore]
    fn rc4_throughput() {
        let (mut rc4, _) = keys::streams(&[1; 96], &[2; 20]);
        let mut buf = vec![0u8; 1 << 20];
        let total = 256usize << 20;
        let start = std::time::Instant::now();
        for _ in 0..total / buf.len() {
            rc4.apply_keystream(&mut buf);
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "RC4: {} MiB in {secs:.3} s = {:.0} MB/s (last byte {})",
            total >> 20,
            total as f64 / secs / 1e6,
            buf[buf.len() - 1]
        );
    }
}
