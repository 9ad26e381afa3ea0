//! A tracker's client by hand: HTTP announces and scrapes, BEP 15 over UDP, their answers.
//! UDP answers are read with bitseed's own codec (`tracker::udp_protocol`, the one the
//! announcer and the load tool use); announces are built byte by byte here, since tests also
//! send what no codec would write (unknown events, bad connection ids, truncated options).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bitseed::bencode::{decode, Node};
use bitseed::tracker::udp_protocol;

use super::http_get;

/// A GET answered 200: its body.
pub fn ok_body(addr: SocketAddr, path: &str) -> Vec<u8> {
    ok_body_with(addr, path, &[])
}

/// `ok_body` with extra headers.
pub fn ok_body_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let r = http_get(addr, path, headers);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.body
}

pub fn enc(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

pub fn announce_path(hash: &[u8; 20], port: u16, left: u64, extra: &str) -> String {
    let mut peer_id = *b"-BS0001-000000000000";
    peer_id[14..].copy_from_slice(format!("{port:06}").as_bytes());
    format!(
        "/announce?info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}{extra}",
        enc(hash),
        enc(&peer_id)
    )
}

pub fn int(node: &Node, key: &str) -> i64 {
    node.get(key)
        .and_then(Node::as_int)
        .unwrap_or_else(|| panic!("no int {key}"))
}

pub fn bytes<'a>(node: &Node<'a>, key: &str) -> &'a [u8] {
    node.get(key)
        .and_then(Node::as_bytes)
        .unwrap_or_else(|| panic!("no bytes {key}"))
}

pub struct Udp {
    pub socket: UdpSocket,
    pub server: SocketAddr,
}

impl Udp {
    pub fn new(server: SocketAddr) -> Udp {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Udp { socket, server }
    }

    pub fn exchange(&self, packet: &[u8]) -> Vec<u8> {
        self.socket.send_to(packet, self.server).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = self.socket.recv_from(&mut buf).expect("udp answer");
        buf[..n].to_vec()
    }

    pub fn connect(&self) -> u64 {
        let mut p = Vec::new();
        udp_protocol::write_connect_request(0xcafe_babe, &mut p);
        match udp_protocol::parse_response(&self.exchange(&p)) {
            Ok(udp_protocol::Response::Connect {
                transaction_id: 0xcafe_babe,
                connection_id,
            }) => connection_id,
            other => panic!("not our connect answer: {other:?}"),
        }
    }
}

pub fn udp_announce(
    conn: u64,
    h: &[u8; 20],
    port: u16,
    left: u64,
    event: u32,
    num_want: i32,
) -> Vec<u8> {
    let mut p = conn.to_be_bytes().to_vec();
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&u32::from(port).to_be_bytes());
    p.extend_from_slice(h);
    p.extend_from_slice(b"-BS0001-udpudpudpudp");
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(&left.to_be_bytes());
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(&event.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&0x1234u32.to_be_bytes());
    p.extend_from_slice(&num_want.to_be_bytes());
    p.extend_from_slice(&port.to_be_bytes());
    p
}

pub fn be32(r: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(r[at..at + 4].try_into().unwrap())
}

/// complete, incomplete, downloaded of `h` in an HTTP scrape.
pub fn scraped(http: SocketAddr, h: &[u8; 20]) -> (i64, i64, i64) {
    let body = ok_body(http, &format!("/scrape?info_hash={}", enc(h)));
    let node = decode(&body).unwrap();
    let entry = &node.get("files").unwrap().as_dict().unwrap()[0].1;
    (
        int(entry, "complete"),
        int(entry, "incomplete"),
        int(entry, "downloaded"),
    )
}

/// The compact peers of an HTTP announce answer, and its complete / incomplete counts.
pub fn http_peers(http: SocketAddr, path: &str) -> (Vec<[u8; 6]>, (i64, i64)) {
    let body = ok_body(http, path);
    let node = decode(&body).unwrap();
    let peers = bytes(&node, "peers")
        .chunks(6)
        .map(|c| c.try_into().unwrap())
        .collect();
    (peers, (int(&node, "complete"), int(&node, "incomplete")))
}

/// The compact peers of a UDP announce answer, and its seeders / leechers counts.
pub fn udp_peers(r: &[u8]) -> (Vec<[u8; 6]>, (u32, u32)) {
    match udp_protocol::parse_response(r) {
        Ok(udp_protocol::Response::Announce {
            seeders,
            leechers,
            peers,
            ..
        }) => (
            peers.chunks(6).map(|c| c.try_into().unwrap()).collect(),
            (seeders, leechers),
        ),
        other => panic!("not an announce answer: {other:?}"),
    }
}

pub fn compact_local(port: u16) -> [u8; 6] {
    let mut c = [127, 0, 0, 1, 0, 0];
    c[4..].copy_from_slice(&port.to_be_bytes());
    c
}
