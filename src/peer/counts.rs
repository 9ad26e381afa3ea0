//! What happened to the connections the peer port took: accepted by transport, refused by cap
//! or by handshake failure, evicted. Counters for `/metrics`, and a summary in the log at most
//! once a minute so refusals are visible at info level without a line per peer.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::info;

use super::listener::{UdpCounts, Via};
use super::mse::Mode;

const MODES: [Mode; 3] = [Mode::Plaintext, Mode::MsePlaintext, Mode::Rc4];

fn mode_index(mode: Mode) -> usize {
    match mode {
        Mode::Plaintext => 0,
        Mode::MsePlaintext => 1,
        Mode::Rc4 => 2,
    }
}

const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Why a connection ended before or at its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A BitTorrent handshake (or encryption key) for a torrent we do not serve.
    UnknownInfoHash,
    /// Bytes that are neither a BitTorrent handshake nor an encrypted one.
    NotBitTorrent,
    /// A plaintext handshake while `peer.encryption = require`.
    PlaintextRefused,
    /// An encrypted handshake while `peer.encryption = disable`, or one offering no method we
    /// accept.
    EncryptionRefused,
    /// An encrypted handshake that went wrong (bad verification, oversized padding).
    BadEncryption,
    Timeout,
    Closed,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::UnknownInfoHash,
        Refusal::NotBitTorrent,
        Refusal::PlaintextRefused,
        Refusal::EncryptionRefused,
        Refusal::BadEncryption,
        Refusal::Timeout,
        Refusal::Closed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::UnknownInfoHash => "unknown_info_hash",
            Refusal::NotBitTorrent => "not_bittorrent",
            Refusal::PlaintextRefused => "plaintext_refused",
            Refusal::EncryptionRefused => "encryption_refused",
            Refusal::BadEncryption => "bad_encryption",
            Refusal::Timeout => "timeout",
            Refusal::Closed => "closed",
        }
    }
}

#[derive(Default)]
pub(super) struct Refusals {
    pub accepted_tcp: AtomicU64,
    pub accepted_utp: AtomicU64,
    pub accepted_webrtc: AtomicU64,
    pub max_connections: AtomicU64,
    pub per_ip: AtomicU64,
    pub per_torrent: AtomicU64,
    pub evicted: AtomicU64,
    pub pushed_out: AtomicU64,
    pub accept_errors: AtomicU64,
    handshakes: [AtomicU64; Refusal::ALL.len()],
    /// Handshakes completed, by encryption: plaintext, MSE then plaintext, RC4.
    modes: [AtomicU64; 3],
    /// When the last summary was logged, and the counts it covered.
    summary: Mutex<Option<(Instant, Vec<u64>)>>,
}

impl Refusals {
    pub fn accepted(&self, via: Via) {
        match via {
            Via::Tcp => &self.accepted_tcp,
            Via::Utp => &self.accepted_utp,
            Via::WebRtc => &self.accepted_webrtc,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub fn opened(&self, mode: Mode) {
        self.modes[mode_index(mode)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn handshake(&self, why: Refusal) {
        self.handshakes[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every refusal counter, named, in a fixed order.
    fn all(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(&'static str, u64)> = Refusal::ALL
            .iter()
            .map(|r| {
                (
                    r.name(),
                    self.handshakes[*r as usize].load(Ordering::Relaxed),
                )
            })
            .collect();
        for (name, n) in [
            ("max_connections", &self.max_connections),
            ("max_connections_per_ip", &self.per_ip),
            ("max_connections_per_torrent", &self.per_torrent),
        ] {
            v.push((name, n.load(Ordering::Relaxed)));
        }
        v
    }

    /// Logs the refusals since the last summary, if any and a minute has passed.
    pub fn summarize(&self) {
        let now = Instant::now();
        let counts = self.all();
        let mut last = self.summary.lock().unwrap_or_else(|e| e.into_inner());
        let Some((at, before)) = last.as_ref() else {
            *last = Some((now, counts.iter().map(|c| c.1).collect()));
            return;
        };
        if now.duration_since(*at) < SUMMARY_EVERY {
            return;
        }
        let mut line = String::new();
        let mut total = 0;
        for ((name, n), b) in counts.iter().zip(before) {
            if n > b {
                total += n - b;
                let _ = write!(
                    line,
                    "{}{name} {}",
                    if line.is_empty() { "" } else { ", " },
                    n - b
                );
            }
        }
        if total > 0 {
            info!("refused {total} peer connections in the last minute: {line}");
        }
        *last = Some((now, counts.iter().map(|c| c.1).collect()));
    }

    /// Prometheus lines.
    pub fn metrics(&self, open: usize, udp: Option<&UdpCounts>) -> String {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = format!(
            "# HELP bitseed_peer_connections Peer connections past their handshake.\n\
             # TYPE bitseed_peer_connections gauge\nbitseed_peer_connections {open}\n\
             # HELP bitseed_peer_connections_accepted_total Connections accepted on the peer port, by transport.\n\
             # TYPE bitseed_peer_connections_accepted_total counter\n\
             bitseed_peer_connections_accepted_total{{transport=\"tcp\"}} {}\n\
             bitseed_peer_connections_accepted_total{{transport=\"utp\"}} {}\n\
             bitseed_peer_connections_accepted_total{{transport=\"webrtc\"}} {}\n\
             # HELP bitseed_peer_connections_refused_total Peer connections refused, by the cap that refused them.\n\
             # TYPE bitseed_peer_connections_refused_total counter\n",
            n(&self.accepted_tcp),
            n(&self.accepted_utp),
            n(&self.accepted_webrtc),
        );
        for (reason, c) in [
            ("max_connections", &self.max_connections),
            ("max_connections_per_ip", &self.per_ip),
            ("max_connections_per_torrent", &self.per_torrent),
        ] {
            let _ = writeln!(
                out,
                "bitseed_peer_connections_refused_total{{reason=\"{reason}\"}} {}",
                n(c)
            );
        }
        out.push_str(
            "# HELP bitseed_peer_handshakes_total Handshakes completed, by encryption (mse_plaintext: an encrypted handshake, then plaintext).\n\
             # TYPE bitseed_peer_handshakes_total counter\n",
        );
        for m in MODES {
            let _ = writeln!(
                out,
                "bitseed_peer_handshakes_total{{encryption=\"{}\"}} {}",
                m.name(),
                n(&self.modes[mode_index(m)])
            );
        }
        out.push_str(
            "# HELP bitseed_peer_handshakes_refused_total Connections that ended at their handshake, by reason.\n\
             # TYPE bitseed_peer_handshakes_refused_total counter\n",
        );
        for r in Refusal::ALL {
            let _ = writeln!(
                out,
                "bitseed_peer_handshakes_refused_total{{reason=\"{}\"}} {}",
                r.name(),
                n(&self.handshakes[r as usize])
            );
        }
        let _ = write!(
            out,
            "# HELP bitseed_peer_connections_evicted_total Idle or useless peer connections closed to make room for a new one.\n\
             # TYPE bitseed_peer_connections_evicted_total counter\nbitseed_peer_connections_evicted_total {}\n\
             # HELP bitseed_peer_connections_pushed_out_total Connections that never got a slot, closed to make room for newer ones.\n\
             # TYPE bitseed_peer_connections_pushed_out_total counter\nbitseed_peer_connections_pushed_out_total {}\n\
             # HELP bitseed_peer_accept_errors_total Failed accepts on the peer port (out of descriptors and the like).\n\
             # TYPE bitseed_peer_accept_errors_total counter\nbitseed_peer_accept_errors_total {}\n",
            n(&self.evicted),
            n(&self.pushed_out),
            n(&self.accept_errors)
        );
        if let Some(u) = udp {
            let _ = write!(
                out,
                "# HELP bitseed_peer_udp_datagrams_total Datagrams received on the peer port, by kind (dht: to the DHT node; other: dropped).\n\
                 # TYPE bitseed_peer_udp_datagrams_total counter\n\
                 bitseed_peer_udp_datagrams_total{{kind=\"utp\"}} {}\n\
                 bitseed_peer_udp_datagrams_total{{kind=\"dht\"}} {}\n\
                 bitseed_peer_udp_datagrams_total{{kind=\"other\"}} {}\n\
                 # HELP bitseed_peer_udp_errors_total Failed reads on the peer port's UDP socket.\n\
                 # TYPE bitseed_peer_udp_errors_total counter\nbitseed_peer_udp_errors_total {}\n",
                n(&u.utp),
                n(&u.dht),
                n(&u.other),
                n(&u.errors)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_every_reason() {
        let r = Refusals::default();
        r.handshake(Refusal::UnknownInfoHash);
        r.handshake(Refusal::UnknownInfoHash);
        r.accepted(Via::Utp);
        let m = r.metrics(3, None);
        assert!(
            m.contains("bitseed_peer_handshakes_refused_total{reason=\"unknown_info_hash\"} 2\n")
        );
        assert!(
            m.contains("bitseed_peer_handshakes_refused_total{reason=\"plaintext_refused\"} 0\n")
        );
        assert!(m.contains("bitseed_peer_connections_accepted_total{transport=\"utp\"} 1\n"));
        assert!(m.contains("bitseed_peer_connections 3\n"));
    }
}
