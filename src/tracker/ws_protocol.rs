//! The WebTorrent tracker protocol (JSON over WebSocket), as WebTorrent's `bittorrent-tracker`
//! client speaks it and aquatic_ws serves it: no runtime, bytes in and JSON out.
//!
//! Client to tracker, one JSON object per text message:
//! ```text
//! {"action":"announce","info_hash":H,"peer_id":P,"left":N,"event":"started",
//!  "numwant":5,"offers":[{"offer":{"type":"offer","sdp":"…"},"offer_id":O}, …]}
//! {"action":"announce","info_hash":H,"peer_id":P,"to_peer_id":Q,"offer_id":O,
//!  "answer":{"type":"answer","sdp":"…"}}                    (an answer to Q's offer O)
//! {"action":"scrape","info_hash":H | [H, …]}
//! ```
//! Tracker to client: the announce answer (`complete`, `incomplete`, `interval`), offers and
//! answers relayed from other peers (`offer` or `answer` with the sender's `peer_id` and the
//! `offer_id`), scrape files, and `failure reason`. H, P, Q and O are 20-byte "binary strings":
//! each byte one character U+0000..U+00FF (JavaScript's `String.fromCharCode`), not hex.
//!
//! Every field is bounded: the whole message (checked before parsing), the offers per announce,
//! each SDP, the hashes per scrape. `serde_json` does the parsing (it bounds nesting at 128);
//! unknown fields (`uploaded`, `trackerid`, …) are skipped.

use serde::Deserialize;
use serde_json::{json, Value};

use super::http_request::{Event, InfoHash};
use super::http_response::Counts;

pub type PeerId = [u8; 20];
pub type OfferId = [u8; 20];

/// The bounds a message is checked against.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    pub max_message_bytes: usize,
    pub max_offers: usize,
    pub max_sdp_bytes: usize,
    pub max_scrape_hashes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub offer_id: OfferId,
    pub sdp: String,
}

/// An answer to the offer `offer_id` that the peer `to_peer_id` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub to_peer_id: PeerId,
    pub offer_id: OfferId,
    pub sdp: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsAnnounce {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    /// Bytes left; `None` when the client does not know (no metadata yet) or sent none (an
    /// answer alone carries no `left`).
    pub left: Option<u64>,
    pub event: Event,
    pub numwant: Option<u32>,
    pub offers: Vec<Offer>,
    pub answer: Option<Answer>,
}

impl WsAnnounce {
    /// Whether this message says anything about the peer itself. WebTorrent sends an answer
    /// in a message of its own, without `left` or `event`: that one relays the answer and
    /// leaves the peer's state (a seeder stays a seeder) as it was.
    pub fn updates_peer(&self) -> bool {
        self.left.is_some() || self.event != Event::None || !self.offers.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsRequest {
    Announce(WsAnnounce),
    /// The info hashes asked about (empty: all, when full scrape is on).
    Scrape(Vec<InfoHash>),
}

/// Why a message is refused; the text goes back as its `failure reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("message longer than {0} bytes")]
    TooLong(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unknown action")]
    UnknownAction,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{0} is not 20 bytes (one character U+0000..U+00FF per byte)")]
    NotTwentyBytes(&'static str),
    #[error("more than {0} offers")]
    TooManyOffers(usize),
    #[error("SDP longer than {0} bytes")]
    SdpTooLong(usize),
    #[error("{0}: type must be \"{0}\"")]
    SdpType(&'static str),
    #[error("unknown event")]
    UnknownEvent,
    #[error("more than {0} info hashes")]
    TooManyHashes(usize),
    #[error("an answer needs to_peer_id, offer_id and answer together")]
    IncompleteAnswer,
}

#[derive(Deserialize)]
struct Raw {
    action: Option<String>,
    info_hash: Option<Value>,
    peer_id: Option<String>,
    left: Option<Value>,
    event: Option<String>,
    numwant: Option<Value>,
    offers: Option<Vec<RawOffer>>,
    answer: Option<RawSdp>,
    to_peer_id: Option<String>,
    offer_id: Option<String>,
}

#[derive(Deserialize)]
struct RawOffer {
    offer: RawSdp,
    offer_id: String,
}

#[derive(Deserialize)]
struct RawSdp {
    #[serde(rename = "type")]
    kind: String,
    sdp: String,
}

/// Parses one client message.
pub fn parse(msg: &[u8], limits: &WsLimits) -> Result<WsRequest, WsError> {
    if msg.len() > limits.max_message_bytes {
        return Err(WsError::TooLong(limits.max_message_bytes));
    }
    let raw: Raw = serde_json::from_slice(msg).map_err(|e| WsError::Malformed(e.to_string()))?;
    match raw.action.as_deref() {
        Some("announce") => announce(raw, limits).map(WsRequest::Announce),
        Some("scrape") => scrape(raw.info_hash, limits).map(WsRequest::Scrape),
        _ => Err(WsError::UnknownAction),
    }
}

fn announce(raw: Raw, limits: &WsLimits) -> Result<WsAnnounce, WsError> {
    let info_hash = match raw.info_hash {
        Some(Value::String(s)) => InfoHash::new(binary(&s, "info_hash")?),
        Some(_) => return Err(WsError::NotTwentyBytes("info_hash")),
        None => return Err(WsError::Missing("info_hash")),
    };
    let peer_id = binary(
        raw.peer_id.as_deref().ok_or(WsError::Missing("peer_id"))?,
        "peer_id",
    )?;
    let event = match raw.event.as_deref() {
        None | Some("") | Some("update") => Event::None,
        Some("started") => Event::Started,
        Some("stopped") => Event::Stopped,
        Some("completed") => Event::Completed,
        Some("paused") => Event::Paused,
        Some(_) => return Err(WsError::UnknownEvent),
    };
    let raw_offers = raw.offers.unwrap_or_default();
    if raw_offers.len() > limits.max_offers {
        return Err(WsError::TooManyOffers(limits.max_offers));
    }
    let mut offers = Vec::with_capacity(raw_offers.len());
    for o in raw_offers {
        offers.push(Offer {
            offer_id: binary(&o.offer_id, "offer_id")?,
            sdp: sdp(o.offer, "offer", limits)?,
        });
    }
    let answer = match (raw.answer, raw.to_peer_id, raw.offer_id) {
        (None, None, None) => None,
        // An `offer_id` alone comes with nothing to relay: ignored, as aquatic does.
        (None, None, Some(_)) => None,
        (Some(a), Some(to), Some(id)) => Some(Answer {
            to_peer_id: binary(&to, "to_peer_id")?,
            offer_id: binary(&id, "offer_id")?,
            sdp: sdp(a, "answer", limits)?,
        }),
        _ => return Err(WsError::IncompleteAnswer),
    };
    Ok(WsAnnounce {
        info_hash,
        peer_id,
        left: raw.left.as_ref().and_then(count),
        event,
        numwant: raw
            .numwant
            .as_ref()
            .and_then(count)
            .map(|n| n.min(u64::from(u32::MAX)) as u32),
        offers,
        answer,
    })
}

fn scrape(hashes: Option<Value>, limits: &WsLimits) -> Result<Vec<InfoHash>, WsError> {
    match hashes {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![InfoHash::new(binary(&s, "info_hash")?)]),
        Some(Value::Array(list)) => {
            if list.len() > limits.max_scrape_hashes {
                return Err(WsError::TooManyHashes(limits.max_scrape_hashes));
            }
            list.iter()
                .map(|v| match v {
                    Value::String(s) => binary(s, "info_hash").map(InfoHash::new),
                    _ => Err(WsError::NotTwentyBytes("info_hash")),
                })
                .collect()
        }
        Some(_) => Err(WsError::NotTwentyBytes("info_hash")),
    }
}

fn sdp(raw: RawSdp, kind: &'static str, limits: &WsLimits) -> Result<String, WsError> {
    if raw.kind != kind {
        return Err(WsError::SdpType(kind));
    }
    if raw.sdp.len() > limits.max_sdp_bytes {
        return Err(WsError::SdpTooLong(limits.max_sdp_bytes));
    }
    Ok(raw.sdp)
}

/// A JSON number as a count: a non-negative integer, or a float (JavaScript has no other
/// numbers) truncated; negative, fractional below zero, `null` or not a number: none.
fn count(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f.min(u64::MAX as f64) as u64)
    })
}

/// A 20-byte binary string: exactly 20 characters, each U+0000..U+00FF.
fn binary(s: &str, field: &'static str) -> Result<[u8; 20], WsError> {
    let mut out = [0u8; 20];
    let mut chars = s.chars();
    for b in &mut out {
        let c = chars.next().ok_or(WsError::NotTwentyBytes(field))?;
        *b = u8::try_from(u32::from(c)).map_err(|_| WsError::NotTwentyBytes(field))?;
    }
    if chars.next().is_some() {
        return Err(WsError::NotTwentyBytes(field));
    }
    Ok(out)
}

/// The binary string of `bytes` (each byte one character).
pub fn binary_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The answer to an announce.
pub fn announce_answer(info_hash: &InfoHash, counts: Counts, interval: u32) -> String {
    json!({
        "action": "announce",
        "info_hash": binary_string(info_hash.as_bytes()),
        "complete": counts.complete,
        "incomplete": counts.incomplete,
        "interval": interval,
    })
    .to_string()
}

/// An offer from `from`, relayed to a peer of `info_hash` (the hash that peer announced).
pub fn offer_message(info_hash: &InfoHash, from: &PeerId, offer: &Offer) -> String {
    json!({
        "action": "announce",
        "info_hash": binary_string(info_hash.as_bytes()),
        "peer_id": binary_string(from),
        "offer_id": binary_string(&offer.offer_id),
        "offer": {"type": "offer", "sdp": offer.sdp},
    })
    .to_string()
}

/// `from`'s answer to the offer `offer_id`, relayed to the peer that made it.
pub fn answer_message(
    info_hash: &InfoHash,
    from: &PeerId,
    offer_id: &OfferId,
    sdp: &str,
) -> String {
    json!({
        "action": "announce",
        "info_hash": binary_string(info_hash.as_bytes()),
        "peer_id": binary_string(from),
        "offer_id": binary_string(offer_id),
        "answer": {"type": "answer", "sdp": sdp},
    })
    .to_string()
}

/// The scrape answer: counts per info hash, keyed by its binary string.
pub fn scrape_answer(files: &[(InfoHash, Counts)]) -> String {
    let files: serde_json::Map<String, Value> = files
        .iter()
        .map(|(h, c)| {
            (
                binary_string(h.as_bytes()),
                json!({"complete": c.complete, "incomplete": c.incomplete,
                       "downloaded": c.downloaded}),
            )
        })
        .collect();
    json!({"action": "scrape", "files": files}).to_string()
}

/// A refusal. WebTorrent reads a `failure reason` only from an answer naming its info hash.
pub fn failure(action: &str, info_hash: Option<&InfoHash>, reason: &str) -> String {
    let mut v = json!({"action": action, "failure reason": reason});
    if let Some(h) = info_hash {
        v["info_hash"] = Value::String(binary_string(h.as_bytes()));
    }
    v.to_string()
}

/// The refusal of an unparsable message: its action and info hash, when they can be read.
pub fn parse_failure(msg: &[u8], error: &WsError) -> String {
    #[derive(Deserialize)]
    struct Head {
        action: Option<String>,
        info_hash: Option<Value>,
    }
    let head: Option<Head> = serde_json::from_slice(msg).ok();
    let action = match head.as_ref().and_then(|h| h.action.as_deref()) {
        Some("scrape") => "scrape",
        _ => "announce",
    };
    let hash = head.and_then(|h| match h.info_hash {
        Some(Value::String(s)) => binary(&s, "info_hash").ok().map(InfoHash::new),
        _ => None,
    });
    failure(action, hash.as_ref(), &error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WsLimits = WsLimits {
        max_message_bytes: 65_536,
        max_offers: 10,
        max_sdp_bytes: 8192,
        max_scrape_hashes: 64,
    };

    /// Bytes 0..20 plus 0xE0: every range of the binary-string alphabet, including the
    /// characters JSON escapes and those UTF-8 writes in two bytes.
    fn hash() -> [u8; 20] {
        let mut h = [0u8; 20];
        for (i, b) in h.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(13).wrapping_add(0xE0);
        }
        h[3] = b'"';
        h[4] = b'\\';
        h[5] = 0;
        h
    }

    #[test]
    fn binary_strings_round_trip_through_json() {
        let h = hash();
        let msg = json!({"action": "scrape", "info_hash": binary_string(&h)}).to_string();
        assert_eq!(
            parse(msg.as_bytes(), &LIMITS),
            Ok(WsRequest::Scrape(vec![InfoHash::new(h)]))
        );
        // What WebTorrent's JSON.stringify writes for the same string.
        let js = r#"{"action":"scrape","info_hash":"\u0000\u0001ÿ\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f\u0010\u0011\u0012\u0013"}"#;
        let mut want = [0u8; 20];
        for (i, b) in want.iter_mut().enumerate() {
            *b = i as u8;
        }
        want[2] = 0xff;
        assert_eq!(
            parse(js.as_bytes(), &LIMITS),
            Ok(WsRequest::Scrape(vec![InfoHash::new(want)]))
        );
    }

    #[test]
    fn parses_webtorrents_announce_and_answer() {
        let (h, p) = (binary_string(&hash()), binary_string(&[b'-'; 20]));
        let msg = json!({"action":"announce","info_hash":h,"peer_id":p,"uploaded":0,
            "downloaded":0,"left":1234.0,"event":"started","numwant":2,
            "offers":[{"offer":{"type":"offer","sdp":"v=0"},"offer_id":binary_string(&[1;20])}]});
        let Ok(WsRequest::Announce(a)) = parse(msg.to_string().as_bytes(), &LIMITS) else {
            panic!()
        };
        assert_eq!(
            (a.left, a.event, a.numwant),
            (Some(1234), Event::Started, Some(2))
        );
        assert_eq!(
            a.offers,
            [Offer {
                offer_id: [1; 20],
                sdp: "v=0".into()
            }]
        );
        assert!(a.updates_peer() && a.answer.is_none());
        // Magnet without metadata: `left` is NaN in JavaScript, null in JSON.
        let msg = json!({"action":"announce","info_hash":h,"peer_id":p,"left":null,
            "to_peer_id":binary_string(&[2;20]),"offer_id":binary_string(&[3;20]),
            "answer":{"type":"answer","sdp":"v=0 a"}});
        let Ok(WsRequest::Announce(a)) = parse(msg.to_string().as_bytes(), &LIMITS) else {
            panic!()
        };
        assert_eq!(a.left, None);
        assert!(!a.updates_peer());
        assert_eq!(
            a.answer,
            Some(Answer {
                to_peer_id: [2; 20],
                offer_id: [3; 20],
                sdp: "v=0 a".into()
            })
        );
    }

    #[test]
    fn bounds_and_malformed_fields_are_refused() {
        let (h, p) = (binary_string(&hash()), binary_string(&[b'-'; 20]));
        let offer = json!({"offer":{"type":"offer","sdp":"v=0"},"offer_id":p});
        let many = json!({"action":"announce","info_hash":h,"peer_id":p,
            "offers": vec![offer; 11]});
        assert_eq!(
            parse(many.to_string().as_bytes(), &LIMITS),
            Err(WsError::TooManyOffers(10))
        );
        let big = json!({"action":"announce","info_hash":h,"peer_id":p,
            "offers":[{"offer":{"type":"offer","sdp":"x".repeat(8193)},"offer_id":p}]});
        assert_eq!(
            parse(big.to_string().as_bytes(), &LIMITS),
            Err(WsError::SdpTooLong(8192))
        );
        let long = vec![b' '; 65_537];
        assert_eq!(parse(&long, &LIMITS), Err(WsError::TooLong(65_536)));
        for (bad, why) in [
            (
                json!({"action":"announce","info_hash":"abc","peer_id":p}),
                "short hash",
            ),
            (
                json!({"action":"announce","info_hash":format!("{h}x"),"peer_id":p}),
                "long",
            ),
            (
                json!({"action":"announce","info_hash":"é€".repeat(10),"peer_id":p}),
                "wide",
            ),
            (json!({"action":"announce","info_hash":h}), "no peer id"),
            (
                json!({"action":"announce","info_hash":h,"peer_id":p,"event":"x"}),
                "event",
            ),
            (
                json!({"action":"announce","info_hash":h,"peer_id":p,"answer":
                {"type":"answer","sdp":""}}),
                "answer without its peer",
            ),
            (
                json!({"action":"announce","info_hash":h,"peer_id":p,"offers":[
                {"offer":{"type":"answer","sdp":""},"offer_id":p}]}),
                "type",
            ),
            (
                json!({"action":"scrape","info_hash":vec![h.clone(); 65]}),
                "scrape",
            ),
            (json!({"action":"dance"}), "action"),
            (json!([1, 2]), "not an object"),
        ] {
            assert!(parse(bad.to_string().as_bytes(), &LIMITS).is_err(), "{why}");
        }
        assert!(parse(b"{\"action\":", &LIMITS).is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes(), &LIMITS).is_err());
    }

    #[test]
    fn answers_carry_binary_strings() {
        let h = hash();
        let counts = Counts {
            complete: 2,
            incomplete: 1,
            downloaded: 7,
        };
        let v: Value =
            serde_json::from_str(&announce_answer(&InfoHash::new(h), counts, 120)).unwrap();
        assert_eq!(v["info_hash"].as_str().map(|s| s.chars().count()), Some(20));
        assert_eq!(v["info_hash"], binary_string(&h));
        assert_eq!(
            (v["complete"].as_u64(), v["interval"].as_u64()),
            (Some(2), Some(120))
        );
        let v: Value = serde_json::from_str(&scrape_answer(&[(InfoHash::new(h), counts)])).unwrap();
        assert_eq!(v["files"][binary_string(&h)]["downloaded"], 7);
        let bad = br#"{"action":"scrape","info_hash":5}"#;
        let err = parse(bad, &LIMITS).unwrap_err();
        let v: Value = serde_json::from_str(&parse_failure(bad, &err)).unwrap();
        assert_eq!(v["action"], "scrape");
        assert!(v["failure reason"].as_str().unwrap().contains("20 bytes"));
    }
}
