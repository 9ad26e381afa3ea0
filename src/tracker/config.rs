//! `[tracker]` settings: what the built-in tracker tracks, how often clients come back, and the
//! caps that keep its memory bounded.

use std::net::IpAddr;

use serde::Deserialize;

use crate::proxy::{Proxies, ProxyHeader};

/// Which info hashes the tracker accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only info hashes registered with [`crate::tracker::Tracker::register`]; others get
    /// `failure reason: unregistered torrent`.
    #[default]
    Published,
    /// Any info hash (up to `max_torrents` swarms at once).
    Open,
}

/// The tracker's settings, embedded under `[tracker]` in bitseed.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// `published` (track only what bitseed publishes) or `open` (track any info hash).
    pub mode: Mode,
    /// Seconds a client is asked to wait between announces. Peers silent for twice this long are
    /// dropped.
    pub interval: u32,
    /// Seconds a client must wait between announces (`min interval`).
    pub min_interval: u32,
    /// Peers returned when the client does not say how many it wants.
    pub numwant_default: u32,
    /// Most peers returned in one answer, whatever the client asks for.
    pub numwant_max: u32,
    /// Most peers stored per torrent; more announces are answered but not stored.
    pub max_peers_per_torrent: u32,
    /// Most peers stored per torrent from one address (an IPv6 client: one /64), whatever ports
    /// it announces; more are answered but not stored. 0 = no limit.
    pub max_peers_per_ip: u32,
    /// Most torrents tracked at once in open mode; announces for new ones beyond that are refused.
    /// Torrents bitseed publishes are always tracked.
    pub max_torrents: u32,
    /// Open mode: most live torrents first announced from one address (an IPv6 client: one /64),
    /// so one host cannot fill `max_torrents`. 0 = no limit.
    pub max_torrents_per_ip: u32,
    /// Whether a scrape without `info_hash` lists every torrent.
    pub full_scrape: bool,
    /// Proxies whose `proxy_header` names the client (and whose forwarded host and scheme make
    /// the links of the page and served torrents when `public_url` is unset); from anyone else
    /// every forwarding header is ignored and the socket's address is the client's.
    pub trusted_proxies: Vec<IpAddr>,
    /// The one header a trusted proxy names the client in: `x-forwarded-for` (with
    /// `X-Forwarded-Host` / `X-Forwarded-Proto`), `forwarded` (RFC 7239) or `x-real-ip`.
    pub proxy_header: ProxyHeader,
    /// Whether the `ip` announce parameter is believed (it lets a client announce someone else's
    /// address, so it is off by default).
    pub accept_ip_param: bool,
    /// The WebSocket tracker for browsers (WebTorrent), on `/announce` of the HTTP address.
    pub websocket: WsConfig,
}

/// `[tracker.websocket]`: the WebTorrent tracker (`ws://HOST/announce`, `wss://` behind TLS).
/// Browser peers share the swarms, modes and counts of the HTTP and UDP trackers; these bound
/// what one connection may cost.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// Whether `/announce` accepts WebSocket upgrades, and served torrents and magnet links name
    /// the `ws(s)://…/announce` tracker.
    pub enabled: bool,
    /// Seconds a browser is asked to wait between announces. Short: a browser meets the peers
    /// that are there when it announces (its offers go to them), and the others meet it when
    /// they announce again. Peers silent for twice this long are dropped.
    pub interval: u32,
    /// Longest message in bytes (a WebTorrent announce with 5 offers is about 10 KB).
    pub max_message_bytes: usize,
    /// Most offers in one announce (WebTorrent sends at most 5).
    pub max_offers: usize,
    /// Longest session description (SDP) of an offer or answer, in bytes.
    pub max_sdp_bytes: usize,
    /// Most swarms (torrents) one connection may join.
    pub max_swarms_per_connection: usize,
    /// Messages a connection may send per second, on average; bursts of 5 seconds' worth pass.
    /// Messages beyond it are dropped unanswered.
    pub messages_per_second: u32,
    /// Seconds an offer waits for its answer (WebTorrent gives up after 50).
    pub offer_ttl: u32,
    /// Seconds a connection may stay silent (no message, no pong) before it is closed.
    pub idle_timeout: u32,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            enabled: true,
            interval: 120,
            max_message_bytes: 64 * 1024,
            max_offers: 10,
            max_sdp_bytes: 16 * 1024,
            max_swarms_per_connection: 64,
            messages_per_second: 10,
            offer_ttl: 60,
            idle_timeout: 300,
        }
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            mode: Mode::Published,
            interval: 1800,
            min_interval: 900,
            numwant_default: 50,
            numwant_max: 200,
            max_peers_per_torrent: 50_000,
            // Room for a household or an office behind one NAT address.
            max_peers_per_ip: 16,
            max_torrents: 1_000_000,
            max_torrents_per_ip: 10_000,
            full_scrape: false,
            trusted_proxies: Vec::new(),
            proxy_header: ProxyHeader::XForwardedFor,
            accept_ip_param: false,
            websocket: WsConfig::default(),
        }
    }
}

/// The longest `interval` accepted: peer timestamps are 16-bit ticks (to keep a stored peer at
/// 8 bytes), and ticks grow with the interval so twice it always fits.
pub const MAX_INTERVAL: u32 = 7 * 24 * 3600;

/// Settings that cannot work together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("tracker.interval must be between 1 and {MAX_INTERVAL} seconds, not {0}")]
    Interval(u32),
    #[error("tracker.min_interval ({0}) must not exceed tracker.interval ({1})")]
    MinInterval(u32, u32),
    #[error("tracker.numwant_default ({0}) must not exceed tracker.numwant_max ({1})")]
    Numwant(u32, u32),
    #[error("tracker.websocket.{0} must be above 0")]
    WsZero(&'static str),
}

impl TrackerConfig {
    /// Who is believed about the client, and through which header.
    pub fn proxies(&self) -> Proxies {
        Proxies::new(&self.trusted_proxies, self.proxy_header)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval == 0 || self.interval > MAX_INTERVAL {
            return Err(ConfigError::Interval(self.interval));
        }
        if self.min_interval > self.interval {
            return Err(ConfigError::MinInterval(self.min_interval, self.interval));
        }
        if self.numwant_default > self.numwant_max {
            return Err(ConfigError::Numwant(self.numwant_default, self.numwant_max));
        }
        let ws = &self.websocket;
        for (key, value) in [
            ("interval", ws.interval as usize),
            ("max_message_bytes", ws.max_message_bytes),
            ("max_swarms_per_connection", ws.max_swarms_per_connection),
            ("messages_per_second", ws.messages_per_second as usize),
            ("offer_ttl", ws.offer_ttl as usize),
            ("idle_timeout", ws.idle_timeout as usize),
        ] {
            if value == 0 {
                return Err(ConfigError::WsZero(key));
            }
        }
        if ws.interval > MAX_INTERVAL {
            return Err(ConfigError::Interval(ws.interval));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<TrackerConfig, config::ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()?
            .get::<TrackerConfig>("tracker")
    }

    #[test]
    fn loads_from_a_tracker_table_with_defaults_for_the_rest() {
        let c = load(
            "[tracker]\nmode = \"open\"\ninterval = 600\nfull_scrape = true\n\
             trusted_proxies = [\"10.0.0.1\", \"::1\"]\n",
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Open);
        assert_eq!(
            (c.interval, c.min_interval, c.numwant_default, c.numwant_max),
            (600, 900, 50, 200)
        );
        assert!(c.full_scrape && !c.accept_ip_param);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.validate(), Err(ConfigError::MinInterval(900, 600)));
        assert_eq!(TrackerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn refuses_unknown_keys_and_modes() {
        assert!(load("[tracker]\nintervall = 5\n").is_err());
        assert!(load("[tracker]\nmode = \"closed\"\n").is_err());
    }
}
