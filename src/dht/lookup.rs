//! An iterative lookup (BEP 5): ask the closest nodes we know about a target, learn closer
//! ones from their answers, until the K closest have all answered or failed. A `get_peers`
//! lookup keeps each node's token for the announce that follows.

use std::net::SocketAddrV4;

use super::id::NodeId;
use super::krpc::CompactNode;
use super::table::K;

/// Queries in flight at once per lookup.
pub const ALPHA: usize = 4;
/// Candidates kept per lookup (the closest): bounds a lookup fed hostile `nodes` lists.
const MAX_CANDIDATES: usize = 64;
/// Queries one lookup may send in all.
const MAX_QUERIES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    FindNode,
    GetPeers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    New,
    Asked,
    Answered(Option<Vec<u8>>),
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    /// Unknown for a bootstrap address until it answers.
    id: Option<NodeId>,
    addr: SocketAddrV4,
    state: State,
}

pub struct Lookup {
    pub target: NodeId,
    pub kind: Kind,
    candidates: Vec<Candidate>,
    sent: usize,
}

impl Lookup {
    pub fn new(
        target: NodeId,
        kind: Kind,
        start: &[CompactNode],
        routers: &[SocketAddrV4],
    ) -> Self {
        let mut l = Lookup {
            target,
            kind,
            candidates: Vec::new(),
            sent: 0,
        };
        for n in start {
            l.learn(*n);
        }
        for r in routers {
            if !l.candidates.iter().any(|c| c.addr == *r) {
                l.candidates.push(Candidate {
                    id: None,
                    addr: *r,
                    state: State::New,
                });
            }
        }
        l
    }

    fn key(&self, c: &Candidate) -> (bool, [u8; 20]) {
        match c.id {
            Some(id) => (false, id.distance(&self.target)),
            None => (true, [0xff; 20]),
        }
    }

    /// A node heard of: kept if it is among the closest MAX_CANDIDATES.
    pub fn learn(&mut self, n: CompactNode) {
        if self
            .candidates
            .iter()
            .any(|c| c.addr == n.addr || c.id == Some(n.id))
        {
            return;
        }
        self.candidates.push(Candidate {
            id: Some(n.id),
            addr: n.addr,
            state: State::New,
        });
        let mut c = std::mem::take(&mut self.candidates);
        c.sort_by_key(|x| self.key(x));
        c.truncate(MAX_CANDIDATES);
        self.candidates = c;
    }

    /// The next nodes to ask (marked asked), keeping at most ALPHA in flight.
    pub fn to_ask(&mut self) -> Vec<SocketAddrV4> {
        let in_flight = self
            .candidates
            .iter()
            .filter(|c| c.state == State::Asked)
            .count();
        let mut out = Vec::new();
        let mut good_seen = 0;
        for c in &mut self.candidates {
            if in_flight + out.len() >= ALPHA || self.sent >= MAX_QUERIES {
                break;
            }
            match c.state {
                State::New => {
                    c.state = State::Asked;
                    self.sent += 1;
                    out.push(c.addr);
                }
                State::Answered(_) => good_seen += 1,
                _ => {}
            }
            if good_seen >= K {
                break;
            }
        }
        out
    }

    pub fn answered(&mut self, addr: SocketAddrV4, id: Option<NodeId>, token: Option<Vec<u8>>) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == addr) {
            c.state = State::Answered(token);
            if c.id.is_none() {
                c.id = id;
            }
        }
        let mut c = std::mem::take(&mut self.candidates);
        c.sort_by_key(|x| self.key(x));
        self.candidates = c;
    }

    pub fn failed(&mut self, addr: SocketAddrV4) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == addr) {
            c.state = State::Failed;
        }
    }

    /// Done when nothing is in flight and the K closest live candidates have answered (or
    /// the query budget is spent).
    pub fn done(&self) -> bool {
        if self.candidates.iter().any(|c| c.state == State::Asked) {
            return false;
        }
        if self.sent >= MAX_QUERIES {
            return true;
        }
        self.candidates
            .iter()
            .filter(|c| c.state != State::Failed)
            .take(K)
            .all(|c| matches!(c.state, State::Answered(_)))
    }

    /// The closest nodes that answered with a token: where to announce.
    pub fn announce_to(&self) -> Vec<(SocketAddrV4, Vec<u8>)> {
        self.candidates
            .iter()
            .filter_map(|c| match &c.state {
                State::Answered(Some(t)) => Some((c.addr, t.clone())),
                _ => None,
            })
            .take(K)
            .collect()
    }

    /// With K nodes to announce to, the distance from the target to the farthest of them: a
    /// node closer than that is worth an announce of its own.
    pub fn farthest_announced(&self) -> Option<[u8; 20]> {
        let ids: Vec<[u8; 20]> = self
            .candidates
            .iter()
            .filter(|c| matches!(c.state, State::Answered(Some(_))))
            .take(K)
            .filter_map(|c| c.id.map(|id| id.distance(&self.target)))
            .collect();
        (ids.len() >= K).then(|| ids.into_iter().max()).flatten()
    }

    /// Nodes that answered.
    pub fn answered_count(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| matches!(c.state, State::Answered(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(first: u8) -> CompactNode {
        let mut id = [0; 20];
        id[0] = first;
        CompactNode {
            id: NodeId(id),
            addr: SocketAddrV4::new([10, 0, 0, first].into(), 1),
        }
    }

    #[test]
    fn asks_the_closest_first_and_finishes() {
        let target = NodeId([0; 20]);
        let router: SocketAddrV4 = "10.1.1.1:1".parse().unwrap();
        let mut l = Lookup::new(target, Kind::GetPeers, &[node(9), node(3)], &[router]);
        let first = l.to_ask();
        assert_eq!(first, vec![node(3).addr, node(9).addr, router]);
        assert!(!l.done());
        l.answered(node(3).addr, None, Some(b"t3".to_vec()));
        l.learn(node(1));
        l.failed(node(9).addr);
        l.answered(router, Some(node(200).id), None);
        assert_eq!(l.to_ask(), vec![node(1).addr]);
        l.answered(node(1).addr, None, Some(b"t1".to_vec()));
        assert!(l.to_ask().is_empty());
        assert!(l.done());
        assert_eq!(
            l.announce_to(),
            vec![
                (node(1).addr, b"t1".to_vec()),
                (node(3).addr, b"t3".to_vec())
            ]
        );
    }

    #[test]
    fn candidates_and_queries_are_bounded() {
        let mut l = Lookup::new(NodeId([0; 20]), Kind::FindNode, &[], &[]);
        for i in 0..=255u8 {
            l.learn(node(i));
        }
        assert_eq!(l.candidates.len(), MAX_CANDIDATES);
        let mut asked = 0;
        while !l.done() {
            let n = l.to_ask();
            if n.is_empty() {
                break;
            }
            for a in n {
                asked += 1;
                l.failed(a);
            }
        }
        assert!(asked <= MAX_QUERIES);
        assert!(l.done());
    }
}
