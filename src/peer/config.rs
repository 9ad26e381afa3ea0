//! `[peer]` settings: the seeder's listener, slots, limits and timeouts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::mse::Encryption;

/// The congestion control of uTP connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UtpCongestion {
    /// RFC 6817 (BEP 29): yields to the downloader's other traffic, keeping the queueing delay
    /// it adds near 100 ms.
    #[default]
    Ledbat,
    /// CUBIC (RFC 8312): competes as TCP does.
    Cubic,
}

impl UtpCongestion {
    pub fn kind(self) -> librqbit_utp::CongestionControllerKind {
        match self {
            UtpCongestion::Ledbat => librqbit_utp::CongestionControllerKind::Ledbat,
            UtpCongestion::Cubic => librqbit_utp::CongestionControllerKind::Cubic,
        }
    }
}

/// When the seeder super-seeds (BEP 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SuperSeedMode {
    Off,
    On,
    /// While the publisher's upload is capped: there, every piece it sends twice is a piece
    /// the swarm could have passed on. A peer alone on its torrent for a few seconds is shown
    /// everything, as there is nobody to pass pieces to.
    Auto,
}

impl SuperSeedMode {
    /// Whether torrents are super-seeded, the publisher's upload being `capped` or not.
    pub fn applies(self, capped: bool) -> bool {
        match self {
            SuperSeedMode::Off => false,
            SuperSeedMode::On => true,
            SuperSeedMode::Auto => capped,
        }
    }
}

/// `true`/`false` (as before `auto` existed) or `off`/`on`/`auto`.
impl<'de> Deserialize<'de> for SuperSeedMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(SuperSeedMode::On),
            Raw::Bool(false) => Ok(SuperSeedMode::Off),
            Raw::Word(w) => match w.to_ascii_lowercase().as_str() {
                "on" | "true" => Ok(SuperSeedMode::On),
                "off" | "false" => Ok(SuperSeedMode::Off),
                "auto" => Ok(SuperSeedMode::Auto),
                _ => Err(serde::de::Error::custom(format!(
                    "peer.super_seed must be auto, on or off, not `{w}`"
                ))),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerConfig {
    /// Address the peer-wire listener binds: TCP, and UDP for uTP on the same port.
    pub listen: SocketAddr,
    /// Accept uTP (BEP 29) connections on the UDP side of the peer port. Most clients try it
    /// first (Transmission 3.00 and 4.0.0 never fall back to TCP after a failed uTP attempt).
    pub utp: bool,
    /// uTP congestion control: `ledbat` (the default; yields to other traffic, as BEP 29
    /// intends) or `cubic` (competes as TCP does).
    pub utp_congestion: UtpCongestion,
    /// Message Stream Encryption (MSE/PE): `prefer` takes plaintext and encrypted handshakes
    /// (RC4 only for peers that offer nothing else), `require` only RC4-encrypted ones,
    /// `disable` only plaintext ones.
    pub encryption: Encryption,
    /// Address announced for this seed; unset: the address on which the announcing client
    /// reached us.
    pub public_ip: Option<IpAddr>,
    /// Peers unchoked at once (one of them the optimistic slot); sized for a server.
    pub upload_slots: usize,
    /// Upload limit over all connections, in bytes per second; 0 = unlimited.
    pub max_upload_rate: u64,
    /// Peer connections holding a slot over all torrents. A newcomer that finds this (or the
    /// torrent's cap) full waits up to 5 s, choked, and takes the slot of the least useful
    /// connection if it says it is interested (`eviction`).
    pub max_connections: usize,
    /// Peer connections holding a slot for one torrent.
    pub max_connections_per_torrent: usize,
    /// Open peer connections from one client address (an IPv6 client: one /64); 0 = no limit.
    pub max_connections_per_ip: usize,
    /// Requests a peer may keep outstanding (sent as `reqq`); a peer that queues twice as many
    /// is dropped.
    pub max_request_queue: usize,
    /// BEP 16 super-seeding: offer each peer only pieces nobody else has been given yet.
    /// `auto`: while the publisher's upload is capped (`egress.max_rate` or
    /// `max_upload_rate`), except for a peer alone on its torrent.
    pub super_seed: SuperSeedMode,
    /// Super-seeding: pieces shown to a peer at a time (each shown rarest first), so its
    /// requests keep flowing while it passes them on.
    pub super_seed_window: usize,
    /// Seconds a new connection has to complete its handshake.
    pub handshake_timeout: f64,
    /// Seconds without a whole message from a peer before it is dropped (bytes that do not
    /// finish a message do not count).
    pub idle_timeout: f64,
    /// Seconds a message may take to arrive once its first byte has: a peer trickling a frame
    /// byte by byte is dropped.
    pub frame_timeout: f64,
    /// Seconds with data queued for a peer and none of it accepted before it is dropped.
    pub send_timeout: f64,
    /// `[peer.webrtc]`: browsers as peers, over WebRTC data channels.
    pub webrtc: super::webrtc::WebRtcConfig,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 6881)),
            public_ip: None,
            utp: true,
            utp_congestion: UtpCongestion::Ledbat,
            encryption: Encryption::Prefer,
            upload_slots: 50,
            max_upload_rate: 0,
            max_connections: 1000,
            max_connections_per_torrent: 200,
            // A client holds one connection per torrent; a NAT hides a few clients.
            max_connections_per_ip: 32,
            max_request_queue: 500,
            super_seed: SuperSeedMode::Auto,
            super_seed_window: 1,
            handshake_timeout: 10.0,
            idle_timeout: 180.0,
            frame_timeout: 30.0,
            send_timeout: 60.0,
            webrtc: super::webrtc::WebRtcConfig::default(),
        }
    }
}

impl PeerConfig {
    pub(crate) fn secs(v: f64) -> Duration {
        Duration::try_from_secs_f64(v.max(0.001)).unwrap_or(Duration::from_secs(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: PeerConfig = serde_json::from_str(r#"{"upload_slots": 8}"#).unwrap();
        assert_eq!(c.upload_slots, 8);
        assert_eq!(c.listen.port(), 6881);
        assert_eq!(c.max_upload_rate, 0);
        assert!(serde_json::from_str::<PeerConfig>(r#"{"upload_slot": 8}"#).is_err());
    }

    /// How `serve` loads it: a `[peer]` table of bitseed.toml through the `config` crate.
    #[test]
    fn loads_as_a_peer_table_through_the_config_crate() {
        #[derive(Deserialize)]
        struct Settings {
            peer: PeerConfig,
        }
        let toml = r#"
            [peer]
            listen = "127.0.0.1:7000"
            public_ip = "203.0.113.7"
            upload_slots = 8
            max_upload_rate = 10000000
            super_seed = true
            handshake_timeout = 2.5
        "#;
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        let p = settings.peer;
        assert_eq!(p.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(p.public_ip, Some("203.0.113.7".parse().unwrap()));
        assert_eq!((p.upload_slots, p.max_upload_rate), (8, 10_000_000));
        assert_eq!(p.super_seed, SuperSeedMode::On);
        assert_eq!(p.handshake_timeout, 2.5);
        assert_eq!(p.idle_timeout, PeerConfig::default().idle_timeout);
    }
}
