//! Hashing content into a metainfo: which files (`walk`), and their SHA-1 pieces and SHA-256
//! block trees computed in one read of the data by a bounded pool of threads (`pipeline`), with
//! each whole file's SHA-256 from the same read when asked (`file_digest`).

mod assemble;
mod create;
mod file_digest;
mod pipeline;
#[cfg(test)]
mod reference_tests;
pub mod walk;

pub use assemble::content_hashes;
pub use create::{create, create_with_digests, CreateError, CreateOptions, Created};
pub use file_digest::FileDigests;
pub use pipeline::{
    digest_backlog, hash_pieces, hash_pieces_with, HashError, Job, Mode, PieceHashes,
};
