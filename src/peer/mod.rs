//! Seeding over the peer wire protocol (BEP 3, with BEP 6, 9, 10, 30 and 52's hash messages).
//!
//! Pure cores: `handshake` and `message` (the codec: bytes in, `Ok(None)` for "need more"),
//! `connection` (one peer's state machine), `extended/*` (one module per extension),
//! `v2_hashes` (BEP 52 answers), `choker` (policy, time passed in).
//! I/O shells: `listener` (the peer port: TCP and uTP on one port number), `session` (one
//! connection, over any byte stream), `shared` (the torrent table, caps and choker every session
//! uses) and `seeder` (owns them and runs the accept loop); `webrtc` takes browsers' data
//! channels to the same session code.

mod choker;
mod config;
pub mod connection;
mod counts;
mod eviction;
pub mod extended;
pub mod handshake;
pub mod listener;
pub mod message;
pub mod mse;
mod published;
mod seeder;
mod session;
mod shared;
mod standing;
mod super_seed;
#[cfg(test)]
mod test_support;
pub mod v2_hashes;
pub mod webrtc;

pub use config::{PeerConfig, SuperSeedMode, UtpCongestion};
pub use connection::{Connection, ReadJob};
pub use handshake::Handshake;
pub use listener::PeerListener;
pub use message::{BlockRef, HashRequest, Message};
pub use published::{file_paths, PublishError, Published};
pub use seeder::Seeder;
pub use shared::{DhtNodes, SeedAnnouncer, SwarmPeers, PEER_ID_PREFIX};
pub use webrtc::{WebRtc, WebRtcConfig};

use thiserror::Error;

/// Why a peer's bytes were refused; each closes the connection.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not a BitTorrent handshake")]
    BadHandshake,
    #[error("message of {len} bytes (at most {max})")]
    TooLong { len: u32, max: u32 },
    #[error("message {id} with a payload of the wrong size ({len} bytes)")]
    BadLength { id: u8, len: u32 },
    #[error("bad extended message: {0}")]
    BadExtended(&'static str),
    #[error("request outside the torrent or over 16 KiB: {0:?}")]
    BadRequest(BlockRef),
    #[error("{0} requests outstanding: request flood")]
    RequestFlood(usize),
    #[error("unsolicited {0}")]
    Unsolicited(&'static str),
}
