//! Why offers go unanswered, and the WebRTC side's counts for `/metrics`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::MAX_OFFER_BYTES;

/// Why an offer got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("peer.webrtc.max_sessions reached")]
    MaxSessions,
    #[error("peer.webrtc.max_sessions_per_ip reached")]
    MaxSessionsPerIp,
    #[error("already connected to this browser for this torrent")]
    AlreadyConnected,
    #[error("not seeding this torrent to browsers (unknown or private)")]
    UnknownTorrent,
    #[error("offer of {0} bytes (at most {MAX_OFFER_BYTES})")]
    OfferTooLong(usize),
    #[error("bad offer: {0}")]
    BadOffer(String),
    #[error("no local address to give a browser at {0} (set peer.webrtc.public_addr)")]
    NoCandidate(IpAddr),
}

impl Refused {
    const REASONS: [&'static str; 7] = [
        "max_sessions",
        "max_sessions_per_ip",
        "already_connected",
        "unknown_torrent",
        "offer_too_long",
        "bad_offer",
        "no_candidate",
    ];

    pub(super) fn index(&self) -> usize {
        match self {
            Refused::MaxSessions => 0,
            Refused::MaxSessionsPerIp => 1,
            Refused::AlreadyConnected => 2,
            Refused::UnknownTorrent => 3,
            Refused::OfferTooLong(_) => 4,
            Refused::BadOffer(_) => 5,
            Refused::NoCandidate(_) => 6,
        }
    }
}

/// Counts for `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub(super) answered: AtomicU64,
    pub(super) refused: [AtomicU64; Refused::REASONS.len()],
    /// Data channels opened (handed to the session code).
    pub(super) opened: AtomicU64,
    /// Sessions whose data channel never opened within `connect_timeout`.
    pub(super) timed_out: AtomicU64,
    /// Data-channel payload bytes sent to and received from browsers.
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    /// Datagrams that named no session.
    pub(super) unrouted: AtomicU64,
    pub(super) sessions: AtomicU64,
}

impl Stats {
    pub fn metrics(&self) -> String {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = format!(
            "# HELP bitseed_webrtc_sessions Browser (WebRTC) sessions answered and not yet closed.\n\
             # TYPE bitseed_webrtc_sessions gauge\nbitseed_webrtc_sessions {}\n\
             # HELP bitseed_webrtc_answers_total Browser offers answered.\n\
             # TYPE bitseed_webrtc_answers_total counter\nbitseed_webrtc_answers_total {}\n\
             # HELP bitseed_webrtc_channels_opened_total Data channels opened (sessions handed to the seeder).\n\
             # TYPE bitseed_webrtc_channels_opened_total counter\nbitseed_webrtc_channels_opened_total {}\n\
             # HELP bitseed_webrtc_connect_timeouts_total Sessions whose data channel did not open within peer.webrtc.connect_timeout.\n\
             # TYPE bitseed_webrtc_connect_timeouts_total counter\nbitseed_webrtc_connect_timeouts_total {}\n\
             # HELP bitseed_webrtc_sent_bytes_total Data-channel bytes sent to browsers (the peer wire inside; also counted in the peer channel of the egress).\n\
             # TYPE bitseed_webrtc_sent_bytes_total counter\nbitseed_webrtc_sent_bytes_total {}\n\
             # HELP bitseed_webrtc_received_bytes_total Data-channel bytes received from browsers.\n\
             # TYPE bitseed_webrtc_received_bytes_total counter\nbitseed_webrtc_received_bytes_total {}\n\
             # HELP bitseed_webrtc_unrouted_datagrams_total Datagrams on the WebRTC socket that named no session (dropped).\n\
             # TYPE bitseed_webrtc_unrouted_datagrams_total counter\nbitseed_webrtc_unrouted_datagrams_total {}\n\
             # HELP bitseed_webrtc_offers_refused_total Browser offers not answered, by reason.\n\
             # TYPE bitseed_webrtc_offers_refused_total counter\n",
            n(&self.sessions),
            n(&self.answered),
            n(&self.opened),
            n(&self.timed_out),
            n(&self.sent),
            n(&self.received),
            n(&self.unrouted),
        );
        for (i, reason) in Refused::REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "bitseed_webrtc_offers_refused_total{{reason=\"{reason}\"}} {}",
                n(&self.refused[i])
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_metric() {
        let s = Stats::default();
        s.refused[Refused::OfferTooLong(1).index()].fetch_add(2, Ordering::Relaxed);
        let m = s.metrics();
        assert!(m.contains("bitseed_webrtc_offers_refused_total{reason=\"offer_too_long\"} 2\n"));
        for r in Refused::REASONS {
            assert!(m.contains(&format!("{{reason=\"{r}\"}}")), "{r}");
        }
    }
}
