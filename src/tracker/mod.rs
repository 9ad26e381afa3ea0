//! The built-in tracker (BEP 3, 7, 15, 23, 24, 41, 48, and WebTorrent's WebSocket protocol):
//! swarms in memory, sharded by info hash, answered over HTTP (actix-web), UDP and WebSocket.
//!
//! Pure cores (no sockets, no clock reads): `http_request` / `http_response` (HTTP announce and
//! scrape), `udp_protocol` (BEP 15 packets with BEP 41 options), `ws_protocol` (WebTorrent's
//! JSON messages), `connection_id` (stateless UDP connection IDs), `peer_list`, `swarm` and
//! `rtc_swarm` (the store: address peers, and browser peers met by relayed offers). Shells:
//! `state` (the [`Tracker`] and its locks), `http`, `udp` (with `udp_batch`:
//! `recvmmsg`/`sendmmsg` on Linux), `ws` (the upgraded `/announce` and the connections' hub),
//! `maintenance` (expiry, saving counts), `completed_store` (SQLite).
//!
//! Used by `bitseed serve`:
//! ```ignore
//! let tracker = Arc::new(Tracker::new(config.tracker, &state_dir)?);
//! tracker.register(info_hash);                  // published mode
//! tracker.set_own_seed(info_hash, seeder_addr); // listed to every client
//! App::new().configure(tracker::configure(tracker.clone()));
//! tokio::spawn(tracker::run_udp(udp_socket, tracker.clone(), shutdown.clone()));
//! tokio::spawn(tracker::run_maintenance(tracker.clone(), shutdown));
//! ```

mod completed_store;
mod config;
mod connection_id;
mod http;
pub mod http_request;
pub mod http_response;
mod maintenance;
mod peer_list;
mod remote;
mod rtc_swarm;
mod siphash;
mod state;
mod swarm;
mod twins;
mod udp;
#[cfg(target_os = "linux")]
mod udp_batch;
pub mod udp_protocol;
mod ws;
pub mod ws_protocol;

pub use completed_store::StoreError;
pub use config::{ConfigError, Mode, TrackerConfig, WsConfig};
pub use http::{answer_announce, answer_scrape, configure, LocalAddr};
pub use http_request::InfoHash;
pub use http_response::Counts;
pub use maintenance::run_maintenance;
pub use remote::PeerDelta;
pub use state::{BrowserSeed, Tracker, TrackerError, TrackerStats};
pub use swarm::{Announce, Refusal};
pub use udp::run_udp;
