//! LEDBAT (RFC 6817) as BEP 29 and libtorrent apply it: the window follows the one-way queueing
//! delay the peer measures for our packets (`timestamp_difference_microseconds`), growing by at
//! most one MSS per RTT while that delay is under the target and shrinking when it is over, by
//! the share it is over per RTT (at most half, as LEDBAT++). Loss halves the window, as in TCP;
//! the window never drops below `MIN_CWND` MSS.
//!
//! Added to librqbit-utp 0.7.0 for bitseed (see PATCHES.md).

use std::time::{Duration, Instant};

use crate::rtte::RttEstimator;

use super::CongestionController;

/// RFC 6817 TARGET; BEP 29 and libtorrent use 100 ms.
const TARGET_US: f64 = 100_000.0;
/// RFC 6817 GAIN: at most one MSS more per window of acknowledged bytes, i.e. per RTT.
const GAIN: f64 = 1.0;
/// RFC 6817 MIN_CWND, in MSS: a connection never stalls on its own window.
const MIN_CWND: f64 = 2.0;
/// RFC 6817 BASE_HISTORY: the base delay is the minimum over this many one-minute buckets, so
/// it follows a route change or clock drift within minutes.
const BASE_HISTORY: usize = 10;
const BASE_BUCKET: Duration = Duration::from_secs(60);
/// RFC 6817 CURRENT_FILTER: the current delay is the minimum of the last few samples, which
/// filters out a single delayed ACK.
const CURRENT_FILTER: usize = 4;
/// Above the target the window shrinks by at most this share per RTT.
const MAX_DECREASE: f64 = 0.5;
/// Initial slow start ends once the queueing delay reaches this share of the target.
const SLOW_START_EXIT: f64 = 0.75;

/// `a < b` for clock values that wrap (the peer's and our timestamps are 32-bit microseconds).
fn wrapping_less(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn wrapping_min(a: u32, b: u32) -> u32 {
    if wrapping_less(a, b) { a } else { b }
}

#[derive(Clone, Copy, PartialEq)]
pub struct Ledbat {
    /// Window in bytes.
    cwnd: f64,
    ssthresh: f64,
    mss: usize,
    /// The peer's advertised receive window, in bytes.
    rwnd: f64,

    /// Per-minute minimum delay samples, oldest first; `base_len` of them are set.
    base: [u32; BASE_HISTORY],
    base_len: usize,
    bucket_started: Instant,

    /// The last `CURRENT_FILTER` samples (ring), `current_len` of them set.
    current: [u32; CURRENT_FILTER],
    current_len: usize,
    current_next: usize,
}

impl core::fmt::Debug for Ledbat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ledbat cwnd={},ssthresh={:.0},queueing_delay_us={:?},mss={}",
            self.window(),
            self.ssthresh,
            self.queueing_delay_us(),
            self.mss
        )
    }
}

impl Ledbat {
    pub fn new(now: Instant, mss: usize) -> Ledbat {
        Ledbat {
            cwnd: MIN_CWND * mss as f64,
            ssthresh: f64::INFINITY,
            mss,
            rwnd: 0.,
            base: [0; BASE_HISTORY],
            base_len: 0,
            bucket_started: now,
            current: [0; CURRENT_FILTER],
            current_len: 0,
            current_next: 0,
        }
    }

    fn min_cwnd(&self) -> f64 {
        MIN_CWND * self.mss as f64
    }

    fn clamp(&mut self) {
        self.cwnd = self.cwnd.min(self.rwnd).max(self.min_cwnd());
    }

    fn base_delay(&self) -> Option<u32> {
        self.base[..self.base_len]
            .iter()
            .copied()
            .reduce(wrapping_min)
    }

    fn current_delay(&self) -> Option<u32> {
        self.current[..self.current_len]
            .iter()
            .copied()
            .reduce(wrapping_min)
    }

    /// Queueing delay in microseconds: the current delay over the base delay; None before the
    /// first sample.
    pub fn queueing_delay_us(&self) -> Option<u32> {
        let (current, base) = (self.current_delay()?, self.base_delay()?);
        // The base is the minimum, so a current delay below it can only come from wrapping.
        Some((current.wrapping_sub(base) as i32).max(0) as u32)
    }
}

impl CongestionController for Ledbat {
    fn window(&self) -> usize {
        self.cwnd.max(self.min_cwnd()).min(self.rwnd) as usize
    }

    fn sshthresh(&self) -> usize {
        if self.ssthresh.is_finite() {
            self.ssthresh as usize
        } else {
            usize::MAX
        }
    }

    fn set_mss(&mut self, mss: usize) {
        // The window is in bytes: only the floor and the growth step depend on the MSS.
        self.mss = mss;
    }

    fn smss(&self) -> usize {
        self.mss
    }

    fn on_recovered(&mut self, new_cwnd_bytes: usize, new_sshthresh: usize) {
        self.cwnd = new_cwnd_bytes as f64;
        self.ssthresh = new_sshthresh as f64;
        self.clamp();
    }

    fn on_delay_sample(&mut self, now: Instant, delay_us: u32) {
        // 0 is what a peer sends before it has a sample of its own.
        if delay_us == 0 {
            return;
        }
        if self.base_len == 0 {
            self.base[0] = delay_us;
            self.base_len = 1;
            self.bucket_started = now;
        } else if now.saturating_duration_since(self.bucket_started) >= BASE_BUCKET {
            if self.base_len == BASE_HISTORY {
                self.base.copy_within(1.., 0);
                self.base_len -= 1;
            }
            self.base[self.base_len] = delay_us;
            self.base_len += 1;
            self.bucket_started = now;
        } else {
            let last = &mut self.base[self.base_len - 1];
            *last = wrapping_min(*last, delay_us);
        }
        self.current[self.current_next] = delay_us;
        self.current_next = (self.current_next + 1) % CURRENT_FILTER;
        self.current_len = (self.current_len + 1).min(CURRENT_FILTER);
    }

    fn on_ack(&mut self, _now: Instant, len: usize, _rtt: &RttEstimator) {
        if len == 0 {
            return;
        }
        let len = len as f64;
        let mss = self.mss as f64;
        // No sample yet (or a peer that never sends one): grow as if the queue were empty,
        // which with loss halving is TCP Reno's behaviour.
        let delay = self.queueing_delay_us().unwrap_or(0) as f64;
        if self.cwnd < self.ssthresh {
            if delay < SLOW_START_EXIT * TARGET_US {
                self.cwnd += len;
                self.clamp();
                return;
            }
            self.ssthresh = self.cwnd;
        }
        if delay <= TARGET_US {
            let off_target = (TARGET_US - delay) / TARGET_US;
            self.cwnd += GAIN * off_target * len * mss / self.cwnd;
        } else {
            // Over the target, RFC 6817's linear step (at most one MSS per RTT at twice the
            // target) takes minutes to drain a queue a TCP flow is filling. As LEDBAT++
            // (draft-irtf-iccrg-ledbat-plus-plus) does: shrink by the share of the target the
            // delay is over it, per window acknowledged, at most halving per RTT (never faster
            // than TCP's loss response).
            let over = ((delay - TARGET_US) / TARGET_US).min(MAX_DECREASE);
            self.cwnd -= over * len;
        }
        self.clamp();
    }

    fn on_retransmission_timeout(&mut self, _now: Instant) {
        // RFC 6817 2.4.2: nothing acknowledged within a timeout leaves one MSS (the floor of
        // two keeps the pipe from stalling on a lone lost packet, as libtorrent does).
        self.ssthresh = (self.cwnd / 2.).max(self.min_cwnd());
        self.cwnd = self.min_cwnd();
    }

    fn on_enter_recovery(&mut self, _now: Instant) {
        self.cwnd = (self.cwnd / 2.).max(self.min_cwnd());
        self.ssthresh = self.cwnd;
    }

    fn set_remote_window(&mut self, win: usize) {
        self.rwnd = win as f64;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{CURRENT_FILTER, Ledbat, MIN_CWND, TARGET_US};
    use crate::{congestion::CongestionController, rtte::RttEstimator};

    const MSS: usize = 1400;

    /// A controller past slow start with `cwnd` bytes and base delay `base` (a clock offset
    /// the peer adds to every sample).
    fn steady(now: Instant, cwnd: f64, base: u32) -> Ledbat {
        let mut l = Ledbat::new(now, MSS);
        l.set_remote_window(10 << 20);
        l.cwnd = cwnd;
        l.ssthresh = cwnd;
        l.on_delay_sample(now, base);
        l
    }

    /// Acks one window's worth of bytes in MSS-sized packets, each with a delay sample (the
    /// current-delay filter filled with it first).
    fn ack_window(l: &mut Ledbat, now: Instant, delay: u32) {
        let rtte = RttEstimator::default();
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(now, delay);
        }
        let packets = l.window() / MSS;
        for _ in 0..packets {
            l.on_delay_sample(now, delay);
            l.on_ack(now, MSS, &rtte);
        }
    }

    #[test]
    fn grows_at_most_one_mss_per_rtt_below_target() {
        let now = Instant::now();
        let base = u32::MAX - 500; // the samples below wrap past zero
        let mut l = steady(now, 20. * MSS as f64, base);
        let before = l.window();
        ack_window(&mut l, now, base.wrapping_add(1_000));
        let grown = l.window() - before;
        assert!(grown > 0, "no growth below target");
        assert!(
            grown <= MSS,
            "grew {grown} bytes in one RTT, more than one MSS"
        );
    }

    #[test]
    fn shrinks_above_target_and_holds_at_it() {
        let now = Instant::now();
        let mut l = steady(now, 50. * MSS as f64, 1_000);
        let before = l.window();
        // 20% over the target: about a fifth less per RTT.
        ack_window(&mut l, now, 1_000 + 12 * TARGET_US as u32 / 10);
        let after = l.window();
        assert!(
            after < before * 85 / 100 && after > before * 75 / 100,
            "{after} of {before}"
        );
        // Far over: never below half in one RTT.
        let before = l.window();
        ack_window(&mut l, now, 1_000 + 5 * TARGET_US as u32);
        assert!(l.window() >= before / 2 - MSS, "{} of {before}", l.window());
        assert!(l.window() < before * 6 / 10, "{} of {before}", l.window());

        let mut l = steady(now, 50. * MSS as f64, 1_000);
        ack_window(&mut l, now, 1_000 + TARGET_US as u32);
        assert_eq!(l.window(), 50 * MSS, "at the target the window holds");
    }

    #[test]
    fn base_delay_is_the_minimum_over_the_history() {
        let start = Instant::now();
        let mut l = steady(start, 20. * MSS as f64, 50_000);
        // A lower sample becomes the base at once.
        l.on_delay_sample(start, 40_000);
        l.on_delay_sample(start, 40_000 + 30_000);
        assert_eq!(
            l.queueing_delay_us(),
            Some(0),
            "current filter takes the minimum"
        );
        for _ in 0..4 {
            l.on_delay_sample(start, 40_000 + 30_000);
        }
        assert_eq!(l.queueing_delay_us(), Some(30_000));
        // Ten minutes of higher samples (a route change): the old base ages out.
        for minute in 1..=10 {
            l.on_delay_sample(start + Duration::from_secs(60 * minute), 90_000);
        }
        assert_eq!(l.base_delay(), Some(90_000));
        assert_eq!(l.queueing_delay_us(), Some(0));
    }

    #[test]
    fn loss_halves_and_timeout_floors() {
        let now = Instant::now();
        let mut l = steady(now, 40. * MSS as f64, 1_000);
        l.on_enter_recovery(now);
        assert_eq!(l.window(), 20 * MSS);
        l.on_retransmission_timeout(now);
        assert_eq!(l.window(), MIN_CWND as usize * MSS);
        // Far over target for many RTTs: the window stays at the floor.
        for _ in 0..100 {
            ack_window(&mut l, now, 1_000 + 10 * TARGET_US as u32);
        }
        assert_eq!(l.window(), MIN_CWND as usize * MSS);
    }

    #[test]
    fn slow_start_until_delay_nears_target() {
        let now = Instant::now();
        let mut l = Ledbat::new(now, MSS);
        l.set_remote_window(10 << 20);
        l.on_delay_sample(now, 1_000);
        let rtte = RttEstimator::default();
        for _ in 0..10 {
            l.on_ack(now, MSS, &rtte);
        }
        assert_eq!(l.window(), 12 * MSS, "slow start adds what was acked");
        l.on_delay_sample(now, 1_000 + 90_000);
        for _ in 0..4 {
            l.on_delay_sample(now, 1_000 + 90_000);
        }
        l.on_ack(now, MSS, &rtte);
        assert_eq!(
            l.sshthresh(),
            12 * MSS,
            "slow start ends at 75% of the target"
        );
    }

    #[test]
    fn remote_window_caps() {
        let now = Instant::now();
        let mut l = steady(now, 40. * MSS as f64, 1_000);
        l.set_remote_window(10 * MSS);
        ack_window(&mut l, now, 1_000);
        assert_eq!(l.window(), 10 * MSS);
    }
}
