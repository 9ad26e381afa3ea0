use crate::bencode::DecodeError;
use thiserror::Error;

/// Why a torrent could not be loaded or built. Keys are named as they appear in the file.
#[derive(Debug, Error)]
pub enum MetainfoError {
    #[error("not valid bencode: {0}")]
    Bencode(#[from] DecodeError),
    #[error("missing key `{0}`")]
    Missing(&'static str),
    #[error("bad `{key}`: {why}")]
    Invalid { key: &'static str, why: String },
    #[error("piece layers: {0}")]
    PieceLayers(String),
}

impl MetainfoError {
    pub(crate) fn invalid(key: &'static str, why: impl Into<String>) -> Self {
        MetainfoError::Invalid {
            key,
            why: why.into(),
        }
    }
}
