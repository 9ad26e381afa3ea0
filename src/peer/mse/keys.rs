//! What MSE derives from the secret S and the info hash (SKEY): the sync and obfuscation
//! hashes, and the two RC4 streams.

use super::rc4::Rc4;
use sha1::{Digest, Sha1};

use super::KEY_LEN;

/// Keystream bytes thrown away before use: RC4's first bytes leak its key.
const RC4_DISCARD: usize = 1024;

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HASH('req1', S): what the receiver synchronizes on after PadA.
pub(crate) fn req1(s: &[u8; KEY_LEN]) -> [u8; 20] {
    sha1(&[b"req1", s])
}

/// HASH('req2', SKEY) for a published info hash. The receiver finds a torrent by this value,
/// so a caller keeps a map from `req2_key(ih)` to `ih` and each lookup is one map probe.
pub fn req2_key(info_hash: &[u8; 20]) -> [u8; 20] {
    sha1(&[b"req2", info_hash])
}

/// HASH('req3', S): the mask over the obfuscated info hash.
pub(crate) fn req3(s: &[u8; KEY_LEN]) -> [u8; 20] {
    sha1(&[b"req3", s])
}

/// The RC4 stream keyed with HASH(name, S, SKEY), past its discarded start.
fn stream(name: &[u8; 4], s: &[u8; KEY_LEN], skey: &[u8; 20]) -> Rc4 {
    let key = sha1(&[name, s, skey]);
    let mut rc4 = Rc4::new(&key);
    let mut discard = [0u8; RC4_DISCARD];
    rc4.apply_keystream(&mut discard);
    rc4
}

/// The streams of A (initiator → receiver, keyA) and B (receiver → initiator, keyB).
pub(crate) fn streams(s: &[u8; KEY_LEN], skey: &[u8; 20]) -> (Rc4, Rc4) {
    (stream(b"keyA", s, skey), stream(b"keyB", s, skey))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers computed apart from this code, with Python's hashlib and a ten-line RC4:
    /// S = bytes(range(96)), SKEY = bytes(range(100, 120)),
    /// keyA = sha1(b"keyA" + S + SKEY), keyB likewise, req1/req3 over S, req2 over SKEY, and
    /// the first 8 keystream bytes after the 1024 discarded (ENCRYPT(VC), the sync value).
    #[test]
    fn known_answers() {
        let mut s = [0u8; KEY_LEN];
        for (i, b) in s.iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut skey = [0u8; 20];
        for (i, b) in skey.iter_mut().enumerate() {
            *b = 100 + i as u8;
        }
        assert_eq!(hex::encode(sha1(&[b"keyA", &s, &skey])), KEY_A);
        assert_eq!(hex::encode(sha1(&[b"keyB", &s, &skey])), KEY_B);
        assert_eq!(hex::encode(req1(&s)), REQ1);
        assert_eq!(hex::encode(req2_key(&skey)), REQ2);
        assert_eq!(hex::encode(req3(&s)), REQ3);
        let (mut a, mut b) = streams(&s, &skey);
        let (mut va, mut vb) = ([0u8; 8], [0u8; 8]);
        a.apply_keystream(&mut va);
        b.apply_keystream(&mut vb);
        assert_eq!(hex::encode(va), VC_A);
        assert_eq!(hex::encode(vb), VC_B);
    }
    const KEY_A: &str = "440a1bb8b1b33dbc78ea810aa9372179da90a5be";
    const KEY_B: &str = "c409a3d1b427f3d1dc43eb9141b49cbf70254941";
    const REQ1: &str = "ed37476cccf63496894d66db14b9806c8c9efe3e";
    const REQ2: &str = "fe8811640d96d350501a13baa0553941fef6faf0";
    const REQ3: &str = "4986fc7b9cb37334e5ab5c3034812fdbc7cd8573";
    const VC_A: &str = "52c18994385a358c";
    const VC_B: &str = "45fc837c421cf38c";
}
