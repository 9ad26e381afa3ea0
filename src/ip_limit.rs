//! Open connections per client address, shared by the peer listener and the HTTP server.
//!
//! IPv6 clients are counted per /64: one host usually holds a whole /64, so counting single
//! addresses would let it open 2^64 connections. IPv4-mapped addresses count as IPv4.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The address a connection is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for Client {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Client::V4(u32::from(v4)),
            IpAddr::V6(v6) => Client::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

/// One client (an IPv4 address, or an IPv6 /64) as a nonzero key, for per-client counts kept
/// elsewhere (the tracker's swarms per creator, the seeder's pending connections).
pub fn client_key(ip: IpAddr) -> u64 {
    match Client::from(ip) {
        Client::V4(v4) => (1 << 32) | u64::from(v4),
        // Keep v6 keys apart from v4 ones (which all fit in 33 bits) and from 0.
        Client::V6Prefix(prefix) => prefix | (1 << 63),
    }
}

/// At most `max` open connections per client; `max == 0` means no limit.
#[derive(Debug)]
pub struct IpLimit {
    max: usize,
    open: Mutex<HashMap<Client, usize>>,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct IpSlot {
    /// `None` when there is no limit: nothing is counted, nothing to give back.
    limit: Option<Arc<IpLimit>>,
    client: Client,
}

impl IpLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(IpLimit {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `ip`, or `None` when that client already holds `max`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let client = Client::from(ip);
        if self.max == 0 {
            return Some(IpSlot {
                limit: None,
                client,
            });
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(client).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            limit: Some(self.clone()),
            client,
        })
    }

    /// Clients holding at least one connection (the map's size: it never keeps zeros).
    pub fn clients(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(limit) = &self.limit else {
            return;
        };
        let mut open = limit.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_each_client_and_frees_on_drop() {
        let limit = IpLimit::new(2);
        let a1 = limit.admit(ip("192.0.2.1")).unwrap();
        let _a2 = limit.admit(ip("192.0.2.1")).unwrap();
        assert!(limit.admit(ip("192.0.2.1")).is_none());
        // Another client is counted apart.
        let b = limit.admit(ip("192.0.2.2")).unwrap();
        drop(a1);
        assert!(limit.admit(ip("192.0.2.1")).is_some());
        drop(b);
        assert_eq!(
            limit.clients(),
            1,
            "a client with no connection is forgotten"
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let limit = IpLimit::new(1);
        let _a = limit.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(
            limit.admit(ip("2001:db8:1:2:ffff::9")).is_none(),
            "same /64"
        );
        assert!(limit.admit(ip("2001:db8:1:3::1")).is_some(), "another /64");
        let _v4 = limit.admit(ip("198.51.100.7")).unwrap();
        assert!(limit.admit(ip("::ffff:198.51.100.7")).is_none());
    }

    #[test]
    fn zero_means_unlimited() {
        let limit = IpLimit::new(0);
        let slots: Vec<_> = (0..100).map(|_| limit.admit(ip("::1")).unwrap()).collect();
        assert_eq!(slots.len(), 100);
        assert_eq!(limit.clients(), 0, "nothing is counted without a limit");
    }
}
