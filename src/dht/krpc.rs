//! KRPC (BEP 5): the DHT's bencoded messages over UDP. Pure: bytes in, a bounded message out;
//! a message out, bytes.
//!
//! ```text
//! query:    d1:ad2:id20:<id>...e1:q<name>1:t<tid>1:y1:qe
//! response: d2:ip6:<compact addr>1:rd2:id20:<id>5:nodes<26 n>5:token<..>6:values l6:<peer>..ee1:t<tid>1:y1:re
//! error:    d1:eli<code>e<msg>e1:t<tid>1:y1:ee
//! ```
//! IPv4 only (`nodes`, 6-byte peers): BEP 32's `nodes6` is ignored.

use std::net::{Ipv4Addr, SocketAddrV4};

use thiserror::Error;

use super::id::NodeId;
use crate::bencode::{decode, Node, Value};

/// Longest datagram taken: KRPC messages fit in one unfragmented packet.
pub const MAX_DATAGRAM: usize = 1500;
/// Longest transaction id accepted (clients send 2 to 4 bytes).
pub const MAX_TID: usize = 16;
/// Longest token accepted (ours are 8 bytes; libtorrent's 4).
pub const MAX_TOKEN: usize = 64;
/// Peers read from one `values` list, and nodes from one `nodes` string: the rest is ignored.
pub const MAX_VALUES: usize = 100;
pub const MAX_NODES: usize = 16;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KrpcError {
    #[error("datagram of {0} bytes (at most {MAX_DATAGRAM})")]
    TooLong(usize),
    #[error("not bencode")]
    NotBencode,
    #[error("missing or bad `{0}`")]
    Field(&'static str),
}

/// A compact node: its id and IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactNode {
    pub id: NodeId,
    pub addr: SocketAddrV4,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query<'a> {
    Ping,
    FindNode {
        target: NodeId,
    },
    GetPeers {
        info_hash: NodeId,
    },
    AnnouncePeer {
        info_hash: NodeId,
        port: u16,
        implied_port: bool,
        token: &'a [u8],
    },
    /// A method we do not speak (answered with error 204).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response<'a> {
    pub id: Option<NodeId>,
    pub nodes: Vec<CompactNode>,
    pub values: Vec<SocketAddrV4>,
    pub token: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    Query { id: NodeId, query: Query<'a> },
    Response(Response<'a>),
    Error(i64),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub tid: &'a [u8],
    pub body: Body<'a>,
    /// BEP 42: the address the sender saw us at (responses).
    pub ip: Option<SocketAddrV4>,
    /// BEP 43: the sender does not answer queries; keep it out of the routing table.
    pub read_only: bool,
}

fn id20(node: Option<&Node>, field: &'static str) -> Result<NodeId, KrpcError> {
    node.and_then(Node::as_bytes)
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .map(NodeId)
        .ok_or(KrpcError::Field(field))
}

pub fn compact_addr(b: &[u8]) -> Option<SocketAddrV4> {
    let b: [u8; 6] = b.try_into().ok()?;
    Some(SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    ))
}

pub fn write_addr(addr: SocketAddrV4, out: &mut Vec<u8>) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Nodes from a `nodes` string: whole 26-byte entries, at most MAX_NODES, port 0 skipped.
pub fn parse_nodes(b: &[u8]) -> Vec<CompactNode> {
    b.chunks_exact(26)
        .take(MAX_NODES)
        .filter_map(|c| {
            let id = NodeId(c[..20].try_into().ok()?);
            let addr = compact_addr(&c[20..])?;
            (addr.port() != 0).then_some(CompactNode { id, addr })
        })
        .collect()
}

pub fn write_nodes(nodes: &[CompactNode]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * 26);
    for n in nodes {
        out.extend_from_slice(&n.id.0);
        write_addr(n.addr, &mut out);
    }
    out
}

impl<'a> Message<'a> {
    pub fn parse(datagram: &'a [u8]) -> Result<Message<'a>, KrpcError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(KrpcError::TooLong(datagram.len()));
        }
        let root = decode(datagram).map_err(|_| KrpcError::NotBencode)?;
        let tid = root
            .get("t")
            .and_then(Node::as_bytes)
            .filter(|t| t.len() <= MAX_TID)
            .ok_or(KrpcError::Field("t"))?;
        let ip = root
            .get("ip")
            .and_then(Node::as_bytes)
            .and_then(compact_addr);
        let read_only = root.get("ro").and_then(Node::as_int) == Some(1);
        let body = match root.get("y").and_then(Node::as_bytes) {
            Some(b"q") => {
                let a = root.get("a").filter(|a| a.as_dict().is_some());
                let a = a.ok_or(KrpcError::Field("a"))?;
                let id = id20(a.get("id"), "id")?;
                let query = match root.get("q").and_then(Node::as_bytes) {
                    Some(b"ping") => Query::Ping,
                    Some(b"find_node") => Query::FindNode {
                        target: id20(a.get("target"), "target")?,
                    },
                    Some(b"get_peers") => Query::GetPeers {
                        info_hash: id20(a.get("info_hash"), "info_hash")?,
                    },
                    Some(b"announce_peer") => Query::AnnouncePeer {
                        info_hash: id20(a.get("info_hash"), "info_hash")?,
                        port: a
                            .get("port")
                            .and_then(Node::as_int)
                            .and_then(|p| u16::try_from(p).ok())
                            .unwrap_or(0),
                        implied_port: a.get("implied_port").and_then(Node::as_int) == Some(1),
                        token: a
                            .get("token")
                            .and_then(Node::as_bytes)
                            .filter(|t| t.len() <= MAX_TOKEN)
                            .ok_or(KrpcError::Field("token"))?,
                    },
                    Some(_) => Query::Unknown,
                    None => return Err(KrpcError::Field("q")),
                };
                Body::Query { id, query }
            }
            Some(b"r") => {
                let r = root.get("r").filter(|r| r.as_dict().is_some());
                let r = r.ok_or(KrpcError::Field("r"))?;
                Body::Response(Response {
                    id: id20(r.get("id"), "id").ok(),
                    nodes: r
                        .get("nodes")
                        .and_then(Node::as_bytes)
                        .map(parse_nodes)
                        .unwrap_or_default(),
                    values: r
                        .get("values")
                        .and_then(Node::as_list)
                        .map(|l| {
                            l.iter()
                                .take(MAX_VALUES)
                                .filter_map(|v| v.as_bytes().and_then(compact_addr))
                                .collect()
                        })
                        .unwrap_or_default(),
                    token: r
                        .get("token")
                        .and_then(Node::as_bytes)
                        .filter(|t| t.len() <= MAX_TOKEN),
                })
            }
            Some(b"e") => Body::Error(
                root.get("e")
                    .and_then(Node::as_list)
                    .and_then(|l| l.first())
                    .and_then(Node::as_int)
                    .unwrap_or(0),
            ),
            _ => return Err(KrpcError::Field("y")),
        };
        Ok(Message {
            tid,
            body,
            ip,
            read_only,
        })
    }
}

/// Our own client version (`v`): "bS" and a version, as the peer id prefix.
const VERSION: &[u8] = b"bS\x01\x00";

fn envelope(tid: &[u8], y: &str) -> Value {
    let mut d = Value::dict();
    d.insert("t", Value::Bytes(tid.to_vec()));
    d.insert("y", Value::str(y));
    d.insert("v", Value::Bytes(VERSION.to_vec()));
    d
}

/// A query we send.
pub fn encode_query(tid: &[u8], own: &NodeId, query: &Query<'_>) -> Vec<u8> {
    let mut a = Value::dict();
    a.insert("id", Value::Bytes(own.0.to_vec()));
    let name = match query {
        Query::Ping | Query::Unknown => "ping",
        Query::FindNode { target } => {
            a.insert("target", Value::Bytes(target.0.to_vec()));
            "find_node"
        }
        Query::GetPeers { info_hash } => {
            a.insert("info_hash", Value::Bytes(info_hash.0.to_vec()));
            "get_peers"
        }
        Query::AnnouncePeer {
            info_hash,
            port,
            implied_port,
            token,
        } => {
            a.insert("info_hash", Value::Bytes(info_hash.0.to_vec()));
            a.insert("port", Value::Int((*port).into()));
            if *implied_port {
                a.insert("implied_port", Value::Int(1));
            }
            a.insert("token", Value::Bytes(token.to_vec()));
            "announce_peer"
        }
    };
    let mut d = envelope(tid, "q");
    d.insert("q", Value::str(name));
    d.insert("a", a);
    d.encode()
}

/// A response we send to `to`, telling it the address we saw it at (BEP 42).
pub fn encode_response(tid: &[u8], own: &NodeId, to: SocketAddrV4, r: &Response<'_>) -> Vec<u8> {
    let mut body = Value::dict();
    body.insert("id", Value::Bytes(own.0.to_vec()));
    if !r.nodes.is_empty() {
        body.insert("nodes", Value::Bytes(write_nodes(&r.nodes)));
    }
    if let Some(token) = r.token {
        body.insert("token", Value::Bytes(token.to_vec()));
    }
    if !r.values.is_empty() {
        let values = r
            .values
            .iter()
            .map(|a| {
                let mut b = Vec::with_capacity(6);
                write_addr(*a, &mut b);
                Value::Bytes(b)
            })
            .collect();
        body.insert("values", Value::List(values));
    }
    let mut d = envelope(tid, "r");
    d.insert("r", body);
    let mut ip = Vec::with_capacity(6);
    write_addr(to, &mut ip);
    d.insert("ip", Value::Bytes(ip));
    d.encode()
}

/// An error we send (201 generic, 203 protocol, 204 method unknown).
pub fn encode_error(tid: &[u8], code: i64, text: &str) -> Vec<u8> {
    let mut d = envelope(tid, "e");
    d.insert("e", Value::List(vec![Value::Int(code), Value::str(text)]));
    d.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BEP 5's own examples.
    #[test]
    fn bep5_examples_parse() {
        let ping =
            Message::parse(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe").unwrap();
        assert_eq!(ping.tid, b"aa");
        assert_eq!(
            ping.body,
            Body::Query {
                id: NodeId(*b"abcdefghij0123456789"),
                query: Query::Ping
            }
        );
        let pong = Message::parse(b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re").unwrap();
        let Body::Response(r) = pong.body else {
            panic!("a response")
        };
        assert_eq!(r.id, Some(NodeId(*b"mnopqrstuvwxyz123456")));
        let ann = Message::parse(b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe").unwrap();
        assert_eq!(
            ann.body,
            Body::Query {
                id: NodeId(*b"abcdefghij0123456789"),
                query: Query::AnnouncePeer {
                    info_hash: NodeId(*b"mnopqrstuvwxyz123456"),
                    port: 6881,
                    implied_port: true,
                    token: b"aoeusnth"
                }
            }
        );
        let err = Message::parse(b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee").unwrap();
        assert_eq!(err.body, Body::Error(201));
    }

    #[test]
    fn what_we_send_parses_back() {
        let own = NodeId([7; 20]);
        let q = encode_query(
            b"xy",
            &own,
            &Query::GetPeers {
                info_hash: NodeId([9; 20]),
            },
        );
        let m = Message::parse(&q).unwrap();
        assert_eq!(
            m.body,
            Body::Query {
                id: own,
                query: Query::GetPeers {
                    info_hash: NodeId([9; 20])
                }
            }
        );
        let to: SocketAddrV4 = "10.0.0.1:6881".parse().unwrap();
        let node = CompactNode {
            id: NodeId([1; 20]),
            addr: "1.2.3.4:5".parse().unwrap(),
        };
        let r = Response {
            id: Some(own),
            nodes: vec![node],
            values: vec!["127.0.0.1:6881".parse().unwrap()],
            token: Some(b"tok"),
        };
        let bytes = encode_response(b"xy", &own, to, &r);
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.ip, Some(to));
        assert_eq!(m.body, Body::Response(r));
        let bytes = encode_error(b"xy", 204, "Method Unknown");
        assert_eq!(Message::parse(&bytes).unwrap().body, Body::Error(204));
    }

    #[test]
    fn bad_input_is_refused_with_its_reason() {
        assert_eq!(Message::parse(b"garbage"), Err(KrpcError::NotBencode));
        assert_eq!(Message::parse(b"d1:y1:qe"), Err(KrpcError::Field("t")));
        assert_eq!(
            Message::parse(b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe"),
            Err(KrpcError::Field("id"))
        );
        let long_tid = format!("d1:t17:{}1:y1:re", "x".repeat(17));
        assert_eq!(
            Message::parse(long_tid.as_bytes()),
            Err(KrpcError::Field("t"))
        );
        assert!(matches!(
            Message::parse(&vec![b'd'; 2000]),
            Err(KrpcError::TooLong(2000))
        ));
        // Nodes: partial entries and port 0 are dropped, the count is capped.
        let mut many = Vec::new();
        for i in 0..40u8 {
            many.extend_from_slice(&[i; 20]);
            many.extend_from_slice(&[1, 2, 3, 4, 0, i]);
        }
        many.extend_from_slice(&[1; 10]);
        let nodes = parse_nodes(&many);
        assert_eq!(nodes.len(), MAX_NODES - 1);
    }
}
