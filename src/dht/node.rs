//! The DHT node's core (BEP 5, with BEP 42 ids): datagrams and time in, datagrams out, no
//! sockets and no clock of its own, so it is tested and fuzzed directly. `service` is its I/O.
//!
//! Besides answering queries as any node does, it announces every torrent it seeds: a
//! `get_peers` lookup for the hash, then `announce_peer` to the closest nodes that answered,
//! every REANNOUNCE; and at once to a node that newly enters the table closer to a seeded hash
//! than those announced to. For a seeded hash its own `get_peers` answers carry its own seed
//! address first, so a client whose only DHT contact is this node still finds the swarm.
//! Lookups and announces are in `announce`; answers, table upkeep and time here.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::id::{exempt, NodeId};
use super::krpc::{self, Body, CompactNode, Message, Query, Response};
use super::lookup::{Kind, Lookup};
use super::store::{PeerStore, Tokens};
use super::table::{Inserted, RoutingTable, K};
use crate::rate::TokenBucket;

mod announce;

/// A query not answered in this long has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Seeded hashes are announced again after this (peers are kept about 30 minutes).
pub const REANNOUNCE: Duration = Duration::from_secs(15 * 60);
/// A lookup that found nobody is tried again after this.
const RETRY: Duration = Duration::from_secs(60);
/// The table is refreshed (a lookup for our own id) this often, and bootstrapped again this
/// often while it is nearly empty.
const REFRESH: Duration = Duration::from_secs(15 * 60);
const REBOOTSTRAP: Duration = Duration::from_secs(60);
/// Queries of ours in flight at most (lookups, pings, announces together).
const MAX_PENDING: usize = 256;
/// Lookups running at once; seeded hashes due wait for a free one.
const MAX_LOOKUPS: usize = 16;
/// Pings sent per tick to check questionable nodes or verify new ones.
const PINGS_PER_TICK: usize = 8;
/// Nodes heard of from peers waiting for a ping.
const MAX_HEARD: usize = 64;
/// Direct announces started for one newly learned node.
const DIRECT_PER_NODE: usize = 8;
/// Peers in one `get_peers` answer (6 bytes each): keeps answers near 500 bytes.
const VALUES_PER_ANSWER: usize = 32;
/// Source addresses whose query rate is tracked.
const TRACKED_IPS: usize = 16_384;
/// Votes on our external address (BEP 42's `ip`) needed before it is believed.
const IP_VOTES: u32 = 8;

/// The node's limits (from `[dht]`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_stored_hashes: usize,
    pub max_peers_per_hash: usize,
    pub queries_per_ip: u64,
    pub queries_per_sec: u64,
}

/// Counts for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub queries_answered: u64,
    pub queries_limited: u64,
    pub bad_messages: u64,
    pub announces_sent: u64,
    pub announces_acked: u64,
    pub announces_received: u64,
    pub lookups: u64,
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Ping,
    Lookup(u64),
    /// get_peers to one node, then announce_peer to it.
    Direct(NodeId),
    Announce,
}

struct Pending {
    addr: SocketAddrV4,
    id: Option<NodeId>,
    sent: Instant,
    purpose: Purpose,
}

struct Seeding {
    next: Instant,
    lookup: Option<u64>,
    /// Distance from the hash to the farthest node of the last announce (all ones before
    /// any): a new node closer than this is announced to at once.
    farthest: [u8; 20],
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub to: SocketAddrV4,
    pub bytes: Vec<u8>,
}

pub struct Node {
    id: NodeId,
    table: RoutingTable,
    tokens: Tokens,
    store: PeerStore,
    routers: Vec<SocketAddrV4>,
    /// Our peer port (the DHT shares it): announced, and given as our seed address.
    port: u16,
    /// Our address as configured (`peer.public_ip`, or the listen address).
    configured_ip: Option<Ipv4Addr>,
    /// Our address as other nodes see it (BEP 42 votes).
    learned_ip: Option<Ipv4Addr>,
    votes: HashMap<Ipv4Addr, u32>,
    seeding: HashMap<NodeId, Seeding>,
    /// Nodes peers told us of (PORT), to ping.
    heard: Vec<SocketAddrV4>,
    pending: HashMap<u16, Pending>,
    lookups: HashMap<u64, Lookup>,
    /// The lookup filling the table (bootstrap or refresh), if one runs.
    own_lookup: Option<u64>,
    next_tid: u16,
    next_lookup: u64,
    last_refresh: Option<Instant>,
    last_expire: Instant,
    per_ip: LruCache<Ipv4Addr, TokenBucket>,
    global: TokenBucket,
    limits: Limits,
    rng: u64,
    pub stats: Stats,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        limits: Limits,
        port: u16,
        configured_ip: Option<Ipv4Addr>,
        learned_ip: Option<Ipv4Addr>,
        routers: Vec<SocketAddrV4>,
        seed: u64,
        now: Instant,
    ) -> Node {
        let mut n = Node {
            id,
            table: RoutingTable::new(id),
            tokens: Tokens::new([0; 16], now),
            store: PeerStore::new(limits.max_stored_hashes, limits.max_peers_per_hash),
            routers,
            port,
            configured_ip,
            learned_ip,
            votes: HashMap::new(),
            seeding: HashMap::new(),
            heard: Vec::new(),
            pending: HashMap::new(),
            lookups: HashMap::new(),
            own_lookup: None,
            next_tid: 0,
            next_lookup: 0,
            last_refresh: None,
            last_expire: now,
            per_ip: LruCache::new(NonZeroUsize::new(TRACKED_IPS).unwrap_or(NonZeroUsize::MIN)),
            global: TokenBucket::with_burst(limits.queries_per_sec, limits.queries_per_sec, now),
            limits,
            rng: seed | 1,
            stats: Stats::default(),
        };
        n.tokens = Tokens::new(n.secret(), now);
        n
    }

    fn random(&mut self) -> u64 {
        // xorshift64: tids and secrets need to be unguessable from outside only as far as the
        // seed (from the OS) is.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn secret(&mut self) -> [u8; 16] {
        let mut s = [0; 16];
        s[..8].copy_from_slice(&self.random().to_le_bytes());
        s[8..].copy_from_slice(&self.random().to_le_bytes());
        s
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    pub fn learned_ip(&self) -> Option<Ipv4Addr> {
        self.learned_ip
    }

    pub fn stored_peers(&self) -> usize {
        self.store.len()
    }

    pub fn seeding_count(&self) -> usize {
        self.seeding.len()
    }

    /// The bootstrap routers' addresses (resolved by the shell).
    pub fn set_routers(&mut self, routers: Vec<SocketAddrV4>) {
        self.routers = routers;
    }

    /// Nodes from a saved table, pinged at the next ticks before they are trusted.
    pub fn restore(&mut self, nodes: &[CompactNode], now: Instant) {
        for n in nodes {
            self.table.restore(*n, now);
        }
    }

    /// A node heard of from a peer (PORT): queued to be pinged at the next tick, if the table
    /// has room near it is not known (its id is not, so only a free bucket somewhere helps).
    pub fn heard_of(&mut self, addr: SocketAddrV4, _now: Instant) {
        if self.table.iter().any(|e| e.addr == addr) || self.heard.contains(&addr) {
            return;
        }
        if self.heard.len() < MAX_HEARD {
            self.heard.push(addr);
        }
    }

    /// Our seed address as given to `querier`: the configured or learned address, or
    /// loopback for a querier on this machine.
    fn own_seed(&self, querier: Ipv4Addr) -> Option<SocketAddrV4> {
        let ip = if querier.is_loopback() {
            match self.configured_ip {
                Some(ip) if ip.is_loopback() => Some(ip),
                _ => Some(Ipv4Addr::LOCALHOST),
            }
        } else {
            self.configured_ip
                .filter(|ip| !ip.is_loopback())
                .or(self.learned_ip)
        };
        ip.map(|ip| SocketAddrV4::new(ip, self.port))
    }

    fn query(
        &mut self,
        to: SocketAddrV4,
        id: Option<NodeId>,
        purpose: Purpose,
        q: &Query<'_>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if self.pending.len() >= MAX_PENDING {
            return;
        }
        let mut tid = self.next_tid;
        while self.pending.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        self.pending.insert(
            tid,
            Pending {
                addr: to,
                id,
                sent: now,
                purpose,
            },
        );
        out.push(Out {
            to,
            bytes: krpc::encode_query(&tid.to_be_bytes(), &self.id, q),
        });
    }

    /// One datagram from `from`.
    pub fn on_datagram(
        &mut self,
        bytes: &[u8],
        from: SocketAddrV4,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.bad_messages += 1;
                return;
            }
        };
        match msg.body {
            Body::Query { id, ref query } => {
                if !self.admit(*from.ip(), now) {
                    self.stats.queries_limited += 1;
                    return;
                }
                self.answer(msg.tid, query, from, now, out);
                self.stats.queries_answered += 1;
                // A node that queried us may join the table once it answers a ping of ours
                // (its source address may be forged; an answer proves it).
                if !msg.read_only && !self.table.contains(&id) && self.table.has_room_for(&id) {
                    self.query(from, Some(id), Purpose::Ping, &Query::Ping, now, out);
                }
            }
            Body::Response(ref r) => {
                self.on_response(msg.tid, r, msg.ip, msg.read_only, from, now, out)
            }
            Body::Error(_) => {
                if let Some(p) = self.take_pending(msg.tid, from) {
                    self.on_failure(p, now, out);
                }
            }
        }
    }

    fn admit(&mut self, ip: Ipv4Addr, now: Instant) -> bool {
        let per_ip = self.limits.queries_per_ip;
        let bucket = self
            .per_ip
            .get_or_insert_mut(ip, || TokenBucket::with_burst(per_ip, per_ip, now));
        bucket.take(1, now).is_ok() && self.global.take(1, now).is_ok()
    }

    fn answer(
        &mut self,
        tid: &[u8],
        q: &Query<'_>,
        from: SocketAddrV4,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let mut r = Response::default();
        let token;
        match q {
            Query::Ping => {}
            Query::FindNode { target } => r.nodes = self.closest_for(target, from),
            Query::GetPeers { info_hash } => {
                token = self.tokens.token(*from.ip());
                r.token = Some(&token);
                if self.seeding.contains_key(info_hash) {
                    r.values.extend(self.own_seed(*from.ip()));
                }
                for p in self.store.peers(info_hash, VALUES_PER_ANSWER) {
                    if r.values.len() < VALUES_PER_ANSWER && !r.values.contains(&p) {
                        r.values.push(p);
                    }
                }
                r.nodes = self.closest_for(info_hash, from);
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                if !self.tokens.valid(*from.ip(), token) {
                    out.push(Out {
                        to: from,
                        bytes: krpc::encode_error(tid, 203, "bad token"),
                    });
                    return;
                }
                let port = if *implied_port { from.port() } else { *port };
                if port == 0
                    || !self
                        .store
                        .announce(*info_hash, SocketAddrV4::new(*from.ip(), port), now)
                {
                    out.push(Out {
                        to: from,
                        bytes: krpc::encode_error(tid, 202, "storage full"),
                    });
                    return;
                }
                self.stats.announces_received += 1;
            }
            Query::Unknown => {
                out.push(Out {
                    to: from,
                    bytes: krpc::encode_error(tid, 204, "Method Unknown"),
                });
                return;
            }
        }
        out.push(Out {
            to: from,
            bytes: krpc::encode_response(tid, &self.id, from, &r),
        });
    }

    /// The K nodes closest to `target`, but the querier itself.
    fn closest_for(&self, target: &NodeId, querier: SocketAddrV4) -> Vec<CompactNode> {
        let mut nodes = self.table.closest(target, K + 1);
        nodes.retain(|n| n.addr != querier);
        nodes.truncate(K);
        nodes
    }

    fn take_pending(&mut self, tid: &[u8], from: SocketAddrV4) -> Option<Pending> {
        let tid = u16::from_be_bytes(<[u8; 2]>::try_from(tid).ok()?);
        // Only the address we asked may answer (a forged answer from elsewhere is ignored).
        if self.pending.get(&tid)?.addr != from {
            return None;
        }
        self.pending.remove(&tid)
    }

    #[allow(clippy::too_many_arguments)]
    fn on_response(
        &mut self,
        tid: &[u8],
        r: &Response<'_>,
        seen_as: Option<SocketAddrV4>,
        read_only: bool,
        from: SocketAddrV4,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(p) = self.take_pending(tid, from) else {
            return;
        };
        let Some(id) = r.id.or(p.id) else {
            return;
        };
        if let Some(seen) = seen_as {
            self.vote(*seen.ip(), *from.ip());
        }
        if !read_only && self.table.insert(id, from, now) == Inserted::New {
            self.announce_to_new(id, from, now, out);
        }
        match p.purpose {
            Purpose::Ping => {}
            Purpose::Announce => self.stats.announces_acked += 1,
            Purpose::Direct(hash) => {
                if let Some(token) = r.token {
                    self.announce(hash, from, token, now, out);
                }
            }
            Purpose::Lookup(l) => {
                let Some(lookup) = self.lookups.get_mut(&l) else {
                    return;
                };
                for n in &r.nodes {
                    if n.id != self.id {
                        lookup.learn(*n);
                    }
                }
                lookup.answered(from, Some(id), r.token.map(<[u8]>::to_vec));
                self.drive(l, now, out);
            }
        }
    }

    fn on_failure(&mut self, p: Pending, now: Instant, out: &mut Vec<Out>) {
        if let Some(id) = p.id {
            self.table.failed(&id);
        }
        if let Purpose::Lookup(l) = p.purpose {
            if let Some(lookup) = self.lookups.get_mut(&l) {
                lookup.failed(p.addr);
                self.drive(l, now, out);
            }
        }
    }

    /// BEP 42: our external address, believed once most of IP_VOTES global nodes agree. An id
    /// that does not fit it is replaced (the table is kept, re-sorted).
    fn vote(&mut self, seen: Ipv4Addr, voter: Ipv4Addr) {
        if exempt(voter) || exempt(seen) {
            return;
        }
        if self.votes.len() >= 16 && !self.votes.contains_key(&seen) {
            return;
        }
        *self.votes.entry(seen).or_default() += 1;
        let total: u32 = self.votes.values().sum();
        if total < IP_VOTES {
            return;
        }
        let best = self
            .votes
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(ip, n)| (*ip, *n));
        self.votes.clear();
        if let Some((ip, n)) = best {
            if n * 2 > total {
                self.learned_ip = Some(ip);
                if !self.id.valid_for(ip) && self.configured_ip.is_none() {
                    let mut r = [0; 20];
                    for c in r.chunks_mut(8) {
                        let x = self.random().to_le_bytes();
                        c.copy_from_slice(&x[..c.len()]);
                    }
                    self.id = NodeId::for_ip(ip, r);
                    self.table = self.table.rebuild(self.id);
                }
            }
        }
    }

    /// Time passes: timeouts, secrets, expiry, bootstrap and refresh, pings, due announces.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Out>) {
        let late: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.sent) >= REQUEST_TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            if let Some(p) = self.pending.remove(&t) {
                self.on_failure(p, now, out);
            }
        }
        let fresh = self.secret();
        self.tokens.turn(now, fresh);
        if now.saturating_duration_since(self.last_expire) >= Duration::from_secs(60) {
            self.store.expire(now);
            self.table.prune();
            self.last_expire = now;
        }
        let refresh_due = match self.last_refresh {
            None => true,
            Some(t) => {
                let every = if self.table.len() < K {
                    REBOOTSTRAP
                } else {
                    REFRESH
                };
                now.saturating_duration_since(t) >= every
            }
        };
        if refresh_due
            && self.own_lookup.is_none()
            && (!self.routers.is_empty() || !self.table.is_empty())
        {
            self.last_refresh = Some(now);
            let l = self.start_lookup(self.id, Kind::FindNode, now, out);
            if self.lookups.contains_key(&l) {
                self.own_lookup = Some(l);
            }
        }
        let pinging: Vec<SocketAddrV4> = self.pending.values().map(|p| p.addr).collect();
        let heard: Vec<SocketAddrV4> = self
            .heard
            .drain(..self.heard.len().min(PINGS_PER_TICK))
            .collect();
        for addr in heard.into_iter().filter(|a| !pinging.contains(a)) {
            self.query(addr, None, Purpose::Ping, &Query::Ping, now, out);
        }
        for n in self
            .table
            .questionable(now, PINGS_PER_TICK * 4)
            .into_iter()
            .filter(|n| !pinging.contains(&n.addr))
            .take(PINGS_PER_TICK)
        {
            self.query(n.addr, Some(n.id), Purpose::Ping, &Query::Ping, now, out);
        }
        self.announce_due(now, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_stored_hashes: 100,
            max_peers_per_hash: 10,
            queries_per_ip: 50,
            queries_per_sec: 1000,
        }
    }

    fn addr(i: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, i), 7000 + u16::from(i))
    }

    /// Nodes on 127.0.0.i, delivering every datagram until none is left.
    struct Net {
        nodes: Vec<Node>,
        now: Instant,
    }

    impl Net {
        fn new(n: u8, routers_of: impl Fn(u8) -> Vec<SocketAddrV4>) -> Net {
            let now = Instant::now();
            let nodes = (1..=n)
                .map(|i| {
                    let mut id = [i.wrapping_mul(37); 20];
                    id[19] = i;
                    Node::new(
                        NodeId(id),
                        limits(),
                        addr(i).port(),
                        Some(*addr(i).ip()),
                        None,
                        routers_of(i),
                        u64::from(i) * 77,
                        now,
                    )
                })
                .collect();
            Net { nodes, now }
        }

        fn index(to: SocketAddrV4) -> usize {
            usize::from(to.ip().octets()[3]) - 1
        }

        fn deliver(&mut self, mut queue: Vec<(usize, Out)>) {
            let mut steps = 0;
            while let Some((from, o)) = queue.pop() {
                steps += 1;
                assert!(steps < 10_000, "no end to the messages");
                let to = Net::index(o.to);
                if to >= self.nodes.len() {
                    continue;
                }
                let mut out = Vec::new();
                self.nodes[to].on_datagram(&o.bytes, addr(from as u8 + 1), self.now, &mut out);
                queue.extend(out.into_iter().map(|o| (to, o)));
            }
        }

        fn tick(&mut self) {
            let mut queue = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                let mut out = Vec::new();
                n.tick(self.now, &mut out);
                queue.extend(out.into_iter().map(|o| (i, o)));
            }
            self.deliver(queue);
        }
    }

    fn ask(node: &mut Node, from: SocketAddrV4, q: &Query<'_>, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        let bytes = krpc::encode_query(b"qq", &NodeId([0xee; 20]), q);
        node.on_datagram(&bytes, from, now, &mut out);
        out
    }

    fn response(out: &[Out], to: SocketAddrV4) -> Response<'_> {
        let o = out
            .iter()
            .find(|o| o.to == to && Message::parse(&o.bytes).is_ok_and(|m| m.tid == b"qq"))
            .expect("an answer");
        match Message::parse(&o.bytes).unwrap().body {
            Body::Response(r) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn a_seeded_hash_is_answered_with_our_own_address_and_announced() {
        // Node 1 seeds; nodes 2 and 3 know only node 1.
        let mut net = Net::new(3, |i| if i == 1 { vec![] } else { vec![addr(1)] });
        let hash = [0x42; 20];
        net.nodes[0].seed(hash, net.now);
        for _ in 0..5 {
            net.tick();
            net.now += Duration::from_millis(500);
        }
        // Both others answered node 1's pings and joined its table; node 1 announced to them.
        assert_eq!(net.nodes[0].table().len(), 2);
        for n in &net.nodes[1..] {
            assert_eq!(n.store.peers(&NodeId(hash), 10), vec![addr(1)]);
        }
        assert!(net.nodes[0].stats.announces_acked >= 2);
        // A get_peers for the hash gets our address first, and a token.
        let q = Query::GetPeers {
            info_hash: NodeId(hash),
        };
        let out = ask(&mut net.nodes[0], addr(9), &q, net.now);
        let r = response(&out, addr(9));
        assert_eq!(r.values.first(), Some(&addr(1)));
        assert!(r.token.is_some());
        assert!(!r.nodes.is_empty());
        // Not a seeded hash: no values.
        let q = Query::GetPeers {
            info_hash: NodeId([0x43; 20]),
        };
        let out = ask(&mut net.nodes[0], addr(9), &q, net.now);
        assert!(response(&out, addr(9)).values.is_empty());
    }

    /// A node a peer told us of (PORT) is pinged and joins the table when it answers.
    #[test]
    fn nodes_heard_of_from_peers_join_once_they_answer() {
        let mut net = Net::new(2, |_| vec![]);
        net.nodes[0].heard_of(addr(2), net.now);
        net.nodes[0].heard_of(addr(2), net.now);
        net.nodes[0].heard_of(addr(3), net.now);
        net.tick();
        assert_eq!(
            net.nodes[0].table().len(),
            1,
            "node 2 answered; nobody is at 3"
        );
        assert_eq!(net.nodes[0].table().iter().next().unwrap().addr, addr(2));
    }

    #[test]
    fn announces_need_our_token_from_the_same_address() {
        let now = Instant::now();
        let mut n = Node::new(NodeId([1; 20]), limits(), 6881, None, None, vec![], 5, now);
        let hash = NodeId([9; 20]);
        let out = ask(&mut n, addr(2), &Query::GetPeers { info_hash: hash }, now);
        let token = response(&out, addr(2)).token.unwrap().to_vec();
        // From another address the token is refused (error 203).
        let out = ask(&mut n, addr(3), &announce(hash, &token), now);
        assert!(matches!(
            Message::parse(&out[0].bytes).unwrap().body,
            Body::Error(203)
        ));
        assert_eq!(n.stored_peers(), 0);
        let out = ask(&mut n, addr(2), &announce(hash, &token), now);
        assert!(matches!(
            Message::parse(&out[0].bytes).unwrap().body,
            Body::Response(_)
        ));
        assert_eq!(
            n.store.peers(&hash, 10),
            vec![SocketAddrV4::new(*addr(2).ip(), 5000)]
        );
    }

    fn announce(hash: NodeId, token: &[u8]) -> Query<'_> {
        Query::AnnouncePeer {
            info_hash: hash,
            port: 5000,
            implied_port: false,
            token,
        }
    }

    #[test]
    fn queries_are_rate_limited_per_address() {
        let now = Instant::now();
        let mut n = Node::new(NodeId([1; 20]), limits(), 6881, None, None, vec![], 5, now);
        let mut answered = 0;
        for _ in 0..200 {
            let out = ask(&mut n, addr(2), &Query::Ping, now);
            answered += out
                .iter()
                .filter(|o| {
                    o.to == addr(2) && Message::parse(&o.bytes).is_ok_and(|m| m.tid == b"qq")
                })
                .count();
        }
        assert!(answered <= 51, "{answered}");
        assert!(n.stats.queries_limited >= 149);
        // Another address is still answered.
        assert_eq!(
            ask(&mut n, addr(3), &Query::Ping, now)
                .iter()
                .filter(|o| o.to == addr(3))
                .count(),
            2
        );
    }

    #[test]
    fn garbage_and_unknown_answers_are_ignored() {
        let now = Instant::now();
        let mut n = Node::new(NodeId([1; 20]), limits(), 6881, None, None, vec![], 5, now);
        let mut out = Vec::new();
        n.on_datagram(
            b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
            addr(2),
            now,
            &mut out,
        );
        n.on_datagram(b"dxx", addr(2), now, &mut out);
        assert!(out.is_empty());
        assert!(n.table().is_empty());
        assert_eq!(n.stats.bad_messages, 1);
        let mut out = Vec::new();
        n.on_datagram(
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:aa1:y1:qe",
            addr(4),
            now,
            &mut out,
        );
        assert!(matches!(
            Message::parse(&out[0].bytes).unwrap().body,
            Body::Error(204)
        ));
    }
}
