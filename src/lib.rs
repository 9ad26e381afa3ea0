//! bitseed: publish a folder over BitTorrent.
pub mod announce;
pub mod bencode;
pub mod catalog;
pub mod config;
pub mod hash;
pub mod metainfo;
pub mod peer;
pub mod storage;
pub mod tracker;
pub mod web;
