//! The publisher's one upload budget (`egress.max_rate`) and what it sent, by channel.
//!
//! Everything the publisher sends draws from one token bucket: the peer wire (where every
//! piece sent is shared onward by the swarm), the web seed (BitTorrent clients fetching
//! `/files`), and direct downloads (browsers, curl, wget). When the budget is contended, the
//! peer wire goes first; direct downloads are guaranteed `direct_share` of the rate and the web
//! seed `web_seed_share`, and each takes more only while the channels before it want nothing.
//! When the budget is not contended (tokens to spare), anyone takes what it needs. With no
//! budget (`max_rate = 0`), nothing waits and the channels are only counted.
//!
//! The rules (`Budget`) are pure: the caller hands in the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::rate::TokenBucket;

/// Where the publisher's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Peer = 0,
    WebSeed = 1,
    Direct = 2,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Peer, Channel::WebSeed, Channel::Direct];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Peer => "peer",
            Channel::WebSeed => "web_seed",
            Channel::Direct => "direct",
        }
    }
}

/// `[egress]` settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Bytes per second the publisher sends in all (peer wire, web seed, direct downloads);
    /// 0 = unlimited. `peer.max_upload_rate`, when set, caps the peer wire alone within it.
    pub max_rate: u64,
    /// Share of `max_rate` direct downloads are sure of when they want it (0 to 1).
    pub direct_share: f64,
    /// Share of `max_rate` the web seed is sure of, so a client that cannot reach the peer port
    /// still finishes (0 to 1).
    pub web_seed_share: f64,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            max_rate: 0,
            // People without a BitTorrent client are served at half the budget at least.
            direct_share: 0.5,
            web_seed_share: 0.05,
        }
    }
}

impl EgressConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("egress.direct_share", self.direct_share),
            ("egress.web_seed_share", self.web_seed_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{key} must be between 0 and 1, not {v}"));
            }
        }
        if self.direct_share + self.web_seed_share > 1.0 {
            return Err("egress.direct_share + egress.web_seed_share must not exceed 1".into());
        }
        Ok(())
    }
}

/// How long a channel counts as wanting bytes after it last asked.
const DEMAND: Duration = Duration::from_millis(100);
/// How soon a channel held back by the share rules asks again.
const RETRY: Duration = Duration::from_millis(10);
/// The time over which each channel's recent rate is averaged.
const WINDOW: f64 = 1.0;

/// The budget's rules over time handed in.
#[derive(Debug)]
pub struct Budget {
    bucket: TokenBucket,
    rate: f64,
    direct_share: f64,
    web_seed_share: f64,
    /// Per channel: bytes granted, decaying with time constant `WINDOW` (divided by it, the
    /// recent rate), as of `recent_at`; and until when it counts as wanting more.
    recent: [f64; 3],
    recent_at: Instant,
    wants_until: [Option<Instant>; 3],
}

impl Budget {
    pub fn new(config: &EgressConfig, now: Instant) -> Budget {
        Budget {
            // At least one read of blocks in the bucket.
            bucket: TokenBucket::with_burst(config.max_rate, 256 * 1024, now),
            rate: config.max_rate as f64,
            direct_share: config.direct_share,
            web_seed_share: config.web_seed_share,
            recent: [0.0; 3],
            recent_at: now,
            wants_until: [None; 3],
        }
    }

    fn decay(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.recent_at).as_secs_f64();
        self.recent_at = now;
        let keep = (-dt / WINDOW).exp();
        for r in &mut self.recent {
            *r *= keep;
        }
    }

    fn wants(&self, ch: Channel, now: Instant) -> bool {
        self.wants_until[ch as usize].is_some_and(|t| now < t)
    }

    /// The channel's recent rate, bytes per second.
    pub fn recent_rate(&self, ch: Channel) -> f64 {
        self.recent[ch as usize] / WINDOW
    }

    /// `n` bytes for `ch` at `now`, or how long to wait before asking again. A grant may take
    /// the bucket into debt by its own size, so a read is never split.
    pub fn take(&mut self, ch: Channel, n: u64, now: Instant) -> Result<(), Duration> {
        self.decay(now);
        self.wants_until[ch as usize] = Some(now + DEMAND);
        // Tokens to spare: nobody is held back. Otherwise a channel under its guaranteed share
        // that wants bytes goes first, then the peer wire, then direct downloads, then the web
        // seed.
        let contended = self.bucket.contended(now);
        let share = |c: Channel| match c {
            Channel::Peer => 0.0,
            Channel::Direct => self.direct_share,
            Channel::WebSeed => self.web_seed_share,
        };
        let under = |c: Channel| self.recent_rate(c) < share(c) * self.rate;
        let starving = |c: Channel| c != ch && self.wants(c, now) && under(c);
        let allowed = !contended
            || match ch {
                Channel::Peer => !starving(Channel::Direct) && !starving(Channel::WebSeed),
                Channel::Direct => {
                    under(ch) || (!self.wants(Channel::Peer, now) && !starving(Channel::WebSeed))
                }
                Channel::WebSeed => {
                    under(ch)
                        || !(self.wants(Channel::Peer, now) || self.wants(Channel::Direct, now))
                }
            };
        if !allowed {
            return Err(RETRY);
        }
        self.bucket.take(n, now).map_err(|wait| wait.max(RETRY))?;
        self.recent[ch as usize] += n as f64;
        Ok(())
    }

    /// Takes `n` bytes already committed on `ch` (small answers sent at once), paid for by the
    /// next grants.
    pub fn charge(&mut self, ch: Channel, n: u64, now: Instant) {
        self.decay(now);
        self.bucket.charge(n, now);
        self.recent[ch as usize] += n as f64;
    }
}

/// The budget and the bytes sent, shared by the seeder and the web face.
#[derive(Debug)]
pub struct Egress {
    budget: Option<Mutex<Budget>>,
    sent: [AtomicU64; 3],
}

impl Egress {
    pub fn new(config: &EgressConfig) -> Egress {
        Egress {
            budget: (config.max_rate > 0).then(|| Mutex::new(Budget::new(config, Instant::now()))),
            sent: Default::default(),
        }
    }

    /// No budget: nothing waits.
    pub fn unlimited() -> Egress {
        Egress::new(&EgressConfig::default())
    }

    pub fn limited(&self) -> bool {
        self.budget.is_some()
    }

    /// Asks for `n` bytes on `ch`: `Err(wait)` when the budget says to wait.
    pub fn take(&self, ch: Channel, n: u64) -> Result<(), Duration> {
        match &self.budget {
            Some(b) => b
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(ch, n, Instant::now()),
            None => Ok(()),
        }
    }

    /// Takes `n` bytes already committed on `ch`, without waiting.
    pub fn charge(&self, ch: Channel, n: u64) {
        if let Some(b) = &self.budget {
            b.lock()
                .unwrap_or_else(|e| e.into_inner())
                .charge(ch, n, Instant::now());
        }
    }

    /// Waits until `n` bytes on `ch` are granted.
    pub async fn wait_for(&self, ch: Channel, n: u64) {
        while let Err(wait) = self.take(ch, n) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Records `n` bytes written to a socket on `ch`.
    pub fn sent(&self, ch: Channel, n: u64) {
        self.sent[ch as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn sent_on(&self, ch: Channel) -> u64 {
        self.sent[ch as usize].load(Ordering::Relaxed)
    }

    /// Prometheus lines: bytes sent by channel.
    pub fn metrics(&self) -> String {
        let mut out = String::from(
            "# HELP bitseed_egress_bytes_total Bytes the publisher wrote to sockets, by channel \
             (peer wire, web seed, direct downloads).\n# TYPE bitseed_egress_bytes_total counter\n",
        );
        for ch in Channel::ALL {
            out.push_str(&format!(
                "bitseed_egress_bytes_total{{channel=\"{}\"}} {}\n",
                ch.name(),
                self.sent_on(ch)
            ));
        }
        out
    }
}

/// What one torrent's publisher sent, by channel, and the direct downloads completed.
#[derive(Debug, Default)]
pub struct Offload {
    sent: [AtomicU64; 3],
    pub direct_completed: AtomicU64,
    /// Addresses with a peer-wire session of this torrent holding a slot, and how many each
    /// (bounded by the seeder's connection cap). A client among them reaches the seeder's
    /// peer port, so the web seed is of no use to it (see `web::files`).
    on_wire: Mutex<HashMap<IpAddr, u32>>,
    /// Pieces each address last asked the web seed for, until when (see `claim_web_seed`).
    web_claims: Mutex<HashMap<IpAddr, WebClaim>>,
    /// Woken whenever an address joins `on_wire` (see `on_wire_soon`).
    wire_joined: tokio::sync::Notify,
    /// When each address was last waited for at the web seed (see `on_wire_soon`).
    waited: Mutex<HashMap<IpAddr, Instant>>,
}

#[derive(Debug, Clone)]
struct WebClaim {
    pieces: Range<u32>,
    until: Instant,
}

/// How long a web-seed request's pieces count as taken by its client after we answered it.
/// libtorrent reads our answer only once its download limiter grants the whole request's
/// quota (16 MiB, seconds at a few MB/s), and asks no one else for those pieces until then.
pub const WEB_CLAIM_HOLD: Duration = Duration::from_secs(6);
/// Addresses remembered with a claim, or as waited for; beyond it, newer ones are not recorded
/// (and not waited for).
const MAX_WEB_CLAIMS: usize = 4096;
/// How long the web seed waits for a client that is not on the peer wire yet to join it: a
/// BitTorrent client opens its web seed request and its peer connection together, and the peer
/// connection comes a tracker answer later (a few round trips).
pub const WIRE_GRACE: Duration = Duration::from_secs(2);
/// How long an address waited for once is not waited for again: a client that never joins the
/// wire (its peer port unreachable) pays `WIRE_GRACE` once, not on every request.
const WAITED_MEMORY: Duration = Duration::from_secs(600);
/// Claims that order super-seeding's pieces (`Offload::web_claims`): a bound on its per-pick
/// work, plenty for the clients that start together.
const CLAIMS_IN_ORDER: usize = 64;

impl Offload {
    /// `ip` asked the web seed for `pieces`: its client will not ask the peer wire for them
    /// for a while, so super-seeding shows it other pieces meanwhile.
    pub fn claim_web_seed(&self, ip: IpAddr, pieces: Range<u32>, now: Instant) {
        let mut m = self.web_claims.lock().unwrap_or_else(|e| e.into_inner());
        let until = now + WEB_CLAIM_HOLD;
        insert_bounded(&mut m, ip, WebClaim { pieces, until }, |c| c.until > now);
    }

    /// The pieces `ip`'s client has lately asked the web seed for, if any.
    pub fn web_claim(&self, ip: IpAddr, now: Instant) -> Option<Range<u32>> {
        let mut m = self.web_claims.lock().unwrap_or_else(|e| e.into_inner());
        let ip = ip.to_canonical();
        match m.get(&ip) {
            Some(c) if c.until > now => Some(c.pieces.clone()),
            Some(_) => {
                m.remove(&ip);
                None
            }
            None => None,
        }
    }

    /// The pieces clients are waiting on the web seed for now, one range per address (at most
    /// `CLAIMS_IN_ORDER`, the latest): super-seeding hands out first the pieces fewest of them
    /// cover, which those clients can take from the peers that get them.
    pub fn web_claims(&self, now: Instant) -> Vec<Range<u32>> {
        let m = self.web_claims.lock().unwrap_or_else(|e| e.into_inner());
        let mut live: Vec<&WebClaim> = m.values().filter(|c| c.until > now).collect();
        if live.len() > CLAIMS_IN_ORDER {
            live.sort_unstable_by_key(|c| std::cmp::Reverse(c.until));
            live.truncate(CLAIMS_IN_ORDER);
        }
        live.into_iter().map(|c| c.pieces.clone()).collect()
    }

    pub fn joined_wire(&self, ip: IpAddr) {
        let mut m = self.on_wire.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(ip.to_canonical()).or_default() += 1;
        drop(m);
        self.wire_joined.notify_waiters();
    }

    pub fn left_wire(&self, ip: IpAddr) {
        let mut m = self.on_wire.lock().unwrap_or_else(|e| e.into_inner());
        let ip = ip.to_canonical();
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    /// Whether `ip` has a peer-wire session of this torrent.
    pub fn on_wire(&self, ip: IpAddr) -> bool {
        let m = self.on_wire.lock().unwrap_or_else(|e| e.into_inner());
        m.contains_key(&ip.to_canonical())
    }

    /// Whether `ip` is on the peer wire, or joins it within `grace`; an address is waited for
    /// once per `WAITED_MEMORY`. Answers the moment it joins.
    ///
    /// Why: libtorrent sends its web seed request as it connects to the peer wire. Answered
    /// before it is there, it gets a stream that is cut when it arrives, reads that only once
    /// its limiter grants the whole 16 MiB, and then asks for another 16 MiB: two holds on a
    /// third of a 48 MiB file instead of one.
    pub async fn on_wire_soon(&self, ip: IpAddr, grace: Duration) -> bool {
        if self.on_wire(ip) {
            return true;
        }
        let now = Instant::now();
        if !self.first_wait(ip, now) {
            return false;
        }
        let deadline = tokio::time::Instant::from_std(now + grace);
        loop {
            let joined = self.wire_joined.notified();
            tokio::pin!(joined);
            // Registered before the check, so a join between the two is not missed.
            joined.as_mut().enable();
            if self.on_wire(ip) {
                return true;
            }
            if tokio::time::timeout_at(deadline, joined).await.is_err() {
                return self.on_wire(ip);
            }
        }
    }

    /// Records that `ip` is waited for at `now`, unless it was within `WAITED_MEMORY` (or the
    /// record is full): whether to wait.
    fn first_wait(&self, ip: IpAddr, now: Instant) -> bool {
        let mut m = self.waited.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < WAITED_MEMORY;
        if m.get(&ip.to_canonical()).is_some_and(fresh) {
            return false;
        }
        insert_bounded(&mut m, ip, now, fresh)
    }

    pub fn sent(&self, ch: Channel, n: u64) {
        self.sent[ch as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn sent_on(&self, ch: Channel) -> u64 {
        self.sent[ch as usize].load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        Channel::ALL.iter().map(|c| self.sent_on(*c)).sum()
    }
}

/// Whether a `User-Agent` is a BitTorrent client's (fetching `/files` as a web seed) rather than
/// a browser's or a download tool's: by the names the clients send.
pub fn is_bittorrent_client(user_agent: &str) -> bool {
    const NAMES: [&str; 16] = [
        "libtorrent",
        "qbittorrent",
        "transmission",
        "aria2",
        "rtorrent",
        "deluge",
        "utorrent",
        "\u{3bc}torrent",
        "bittorrent",
        "webtorrent",
        "vuze",
        "azureus",
        "biglybt",
        "tixati",
        "rqbit",
        "ktorrent",
    ];
    let ua = user_agent.to_lowercase();
    NAMES.iter().any(|n| ua.contains(n))
}

/// Records `v` for `ip` in a map of at most `MAX_WEB_CLAIMS` addresses, dropping the entries no
/// longer `live` when it is full; whether it was recorded (not when still full, `ip` not in it).
fn insert_bounded<V>(
    m: &mut HashMap<IpAddr, V>,
    ip: IpAddr,
    v: V,
    live: impl Fn(&V) -> bool,
) -> bool {
    let ip = ip.to_canonical();
    if m.len() >= MAX_WEB_CLAIMS {
        m.retain(|_, v| live(v));
    }
    if m.len() >= MAX_WEB_CLAIMS && !m.contains_key(&ip) {
        return false;
    }
    m.insert(ip, v);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(rate: u64) -> (Budget, Instant) {
        let t0 = Instant::now();
        let config = EgressConfig {
            max_rate: rate,
            ..EgressConfig::default()
        };
        (Budget::new(&config, t0), t0)
    }

    /// Runs the channels for `secs`, each asking for `chunk` bytes as often as it may, and
    /// returns the bytes each got.
    fn run(b: &mut Budget, t0: Instant, chans: &[Channel], secs: f64) -> [u64; 3] {
        let mut got = [0u64; 3];
        let mut next = vec![t0; chans.len()];
        let end = t0 + Duration::from_secs_f64(secs);
        loop {
            let (i, at) = next
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| **t)
                .map(|(i, t)| (i, *t))
                .unwrap();
            if at >= end {
                break;
            }
            match b.take(chans[i], 65536, at) {
                Ok(()) => got[chans[i] as usize] += 65536,
                Err(w) => next[i] = at + w,
            }
        }
        got
    }

    #[test]
    fn the_total_holds_across_channels() {
        let (mut b, t0) = budget(4_000_000);
        let got = run(&mut b, t0, &Channel::ALL, 10.0);
        let total: u64 = got.iter().sum();
        // 10 s at 4 MB/s, plus the burst and one grant of debt.
        assert!(
            total <= 40_000_000 + 1_000_000 + 65536 * 3,
            "{total} bytes in 10 s: {got:?}"
        );
        assert!(total >= 39_000_000, "{got:?}");
    }

    #[test]
    fn the_peer_wire_goes_first_and_the_others_keep_their_shares() {
        let (mut b, t0) = budget(4_000_000);
        let got = run(&mut b, t0, &[Channel::Peer, Channel::WebSeed], 20.0);
        let (peer, web) = (got[0] as f64, got[1] as f64);
        // The web seed gets about its 5%, the peer wire the rest.
        assert!(web / (peer + web) < 0.10 && web > 0.0, "{got:?}");
        let (mut b, t0) = budget(4_000_000);
        let got = run(&mut b, t0, &Channel::ALL, 20.0);
        let direct = got[2] as f64 / got.iter().sum::<u64>() as f64;
        assert!(
            (0.45..0.60).contains(&direct),
            "direct share {direct}: {got:?}"
        );
    }

    #[test]
    fn a_channel_alone_gets_everything() {
        let (mut b, t0) = budget(4_000_000);
        let got = run(&mut b, t0, &[Channel::WebSeed], 10.0);
        assert!(got[1] >= 39_000_000, "{got:?}");
    }

    #[test]
    fn a_web_seed_claim_holds_for_a_while_per_address() {
        let o = Offload::default();
        let t0 = Instant::now();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.9".parse().unwrap();
        o.claim_web_seed(ip, 10..20, t0);
        assert_eq!(o.web_claim(mapped, t0), Some(10..20));
        assert_eq!(o.web_claim("127.0.0.8".parse().unwrap(), t0), None);
        // A newer request replaces the older; the claim ends after the hold.
        o.claim_web_seed(ip, 30..40, t0 + Duration::from_secs(1));
        assert_eq!(o.web_claim(ip, t0 + WEB_CLAIM_HOLD), Some(30..40));
        assert_eq!(o.web_claim(ip, t0 + WEB_CLAIM_HOLD * 2), None);
        // The table is bounded: when full of live claims, new addresses are not recorded.
        for i in 0..MAX_WEB_CLAIMS as u32 {
            o.claim_web_seed(IpAddr::from(i.to_be_bytes()), 0..1, t0);
        }
        let late: IpAddr = "10.255.255.255".parse().unwrap();
        o.claim_web_seed(late, 0..1, t0);
        assert_eq!(o.web_claim(late, t0), None);
        // Once they expire, there is room again.
        o.claim_web_seed(late, 0..1, t0 + WEB_CLAIM_HOLD * 2);
        assert_eq!(o.web_claim(late, t0 + WEB_CLAIM_HOLD * 2), Some(0..1));
    }

    #[test]
    fn clients_by_user_agent() {
        for ua in [
            "libtorrent/2.0.8.0",
            "qBittorrent/4.6.2",
            "Transmission/3.00",
            "aria2/1.36.0",
            "WebTorrent/2.1.0 (https://webtorrent.io)",
        ] {
            assert!(is_bittorrent_client(ua), "{ua}");
        }
        for ua in [
            "curl/8.5.0",
            "Wget/1.21.3",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/120",
            "",
        ] {
            assert!(!is_bittorrent_client(ua), "{ua}");
        }
    }

    #[tokio::test]
    async fn the_web_seed_waits_once_for_an_address_to_join_the_wire() {
        let offload = std::sync::Arc::new(Offload::default());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.3".parse().unwrap(), "::1".parse().unwrap());
        let joining = offload.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            joining.joined_wire(a);
        });
        assert!(offload.on_wire_soon(a, Duration::from_secs(10)).await);
        // On the wire: no wait at all.
        assert!(offload.on_wire_soon(a, Duration::ZERO).await);
        offload.left_wire(a);
        // Waited for once already: not again, not even with time to spare.
        assert!(!offload.on_wire_soon(a, Duration::from_secs(10)).await);
        // Another address that never comes: the wait ends, once.
        assert!(!offload.on_wire_soon(b, Duration::from_millis(20)).await);
        assert!(!offload.first_wait(b, Instant::now()));
    }
}
