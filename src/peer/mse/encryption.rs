//! `peer.encryption`: which handshakes the seeder takes, and the crypto method it picks.

use serde::{Deserialize, Serialize};

use super::{CRYPTO_PLAINTEXT, CRYPTO_RC4};

/// What the seeder accepts from a connecting peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Plaintext and MSE handshakes; in MSE, plaintext after the handshake when the peer offers
    /// it, RC4 when that is all it offers. As libtorrent's receiver by default: aria2c and
    /// libtorrent at their defaults offer both, and RC4 would cost about 1.5 s of a core per GiB
    /// sent to every one of them; the handshake itself stays obfuscated.
    #[default]
    Prefer,
    /// MSE with RC4 only: plaintext handshakes, and MSE peers offering only plaintext, are
    /// refused.
    Require,
    /// Plaintext handshakes only: anything else is refused as not BitTorrent.
    Disable,
}

impl Encryption {
    /// The crypto_select answering `provide`, or `None` when no offered method is allowed.
    pub fn select(self, provide: u32) -> Option<u32> {
        let allowed = match self {
            Encryption::Prefer => CRYPTO_RC4 | CRYPTO_PLAINTEXT,
            Encryption::Require => CRYPTO_RC4,
            Encryption::Disable => 0,
        };
        let common = provide & allowed;
        [CRYPTO_PLAINTEXT, CRYPTO_RC4]
            .into_iter()
            .find(|&bit| common & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_and_default() {
        for (name, e) in [
            ("prefer", Encryption::Prefer),
            ("require", Encryption::Require),
            ("disable", Encryption::Disable),
        ] {
            let json = format!("\"{name}\"");
            assert_eq!(serde_json::from_str::<Encryption>(&json).unwrap(), e);
            assert_eq!(serde_json::to_string(&e).unwrap(), json);
        }
        assert!(serde_json::from_str::<Encryption>("\"Prefer\"").is_err());
        assert_eq!(Encryption::default(), Encryption::Prefer);
    }

    #[test]
    fn selection() {
        use Encryption::*;
        assert_eq!(Prefer.select(3), Some(CRYPTO_PLAINTEXT));
        assert_eq!(Prefer.select(2), Some(CRYPTO_RC4));
        assert_eq!(Prefer.select(1), Some(CRYPTO_PLAINTEXT));
        assert_eq!(Prefer.select(0), None);
        // Unknown bits are ignored, not selected.
        assert_eq!(Prefer.select(0xFFFF_FFFC), None);
        assert_eq!(Prefer.select(0xFFFF_FFFF), Some(CRYPTO_PLAINTEXT));
        assert_eq!(Require.select(3), Some(CRYPTO_RC4));
        assert_eq!(Require.select(1), None);
        assert_eq!(Disable.select(3), None);
    }
}
