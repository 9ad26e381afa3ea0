//! The cluster's tasks: send this node's announces, read the others', and every second the
//! control work (heartbeat and live nodes, completed counts, snapshots). A failed Redis call
//! marks the cluster down (logged once) and the node carries on alone; the first call that
//! works again marks it up, and the control task then writes everything this node knows again
//! and reads the others' snapshots (Redis may have restarted empty).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::peers::{self, Heard};
use super::{completed, node, Cluster, NodeInfo};
use crate::tracker::InfoHash;

/// Seconds between completed-count syncs.
const COMPLETED_EVERY: u64 = 2;
/// How long a read of the stream waits for entries.
const READ_BLOCK: Duration = Duration::from_millis(1_000);

#[derive(Default)]
pub(super) struct Counters {
    up: AtomicBool,
    /// Times Redis became reachable (again).
    ups: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
}

/// The cluster's figures, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterStats {
    pub redis_up: bool,
    pub nodes: usize,
    pub deltas_sent: u64,
    pub deltas_received: u64,
    pub redis_errors: u64,
}

impl Cluster {
    pub fn stats(&self) -> ClusterStats {
        let c = &self.stats;
        ClusterStats {
            redis_up: c.up.load(Ordering::Relaxed),
            nodes: self.nodes().len(),
            deltas_sent: c.sent.load(Ordering::Relaxed),
            deltas_received: c.received.load(Ordering::Relaxed),
            redis_errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// Prometheus lines.
    pub fn metrics(&self) -> String {
        let s = self.stats();
        format!(
            "# HELP bitseed_cluster_redis_up Whether Redis answered the last call.\n# TYPE bitseed_cluster_redis_up gauge\nbitseed_cluster_redis_up {}\n\
             # HELP bitseed_cluster_nodes Live nodes, this one included.\n# TYPE bitseed_cluster_nodes gauge\nbitseed_cluster_nodes {}\n\
             # HELP bitseed_cluster_deltas_sent_total Announces sent to the other nodes.\n# TYPE bitseed_cluster_deltas_sent_total counter\nbitseed_cluster_deltas_sent_total {}\n\
             # HELP bitseed_cluster_deltas_received_total Announces received from the other nodes.\n# TYPE bitseed_cluster_deltas_received_total counter\nbitseed_cluster_deltas_received_total {}\n\
             # HELP bitseed_cluster_redis_errors_total Failed Redis calls.\n# TYPE bitseed_cluster_redis_errors_total counter\nbitseed_cluster_redis_errors_total {}\n",
            u8::from(s.redis_up),
            s.nodes,
            s.deltas_sent,
            s.deltas_received,
            s.redis_errors
        )
    }

    /// Runs the cluster's tasks until `shutdown`, then leaves the live set.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(
            "cluster `{}`: node `{}` at {}, redis {}",
            self.config.name,
            self.me.id,
            self.me.base_url,
            super::redacted(self.config.redis_url.as_deref().unwrap_or_default())
        );
        let heard = Arc::new(Heard::default());
        tokio::join!(
            self.clone().send_loop(heard.clone(), shutdown.clone()),
            self.clone().read_loop(shutdown.clone()),
            self.clone().control_loop(heard, shutdown.clone()),
        );
        if let Ok(mut conn) = self.connection(Duration::from_secs(1)) {
            let _ = node::leave(&mut conn, &self.config.name, &self.me.id).await;
        }
    }

    /// Records whether a Redis call worked; says so once per change.
    fn mark<T>(&self, result: redis::RedisResult<T>) -> Option<T> {
        let c = &self.stats;
        match result {
            Ok(v) => {
                if !c.up.swap(true, Ordering::Relaxed) {
                    c.ups.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("cluster: redis reachable, sharing with the other nodes");
                }
                Some(v)
            }
            Err(e) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                if c.up.swap(false, Ordering::Relaxed) || c.errors.load(Ordering::Relaxed) == 1 {
                    tracing::warn!("cluster: redis unreachable ({e}): this node carries on alone");
                }
                None
            }
        }
    }

    async fn send_loop(self: Arc<Self>, heard: Arc<Heard>, shutdown: CancellationToken) {
        let Ok(mut conn) = self.connection(Duration::from_secs(2)) else {
            return;
        };
        let mut every = tokio::time::interval(Duration::from_millis(self.config.batch_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ms = None;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let deltas = self.tracker.take_outbox();
            if deltas.is_empty() {
                continue;
            }
            heard.record(&deltas, Instant::now());
            // Lost when Redis is away: the snapshot after it returns carries them.
            let sent = peers::send(&mut conn, &self.config.name, &self.me.id, &deltas, last_ms);
            if let Some(ms) = self.mark(sent.await) {
                last_ms = ms.or(last_ms);
                self.stats
                    .sent
                    .fetch_add(deltas.len() as u64, Ordering::Relaxed);
            }
        }
    }

    async fn read_loop(self: Arc<Self>, shutdown: CancellationToken) {
        // Its own connection: a blocking read would hold up the other calls on a shared one.
        let Ok(mut conn) = self.connection(READ_BLOCK + Duration::from_secs(2)) else {
            return;
        };
        let mut last = "$".to_string();
        loop {
            let read = tokio::select! {
                r = peers::receive(&mut conn, &self.config.name, &self.me.id, &mut last, READ_BLOCK) => r,
                () = shutdown.cancelled() => return,
            };
            match self.mark(read) {
                Some(deltas) => {
                    self.stats
                        .received
                        .fetch_add(deltas.len() as u64, Ordering::Relaxed);
                    self.apply(deltas).await;
                }
                None => {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Other nodes' peers into the swarms, off the async workers (a snapshot may be large).
    async fn apply(&self, deltas: Vec<crate::tracker::PeerDelta>) {
        if deltas.is_empty() {
            return;
        }
        let tracker = self.tracker.clone();
        let _ = tokio::task::spawn_blocking(move || tracker.apply_remote(&deltas)).await;
    }

    async fn control_loop(self: Arc<Self>, heard: Arc<Heard>, shutdown: CancellationToken) {
        let Ok(mut conn) = self.connection(Duration::from_secs(2)) else {
            return;
        };
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = Control {
            seconds: 0,
            ups_seen: 0,
            resync_at: None,
            last_live: Instant::now(),
            written: HashMap::new(),
            known: HashMap::new(),
        };
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = shutdown.cancelled() => return,
            }
            self.control(&mut conn, &heard, &mut state).await;
            state.seconds += 1;
        }
    }

    async fn control(&self, conn: &mut ConnectionManager, heard: &Heard, st: &mut Control) {
        let name = &self.config.name;
        // Redis became reachable again (or for the first time): write everything again now,
        // and read the others' snapshots again a little later, once they have rewritten theirs.
        let ups = self.stats.ups.load(Ordering::Relaxed);
        let recovered = ups != st.ups_seen;
        if recovered {
            st.ups_seen = ups;
            st.written.clear();
            st.resync_at = Some(st.seconds + self.config.heartbeat_secs + 1);
        }
        let resync = recovered || st.resync_at == Some(st.seconds);
        if resync || st.seconds % self.config.heartbeat_secs == 0 {
            let ttl = self.config.node_ttl_secs * 1_000;
            let beat = node::heartbeat(conn, name, &self.me, ttl).await;
            let live = match self.mark(beat) {
                Some(()) => self.mark(node::live(conn, name).await),
                None => None,
            };
            match live {
                Some(nodes) => {
                    st.last_live = Instant::now();
                    self.set_members(nodes);
                }
                // Alone after a node's TTL without news: the others may be gone too.
                None if st.last_live.elapsed().as_secs() > self.config.node_ttl_secs => {
                    self.set_members(Vec::new());
                }
                None => {}
            }
        }
        if resync || st.seconds % COMPLETED_EVERY == 0 {
            self.sync_completed(conn, st, recovered).await;
        }
        if resync || st.seconds % self.config.reconcile_secs == 0 {
            let max_age = Duration::from_secs(u64::from(self.tracker.config().interval) * 2);
            let mine = heard.snapshot(Instant::now(), max_age);
            let ttl = Duration::from_secs(self.config.reconcile_secs * 3);
            let wrote = peers::write_snapshot(conn, name, &self.me.id, &mine, ttl).await;
            if self.mark(wrote).is_none() {
                return;
            }
            for other in self.nodes().iter().filter(|n| n.id != self.me.id) {
                if let Some(deltas) = self.mark(peers::read_snapshot(conn, name, &other.id).await) {
                    self.apply(deltas).await;
                }
            }
        }
    }

    async fn sync_completed(&self, conn: &mut ConnectionManager, st: &mut Control, all: bool) {
        let name = &self.config.name;
        let mine: HashMap<InfoHash, u64> = self.tracker.local_completed().into_iter().collect();
        let changed: HashMap<InfoHash, u64> = mine
            .iter()
            .filter(|(h, n)| st.written.get(*h) != Some(*n))
            .map(|(h, n)| (*h, *n))
            .collect();
        if self
            .mark(completed::raise(conn, name, &self.me.id, &changed).await)
            .is_none()
        {
            return;
        }
        st.written.extend(changed);
        if all {
            // Redis may have restarted empty: put back what every other node had counted.
            for (node, counts) in st.known.iter().filter(|(n, _)| **n != self.me.id) {
                if self
                    .mark(completed::raise(conn, name, node, counts).await)
                    .is_none()
                {
                    return;
                }
            }
        }
        if let Some(read) = self.mark(completed::read_all(conn, name).await) {
            for (node, counts) in read {
                let known = st.known.entry(node).or_default();
                for (h, n) in counts {
                    let e = known.entry(h).or_default();
                    *e = (*e).max(n);
                }
            }
            self.tracker
                .set_remote_completed(&completed::others(&st.known, &self.me.id));
        }
    }

    fn set_members(&self, mut nodes: Vec<NodeInfo>) {
        if !nodes.iter().any(|n| n.id == self.me.id) {
            nodes.push(self.me.clone());
            nodes.sort_by(|a, b| a.id.cmp(&b.id));
        }
        let seeds: Vec<_> = nodes
            .iter()
            .filter(|n| n.id != self.me.id && n.peer != self.me.peer)
            .map(|n| n.peer)
            .collect();
        self.tracker.set_cluster_seeds(&seeds);
        let nodes: Arc<[NodeInfo]> = nodes.into();
        let mut members = self.members.write().unwrap_or_else(|e| e.into_inner());
        if **members != *nodes {
            let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
            tracing::info!("cluster: live nodes {ids:?}");
            *members = nodes;
        }
    }
}

/// The control task's memory.
struct Control {
    seconds: u64,
    /// `Counters::ups` when last looked at.
    ups_seen: u64,
    /// When to read the others' snapshots again after a recovery.
    resync_at: Option<u64>,
    last_live: Instant,
    /// This node's counts as last written to Redis.
    written: HashMap<InfoHash, u64>,
    /// Every node's counts as last read (the most seen), to restore a Redis that restarted.
    known: HashMap<String, HashMap<InfoHash, u64>>,
}
