//! Cluster mode (`cluster.redis_url`): several `bitseed serve` nodes publish one catalog, with
//! tracker swarms, completed counts, node membership and the hashing of new entries shared
//! through Redis (or Valkey). Without `redis_url` nothing here runs.
//!
//! - `config`: the `[cluster]` section.
//! - `codec`: the bytes of a batch of peers (pure).
//! - `node`: node records with a TTL (heartbeats), the live set.
//! - `peers`: announces sent to and read from a stream, snapshots for reconciliation.
//! - `completed`: each node's completed counts, summed.
//! - `hash_share`: the first node to reach an entry hashes it, the others reuse its hashes.
//! - `run`: the tasks that tie them to the tracker.
//!
//! The design (why a stream and snapshots, what happens when Redis goes away) is in the
//! README's "Cluster" section.

pub mod codec;
mod completed;
mod config;
mod hash_share;
mod node;
mod peers;
mod run;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use config::{redacted, ClusterConfig};
pub use hash_share::HashShare;
pub use node::NodeInfo;
pub use run::ClusterStats;

use crate::tracker::Tracker;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster: {0}")]
    Config(String),
    #[error("cluster: redis {url}: {source}")]
    Redis {
        url: String,
        source: redis::RedisError,
    },
}

/// This node's part of the cluster: the live nodes as last read, for the links in served
/// torrents, and the tasks' counters.
pub struct Cluster {
    config: ClusterConfig,
    me: NodeInfo,
    client: redis::Client,
    /// Live nodes (this one included), sorted by id.
    members: RwLock<Arc<[NodeInfo]>>,
    tracker: Arc<Tracker>,
    stats: run::Counters,
}

impl Cluster {
    /// Checks the settings and opens the Redis client (no connection yet: a node starts, and
    /// runs alone, while Redis is away).
    pub fn new(
        config: ClusterConfig,
        me: NodeInfo,
        tracker: Arc<Tracker>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        if let Some(why) = config.problem() {
            return Err(ClusterError::Config(why));
        }
        let url = config.redis_url.clone().unwrap_or_default();
        let client = redis::Client::open(url.as_str()).map_err(|source| ClusterError::Redis {
            url: redacted(&url),
            source,
        })?;
        tracker.replicate();
        Ok(Arc::new(Cluster {
            members: RwLock::new(vec![me.clone()].into()),
            config,
            me,
            client,
            tracker,
            stats: run::Counters::default(),
        }))
    }

    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    /// The live nodes (this one included), as of the last heartbeat.
    pub fn nodes(&self) -> Arc<[NodeInfo]> {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The hashing of new entries, shared (for `Catalog::set_shared_hashing`); waiting for
    /// another node ends at `stop`.
    pub fn hash_share(&self, stop: tokio_util::sync::CancellationToken) -> HashShare {
        HashShare::new(self.client.clone(), &self.config.name, &self.me.id, stop)
    }

    /// A connection that reconnects by itself, with short timeouts: a Redis that is away makes
    /// each call fail fast, and the node carries on alone.
    fn connection(&self, response: Duration) -> Result<ConnectionManager, redis::RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(response))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        ConnectionManager::new_lazy_with_config(self.client.clone(), config)
    }
}
