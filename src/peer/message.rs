//! Peer wire messages: BEP 3, the BEP 6 fast set, BEP 10 extended, BEP 52 hash messages.
//!
//! ```text
//! +----------------+------+-----------------+
//! | length (u32 BE)| id   | payload         |   length = 1 + payload; 0 = keep-alive
//! +----------------+------+-----------------+
//! ```
//!
//! `parse` never reads: it returns `Ok(None)` until a whole frame is in the buffer, and refuses a
//! length prefix over the caller's bound before anything is allocated.

use super::WireError;

/// A block: the unit of request, piece, cancel and reject.
pub const BLOCK: u32 = 16 * 1024;
/// Largest frame a seed needs to accept: a piece message carrying one block (and anything shorter).
pub const MAX_FRAME: u32 = BLOCK + 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// BEP 52 hash request; `hash reject` carries the same fields, `hashes` adds the hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashRequest {
    pub pieces_root: [u8; 32],
    pub base_layer: u32,
    pub index: u32,
    pub length: u32,
    pub proof_layers: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    Request(BlockRef),
    Piece {
        index: u32,
        begin: u32,
        data: Vec<u8>,
    },
    Cancel(BlockRef),
    /// BEP 5 DHT port: parsed and ignored by a seed.
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
    HashRequest(HashRequest),
    Hashes {
        request: HashRequest,
        hashes: Vec<[u8; 32]>,
    },
    HashReject(HashRequest),
    /// An id this codec does not know: ignored, as BEP 3 asks of unknown messages.
    Unknown(u8),
}

mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 13;
    pub const HAVE_ALL: u8 = 14;
    pub const HAVE_NONE: u8 = 15;
    pub const REJECT: u8 = 16;
    pub const ALLOWED_FAST: u8 = 17;
    pub const EXTENDED: u8 = 20;
    pub const HASH_REQUEST: u8 = 21;
    pub const HASHES: u8 = 22;
    pub const HASH_REJECT: u8 = 23;
}

const HASH_REQUEST_LEN: usize = 32 + 16;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Message {
    /// Parses one frame from the start of `buf`. `max_len` bounds the length prefix.
    pub fn parse(buf: &[u8], max_len: u32) -> Result<Option<(Message, usize)>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32_at(buf, 0);
        if len > max_len {
            return Err(WireError::TooLong { len, max: max_len });
        }
        let total = 4 + len as usize;
        if buf.len() < total {
            return Ok(None);
        }
        if len == 0 {
            return Ok(Some((Message::KeepAlive, 4)));
        }
        let id = buf[4];
        let p = &buf[5..total];
        let exact = |n: usize| {
            if p.len() == n {
                Ok(())
            } else {
                Err(WireError::BadLength { id, len })
            }
        };
        let block = |p: &[u8]| BlockRef {
            index: u32_at(p, 0),
            begin: u32_at(p, 4),
            length: u32_at(p, 8),
        };
        let msg = match id {
            id::CHOKE => exact(0).map(|_| Message::Choke)?,
            id::UNCHOKE => exact(0).map(|_| Message::Unchoke)?,
            id::INTERESTED => exact(0).map(|_| Message::Interested)?,
            id::NOT_INTERESTED => exact(0).map(|_| Message::NotInterested)?,
            id::HAVE => exact(4).map(|_| Message::Have(u32_at(p, 0)))?,
            id::BITFIELD => Message::Bitfield(p.to_vec()),
            id::REQUEST => exact(12).map(|_| Message::Request(block(p)))?,
            id::PIECE => {
                if p.len() < 8 {
                    return Err(WireError::BadLength { id, len });
                }
                Message::Piece {
                    index: u32_at(p, 0),
                    begin: u32_at(p, 4),
                    data: p[8..].to_vec(),
                }
            }
            id::CANCEL => exact(12).map(|_| Message::Cancel(block(p)))?,
            id::PORT => exact(2).map(|_| Message::Port(u16::from_be_bytes([p[0], p[1]])))?,
            id::SUGGEST => exact(4).map(|_| Message::Suggest(u32_at(p, 0)))?,
            id::HAVE_ALL => exact(0).map(|_| Message::HaveAll)?,
            id::HAVE_NONE => exact(0).map(|_| Message::HaveNone)?,
            id::REJECT => exact(12).map(|_| Message::Reject(block(p)))?,
            id::ALLOWED_FAST => exact(4).map(|_| Message::AllowedFast(u32_at(p, 0)))?,
            id::EXTENDED => {
                let Some((&ext, payload)) = p.split_first() else {
                    return Err(WireError::BadLength { id, len });
                };
                Message::Extended {
                    id: ext,
                    payload: payload.to_vec(),
                }
            }
            id::HASH_REQUEST => {
                exact(HASH_REQUEST_LEN).map(|_| Message::HashRequest(hash_req(p)))?
            }
            id::HASH_REJECT => exact(HASH_REQUEST_LEN).map(|_| Message::HashReject(hash_req(p)))?,
            id::HASHES => {
                if p.len() < HASH_REQUEST_LEN || (p.len() - HASH_REQUEST_LEN) % 32 != 0 {
                    return Err(WireError::BadLength { id, len });
                }
                Message::Hashes {
                    request: hash_req(p),
                    hashes: p[HASH_REQUEST_LEN..]
                        .chunks_exact(32)
                        .map(|c| {
                            let mut h = [0; 32];
                            h.copy_from_slice(c);
                            h
                        })
                        .collect(),
                }
            }
            other => Message::Unknown(other),
        };
        Ok(Some((msg, total)))
    }

    /// Appends the frame to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let frame = |out: &mut Vec<u8>, id: u8, payload_len: usize| {
            out.extend_from_slice(&(1 + payload_len as u32).to_be_bytes());
            out.push(id);
        };
        let block = |out: &mut Vec<u8>, id: u8, b: &BlockRef| {
            frame(out, id, 12);
            out.extend_from_slice(&b.index.to_be_bytes());
            out.extend_from_slice(&b.begin.to_be_bytes());
            out.extend_from_slice(&b.length.to_be_bytes());
        };
        let one = |out: &mut Vec<u8>, id: u8, v: u32| {
            frame(out, id, 4);
            out.extend_from_slice(&v.to_be_bytes());
        };
        match self {
            Message::KeepAlive => out.extend_from_slice(&[0; 4]),
            Message::Choke => frame(out, id::CHOKE, 0),
            Message::Unchoke => frame(out, id::UNCHOKE, 0),
            Message::Interested => frame(out, id::INTERESTED, 0),
            Message::NotInterested => frame(out, id::NOT_INTERESTED, 0),
            Message::Have(i) => one(out, id::HAVE, *i),
            Message::Bitfield(bits) => {
                frame(out, id::BITFIELD, bits.len());
                out.extend_from_slice(bits);
            }
            Message::Request(b) => block(out, id::REQUEST, b),
            Message::Piece { index, begin, data } => {
                write_piece_header(out, *index, *begin, data.len() as u32);
                out.extend_from_slice(data);
            }
            Message::Cancel(b) => block(out, id::CANCEL, b),
            Message::Port(port) => {
                frame(out, id::PORT, 2);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Message::Suggest(i) => one(out, id::SUGGEST, *i),
            Message::HaveAll => frame(out, id::HAVE_ALL, 0),
            Message::HaveNone => frame(out, id::HAVE_NONE, 0),
            Message::Reject(b) => block(out, id::REJECT, b),
            Message::AllowedFast(i) => one(out, id::ALLOWED_FAST, *i),
            Message::Extended { id: ext, payload } => {
                frame(out, id::EXTENDED, 1 + payload.len());
                out.push(*ext);
                out.extend_from_slice(payload);
            }
            Message::HashRequest(r) => {
                frame(out, id::HASH_REQUEST, HASH_REQUEST_LEN);
                write_hash_req(out, r);
            }
            Message::HashReject(r) => {
                frame(out, id::HASH_REJECT, HASH_REQUEST_LEN);
                write_hash_req(out, r);
            }
            Message::Hashes { request, hashes } => {
                frame(out, id::HASHES, HASH_REQUEST_LEN + 32 * hashes.len());
                write_hash_req(out, request);
                for h in hashes {
                    out.extend_from_slice(h);
                }
            }
            Message::Unknown(i) => frame(out, *i, 0),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// The 13 bytes before a piece's data, so that block bytes can be read straight into place.
pub fn write_piece_header(out: &mut Vec<u8>, index: u32, begin: u32, data_len: u32) {
    out.extend_from_slice(&(9 + data_len).to_be_bytes());
    out.push(id::PIECE);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&begin.to_be_bytes());
}

fn hash_req(p: &[u8]) -> HashRequest {
    let mut pieces_root = [0; 32];
    pieces_root.copy_from_slice(&p[..32]);
    HashRequest {
        pieces_root,
        base_layer: u32_at(p, 32),
        index: u32_at(p, 36),
        length: u32_at(p, 40),
        proof_layers: u32_at(p, 44),
    }
}

fn write_hash_req(out: &mut Vec<u8>, r: &HashRequest) {
    out.extend_from_slice(&r.pieces_root);
    out.extend_from_slice(&r.base_layer.to_be_bytes());
    out.extend_from_slice(&r.index.to_be_bytes());
    out.extend_from_slice(&r.length.to_be_bytes());
    out.extend_from_slice(&r.proof_layers.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message, bytes: &[u8]) {
        assert_eq!(m.to_bytes(), bytes, "{m:?}");
        assert_eq!(
            Message::parse(bytes, MAX_FRAME).unwrap(),
            Some((m, bytes.len()))
        );
        // Every proper prefix is "need more data", never an error.
        for cut in 0..bytes.len() {
            assert_eq!(Message::parse(&bytes[..cut], MAX_FRAME).unwrap(), None);
        }
    }

    #[test]
    fn bep3_messages_byte_exact() {
        let b = BlockRef {
            index: 1,
            begin: 0x4000,
            length: 0x4000,
        };
        round_trip(Message::KeepAlive, &[0, 0, 0, 0]);
        round_trip(Message::Choke, &[0, 0, 0, 1, 0]);
        round_trip(Message::Unchoke, &[0, 0, 0, 1, 1]);
        round_trip(Message::Interested, &[0, 0, 0, 1, 2]);
        round_trip(Message::NotInterested, &[0, 0, 0, 1, 3]);
        round_trip(Message::Have(0x01020304), &[0, 0, 0, 5, 4, 1, 2, 3, 4]);
        round_trip(
            Message::Bitfield(vec![0xff, 0x80]),
            &[0, 0, 0, 3, 5, 0xff, 0x80],
        );
        round_trip(
            Message::Request(b),
            &[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
        );
        round_trip(
            Message::Piece {
                index: 2,
                begin: 3,
                data: b"xyz".to_vec(),
            },
            &[0, 0, 0, 12, 7, 0, 0, 0, 2, 0, 0, 0, 3, b'x', b'y', b'z'],
        );
        round_trip(
            Message::Cancel(b),
            &[0, 0, 0, 13, 8, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
        );
        round_trip(Message::Port(6881), &[0, 0, 0, 3, 9, 0x1a, 0xe1]);
    }

    #[test]
    fn fast_and_extended_byte_exact() {
        round_trip(Message::Suggest(7), &[0, 0, 0, 5, 13, 0, 0, 0, 7]);
        round_trip(Message::HaveAll, &[0, 0, 0, 1, 14]);
        round_trip(Message::HaveNone, &[0, 0, 0, 1, 15]);
        round_trip(
            Message::Reject(BlockRef {
                index: 0,
                begin: 0,
                length: 5,
            }),
            &[0, 0, 0, 13, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
        );
        round_trip(Message::AllowedFast(9), &[0, 0, 0, 5, 17, 0, 0, 0, 9]);
        round_trip(
            Message::Extended {
                id: 0,
                payload: b"de".to_vec(),
            },
            &[0, 0, 0, 4, 20, 0, b'd', b'e'],
        );
    }

    #[test]
    fn bep52_hash_messages_byte_exact() {
        let r = HashRequest {
            pieces_root: [7; 32],
            base_layer: 2,
            index: 512,
            length: 512,
            proof_layers: 3,
        };
        let mut req = vec![0, 0, 0, 49, 21];
        req.extend_from_slice(&[7; 32]);
        req.extend_from_slice(&[0, 0, 0, 2, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 3]);
        round_trip(Message::HashRequest(r), &req);
        let mut rej = req.clone();
        rej[4] = 23;
        round_trip(Message::HashReject(r), &rej);
        let mut hashes = req.clone();
        hashes[3] = 49 + 64;
        hashes[4] = 22;
        hashes.extend_from_slice(&[1; 32]);
        hashes.extend_from_slice(&[2; 32]);
        round_trip(
            Message::Hashes {
                request: r,
                hashes: vec![[1; 32], [2; 32]],
            },
            &hashes,
        );
    }

    #[test]
    fn lengths_are_bounded_before_allocation() {
        // A 4 GiB length prefix is refused from its first four bytes.
        assert_eq!(
            Message::parse(&[0xff, 0xff, 0xff, 0xff], MAX_FRAME),
            Err(WireError::TooLong {
                len: u32::MAX,
                max: MAX_FRAME
            })
        );
        let just_over = (MAX_FRAME + 1).to_be_bytes();
        assert!(Message::parse(&just_over, MAX_FRAME).is_err());
        // A full-size piece is accepted.
        let mut piece = Vec::new();
        write_piece_header(&mut piece, 0, 0, BLOCK);
        piece.resize(4 + MAX_FRAME as usize, 0);
        assert!(Message::parse(&piece, MAX_FRAME).unwrap().is_some());
    }

    #[test]
    fn wrong_payload_sizes_are_errors() {
        assert_eq!(
            Message::parse(&[0, 0, 0, 2, 0, 0], MAX_FRAME),
            Err(WireError::BadLength { id: 0, len: 2 })
        );
        assert!(Message::parse(&[0, 0, 0, 4, 6, 0, 0, 0], MAX_FRAME).is_err());
        assert!(Message::parse(&[0, 0, 0, 1, 20], MAX_FRAME).is_err());
        assert!(Message::parse(&[0, 0, 0, 3, 7, 0, 0], MAX_FRAME).is_err());
        assert_eq!(
            Message::parse(&[0, 0, 0, 1, 99], MAX_FRAME).unwrap(),
            Some((Message::Unknown(99), 5))
        );
    }

    #[test]
    fn frames_are_taken_one_at_a_time() {
        let mut buf = Message::Interested.to_bytes();
        buf.extend(Message::Have(1).to_bytes());
        let (m, used) = Message::parse(&buf, MAX_FRAME).unwrap().unwrap();
        assert_eq!((m, used), (Message::Interested, 5));
        let (m, _) = Message::parse(&buf[used..], MAX_FRAME).unwrap().unwrap();
        assert_eq!(m, Message::Have(1));
    }
}
