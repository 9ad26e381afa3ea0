//! One integration-test binary: each module drives the real `bitseed` binary over real files and
//! sockets, and the interop modules use real BitTorrent clients.

mod bounds;
mod browser_download;
mod catalog;
mod cluster;
mod common;
mod create;
mod deploy;
mod dht;
mod hostile;
mod http;
mod offload;
mod page;
mod security;
mod seeder;
mod serve;
mod setup;
mod tracker;
mod transmission;
mod websocket;
mod webtorrent;
