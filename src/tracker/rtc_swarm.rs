//! Browser (WebRTC) peers of one swarm, as the WebSocket tracker keeps them: by peer id, with
//! the connection each one announced on, because a browser has no address another peer could
//! dial: peers meet by offers and answers relayed over their tracker connections. They are
//! counted with the swarm's HTTP and UDP peers (`Shard::counts`) and completions go into the
//! same count.
//!
//! Pure: the caller hands in the time (seconds since start) and the randomness.

use std::collections::HashMap;

use super::http_request::{Event, InfoHash};
use super::http_response::Counts;
use super::peer_list::{seeds, Report, Was};
use super::swarm::{Limits, Refusal, Shard, SwarmChange};
use super::ws_protocol::{
    answer_message, offer_message, Answer, Offer, OfferId, PeerId, WsAnnounce,
};

/// Offers a peer waits for answers to, at most: a WebTorrent client makes 5 per announce and
/// gives each up after 50 s.
const MAX_EXPECTING: usize = 32;

#[derive(Debug)]
struct RtcPeer {
    id: PeerId,
    /// The tracker connection it announced on: messages for it go there.
    conn: u64,
    /// `client_key` of its address, for `max_peers_per_ip`.
    client: u64,
    /// The hash it announced (the v2 one of a hybrid torrent, or the v1 one): what it is told.
    hash: InfoHash,
    seeder: bool,
    /// A leecher that has only ever said `left=0` (see `peer_list::seeds`).
    unconfirmed: bool,
    last: u32,
    /// Offers it made that may be answered: (to whom, offer id, until when).
    expecting: Vec<(PeerId, OfferId, u32)>,
}

/// A message for the peer on tracker connection `conn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub conn: u64,
    pub message: String,
}

/// The browser peers of one torrent. A vector and an index rather than one map: offers go to
/// peers picked at random, which a vector gives in constant time.
#[derive(Debug, Default)]
pub struct RtcSwarm {
    peers: Vec<RtcPeer>,
    index: HashMap<PeerId, usize>,
    seeders: usize,
    per_client: HashMap<u64, u32>,
    /// The client that created it in open mode (see `swarm::client_key`), 0 for none.
    pub creator: u64,
}

/// What the caller knows of the message's sender.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    pub conn: u64,
    pub client: u64,
    /// The hash it announced under (the swarm may be kept under its twin).
    pub hash: InfoHash,
}

/// Bounds on one announce.
#[derive(Debug, Clone, Copy)]
pub struct RtcLimits {
    pub max_peers: usize,
    /// 0 = no limit.
    pub max_peers_per_ip: usize,
    /// Seconds an offer may wait for its answer.
    pub offer_ttl: u32,
}

/// What an update did to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored (or still stored), and whether it just completed.
    Yes { completed: bool },
    /// Not stored: stopped, or over a cap.
    No,
    /// Its peer id is held by a peer on another connection: nothing done.
    Taken,
}

impl RtcSwarm {
    pub fn seeders(&self) -> usize {
        self.seeders
    }

    pub fn leechers(&self) -> usize {
        self.peers.len() - self.seeders
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Records what `event` and `left` say of the sender `id`.
    pub fn update(
        &mut self,
        id: &PeerId,
        from: Sender,
        event: Event,
        left: Option<u64>,
        now: u32,
        limits: RtcLimits,
    ) -> Stored {
        let report = match (left, event) {
            (Some(1..), _) | (None, _) => Report::Leeching,
            (Some(0), Event::Completed) => Report::Completed,
            (Some(0), _) => Report::NothingLeft,
        };
        if let Some(&i) = self.index.get(id) {
            if self.peers[i].conn != from.conn {
                return Stored::Taken;
            }
            if event == Event::Stopped {
                self.remove(i);
                return Stored::No;
            }
            let p = &mut self.peers[i];
            let was = match (p.seeder, p.unconfirmed) {
                (true, _) => Was::Seeder,
                (false, true) => Was::Unconfirmed,
                (false, false) => Was::Leecher,
            };
            // `left` unknown says nothing new of a known peer.
            let seeder = if left.is_none() {
                p.seeder
            } else {
                seeds(was, report)
            };
            p.unconfirmed = report == Report::NothingLeft && was == Was::Unconfirmed;
            p.last = now;
            p.hash = from.hash;
            let completed = report == Report::Completed && !p.seeder;
            if seeder != p.seeder {
                p.seeder = seeder;
                if seeder {
                    self.seeders += 1;
                } else {
                    self.seeders -= 1;
                }
            }
            return Stored::Yes { completed };
        }
        if event == Event::Stopped || self.peers.len() >= limits.max_peers {
            return Stored::No;
        }
        let mine = self.per_client.get(&from.client).copied().unwrap_or(0);
        if limits.max_peers_per_ip > 0 && mine as usize >= limits.max_peers_per_ip {
            return Stored::No;
        }
        let seeder = seeds(Was::Absent, report);
        self.index.insert(*id, self.peers.len());
        self.peers.push(RtcPeer {
            id: *id,
            conn: from.conn,
            client: from.client,
            hash: from.hash,
            seeder,
            unconfirmed: report == Report::NothingLeft,
            last: now,
            expecting: Vec::new(),
        });
        *self.per_client.entry(from.client).or_default() += 1;
        self.seeders += usize::from(seeder);
        Stored::Yes {
            completed: report == Report::Completed,
        }
    }

    /// Hands each of `offers` from the stored peer `from` to another peer picked at random (a
    /// leecher when `from` seeds: two seeders have nothing to trade), at most `numwant`.
    #[allow(clippy::too_many_arguments)]
    pub fn relay_offers(
        &mut self,
        from: &PeerId,
        offers: &[Offer],
        numwant: usize,
        random: u64,
        now: u32,
        limits: RtcLimits,
        out: &mut Vec<Relay>,
    ) {
        let Some(&me) = self.index.get(from) else {
            return;
        };
        let (len, sender_seeds) = (self.peers.len(), self.peers[me].seeder);
        let want = offers.len().min(numwant);
        let start = (random % len.max(1) as u64) as usize;
        let mut picked = Vec::with_capacity(want);
        // One pass from a random place: fair enough, and bounded by the swarm's size.
        for k in 0..len {
            if picked.len() == want {
                break;
            }
            let i = (start + k) % len;
            if i != me && !(sender_seeds && self.peers[i].seeder) {
                picked.push(i);
            }
        }
        for (offer, i) in offers.iter().zip(picked) {
            let to = &self.peers[i];
            out.push(Relay {
                conn: to.conn,
                message: offer_message(&to.hash, from, offer),
            });
            let to_id = to.id;
            let expecting = &mut self.peers[me].expecting;
            expecting.retain(|e| e.2 >= now);
            if expecting.len() >= MAX_EXPECTING {
                expecting.remove(0);
            }
            expecting.push((to_id, offer.offer_id, now.saturating_add(limits.offer_ttl)));
        }
    }

    /// Hands `answer` from `from` to the peer whose offer it answers, if that offer is still
    /// waiting; false if it is not (expired, answered already, or never made to `from`).
    pub fn relay_answer(
        &mut self,
        from: &PeerId,
        answer: &Answer,
        now: u32,
        out: &mut Vec<Relay>,
    ) -> bool {
        let Some(&i) = self.index.get(&answer.to_peer_id) else {
            return false;
        };
        let to = &mut self.peers[i];
        let Some(at) = to
            .expecting
            .iter()
            .position(|e| e.0 == *from && e.1 == answer.offer_id && e.2 >= now)
        else {
            return false;
        };
        to.expecting.swap_remove(at);
        out.push(Relay {
            conn: to.conn,
            message: answer_message(&to.hash, from, &answer.offer_id, &answer.sdp),
        });
        true
    }

    /// Removes `id` if it announced on `conn` (its connection closed).
    pub fn leave(&mut self, id: &PeerId, conn: u64) {
        if let Some(&i) = self.index.get(id) {
            if self.peers[i].conn == conn {
                self.remove(i);
            }
        }
    }

    /// Drops peers silent since before `oldest`; the number dropped.
    pub fn expire(&mut self, oldest: u32) -> usize {
        let before = self.peers.len();
        let mut i = 0;
        while i < self.peers.len() {
            if self.peers[i].last < oldest {
                self.remove(i);
            } else {
                i += 1;
            }
        }
        before - self.peers.len()
    }

    fn remove(&mut self, i: usize) {
        let p = self.peers.swap_remove(i);
        self.index.remove(&p.id);
        if let Some(moved) = self.peers.get(i) {
            self.index.insert(moved.id, i);
        }
        self.seeders -= usize::from(p.seeder);
        if let Some(n) = self.per_client.get_mut(&p.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&p.client);
            }
        }
    }
}

/// What a browser's announce did, beside the relays it produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcOutcome {
    pub counts: Counts,
    pub change: SwarmChange,
    /// A refusal of part of the message, told to the client as a `failure reason`.
    pub notice: Option<&'static str>,
}

impl Shard {
    /// Records a browser's announce under `key` (the swarm's hash: the v1 one of a hybrid
    /// torrent), relays its offers and answer into `out`, and counts it with the swarm's
    /// other peers. Creating a swarm that bitseed does not publish takes `claim(client)`, as
    /// `Shard::announce` does.
    #[allow(clippy::too_many_arguments)]
    pub fn rtc_announce(
        &mut self,
        key: InfoHash,
        a: &WsAnnounce,
        from: Sender,
        limits: Limits,
        rtc: RtcLimits,
        now: u32,
        random: u64,
        claim: &mut dyn FnMut(u64) -> bool,
        out: &mut Vec<Relay>,
    ) -> Result<RtcOutcome, Refusal> {
        self.announces += 1;
        let published = self.published.contains(&key);
        if !limits.open && !published {
            return Err(Refusal::Unregistered);
        }
        let mut change = SwarmChange::default();
        let mut notice = None;
        let stores = a.updates_peer() && a.event != Event::Stopped;
        if stores && !self.rtc.contains_key(&key) {
            let creator = if published {
                0
            } else {
                if !limits.may_create || !claim(from.client) {
                    return Err(Refusal::TooManyTorrents);
                }
                from.client
            };
            self.rtc.insert(
                key,
                RtcSwarm {
                    creator,
                    ..RtcSwarm::default()
                },
            );
            change.created = true;
        }
        if let Some(swarm) = self.rtc.get_mut(&key) {
            if a.updates_peer() {
                match swarm.update(&a.peer_id, from, a.event, a.left, now, rtc) {
                    Stored::Yes { completed } => {
                        if completed {
                            *self.completed.entry(key).or_default() += 1;
                            *self.unsaved.entry(key).or_default() += 1;
                        }
                        let numwant = a.numwant.map_or(a.offers.len(), |n| n as usize);
                        swarm.relay_offers(&a.peer_id, &a.offers, numwant, random, now, rtc, out);
                    }
                    Stored::No => {}
                    Stored::Taken => notice = Some("peer_id is in use on another connection"),
                }
            }
            if let Some(answer) = &a.answer {
                if !swarm.relay_answer(&a.peer_id, answer, now, out) {
                    notice = Some("no offer waits for this answer (it may have expired)");
                }
            }
            if swarm.is_empty() {
                change.removed = self.rtc.remove(&key).map(|s| s.creator);
            }
        }
        Ok(RtcOutcome {
            counts: self.counts(&key),
            change,
            notice,
        })
    }

    /// A closed connection's peers leave; the creators of the swarms left empty are appended
    /// to `removed`.
    pub fn rtc_leave(&mut self, key: &InfoHash, id: &PeerId, conn: u64, removed: &mut Vec<u64>) {
        if let Some(swarm) = self.rtc.get_mut(key) {
            swarm.leave(id, conn);
            if swarm.is_empty() {
                removed.extend(self.rtc.remove(key).map(|s| s.creator));
            }
        }
    }

    /// Drops browser peers silent since before `oldest` and the swarms left empty.
    pub fn rtc_sweep(&mut self, oldest: u32, removed: &mut Vec<u64>) {
        self.rtc.retain(|_, s| {
            s.expire(oldest);
            if s.is_empty() {
                removed.push(s.creator);
            }
            !s.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: InfoHash = InfoHash::new([7; 20]);
    const LIMITS: RtcLimits = RtcLimits {
        max_peers: 100,
        max_peers_per_ip: 0,
        offer_ttl: 60,
    };

    fn from(conn: u64) -> Sender {
        Sender {
            conn,
            client: conn,
            hash: H,
        }
    }

    fn offer(n: u8) -> Offer {
        Offer {
            offer_id: [n; 20],
            sdp: format!("sdp {n}"),
        }
    }

    #[test]
    fn counts_completion_once_and_stops() {
        let mut s = RtcSwarm::default();
        let a = [1; 20];
        assert_eq!(
            s.update(&a, from(1), Event::Started, Some(10), 0, LIMITS),
            Stored::Yes { completed: false }
        );
        assert_eq!((s.seeders(), s.leechers()), (0, 1));
        // An answer-only message (no `left`) keeps what it was.
        s.update(&a, from(1), Event::None, None, 1, LIMITS);
        assert_eq!(
            s.update(&a, from(1), Event::Completed, Some(0), 2, LIMITS),
            Stored::Yes { completed: true }
        );
        assert_eq!(
            s.update(&a, from(1), Event::Completed, Some(0), 3, LIMITS),
            Stored::Yes { completed: false }
        );
        s.update(&a, from(1), Event::None, None, 4, LIMITS);
        assert_eq!((s.seeders(), s.leechers()), (1, 0));
        // Another connection cannot speak for it.
        assert_eq!(
            s.update(&a, from(2), Event::Stopped, Some(0), 5, LIMITS),
            Stored::Taken
        );
        s.update(&a, from(1), Event::Stopped, Some(0), 5, LIMITS);
        assert!(s.is_empty());
        assert_eq!(s.seeders(), 0);
    }

    #[test]
    fn offers_go_to_others_and_answers_back_to_the_offerer() {
        let mut s = RtcSwarm::default();
        let (a, b, c) = ([1; 20], [2; 20], [3; 20]);
        s.update(&a, from(1), Event::Started, Some(0), 0, LIMITS);
        s.update(&b, from(2), Event::Started, Some(10), 0, LIMITS);
        let mut out = Vec::new();
        s.update(&c, from(3), Event::Started, Some(10), 0, LIMITS);
        s.relay_offers(
            &c,
            &[offer(1), offer(2), offer(3)],
            5,
            0,
            0,
            LIMITS,
            &mut out,
        );
        let mut conns: Vec<u64> = out.iter().map(|r| r.conn).collect();
        conns.sort();
        assert_eq!(conns, [1, 2], "one offer each to the two others");
        // b answers the offer it got; the answer goes to c once.
        let got = out.iter().find(|r| r.conn == 2).unwrap();
        let v: serde_json::Value = serde_json::from_str(&got.message).unwrap();
        let id = super::super::ws_protocol::binary_string(&c);
        assert_eq!(v["peer_id"], id);
        let offer_id: Vec<u8> = v["offer_id"]
            .as_str()
            .unwrap()
            .chars()
            .map(|c| c as u8)
            .collect();
        let answer = Answer {
            to_peer_id: c,
            offer_id: offer_id.clone().try_into().unwrap(),
            sdp: "ans".into(),
        };
        out.clear();
        assert!(s.relay_answer(&b, &answer, 10, &mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].conn, 3);
        assert!(
            !s.relay_answer(&b, &answer, 10, &mut out),
            "answered already"
        );
        // a (the seeder) answering an offer made to b: refused.
        let other = out.len();
        let wrong = Answer {
            offer_id: [9; 20],
            ..answer.clone()
        };
        assert!(!s.relay_answer(&a, &wrong, 10, &mut out));
        assert_eq!(out.len(), other);
        // A seeder's offers go to leechers only.
        out.clear();
        s.relay_offers(&a, &[offer(4), offer(5)], 5, 1, 20, LIMITS, &mut out);
        assert!(out.iter().all(|r| r.conn != 1));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn offers_expire_and_caps_hold() {
        let mut s = RtcSwarm::default();
        let (a, b) = ([1; 20], [2; 20]);
        s.update(&a, from(1), Event::Started, Some(5), 0, LIMITS);
        s.update(&b, from(2), Event::Started, Some(5), 0, LIMITS);
        let mut out = Vec::new();
        s.relay_offers(&a, &[offer(1)], 5, 0, 0, LIMITS, &mut out);
        let late = Answer {
            to_peer_id: a,
            offer_id: [1; 20],
            sdp: String::new(),
        };
        assert!(!s.relay_answer(&b, &late, 61, &mut out));
        let capped = RtcLimits {
            max_peers_per_ip: 1,
            ..LIMITS
        };
        let same_client = Sender { conn: 9, ..from(1) };
        assert_eq!(
            s.update(&[3; 20], same_client, Event::Started, Some(5), 0, capped),
            Stored::No
        );
        assert_eq!(s.expire(1), 2);
        assert!(s.is_empty());
        assert!(s.per_client.is_empty());
    }
}
