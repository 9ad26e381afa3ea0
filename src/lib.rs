//! bitseed: publish a folder over BitTorrent.
pub mod bencode;
pub mod hash;
pub mod metainfo;
pub mod peer;
pub mod storage;
