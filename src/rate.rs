//! A token bucket: the seeder's upload limit, its hashing budget and the publisher's egress
//! budget. Pure: the caller passes the time.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` bytes per second; the bucket holds at most a quarter second's worth, so an idle
    /// spell does not turn into a burst.
    pub fn new(rate: u64, now: Instant) -> Self {
        TokenBucket::with_burst(rate, 64 * 1024, now)
    }

    /// `rate` bytes per second holding a quarter second's worth, and at least `min_burst`.
    pub fn with_burst(rate: u64, min_burst: u64, now: Instant) -> Self {
        let rate = rate as f64;
        let burst = (rate / 4.0).max(min_burst as f64);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Whether less than half the burst is left at `now`: someone is using the rate.
    pub fn contended(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens < self.burst / 2.0
    }

    /// Takes `n` bytes if any tokens are left (the bucket may go into debt by one grant, so a
    /// block is never split); otherwise says how long to wait before asking again.
    pub fn take(&mut self, n: u64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens > 0.0 {
            self.tokens -= n as f64;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((-self.tokens + 1.0) / self.rate))
        }
    }

    /// Gives back `n` bytes taken for a send that did not happen.
    pub fn refund(&mut self, n: u64) {
        self.tokens = (self.tokens + n as f64).min(self.burst);
    }

    /// Takes `n` bytes whether or not there are tokens: bytes already committed (control
    /// answers), paid for by the next grants waiting longer.
    pub fn charge(&mut self, n: u64, now: Instant) {
        self.refill(now);
        self.tokens -= n as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1_000_000, t0);
        // The burst (250 kB) goes at once, then the bucket is in debt.
        assert!(b.take(200_000, t0).is_ok());
        assert!(b.take(200_000, t0).is_ok());
        let wait = b.take(1, t0).unwrap_err();
        assert!(wait > Duration::from_millis(140) && wait < Duration::from_millis(160));
        // After the wait there are tokens again.
        assert!(b.take(16_384, t0 + wait).is_ok());
        // Over 10 s at most 10 MB (+ burst) are granted.
        let mut granted = 0u64;
        let mut now = t0 + wait;
        let end = t0 + Duration::from_secs(10);
        while now < end {
            match b.take(16_384, now) {
                Ok(()) => granted += 16_384,
                Err(w) => now += w,
            }
        }
        assert!((9_500_000..=10_300_000).contains(&granted), "{granted}");

        // Charged bytes delay the next grant as if they had been granted.
        let mut b = TokenBucket::new(1_000_000, t0);
        b.charge(250_000 + 500_000, t0);
        let wait = b.take(1, t0).unwrap_err();
        assert!(wait > Duration::from_millis(490) && wait < Duration::from_millis(510));
    }
}
