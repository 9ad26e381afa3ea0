//! `[peer.webrtc]`: the seeder as a WebRTC peer of browsers.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcConfig {
    /// Answer the WebRTC offers browsers send through the WebSocket tracker, so they get
    /// pieces from the seeder over the peer wire (in a data channel), not only from the web
    /// seed. Needs `tracker.websocket.enabled`.
    pub enabled: bool,
    /// The UDP address for WebRTC (ICE, DTLS, SCTP). Unset: `peer.listen`'s address, an
    /// ephemeral port.
    pub bind: Option<SocketAddr>,
    /// The address put in answers as our ICE host candidate, when browsers reach us at
    /// another address than `bind` (behind NAT or a port forward). Unset: `bind`'s address,
    /// or when that is unspecified (0.0.0.0, ::) the local address the system routes to each
    /// browser from.
    pub public_addr: Option<SocketAddr>,
    /// Browser connections at once (answered and not yet closed).
    pub max_sessions: usize,
    /// Browser connections at once from one address (as the tracker saw it; an IPv6 client
    /// counts per /64); 0 = no limit.
    pub max_sessions_per_ip: usize,
    /// Seconds a browser has to open its data channel (ICE, DTLS, SCTP) after the answer.
    pub connect_timeout: f64,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            enabled: true,
            bind: None,
            public_addr: None,
            max_sessions: 64,
            max_sessions_per_ip: 4,
            connect_timeout: 15.0,
        }
    }
}
