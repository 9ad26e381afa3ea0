//! bitseed: publish a folder over BitTorrent — create, track, seed and serve torrents.
//!
//! Modules, from the bytes up:
//! - [`bencode`]: our own decoder (raw spans, bounded depth) and sorted-key encoder.
//! - [`metainfo`]: the torrent model for v1, BEP 30 Merkle, v2 and hybrid; magnet links;
//!   info hashes over the exact info bytes; Merkle tree helpers; the piece-size rule.
//! - [`storage`]: piece → file-span layout, positioned reads with change detection.
//! - [`hash`]: which files (`walk`) and the hashing pipeline (bounded threads, one read for
//!   SHA-1, SHA-256 blocks and each file's SHA-256); `create` makes a torrent from content.
//! - [`tracker`]: HTTP, UDP and WebSocket tracker with a sharded swarm store.
//! - [`peer`]: the seeder: peer wire codec, connection state machine, extensions, choker;
//!   over TCP, uTP and browsers' WebRTC data channels.
//! - [`dht`]: the mainline DHT node (BEP 5, 42) on the peer port's UDP side.
//! - [`announce`]: the client side of trackers, for `bitseed seed`.
//! - [`catalog`]: what the content folder publishes (walk, watch, settle, SQLite store) and the
//!   registry the tracker, seeder and web face learn torrents from.
//! - [`web`]: the HTTP face: the download page (and the publisher's view), JSON API, .torrent
//!   downloads and links by name (`/latest`), the Atom feed, `/files` web seed, metrics.
//! - [`config`]: the settings of `bitseed serve`.
//! - [`egress`]: the publisher's one upload budget and what it sent, by channel.
//! - [`lsd`]: local service discovery (BEP 14) announces on the LAN.
//! - [`ip_limit`]: open connections per client address (peer listener and HTTP).
//! - [`rate`]: the token bucket every rate limit and budget is made of.
//! - [`proxy`]: which reverse proxies are believed about the client, through which header.
//! - [`units`]: byte counts for people (CLI and web page).
//! - [`fuzzing`]: the fuzz targets' bodies (`fuzz/`), shared with their regression tests.
pub mod announce;
pub mod bencode;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod dht;
pub mod egress;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod ip_limit;
pub mod lsd;
pub mod metainfo;
pub mod peer;
pub mod proxy;
pub mod rate;
#[cfg(test)]
mod roundtrip_tests;
pub mod storage;
pub mod tracker;
pub mod units;
pub mod web;
