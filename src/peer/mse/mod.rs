//! Message Stream Encryption / Protocol Encryption (MSE/PE, the Vuze "Message Stream
//! Encryption" spec), the receiving side the seeder needs, and the initiating side for tests.
//!
//! ```text
//! 1 A→B  Ya (96, big-endian) · PadA (0..512 random)
//! 2 B→A  Yb (96) · PadB (0..512)
//! 3 A→B  HASH('req1', S) · HASH('req2', SKEY) xor HASH('req3', S)
//!        · ENCRYPT(VC 8 × 0 · crypto_provide u32 · len(PadC) u16 · PadC · len(IA) u16) · ENCRYPT(IA)
//! 4 B→A  ENCRYPT(VC · crypto_select u32 · len(PadD) u16 · PadD) · ENCRYPT2(payload)
//! 5 A→B  ENCRYPT2(payload)
//! ```
//!
//! S is the Diffie-Hellman secret (96 bytes), SKEY the info hash, HASH is SHA-1, ENCRYPT is RC4
//! keyed with HASH('keyA', S, SKEY) from A and HASH('keyB', S, SKEY) from B, the first 1024
//! bytes of each keystream discarded. ENCRYPT2 is the same RC4 streams, or nothing when
//! crypto_select is plaintext (IA is encrypted either way). All integers are big-endian.
//!
//! Pure cores, bytes in and bytes out, randomness handed in: [`Receiver`] (B, the seeder's side)
//! and [`Initiator`] (A). Around them: [`accept`] and [`connect`] (the handshake over an async
//! stream, under a deadline) and [`MseStream`] (after the handshake: the bytes the handshake
//! read past its end first, then RC4 on read and write, or plain).

// Crate-visible for the fuzz target, which writes handshakes by hand.
pub(crate) mod dh;
mod driver;
mod encryption;
mod error;
pub(crate) mod initiator;
pub(crate) mod keys;
pub(crate) mod rc4;
pub(crate) mod receiver;
mod stream;

pub use driver::{accept, connect, Accepted};
pub use encryption::Encryption;
pub use error::MseError;
pub use initiator::{Initiator, Offer};
pub use keys::req2_key;
pub use receiver::{Receiver, SkeyLookup};
pub use stream::{MseReader, MseStream, MseWriter};

// The start of a plaintext BitTorrent handshake: what tells it from an MSE Ya.
use super::handshake::PLAIN_HEADER;

/// Length of Ya, Yb and S: the 768-bit prime's size.
pub const KEY_LEN: usize = 96;
/// Longest PadA, PadB, PadC and PadD the spec allows.
pub const MAX_PAD: usize = 512;
/// Longest initial payload (IA) taken. The spec allows 65535; clients send the 68-byte
/// BitTorrent handshake (libtorrent refuses more than 68). 1 KiB also serves a client that puts
/// its first messages there, and keeps what one handshake holds near the padding bounds.
pub const MAX_IA: usize = 1024;
/// crypto_provide / crypto_select bits.
pub const CRYPTO_PLAINTEXT: u32 = 0x01;
pub const CRYPTO_RC4: u32 = 0x02;

/// The verification constant: 8 zero bytes, encrypted.
const VC: [u8; 8] = [0; 8];

/// How the stream goes on after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A plaintext BitTorrent handshake: no MSE at all.
    Plaintext,
    /// MSE handshake (IA encrypted), then plaintext: crypto_select = plaintext.
    MsePlaintext,
    /// MSE handshake, then RC4 both ways.
    Rc4,
}

impl Mode {
    /// A short stable name, for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plaintext => "plaintext",
            Mode::MsePlaintext => "mse_plaintext",
            Mode::Rc4 => "rc4",
        }
    }
}

/// The randomness one side of a handshake needs, handed in so the cores stay pure.
#[derive(Debug, Clone)]
pub struct Random {
    /// The Diffie-Hellman private key (160 bits, as the spec advises).
    pub private_key: [u8; 20],
    /// PadA or PadB: random bytes of a random length up to 512.
    pub pad: Vec<u8>,
}

impl Random {
    /// From the operating system.
    pub fn os() -> Result<Random, MseError> {
        let mut private_key = [0; 20];
        getrandom::fill(&mut private_key).map_err(MseError::Random)?;
        let len = getrandom::u32().map_err(MseError::Random)? as usize % (MAX_PAD + 1);
        let mut pad = vec![0; len];
        getrandom::fill(&mut pad).map_err(MseError::Random)?;
        Ok(Random { private_key, pad })
    }
}

/// A finished handshake, as either core returns it.
pub struct Handshaken {
    pub mode: Mode,
    /// The torrent the peer asked for through MSE (SKEY); `None` for a plaintext handshake,
    /// whose info hash is in the BitTorrent handshake itself.
    pub info_hash: Option<[u8; 20]>,
    /// Plaintext the BitTorrent layer must read first: the bytes sniffed (plaintext), or IA and
    /// whatever came after it in the same reads (MSE), already decrypted.
    pub prefix: Vec<u8>,
    /// The RC4 streams (read, write) in `Mode::Rc4`, positioned after the handshake.
    ciphers: Option<(rc4::Rc4, rc4::Rc4)>,
}

impl std::fmt::Debug for Handshaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshaken")
            .field("mode", &self.mode)
            .field("info_hash", &self.info_hash.map(hex::encode))
            .field("prefix_len", &self.prefix.len())
            .finish()
    }
}

/// `buf[at..at + len]` decrypted in place by `rx`, if it is all there. `decrypted` is how far
/// `buf` has gone through `rx`, so a field taken again after a wait is not decrypted twice.
fn decrypt_at<'a>(
    buf: &'a mut [u8],
    at: usize,
    len: usize,
    decrypted: &mut usize,
    rx: Option<&mut rc4::Rc4>,
) -> Result<Option<&'a [u8]>, MseError> {
    let end = at + len;
    if buf.len() < end {
        return Ok(None);
    }
    let rx = rx.ok_or(MseError::Invariant("no RC4 stream yet"))?;
    if end > *decrypted {
        rx.apply_keystream(&mut buf[(*decrypted).max(at)..end]);
        *decrypted = end;
    }
    Ok(Some(&buf[at..end]))
}

/// The last start of the pattern each side synchronises on (HASH('req1', S) after Ya and
/// PadA, ENCRYPT(VC) after Yb and PadB): right after the longest pad.
const LAST_SYNC: usize = KEY_LEN + MAX_PAD;

/// Where `needle` starts in `hay[from..]`, searching starts up to `last_start` (inclusive).
fn find_from(hay: &[u8], needle: &[u8], from: usize, last_start: usize) -> Option<usize> {
    let end = hay.len().checked_sub(needle.len())?.min(last_start);
    (from..=end).find(|&i| hay[i..i + needle.len()] == *needle)
}

/// Looks for `needle` (`what`, for the error) in `buf` from `*at`, no later than right after
/// the longest pad: its end when found; `None` to wait for more bytes, with `*at` past the
/// starts already ruled out; an error once it can no longer start in bounds.
fn sync(
    buf: &[u8],
    needle: &[u8],
    at: &mut usize,
    what: &'static str,
) -> Result<Option<usize>, MseError> {
    match find_from(buf, needle, *at, LAST_SYNC) {
        Some(i) => Ok(Some(i + needle.len())),
        None if buf.len() >= LAST_SYNC + needle.len() => Err(MseError::NoSync(what)),
        None => {
            // Every start up to len - needle was checked: go on from the next one.
            *at = (*at).max((buf.len() + 1).saturating_sub(needle.len()));
            Ok(None)
        }
    }
}
