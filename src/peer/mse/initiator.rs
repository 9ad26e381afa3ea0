//! The initiating side (A) of an MSE handshake: what a connecting client does. The seeder never
//! connects out; tests, fuzzing and benchmarks use it as the client.

use super::rc4::Rc4;

use super::{
    decrypt_at, dh, keys, sync, Handshaken, Mode, MseError, Random, CRYPTO_PLAINTEXT, CRYPTO_RC4,
    KEY_LEN, MAX_PAD, VC,
};

/// What A asks for.
#[derive(Debug, Clone)]
pub struct Offer {
    pub info_hash: [u8; 20],
    /// crypto_provide: `CRYPTO_RC4`, `CRYPTO_PLAINTEXT` or both.
    pub provide: u32,
    /// PadC (at most 512 bytes); usually empty.
    pub pad_c: Vec<u8>,
    /// The initial payload, usually the BitTorrent handshake; sent encrypted with step 3.
    pub ia: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Yb,
    /// Looking for ENCRYPT(VC) after PadB.
    Sync,
    /// ENCRYPT(crypto_select, len(PadD)).
    Select,
    /// ENCRYPT(PadD); `want` is its length.
    PadD,
    Done,
}

/// One outgoing connection's MSE handshake.
pub struct Initiator {
    offer: Offer,
    private_key: [u8; 20],
    stage: Stage,
    buf: Vec<u8>,
    at: usize,
    want: usize,
    select: u32,
    /// ENCRYPT(VC) as B's stream starts: the value to sync on.
    vc: [u8; 8],
    /// `buf[..decrypted]` went through `rx` (from the first byte after ENCRYPT(VC)).
    decrypted: usize,
    rx: Option<Rc4>,
    tx: Option<Rc4>,
}

impl Initiator {
    /// Starts a handshake: Ya and PadA are appended to `out`, to be sent first.
    pub fn new(offer: Offer, random: Random, out: &mut Vec<u8>) -> Result<Self, MseError> {
        if offer.pad_c.len() > MAX_PAD || offer.ia.len() > usize::from(u16::MAX) {
            return Err(MseError::Invariant(
                "PadC over 512 or IA over 65535 bytes offered",
            ));
        }
        out.extend_from_slice(&dh::public_key(&random.private_key));
        out.extend_from_slice(&random.pad);
        Ok(Initiator {
            offer,
            private_key: random.private_key,
            stage: Stage::Yb,
            buf: Vec::new(),
            at: 0,
            want: 0,
            select: 0,
            vc: [0; 8],
            decrypted: 0,
            rx: None,
            tx: None,
        })
    }

    /// Takes the next bytes from the peer, as [`super::Receiver::feed`] does.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Handshaken>, MseError> {
        let step = self.step(input, out);
        if step.is_err() {
            self.stage = Stage::Done;
            self.buf = Vec::new();
        }
        step
    }

    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Option<Handshaken>, MseError> {
        if self.stage == Stage::Done {
            return Err(MseError::Invariant("fed after the handshake ended"));
        }
        self.buf.extend_from_slice(input);
        loop {
            match self.stage {
                Stage::Yb => {
                    let Some(yb) = self.buf.first_chunk::<KEY_LEN>() else {
                        return Ok(None);
                    };
                    let s = dh::shared_secret(&self.private_key, yb).ok_or(MseError::BadKey)?;
                    let (mut tx, mut rx) = keys::streams(&s, &self.offer.info_hash);
                    // ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA).
                    let o = &self.offer;
                    let mut tail = Vec::with_capacity(16 + o.pad_c.len() + o.ia.len());
                    tail.extend_from_slice(&VC);
                    tail.extend_from_slice(&o.provide.to_be_bytes());
                    tail.extend_from_slice(&(o.pad_c.len() as u16).to_be_bytes());
                    tail.extend_from_slice(&o.pad_c);
                    tail.extend_from_slice(&(o.ia.len() as u16).to_be_bytes());
                    tail.extend_from_slice(&o.ia);
                    out.extend_from_slice(&step3(&s, &o.info_hash, &mut tx, tail));
                    self.vc = VC;
                    rx.apply_keystream(&mut self.vc);
                    (self.rx, self.tx) = (Some(rx), Some(tx));
                    self.at = KEY_LEN;
                    self.stage = Stage::Sync;
                }
                Stage::Sync => match sync(&self.buf, &self.vc, &mut self.at, "ENCRYPT(VC)")? {
                    Some(end) => {
                        self.at = end;
                        self.stage = Stage::Select;
                    }
                    None => return Ok(None),
                },
                Stage::Select => {
                    let Some(field) = self.decrypt(4 + 2)? else {
                        return Ok(None);
                    };
                    let select = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                    let pad_d = u16::from_be_bytes([field[4], field[5]]);
                    // Exactly one method, and one that was offered.
                    if !matches!(select, CRYPTO_PLAINTEXT | CRYPTO_RC4)
                        || select & self.offer.provide == 0
                    {
                        return Err(MseError::CryptoRefused(select));
                    }
                    if usize::from(pad_d) > MAX_PAD {
                        return Err(MseError::PadTooLong(pad_d));
                    }
                    self.select = select;
                    self.at += 6;
                    self.want = usize::from(pad_d);
                    self.stage = Stage::PadD;
                }
                Stage::PadD => {
                    if self.decrypt(self.want)?.is_none() {
                        return Ok(None);
                    }
                    return self.finish().map(Some);
                }
                Stage::Done => return Err(MseError::Invariant("handshake ended mid-step")),
            }
        }
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

    fn finish(&mut self) -> Result<Handshaken, MseError> {
        let (Some(mut rx), Some(tx)) = (self.rx.take(), self.tx.take()) else {
            return Err(MseError::Invariant("no RC4 streams at the end"));
        };
        let mut prefix = self.buf.split_off(self.at + self.want);
        self.buf = Vec::new();
        self.stage = Stage::Done;
        let rc4 = self.select == CRYPTO_RC4;
        if rc4 {
            rx.apply_keystream(&mut prefix);
        }
        Ok(Handshaken {
            mode: if rc4 { Mode::Rc4 } else { Mode::MsePlaintext },
            info_hash: Some(self.offer.info_hash),
            prefix,
            ciphers: rc4.then_some((rx, tx)),
        })
    }
}

/// Step 3 from the secret: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S), then
/// `tail` (VC onwards) encrypted with A's stream. Tests and the fuzz target build malformed
/// tails with it.
pub(crate) fn step3(
    s: &[u8; KEY_LEN],
    info_hash: &[u8; 20],
    tx: &mut Rc4,
    mut tail: Vec<u8>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + tail.len());
    out.extend_from_slice(&keys::req1(s));
    let mask = keys::req3(s);
    out.extend(
        keys::req2_key(info_hash)
            .iter()
            .zip(mask)
            .map(|(a, b)| a ^ b),
    );
    tx.apply_keystream(&mut tail);
    out.append(&mut tail);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::peer::mse::{Encryption, Receiver};

    const IH: [u8; 20] = [0xAB; 20];

    fn offer(provide: u32) -> Offer {
        Offer {
            info_hash: IH,
            provide,
            pad_c: Vec::new(),
            ia: b"ia".to_vec(),
        }
    }

    fn random(seed: u8, pad: usize) -> Random {
        Random {
            private_key: [seed; 20],
            pad: vec![seed; pad],
        }
    }

    /// ENCRYPT(VC) may start at most 512 bytes after Yb: a PadB of 513 never syncs.
    #[test]
    fn pad_b_of_513_never_syncs() {
        let lookup: HashMap<_, _> = [(keys::req2_key(&IH), IH)].into();
        let mut to_b = Vec::new();
        let mut a = Initiator::new(offer(3), random(3, 0), &mut to_b).unwrap();
        let mut b = Receiver::new(Encryption::Prefer, random(5, 513));
        let mut to_a = Vec::new();
        assert!(b.feed(&to_b, &lookup, &mut to_a).unwrap().is_none());
        to_b.clear();
        assert!(a.feed(&to_a, &mut to_b).unwrap().is_none());
        to_a.clear();
        assert!(b.feed(&to_b, &lookup, &mut to_a).unwrap().is_some());
        let e = a.feed(&to_a, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, MseError::NoSync("ENCRYPT(VC)")), "{e:?}");
    }

    /// B's answer by hand: Yb, then ENCRYPT(VC, crypto_select, len(PadD), PadD).
    fn answer(select: u32, pad_d: u16) -> Result<Option<Handshaken>, MseError> {
        let b_key = [5u8; 20];
        let mut to_b = Vec::new();
        let mut a = Initiator::new(offer(CRYPTO_RC4), random(3, 10), &mut to_b).unwrap();
        let ya = to_b.first_chunk::<KEY_LEN>().unwrap();
        let s = dh::shared_secret(&b_key, ya).unwrap();
        assert!(a.feed(&dh::public_key(&b_key), &mut to_b)?.is_none());
        let (_, mut tx) = keys::streams(&s, &IH);
        let mut step4 = VC.to_vec();
        step4.extend_from_slice(&select.to_be_bytes());
        step4.extend_from_slice(&pad_d.to_be_bytes());
        step4.extend(std::iter::repeat_n(0, usize::from(pad_d)));
        tx.apply_keystream(&mut step4);
        a.feed(&step4, &mut Vec::new())
    }

    #[test]
    fn the_selected_method_must_be_one_offered() {
        let h = answer(CRYPTO_RC4, 512).unwrap().unwrap();
        assert_eq!(h.mode, Mode::Rc4);
        assert!(matches!(
            answer(CRYPTO_PLAINTEXT, 0),
            Err(MseError::CryptoRefused(1))
        ));
        assert!(matches!(answer(3, 0), Err(MseError::CryptoRefused(3))));
        assert!(matches!(
            answer(CRYPTO_RC4, 513),
            Err(MseError::PadTooLong(513))
        ));
    }

    #[test]
    fn offers_past_the_field_sizes_are_not_sent() {
        let mut o = offer(3);
        o.pad_c = vec![0; MAX_PAD + 1];
        assert!(Initiator::new(o, random(1, 0), &mut Vec::new()).is_err());
        let mut o = offer(3);
        o.ia = vec![0; 65_536];
        assert!(Initiator::new(o, random(1, 0), &mut Vec::new()).is_err());
    }
}
