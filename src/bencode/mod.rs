//! Bencode (BEP 3): a borrowing decoder that keeps each value's exact bytes, and an owned value
//! that encodes with sorted keys.
//!
//! Our own code rather than `serde_bencode`: the info hash must be taken over the exact bytes of
//! the `info` dictionary as they stand in the file, and hostile input needs bounded nesting and
//! lengths checked against the input before anything is allocated.

mod decode;
mod encode;

pub use decode::{decode, decode_prefix, DecodeError, Node, NodeKind};
pub use encode::Value;
