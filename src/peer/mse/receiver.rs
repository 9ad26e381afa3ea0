//! The receiving side (B) of an MSE handshake, as the seeder runs it: bytes from the peer in,
//! bytes for the peer and, at the end, a [`Handshaken`] out. No I/O, randomness handed in.
//!
//! It also tells a plaintext BitTorrent handshake from MSE: a connection whose first 20 bytes
//! are `\x13BitTorrent protocol` is plaintext (handed back whole, for the BitTorrent layer to
//! read), anything else is taken as Ya.

use std::collections::HashMap;
use std::hash::BuildHasher;

use super::rc4::Rc4;

use super::{
    decrypt_at, dh, keys, sync, Encryption, Handshaken, Mode, MseError, Random, CRYPTO_RC4,
    KEY_LEN, MAX_IA, MAX_PAD, PLAIN_HEADER, VC,
};

/// Finds the torrent an MSE peer asks for. The peer sends HASH('req2', info hash) (masked), so
/// a lookup is keyed by [`req2_key`](super::req2_key) of each published info hash: one probe,
/// however many torrents are published. A v2 or hybrid torrent is asked for by its v2 info hash
/// cut to 20 bytes as well (as in its BitTorrent handshake): key both.
pub trait SkeyLookup {
    /// The published info hash `ih` with `req2_key(ih) == *req2`.
    fn find(&self, req2: &[u8; 20]) -> Option<[u8; 20]>;
}

/// A map from `req2_key(ih)` to `ih`.
impl<H: BuildHasher> SkeyLookup for HashMap<[u8; 20], [u8; 20], H> {
    fn find(&self, req2: &[u8; 20]) -> Option<[u8; 20]> {
        self.get(req2).copied()
    }
}

/// Any function doing the same (the seeder's registry, say).
impl<F: Fn(&[u8; 20]) -> Option<[u8; 20]>> SkeyLookup for F {
    fn find(&self, req2: &[u8; 20]) -> Option<[u8; 20]> {
        self(req2)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Up to 20 bytes: a plaintext handshake's start, or not.
    Sniff,
    /// Ya, 96 bytes.
    Ya,
    /// Yb sent; looking for HASH('req1', S) after PadA.
    Sync,
    /// HASH('req2', SKEY) xor HASH('req3', S).
    Skey,
    /// ENCRYPT(VC, crypto_provide, len(PadC)).
    Provide,
    /// ENCRYPT(PadC, len(IA)); `want` is len(PadC).
    PadC,
    /// ENCRYPT(IA); `want` is len(IA).
    Ia,
    Done,
}

/// The longest MSE handshake from A: Ya, PadA, the two hashes, VC to len(PadC), PadC, len(IA),
/// IA. A receiver waiting for more input holds less than this.
pub(crate) const MAX_HANDSHAKE: usize = KEY_LEN + MAX_PAD + 20 + 20 + 14 + MAX_PAD + 2 + MAX_IA;

/// One incoming connection's MSE handshake.
///
/// Memory: while it waits for input it holds less than `MAX_HANDSHAKE` bytes (2200); a call
/// to `feed` adds that call's input until it returns.
pub struct Receiver {
    policy: Encryption,
    random: Random,
    stage: Stage,
    /// Every byte received, from the first, until the handshake ends.
    buf: Vec<u8>,
    /// `buf[..at]` is parsed; while syncing, sync positions before `at` were checked.
    at: usize,
    /// `buf[..decrypted]` went through `rx` (from the first byte after the SKEY hash).
    decrypted: usize,
    /// The length the stage waits for past `at` (PadC's, then IA's).
    want: usize,
    secret: [u8; KEY_LEN],
    req1: [u8; 20],
    info_hash: [u8; 20],
    select: u32,
    /// keyA (the peer's stream) and keyB (ours), once the torrent is known.
    rx: Option<Rc4>,
    tx: Option<Rc4>,
}

impl Receiver {
    pub fn new(policy: Encryption, random: Random) -> Self {
        Receiver {
            policy,
            random,
            stage: Stage::Sniff,
            buf: Vec::new(),
            at: 0,
            decrypted: 0,
            want: 0,
            secret: [0; KEY_LEN],
            req1: [0; 20],
            info_hash: [0; 20],
            select: 0,
            rx: None,
            tx: None,
        }
    }

    /// Takes the next bytes from the peer. Bytes to send to the peer are appended to `out`
    /// (send them before reading more, also when a handshake is returned). `Ok(None)`: more
    /// input is needed. `Ok(Some(_))`: done. After that, or an error, feed no more.
    pub fn feed<L: SkeyLookup + ?Sized>(
        &mut self,
        input: &[u8],
        lookup: &L,
        out: &mut Vec<u8>,
    ) -> Result<Option<Handshaken>, MseError> {
        let step = self.step(input, lookup, out);
        if step.is_err() {
            // A refused handshake stays refused, whatever comes after.
            self.stage = Stage::Done;
            self.buf = Vec::new();
        }
        step
    }

    fn step<L: SkeyLookup + ?Sized>(
        &mut self,
        input: &[u8],
        lookup: &L,
        out: &mut Vec<u8>,
    ) -> Result<Option<Handshaken>, MseError> {
        if self.stage == Stage::Done {
            return Err(MseError::Invariant("fed after the handshake ended"));
        }
        self.buf.extend_from_slice(input);
        loop {
            match self.stage {
                Stage::Sniff => {
                    let seen = self.buf.len().min(PLAIN_HEADER.len());
                    if self.buf[..seen] == PLAIN_HEADER[..seen] {
                        if seen < PLAIN_HEADER.len() {
                            return Ok(None);
                        }
                        if self.policy == Encryption::Require {
                            return Err(MseError::PlaintextRefused);
                        }
                        self.stage = Stage::Done;
                        return Ok(Some(Handshaken {
                            mode: Mode::Plaintext,
                            info_hash: None,
                            prefix: std::mem::take(&mut self.buf),
                            ciphers: None,
                        }));
                    }
                    if self.policy == Encryption::Disable {
                        return Err(MseError::EncryptionRefused);
                    }
                    self.stage = Stage::Ya;
                }
                Stage::Ya => {
                    let Some(ya) = self.buf.first_chunk::<KEY_LEN>() else {
                        return Ok(None);
                    };
                    let private_key = &self.random.private_key;
                    self.secret = dh::shared_secret(private_key, ya).ok_or(MseError::BadKey)?;
                    self.req1 = keys::req1(&self.secret);
                    out.extend_from_slice(&dh::public_key(private_key));
                    out.append(&mut self.random.pad);
                    self.at = KEY_LEN;
                    self.stage = Stage::Sync;
                }
                Stage::Sync => {
                    match sync(&self.buf, &self.req1, &mut self.at, "HASH('req1', S)")? {
                        Some(end) => {
                            self.at = end;
                            self.stage = Stage::Skey;
                        }
                        None => return Ok(None),
                    }
                }
                Stage::Skey => {
                    let Some(masked) = self.slice(20) else {
                        return Ok(None);
                    };
                    let mut req2 = keys::req3(&self.secret);
                    for (r, m) in req2.iter_mut().zip(masked) {
                        *r ^= m;
                    }
                    self.info_hash = lookup.find(&req2).ok_or(MseError::UnknownInfoHash)?;
                    let (rx, tx) = keys::streams(&self.secret, &self.info_hash);
                    (self.rx, self.tx) = (Some(rx), Some(tx));
                    self.at += 20;
                    self.decrypted = self.at;
                    self.stage = Stage::Provide;
                }
                Stage::Provide => {
                    let Some(field) = self.decrypt(8 + 4 + 2)? else {
                        return Ok(None);
                    };
                    if field[..8] != VC {
                        return Err(MseError::BadVc);
                    }
                    let provide = u32::from_be_bytes([field[8], field[9], field[10], field[11]]);
                    let pad_c = u16::from_be_bytes([field[12], field[13]]);
                    if usize::from(pad_c) > MAX_PAD {
                        return Err(MseError::PadTooLong(pad_c));
                    }
                    self.select = self
                        .policy
                        .select(provide)
                        .ok_or(MseError::CryptoRefused(provide))?;
                    // Step 4 needs nothing past crypto_provide, and goes now: libtorrent writes
                    // IA apart from the rest of step 3, and its second write waits for our ACK
                    // (Nagle), which a delayed ACK holds 40 ms unless data carries it.
                    // ENCRYPT(VC, crypto_select, len(PadD) = 0): PadD is reserved and left
                    // empty, as Transmission does.
                    let tx = self
                        .tx
                        .as_mut()
                        .ok_or(MseError::Invariant("no RC4 streams at step 4"))?;
                    let mut reply = [0u8; 8 + 4 + 2];
                    reply[8..12].copy_from_slice(&self.select.to_be_bytes());
                    tx.apply_keystream(&mut reply);
                    out.extend_from_slice(&reply);
                    self.at += 14;
                    self.want = usize::from(pad_c);
                    self.stage = Stage::PadC;
                }
                Stage::PadC => {
                    let pad_c = self.want;
                    let Some(field) = self.decrypt(pad_c + 2)? else {
                        return Ok(None);
                    };
                    let ia = u16::from_be_bytes([field[pad_c], field[pad_c + 1]]);
                    if usize::from(ia) > MAX_IA {
                        return Err(MseError::IaTooLong(ia));
                    }
                    self.at += self.want + 2;
                    self.want = usize::from(ia);
                    self.stage = Stage::Ia;
                }
                Stage::Ia => {
                    if self.decrypt(self.want)?.is_none() {
                        return Ok(None);
                    }
                    return self.finish().map(Some);
                }
                Stage::Done => return Err(MseError::Invariant("handshake ended mid-step")),
            }
        }
    }

    /// Bytes held for the handshake: under `MAX_HANDSHAKE` whenever `feed` asked for more.
    pub(crate) fn held(&self) -> usize {
        self.buf.len()
    }

    /// `buf[at..at + len]`, if it is all there.
    fn slice(&self, len: usize) -> Option<&[u8]> {
        self.buf.get(self.at..self.at + len)
    }

    fn decrypt(&mut self, len: usize) -> Result<Option<&[u8]>, MseError> {
        decrypt_at(
            &mut self.buf,
            self.at,
            len,
            &mut self.decrypted,
            self.rx.as_mut(),
        )
    }

    /// IA is in `buf[at..at + want]`: hands over the streams (step 4 went at crypto_provide).
    fn finish(&mut self) -> Result<Handshaken, MseError> {
        let (Some(mut rx), Some(tx)) = (self.rx.take(), self.tx.take()) else {
            return Err(MseError::Invariant("no RC4 streams at the end"));
        };
        let mut prefix = self.buf.split_off(self.at);
        self.buf = Vec::new();
        self.stage = Stage::Done;
        let rc4 = self.select == CRYPTO_RC4;
        if rc4 {
            // Bytes past IA came in the same reads: they are payload, in the peer's stream.
            rx.apply_keystream(&mut prefix[self.want..]);
        }
        Ok(Handshaken {
            mode: if rc4 { Mode::Rc4 } else { Mode::MsePlaintext },
            info_hash: Some(self.info_hash),
            prefix,
            ciphers: rc4.then_some((rx, tx)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::InfoHash;
    use crate::peer::mse::initiator::step3;
    use crate::peer::mse::{Initiator, Offer, CRYPTO_PLAINTEXT};
    use crate::peer::Handshake;

    const IH: [u8; 20] = [0xAB; 20];

    fn lookup() -> HashMap<[u8; 20], [u8; 20]> {
        [IH, [1; 20]]
            .into_iter()
            .map(|ih| (keys::req2_key(&ih), ih))
            .collect()
    }

    fn random(seed: u8, pad: usize) -> Random {
        Random {
            private_key: [seed; 20],
            pad: (0..pad).map(|i| (i as u8).wrapping_mul(seed)).collect(),
        }
    }

    fn bt_handshake() -> Vec<u8> {
        Handshake::ours(InfoHash::new(IH), *b"-XX0000-abcdefghijkl", false)
            .serialize()
            .to_vec()
    }

    fn offer(provide: u32) -> Offer {
        Offer {
            info_hash: IH,
            provide,
            pad_c: Vec::new(),
            ia: bt_handshake(),
        }
    }

    /// Both sides to the end, bytes handed over `chunk` at a time; (initiator's, receiver's).
    fn handshake(
        policy: Encryption,
        offer: Offer,
        pads: (usize, usize),
        chunk: usize,
    ) -> Result<(Handshaken, Handshaken), MseError> {
        let map = lookup();
        let mut to_b = Vec::new();
        let mut a = Initiator::new(offer, random(3, pads.0), &mut to_b)?;
        let mut b = Receiver::new(policy, random(5, pads.1));
        let (mut a_done, mut b_done) = (None, None);
        let mut to_a = Vec::new();
        while a_done.is_none() || b_done.is_none() {
            assert!(!to_a.is_empty() || !to_b.is_empty(), "stalled");
            for piece in std::mem::take(&mut to_b).chunks(chunk) {
                if let Some(h) = b.feed(piece, &map, &mut to_a)? {
                    b_done = Some(h);
                }
            }
            for piece in std::mem::take(&mut to_a).chunks(chunk) {
                if let Some(h) = a.feed(piece, &mut to_b)? {
                    a_done = Some(h);
                }
            }
        }
        Ok((a_done.unwrap(), b_done.unwrap()))
    }

    /// The two sides' RC4 streams pair up, both ways.
    fn assert_streams_pair(a: Handshaken, b: Handshaken) {
        let (Some((mut a_rx, mut a_tx)), Some((mut b_rx, mut b_tx))) = (a.ciphers, b.ciphers)
        else {
            panic!("RC4 streams on both sides");
        };
        let mut msg = b"interested, then a request".to_vec();
        a_tx.apply_keystream(&mut msg);
        assert_ne!(msg, b"interested, then a request");
        b_rx.apply_keystream(&mut msg);
        assert_eq!(msg, b"interested, then a request");
        let mut piece = vec![7u8; 20_000];
        b_tx.apply_keystream(&mut piece);
        a_rx.apply_keystream(&mut piece);
        assert_eq!(piece, vec![7u8; 20_000]);
    }

    #[test]
    fn rc4_handshake_carries_the_bittorrent_handshake_in_ia() {
        let (a, b) = handshake(Encryption::Prefer, offer(CRYPTO_RC4), (100, 200), 4096).unwrap();
        assert_eq!((a.mode, b.mode), (Mode::Rc4, Mode::Rc4));
        assert_eq!(b.info_hash, Some(IH));
        assert_eq!(b.prefix, bt_handshake());
        assert!(a.prefix.is_empty());
        assert_streams_pair(a, b);
    }

    #[test]
    fn plaintext_after_mse_when_only_plaintext_is_offered() {
        let (a, b) = handshake(Encryption::Prefer, offer(CRYPTO_PLAINTEXT), (0, 0), 4096).unwrap();
        assert_eq!((a.mode, b.mode), (Mode::MsePlaintext, Mode::MsePlaintext));
        assert_eq!(b.prefix, bt_handshake(), "IA is decrypted all the same");
        assert!(a.ciphers.is_none() && b.ciphers.is_none());
    }

    #[test]
    fn require_takes_rc4_and_refuses_plaintext_only_offers() {
        let (a, b) = handshake(Encryption::Require, offer(3), (1, 1), 4096).unwrap();
        assert_eq!((a.mode, b.mode), (Mode::Rc4, Mode::Rc4));
        let e = handshake(Encryption::Require, offer(CRYPTO_PLAINTEXT), (1, 1), 4096);
        assert!(matches!(e, Err(MseError::CryptoRefused(1))), "{e:?}");
        let e = handshake(Encryption::Prefer, offer(0), (1, 1), 4096);
        assert!(matches!(e, Err(MseError::CryptoRefused(0))), "{e:?}");
        assert_eq!(e.unwrap_err().reason(), "crypto_refused");
    }

    #[test]
    fn no_initial_payload() {
        let mut o = offer(CRYPTO_RC4);
        o.ia.clear();
        let (a, b) = handshake(Encryption::Prefer, o, (7, 9), 4096).unwrap();
        assert!(b.prefix.is_empty());
        assert_streams_pair(a, b);
    }

    /// The longest pads there are, fed one byte at a time: the same outcome.
    #[test]
    fn byte_at_a_time_with_the_longest_pads() {
        let mut o = offer(CRYPTO_RC4);
        o.pad_c = vec![0x5A; MAX_PAD];
        let (a, b) = handshake(Encryption::Prefer, o, (MAX_PAD, MAX_PAD), 1).unwrap();
        assert_eq!(b.prefix, bt_handshake());
        assert_eq!(b.info_hash, Some(IH));
        assert_streams_pair(a, b);
        for chunk in [2, 19, 20, 21, 95, 97, 600] {
            let (_, b) =
                handshake(Encryption::Prefer, offer(CRYPTO_RC4), (300, 13), chunk).unwrap();
            assert_eq!(b.prefix, bt_handshake(), "chunk {chunk}");
        }
    }

    #[test]
    fn plaintext_handshakes_are_handed_back_whole() {
        let mut bytes = bt_handshake();
        bytes.extend_from_slice(&[0, 0, 0, 1, 2]); // interested
        for policy in [Encryption::Prefer, Encryption::Disable] {
            let mut r = Receiver::new(policy, random(5, 10));
            let mut out = Vec::new();
            for (i, byte) in bytes[..19].iter().enumerate() {
                let step = r.feed(&[*byte], &lookup(), &mut out).unwrap();
                assert!(step.is_none(), "byte {i}");
            }
            let h = r.feed(&bytes[19..], &lookup(), &mut out).unwrap().unwrap();
            assert_eq!(h.mode, Mode::Plaintext);
            assert_eq!(h.info_hash, None);
            assert_eq!(h.prefix, bytes);
            assert!(out.is_empty(), "nothing is sent to a plaintext peer");
        }
        let mut r = Receiver::new(Encryption::Require, random(5, 10));
        let e = r.feed(&bytes, &lookup(), &mut Vec::new()).unwrap_err();
        assert!(matches!(e, MseError::PlaintextRefused));
        assert_eq!(e.reason(), "plaintext_refused");
    }

    #[test]
    fn disable_refuses_anything_else_at_its_first_wrong_byte() {
        let mut r = Receiver::new(Encryption::Disable, random(5, 10));
        let mut out = Vec::new();
        assert!(r
            .feed(b"\x13BitTorrent", &lookup(), &mut out)
            .unwrap()
            .is_none());
        let e = r.feed(b" Protocol", &lookup(), &mut out).unwrap_err();
        assert_eq!(e.reason(), "encryption_refused");
        let ya = dh::public_key(&[9; 20]);
        let e = Receiver::new(Encryption::Disable, random(5, 10))
            .feed(&ya[..1], &lookup(), &mut out)
            .unwrap_err();
        assert!(matches!(e, MseError::EncryptionRefused));
        assert!(out.is_empty());
    }

    /// A peer that diverges from the plaintext header after a few bytes is taken as MSE.
    #[test]
    fn a_near_plaintext_start_is_ya() {
        let mut r = Receiver::new(Encryption::Prefer, random(5, 10));
        let mut out = Vec::new();
        let mut ya = [0x13u8; KEY_LEN];
        ya[1..6].copy_from_slice(b"BitTo");
        assert!(r.feed(&ya[..6], &lookup(), &mut out).unwrap().is_none());
        assert!(r.feed(&ya[6..], &lookup(), &mut out).unwrap().is_none());
        assert_eq!(out.len(), KEY_LEN + 10, "Yb and PadB sent");
    }

    #[test]
    fn keys_out_of_range_are_refused() {
        for ya in [[0u8; KEY_LEN], [0xFF; KEY_LEN]] {
            let e = Receiver::new(Encryption::Prefer, random(5, 10))
                .feed(&ya, &lookup(), &mut Vec::new())
                .unwrap_err();
            assert_eq!(e.reason(), "bad_mse_key");
        }
    }

    #[test]
    fn unknown_info_hash() {
        let mut o = offer(3);
        o.info_hash = [9; 20];
        let e = handshake(Encryption::Prefer, o, (0, 0), 4096).unwrap_err();
        assert!(matches!(e, MseError::UnknownInfoHash));
        assert_eq!(e.reason(), "unknown_info_hash");
    }

    /// The receiver after Ya (and PadA), with what A needs to write step 3 by hand: the secret
    /// and A's stream.
    fn after_ya(policy: Encryption, pad_a: &[u8]) -> (Receiver, [u8; KEY_LEN], Rc4, Vec<u8>) {
        let a_key = [3u8; 20];
        let mut r = Receiver::new(policy, random(5, 33));
        let mut out = Vec::new();
        let mut first = dh::public_key(&a_key).to_vec();
        first.extend_from_slice(pad_a);
        assert!(r.feed(&first, &lookup(), &mut out).unwrap().is_none());
        let yb = out.first_chunk::<KEY_LEN>().unwrap();
        let s = dh::shared_secret(&a_key, yb).unwrap();
        let (tx, _) = keys::streams(&s, &IH);
        (r, s, tx, out)
    }

    /// VC, crypto_provide, len(PadC), PadC, len(IA), IA, as A would encrypt them.
    fn tail(vc: [u8; 8], provide: u32, pad_c: u16, ia_len: u16, ia: &[u8]) -> Vec<u8> {
        let mut t = vc.to_vec();
        t.extend_from_slice(&provide.to_be_bytes());
        t.extend_from_slice(&pad_c.to_be_bytes());
        t.extend(std::iter::repeat_n(0xC3, usize::from(pad_c)));
        t.extend_from_slice(&ia_len.to_be_bytes());
        t.extend_from_slice(ia);
        t
    }

    fn refusal(t: Vec<u8>) -> MseError {
        let (mut r, s, mut tx, _) = after_ya(Encryption::Prefer, &[]);
        let step = step3(&s, &IH, &mut tx, t);
        r.feed(&step, &lookup(), &mut Vec::new()).unwrap_err()
    }

    #[test]
    fn wrong_verification_constant() {
        let e = refusal(tail([0, 0, 0, 0, 0, 0, 0, 1], 3, 0, 0, &[]));
        assert!(matches!(e, MseError::BadVc));
        assert_eq!(e.reason(), "bad_mse_vc");
    }

    #[test]
    fn oversize_pad_c_and_ia() {
        let e = refusal(tail(VC, 3, 513, 0, &[]));
        assert!(matches!(e, MseError::PadTooLong(513)), "{e:?}");
        assert_eq!(e.reason(), "bad_mse_pad");
        let e = refusal(tail(VC, 3, 0, MAX_IA as u16 + 1, &[]));
        assert!(matches!(e, MseError::IaTooLong(1025)), "{e:?}");
        assert_eq!(e.reason(), "bad_mse_ia");
        // The largest IA is taken.
        let (mut r, s, mut tx, _) = after_ya(Encryption::Prefer, &[]);
        let ia = vec![0x42; MAX_IA];
        let step = step3(&s, &IH, &mut tx, tail(VC, 3, 0, MAX_IA as u16, &ia));
        let h = r.feed(&step, &lookup(), &mut Vec::new()).unwrap().unwrap();
        assert_eq!(h.prefix, ia);
    }

    /// HASH('req1', S) may start at most 512 bytes after Ya: with a PadA of 513 it never syncs,
    /// and the receiver gives up as soon as the bound is passed, not before.
    #[test]
    fn pad_a_of_513_never_syncs() {
        let (mut r, s, _, out) = after_ya(Encryption::Prefer, &[0x77; 513]);
        assert_eq!(out.len(), KEY_LEN + 33, "Yb and PadB were sent");
        let req1 = keys::req1(&s);
        // Received so far: 96 + 513; the bound is at 96 + 512 + 20 = 628.
        for byte in &req1[..18] {
            assert!(r
                .feed(&[*byte], &lookup(), &mut Vec::new())
                .unwrap()
                .is_none());
        }
        let e = r
            .feed(&req1[18..19], &lookup(), &mut Vec::new())
            .unwrap_err();
        assert!(matches!(e, MseError::NoSync(_)), "{e:?}");
        assert_eq!(e.reason(), "bad_mse_sync");
    }

    #[test]
    fn pad_a_of_512_syncs() {
        let (mut r, s, mut tx, _) = after_ya(Encryption::Prefer, &[0x77; 512]);
        let step = step3(&s, &IH, &mut tx, tail(VC, CRYPTO_RC4, 0, 0, &[]));
        let h = r.feed(&step, &lookup(), &mut Vec::new()).unwrap().unwrap();
        assert_eq!((h.mode, h.info_hash), (Mode::Rc4, Some(IH)));
    }

    #[test]
    fn garbage_is_refused_at_the_sync_bound() {
        let mut r = Receiver::new(Encryption::Prefer, random(5, 0));
        let mut out = Vec::new();
        let garbage = b"GET /announce?info_hash=x HTTP/1.1\r\nHost: example\r\n\r\n".repeat(20);
        assert!(r
            .feed(&garbage[..627], &lookup(), &mut out)
            .unwrap()
            .is_none());
        assert_eq!(out.len(), KEY_LEN);
        let e = r.feed(&garbage[627..], &lookup(), &mut out).unwrap_err();
        assert!(matches!(e, MseError::NoSync(_)));
    }

    /// Payload sent right after IA, in the same read, is handed over with IA: decrypted in RC4
    /// mode, as is in plaintext mode.
    #[test]
    fn payload_after_ia_in_the_same_read() {
        let payload = b"\0\0\0\x01\x02and more".to_vec();
        for (provide, mode) in [(2, Mode::Rc4), (1, Mode::MsePlaintext)] {
            let (mut r, s, mut tx, _) = after_ya(Encryption::Prefer, &[1, 2, 3]);
            let ia = bt_handshake();
            let mut t = tail(VC, provide, 5, ia.len() as u16, &ia);
            let step = if mode == Mode::Rc4 {
                t.extend_from_slice(&payload);
                step3(&s, &IH, &mut tx, t)
            } else {
                let mut step = step3(&s, &IH, &mut tx, t);
                step.extend_from_slice(&payload);
                step
            };
            let mut out = Vec::new();
            let h = r.feed(&step, &lookup(), &mut out).unwrap().unwrap();
            assert_eq!(h.mode, mode);
            assert_eq!(h.prefix, [ia, payload.clone()].concat());
            // Step 4: ENCRYPT(VC, crypto_select, len(PadD) = 0) in B's stream.
            let (_, mut b_stream) = keys::streams(&s, &IH);
            b_stream.apply_keystream(&mut out);
            let mut expected = [0u8; 14];
            expected[8..12].copy_from_slice(&provide.to_be_bytes());
            assert_eq!(out, expected);
        }
    }

    /// libtorrent writes IA apart from the rest of step 3 and holds that write for our ACK:
    /// step 4 must not wait for IA.
    #[test]
    fn step_4_goes_before_ia_arrives() {
        let (mut r, s, mut tx, _) = after_ya(Encryption::Prefer, &[]);
        let ia = bt_handshake();
        let step = step3(
            &s,
            &IH,
            &mut tx,
            tail(VC, CRYPTO_RC4, 7, ia.len() as u16, &ia),
        );
        let (head, ia_part) = step.split_at(step.len() - ia.len());
        let mut out = Vec::new();
        assert!(r.feed(head, &lookup(), &mut out).unwrap().is_none());
        let (_, mut b_stream) = keys::streams(&s, &IH);
        b_stream.apply_keystream(&mut out);
        let mut expected = [0u8; 14];
        expected[8..12].copy_from_slice(&CRYPTO_RC4.to_be_bytes());
        assert_eq!(out, expected);
        // IA then completes the handshake, with nothing more to send.
        let mut more = Vec::new();
        let h = r.feed(ia_part, &lookup(), &mut more).unwrap().unwrap();
        assert!(more.is_empty());
        assert_eq!((h.mode, h.prefix), (Mode::Rc4, ia));
    }

    #[test]
    fn feeding_after_the_end_is_an_error() {
        let mut r = Receiver::new(Encryption::Prefer, random(5, 0));
        let bytes = bt_handshake();
        assert!(r
            .feed(&bytes, &lookup(), &mut Vec::new())
            .unwrap()
            .is_some());
        let e = r.feed(b"x", &lookup(), &mut Vec::new()).unwrap_err();
        assert_eq!(e.reason(), "internal");
        // A refusal is final: what follows is not parsed on from where it stopped.
        let mut r = Receiver::new(Encryption::Require, random(5, 0));
        assert!(r.feed(&bytes, &lookup(), &mut Vec::new()).is_err());
        assert!(r.feed(&bytes, &lookup(), &mut Vec::new()).is_err());
    }

    /// What a handshake costs the seeder (two 768-bit exponentiations and the hashing), next to
    /// the initiator's: `cargo test --release --lib handshake_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn handshake_cost() {
        let n = 300;
        let start = std::time::Instant::now();
        for _ in 0..n {
            handshake(Encryption::Prefer, offer(CRYPTO_RC4), (100, 100), 4096).unwrap();
        }
        let per = start.elapsed() / n;
        println!("one MSE handshake, both sides: {per:?}");
    }

    #[test]
    fn lookup_by_function() {
        let map = lookup();
        let f = |k: &[u8; 20]| map.get(k).copied();
        let (mut r, s, mut tx, _) = after_ya(Encryption::Prefer, &[]);
        let step = step3(&s, &IH, &mut tx, tail(VC, 3, 0, 0, &[]));
        let h = r.feed(&step, &f, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(h.info_hash, Some(IH));
    }
}
