//! The Diffie-Hellman exchange of MSE: the 768-bit prime P, generator 2, keys and the secret
//! as 96-byte big-endian numbers. Bignum arithmetic from `num-bigint`.

use std::sync::OnceLock;

use num_bigint::BigUint;

use super::KEY_LEN;

/// The MSE prime (the Oakley group 1 prime of RFC 2409).
const P_HEX: &[u8] = b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";

fn p() -> &'static BigUint {
    static P: OnceLock<BigUint> = OnceLock::new();
    P.get_or_init(|| BigUint::parse_bytes(P_HEX, 16).expect("the MSE prime is valid hex"))
}

/// `n` (below P) as 96 big-endian bytes, zero-padded on the left as the spec writes it.
fn to_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0; KEY_LEN];
    // n < P < 2^768, so it fits; the guard only keeps a broken invariant from panicking.
    let len = bytes.len().min(KEY_LEN);
    out[KEY_LEN - len..].copy_from_slice(&bytes[bytes.len() - len..]);
    out
}

/// Y = 2^x mod P.
pub(crate) fn public_key(private_key: &[u8; 20]) -> [u8; KEY_LEN] {
    let x = BigUint::from_bytes_be(private_key);
    to_bytes(&BigUint::from(2u8).modpow(&x, p()))
}

/// S = Y^x mod P, or `None` for a Y outside 2..=P-2 (0, 1 and P-1 give a secret anyone can
/// guess; P and above are not keys).
pub(crate) fn shared_secret(
    private_key: &[u8; 20],
    theirs: &[u8; KEY_LEN],
) -> Option<[u8; KEY_LEN]> {
    let y = BigUint::from_bytes_be(theirs);
    let p = p();
    if y < BigUint::from(2u8) || y >= p - 1u8 {
        return None;
    }
    let x = BigUint::from_bytes_be(private_key);
    Some(to_bytes(&y.modpow(&x, p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prime() {
        assert_eq!(p().bits(), 768);
        assert_eq!(P_HEX.len(), 2 * KEY_LEN);
    }

    /// Known answer from Python's own big integers, independent of num-bigint:
    /// `pow(2, int.from_bytes(bytes(range(1, 21)), "big"), P).to_bytes(96, "big").hex()`.
    #[test]
    fn public_key_known_answer() {
        let mut x = [0u8; 20];
        for (i, b) in x.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        assert_eq!(hex::encode(public_key(&x)), PUBLIC_1_TO_20);
    }
    const PUBLIC_1_TO_20: &str = concat!(
        "96e112dab29e8c5272accb9b17b26887ce54a144a4e3b697c7d159b7a817e556b0918db2b4c658e0",
        "2a87f7e5fb14b18a553e084cbf3dad2d30f16596ccb982d406258c61b30c5c1dae2ddc60bdbd48d7",
        "9896312aad63238c39e1a633821eb693"
    );

    #[test]
    fn both_sides_agree() {
        let (a, b) = ([0x11u8; 20], [0xEEu8; 20]);
        let (ya, yb) = (public_key(&a), public_key(&b));
        let s = shared_secret(&a, &yb).unwrap();
        assert_eq!(shared_secret(&b, &ya), Some(s));
        assert_ne!(s, [0; KEY_LEN]);
    }

    #[test]
    fn keys_out_of_range_are_refused() {
        let x = [7u8; 20];
        let mut y = [0u8; KEY_LEN];
        assert_eq!(shared_secret(&x, &y), None);
        y[KEY_LEN - 1] = 1;
        assert_eq!(shared_secret(&x, &y), None);
        y[KEY_LEN - 1] = 2;
        assert!(shared_secret(&x, &y).is_some());
        let p_minus_1 = to_bytes(&(p() - 1u8));
        assert_eq!(shared_secret(&x, &p_minus_1), None);
        let p_minus_2 = to_bytes(&(p() - 2u8));
        assert!(shared_secret(&x, &p_minus_2).is_some());
        assert_eq!(shared_secret(&x, &[0xFF; KEY_LEN]), None);
    }

    #[test]
    fn small_numbers_keep_their_leading_zeros() {
        let b = to_bytes(&BigUint::from(0x0102u16));
        assert_eq!(&b[..94], &[0; 94]);
        assert_eq!(&b[94..], &[1, 2]);
    }
}
