//! bitseed speaks TCP only, but libtorrent (qBittorrent, Deluge) and Transmission try uTP
//! (BEP 29) first. Unanswered, their uTP connect waits for its own timeout (3 s in libtorrent
//! 2.0, longer in Transmission) before they fall back to TCP. Answering each uTP SYN on the peer
//! port with a uTP RESET makes them fall back at once.
//!
//! Only SYNs are answered, with one 20-byte packet no larger than the SYN (no amplification),
//! and at most `MAX_RESETS_PER_SEC` a second, so the port cannot be used to reflect a flood.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// uTP header: type and version, extension, connection id, timestamp, timestamp difference,
/// window size, sequence number, acknowledgement number.
const HEADER: usize = 20;
const VERSION: u8 = 1;
const ST_RESET: u8 = 3;
const ST_SYN: u8 = 4;
const MAX_RESETS_PER_SEC: u32 = 2000;

/// The RESET that refuses `syn`, or `None` when `syn` is not a uTP SYN.
pub fn reset_for(syn: &[u8], now_micros: u32) -> Option<[u8; HEADER]> {
    if syn.len() < HEADER || syn[0] != (ST_SYN << 4 | VERSION) {
        return None;
    }
    let mut reset = [0u8; HEADER];
    reset[0] = ST_RESET << 4 | VERSION;
    // A SYN carries the initiator's receive id: replies are addressed to it.
    reset[2..4].copy_from_slice(&syn[2..4]);
    reset[4..8].copy_from_slice(&now_micros.to_be_bytes());
    // Acknowledges the SYN's sequence number.
    reset[18..20].copy_from_slice(&syn[16..18]);
    Some(reset)
}

/// Answers uTP SYNs on `socket` until `shutdown` is cancelled.
pub async fn run(socket: UdpSocket, shutdown: CancellationToken) {
    let start = Instant::now();
    let mut window = (Instant::now(), 0u32);
    let mut buf = [0u8; 1500];
    loop {
        let (n, from): (usize, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(got) => got,
                Err(e) => {
                    // ICMP errors from earlier replies surface here; nothing to do about them.
                    debug!("utp refuser: {e}");
                    continue;
                }
            },
        };
        let now = Instant::now();
        if now.duration_since(window.0) >= Duration::from_secs(1) {
            window = (now, 0);
        }
        if window.1 >= MAX_RESETS_PER_SEC {
            continue;
        }
        let micros = now.duration_since(start).as_micros() as u32;
        if let Some(reset) = reset_for(&buf[..n], micros) {
            window.1 += 1;
            if let Err(e) = socket.send_to(&reset, from).await {
                debug!(%from, "utp reset not sent: {e}");
            }
        }
    }
}

/// Binds the UDP side of the peer port (`addr`, the TCP listener's bound address) and answers
/// uTP SYNs there. A port already taken is logged and skipped: peers then reach us after their
/// uTP timeout.
pub async fn spawn(
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    match UdpSocket::bind(addr).await {
        Ok(socket) => Some(tokio::spawn(run(socket, shutdown))),
        Err(e) => {
            warn!("cannot bind UDP {addr} to refuse uTP (peers will fall back to TCP after their timeout): {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syn_gets_a_reset_addressed_to_it() {
        let mut syn = [0u8; 20];
        syn[0] = 0x41;
        syn[2..4].copy_from_slice(&0xbeefu16.to_be_bytes());
        syn[16..18].copy_from_slice(&7u16.to_be_bytes());
        let reset = reset_for(&syn, 99).unwrap();
        assert_eq!(reset[0], 0x31);
        assert_eq!(&reset[2..4], &0xbeefu16.to_be_bytes());
        assert_eq!(&reset[4..8], &99u32.to_be_bytes());
        assert_eq!(&reset[18..20], &7u16.to_be_bytes());
        // Not a SYN, a SYN of another version, a short packet: no answer.
        let mut data = syn;
        data[0] = 0x01;
        assert_eq!(reset_for(&data, 0), None);
        let mut v2 = syn;
        v2[0] = 0x42;
        assert_eq!(reset_for(&v2, 0), None);
        assert_eq!(reset_for(&syn[..19], 0), None);
    }
}
