//! The tracker's background task: every second it samples the announce rate; every few seconds
//! it expires silent peers (so no request pays for a scan) and writes new completed counts to
//! the store in one batch. On shutdown it writes the last batch.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::Tracker;

/// Seconds between writes of completed counts.
const FLUSH_EVERY_SECS: u64 = 10;
/// The announce rate is averaged over this many seconds.
const RATE_WINDOW: usize = 10;

/// Runs until `shutdown` resolves, then saves pending counts.
pub async fn run_maintenance(tracker: Arc<Tracker>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples: VecDeque<(Instant, u64)> = VecDeque::with_capacity(RATE_WINDOW + 1);
    let mut seconds: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut shutdown => break,
        }
        seconds += 1;
        samples.push_back((Instant::now(), tracker.announce_count()));
        if samples.len() > RATE_WINDOW {
            samples.pop_front();
        }
        if let (Some(first), Some(last)) = (samples.front(), samples.back()) {
            let secs = last.0.duration_since(first.0).as_secs_f64();
            if secs > 0.0 {
                tracker.set_rate((last.1 - first.1) as f64 / secs);
            }
        }
        if seconds % tracker.sweep_every_secs() == 0 {
            let t = tracker.clone();
            let removed = tokio::task::spawn_blocking(move || t.sweep())
                .await
                .unwrap_or(0);
            tracing::debug!(removed, "swept expired peers");
        }
        if seconds % FLUSH_EVERY_SECS == 0 {
            flush(&tracker).await;
        }
    }
    flush(&tracker).await;
}

async fn flush(tracker: &Arc<Tracker>) {
    let t = tracker.clone();
    match tokio::task::spawn_blocking(move || t.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not save completed counts"),
        Err(e) => tracing::warn!(error = %e, "saving completed counts panicked"),
    }
}
