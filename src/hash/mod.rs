//! Hashing content into a metainfo: which files (`walk`), and their SHA-1 pieces and SHA-256
//! block trees computed in one read of the data by a bounded pool of threads (`pipeline`).

mod assemble;
mod create;
mod pipeline;
#[cfg(test)]
mod reference_tests;
pub mod walk;

pub use assemble::content_hashes;
pub use create::{create, create_keeping_pieces, CreateError, CreateOptions};
pub use pipeline::{hash_pieces, HashError, Job, Mode, PieceHashes};
