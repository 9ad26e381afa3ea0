//! Browsers' offers: bounded, parsed, and accepted by a new `Rtc` with our host candidate.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};

use super::Refused;

/// An offer's SDP at most (the tracker's `websocket.max_sdp_bytes` bounds it first; a
/// WebTorrent offer with its candidates is 1 to 3 KiB).
pub const MAX_OFFER_BYTES: usize = 16 * 1024;
/// An offer's SDP, bounded and parsed; it must offer a data channel.
pub(super) fn parse_offer(sdp: &str) -> Result<SdpOffer, Refused> {
    if sdp.len() > MAX_OFFER_BYTES {
        return Err(Refused::OfferTooLong(sdp.len()));
    }
    if !sdp.lines().any(|l| l.starts_with("m=application")) {
        return Err(Refused::BadOffer("no data channel (m=application)".into()));
    }
    SdpOffer::from_sdp_string(sdp).map_err(|e| Refused::BadOffer(e.to_string()))
}

/// A new `Rtc` that accepted `offer`, with our host candidate `candidate`: it, its ICE ufrag
/// (how the browser's checks name it) and the answer's SDP.
pub(super) fn accept_offer(
    offer: SdpOffer,
    candidate: SocketAddr,
    now: Instant,
) -> Result<(Rtc, String, String), Refused> {
    let creds = IceCreds::new();
    let mut rtc = RtcConfig::new()
        .set_local_ice_credentials(creds.clone())
        .build(now);
    let host = Candidate::host(candidate, "udp")
        .map_err(|e| Refused::BadOffer(format!("our candidate {candidate}: {e}")))?;
    rtc.add_local_candidate(host);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| Refused::BadOffer(e.to_string()))?
        .to_sdp_string();
    Ok((rtc, creds.ufrag, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_bounded_and_must_offer_a_data_channel() {
        let long = "v=0\r\n".repeat(MAX_OFFER_BYTES / 5 + 1);
        assert!(matches!(parse_offer(&long), Err(Refused::OfferTooLong(_))));
        let audio = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        assert!(matches!(parse_offer(audio), Err(Refused::BadOffer(_))));
        assert!(matches!(
            parse_offer("m=application garbage"),
            Err(Refused::BadOffer(_))
        ));
        assert!(matches!(parse_offer(""), Err(Refused::BadOffer(_))));
    }

    /// An offer as Chromium makes it for a data channel (simple-peer, no trickle).
    const CHROMIUM_OFFER: &str = "v=0\r\n\
        o=- 4215775240449105457 2 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=group:BUNDLE 0\r\n\
        a=extmap-allow-mixed\r\n\
        a=msid-semantic: WMS\r\n\
        m=application 50000 UDP/DTLS/SCTP webrtc-datachannel\r\n\
        c=IN IP4 127.0.0.1\r\n\
        a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0 network-cost 999\r\n\
        a=ice-ufrag:Hk3T\r\n\
        a=ice-pwd:jZl2rTYxN5VsaqJ1mOxXqUFp\r\n\
        a=ice-options:trickle\r\n\
        a=fingerprint:sha-256 8B:0B:9C:1C:6A:45:BB:4F:3E:52:1D:A4:CE:71:5D:0B:6E:5E:37:7C:DF:2B:A5:E0:9E:6B:3C:9F:AD:49:51:2C\r\n\
        a=setup:actpass\r\n\
        a=mid:0\r\n\
        a=sctp-port:5000\r\n\
        a=max-message-size:262144\r\n";

    #[test]
    fn a_chromium_offer_gets_an_answer_with_our_candidate() {
        let offer = parse_offer(CHROMIUM_OFFER).unwrap();
        let ours: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let (rtc, ufrag, answer) = accept_offer(offer, ours, Instant::now()).unwrap();
        assert!(rtc.is_alive());
        assert!(answer.contains("m=application"), "{answer}");
        assert!(answer.contains(&format!("a=ice-ufrag:{ufrag}")), "{answer}");
        assert!(answer.contains("127.0.0.1 40000 typ host"), "{answer}");
        assert!(answer.contains("a=fingerprint:sha-256"), "{answer}");
    }

    /// Chromium's default: its host candidates as mDNS names, which nothing resolves here;
    /// the answer is made all the same (the browser's checks teach ICE its address).
    #[test]
    fn an_offer_with_mdns_candidates_is_answered() {
        let offer = CHROMIUM_OFFER.replace(
            "127.0.0.1 50000 typ host",
            "0bd9ee9f-0d4f-4b52-a8a3-07a7e0d8b38b.local 50000 typ host",
        );
        let ours: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let (_, _, answer) =
            accept_offer(parse_offer(&offer).unwrap(), ours, Instant::now()).expect("answered");
        assert!(answer.contains("192.0.2.7 40000 typ host"), "{answer}");
    }
}
