//! Why an MSE handshake failed; each closes the connection.

use thiserror::Error;

use super::{MAX_IA, MAX_PAD};

#[derive(Debug, Error)]
pub enum MseError {
    #[error("plaintext BitTorrent handshake refused (peer.encryption = require)")]
    PlaintextRefused,
    #[error("not a plaintext BitTorrent handshake (MSE or garbage) and peer.encryption = disable")]
    EncryptionRefused,
    #[error("no crypto method allowed here among those offered ({0:#x})")]
    CryptoRefused(u32),
    #[error("MSE handshake for an info hash not published here")]
    UnknownInfoHash,
    #[error("MSE public key out of range")]
    BadKey,
    #[error("no {0} within the {MAX_PAD} bytes of padding allowed")]
    NoSync(&'static str),
    #[error("wrong MSE verification constant")]
    BadVc,
    #[error("MSE padding of {0} bytes (at most {MAX_PAD})")]
    PadTooLong(u16),
    #[error("MSE initial payload of {0} bytes (at most {MAX_IA})")]
    IaTooLong(u16),
    #[error("no MSE handshake within the timeout")]
    Timeout,
    #[error("closed during the MSE handshake")]
    Closed,
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("no randomness from the OS: {0}")]
    Random(getrandom::Error),
    #[error("MSE internal invariant broken: {0}")]
    Invariant(&'static str),
}

impl MseError {
    /// A short stable name for counting refusals (metrics labels).
    pub fn reason(&self) -> &'static str {
        match self {
            MseError::PlaintextRefused => "plaintext_refused",
            MseError::EncryptionRefused => "encryption_refused",
            MseError::CryptoRefused(_) => "crypto_refused",
            MseError::UnknownInfoHash => "unknown_info_hash",
            MseError::BadKey => "bad_mse_key",
            MseError::NoSync(_) => "bad_mse_sync",
            MseError::BadVc => "bad_mse_vc",
            MseError::PadTooLong(_) => "bad_mse_pad",
            MseError::IaTooLong(_) => "bad_mse_ia",
            MseError::Timeout => "timeout",
            MseError::Closed => "closed",
            MseError::Io(_) => "io",
            MseError::Random(_) | MseError::Invariant(_) => "internal",
        }
    }
}
