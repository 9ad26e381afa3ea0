//! The torrent model shared by every part of bitseed: v1 (BEP 3), Merkle (BEP 30), v2 and hybrid
//! (BEP 52, pad files BEP 47), magnet links (BEP 9), and info hashes taken over exact bytes.

mod build;
mod error;
mod format;
mod info_hash;
mod load;
mod magnet;
pub mod merkle;
pub mod piece_size;
mod torrent;

pub use build::{plan_files, ContentHashes, NewTorrent, V2FileHashes};
pub use error::MetainfoError;
pub use format::Format;
pub use info_hash::InfoHash;
pub use magnet::{Magnet, MagnetError};
pub use torrent::{FileEntry, InfoHashes, Metainfo};
