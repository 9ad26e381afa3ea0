//! The `[cluster]` section: unset `redis_url` = one node, as before.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Redis (or Valkey) shared by the nodes, e.g. `redis://10.0.0.5:6379/0`. Unset: this node
    /// runs alone (SQLite and in-memory swarms only, no Redis code runs).
    pub redis_url: Option<String>,
    /// Prefix of every key this cluster uses, so clusters can share one Redis.
    pub name: String,
    /// This node's id, unique in the cluster. Empty: taken from `node_url`.
    pub node_id: String,
    /// This node's own URL as clients reach it (e.g. `http://node1.example.com:8080`): its
    /// HTTP tracker and web seed, named in every node's torrents. Required in cluster mode.
    pub node_url: Option<String>,
    /// Name this node's UDP tracker (`udp://host:PORT/announce`, host from `node_url`, port
    /// from `udp.listen`) in torrents too.
    pub udp_tracker: bool,
    /// This node's seeder as the other nodes list it. Unset: `peer.public_ip` (else
    /// `node_url`'s host, which must then be an IP address) and `peer.listen`'s port.
    pub peer_addr: Option<SocketAddr>,
    /// Milliseconds between batches of announces sent to the other nodes.
    pub batch_ms: u64,
    /// Seconds between a node's heartbeats.
    pub heartbeat_secs: u64,
    /// Seconds without a heartbeat after which a node is gone from the lists.
    pub node_ttl_secs: u64,
    /// Seconds between full snapshots of each node's peers (they cover lost batches and a
    /// Redis restart).
    pub reconcile_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            name: "bitseed".into(),
            node_id: String::new(),
            node_url: None,
            udp_tracker: true,
            peer_addr: None,
            batch_ms: 250,
            heartbeat_secs: 5,
            node_ttl_secs: 20,
            reconcile_secs: 120,
        }
    }
}

impl ClusterConfig {
    /// Why these settings cannot run a cluster, if they cannot.
    pub fn problem(&self) -> Option<String> {
        self.redis_url.as_ref()?;
        if self.node_url.is_none() {
            return Some("cluster.node_url is required with cluster.redis_url".into());
        }
        let key_safe = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        };
        if self.name.is_empty() || !key_safe(&self.name) || !key_safe(&self.node_id) {
            return Some("cluster.name and cluster.node_id: letters, digits, `-_.:` only".into());
        }
        if !(20..=5_000).contains(&self.batch_ms) {
            return Some("cluster.batch_ms: from 20 to 5000".into());
        }
        if self.heartbeat_secs == 0 || self.node_ttl_secs < self.heartbeat_secs * 2 {
            return Some("cluster.node_ttl_secs must be at least twice heartbeat_secs".into());
        }
        if self.reconcile_secs == 0 {
            return Some("cluster.reconcile_secs must be above 0".into());
        }
        None
    }
}

/// `url` without its password (`redis://user:secret@host` → `redis://user:***@host`), for logs
/// and errors.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.5:6379/0"),
            "redis://:***@10.0.0.5:6379/0"
        );
        assert_eq!(redacted("redis://u:p@h/0"), "redis://u:***@h/0");
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn problems_are_named() {
        let ok = ClusterConfig {
            redis_url: Some("redis://h".into()),
            node_url: Some("http://n1:8080".into()),
            ..ClusterConfig::default()
        };
        assert_eq!(ok.problem(), None);
        assert_eq!(
            ClusterConfig::default().problem(),
            None,
            "no cluster, no problem"
        );
        let no_url = ClusterConfig {
            node_url: None,
            ..ok.clone()
        };
        assert!(no_url.problem().unwrap().contains("node_url"));
        let bad_id = ClusterConfig {
            node_id: "a b".into(),
            ..ok.clone()
        };
        assert!(bad_id.problem().is_some());
        let short_ttl = ClusterConfig {
            node_ttl_secs: 5,
            ..ok
        };
        assert!(short_ttl.problem().unwrap().contains("node_ttl_secs"));
    }
}
