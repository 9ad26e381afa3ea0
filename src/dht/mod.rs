//! The mainline DHT (BEP 5) node that `serve` and `seed` run on the peer port's UDP socket, so
//! a published torrent is found without any tracker.
//!
//! Our own code, not a DHT crate: `mainline` and `librqbit-dht` each bind and read their own
//! UDP socket, and the DHT must share the peer port with uTP (the listener sorts datagrams:
//! bencoded KRPC starts with `d`). The parts are small and pure, so tested and fuzzed here:
//! - [`id`]: node ids, XOR distance, BEP 42 ids tied to the address.
//! - [`krpc`]: the messages, bounded.
//! - [`table`]: the routing table (K per bucket, answered nodes only, one per address).
//! - [`store`]: announce tokens and the bounded store of peers announced to us.
//! - [`lookup`]: iterative `find_node` / `get_peers` lookups.
//! - [`node`]: the node's core (answers, lookups, announces), time handed in.
//! - [`service`]: its I/O: datagrams from the listener, sends on the shared socket, the state
//!   file, `/metrics`.

pub mod id;
pub mod krpc;
pub mod lookup;
pub mod node;
mod service;
pub mod store;
pub mod table;

use serde::{Deserialize, Serialize};

pub use service::{Dht, DhtAnnouncer};

/// The routers every client bootstraps from.
pub const DEFAULT_BOOTSTRAP: [&str; 4] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];

/// `[dht]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DhtConfig {
    /// Run a DHT node on the peer port's UDP side and announce every published torrent that
    /// is not private (BEP 27) to it.
    pub enabled: bool,
    /// `host:port` of the nodes to join the DHT through when the saved table is empty or
    /// stale.
    pub bootstrap: Vec<String>,
    /// Info hashes other nodes may store peers under with us; announces for more are refused.
    pub max_stored_hashes: usize,
    /// Peers kept per stored info hash (the oldest goes first).
    pub max_peers_per_hash: usize,
    /// Queries answered per second from one IP address (more are dropped unanswered).
    pub queries_per_ip: u64,
    /// Queries answered per second in all.
    pub queries_per_sec: u64,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            enabled: true,
            bootstrap: DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect(),
            max_stored_hashes: 4096,
            max_peers_per_hash: 100,
            queries_per_ip: 20,
            queries_per_sec: 2000,
        }
    }
}

impl DhtConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.queries_per_ip == 0 || self.queries_per_sec == 0 {
            return Err("queries_per_ip and queries_per_sec must be at least 1".into());
        }
        if self.max_peers_per_hash == 0 {
            return Err("max_peers_per_hash must be at least 1".into());
        }
        Ok(())
    }

    fn limits(&self) -> node::Limits {
        node::Limits {
            max_stored_hashes: self.max_stored_hashes,
            max_peers_per_hash: self.max_peers_per_hash,
            queries_per_ip: self.queries_per_ip,
            queries_per_sec: self.queries_per_sec,
        }
    }
}
