//! BEP 9 `ut_metadata`: a peer that has only a magnet link fetches the info dictionary from us in
//! 16 KiB pieces.

use crate::bencode::{decode_prefix, Value};
use crate::peer::WireError;

pub const PIECE_SIZE: usize = 16 * 1024;

const REQUEST: i64 = 0;
const DATA: i64 = 1;
const REJECT: i64 = 2;

/// What a peer's `ut_metadata` message asks of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    Request(u32),
    /// Data or reject sent to us: a seed never asked, so it is ignored.
    Other,
}

pub fn parse(payload: &[u8]) -> Result<Incoming, WireError> {
    let (node, _) =
        decode_prefix(payload).map_err(|_| WireError::BadExtended("ut_metadata not bencode"))?;
    let msg_type = node
        .get("msg_type")
        .and_then(|v| v.as_int())
        .ok_or(WireError::BadExtended("ut_metadata without msg_type"))?;
    if msg_type != REQUEST {
        return Ok(Incoming::Other);
    }
    let piece = node
        .get("piece")
        .and_then(|v| v.as_int())
        .and_then(|p| u32::try_from(p).ok())
        .ok_or(WireError::BadExtended("ut_metadata request without piece"))?;
    Ok(Incoming::Request(piece))
}

/// Our answer to a request for `piece` of `info`: the data message, or a reject for a piece past
/// the end.
pub fn answer(piece: u32, info: &[u8]) -> Vec<u8> {
    let start = piece as usize * PIECE_SIZE;
    let mut d = Value::dict();
    d.insert("piece", Value::Int(piece.into()));
    if start >= info.len() {
        d.insert("msg_type", Value::Int(REJECT));
        return d.encode();
    }
    d.insert("msg_type", Value::Int(DATA));
    d.insert("total_size", Value::Int(info.len() as i64));
    let mut out = d.encode();
    let end = (start + PIECE_SIZE).min(info.len());
    out.extend_from_slice(&info[start..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_answered_byte_exact() {
        assert_eq!(
            parse(b"d8:msg_typei0e5:piecei1ee").unwrap(),
            Incoming::Request(1)
        );
        assert_eq!(
            parse(b"d8:msg_typei1e5:piecei0e10:total_sizei3eeabc").unwrap(),
            Incoming::Other
        );
        assert!(parse(b"d5:piecei0ee").is_err());
        assert!(parse(b"d8:msg_typei0e5:piecei-1ee").is_err());

        let info: Vec<u8> = (0..PIECE_SIZE + 10).map(|i| i as u8).collect();
        let first = answer(0, &info);
        let head = b"d8:msg_typei1e5:piecei0e10:total_sizei16394ee";
        assert_eq!(&first[..head.len()], head);
        assert_eq!(&first[head.len()..], &info[..PIECE_SIZE]);
        let second = answer(1, &info);
        let head = b"d8:msg_typei1e5:piecei1e10:total_sizei16394ee";
        assert_eq!(&second[head.len()..], &info[PIECE_SIZE..]);
        assert_eq!(answer(2, &info), b"d8:msg_typei2e5:piecei2ee".to_vec());
    }
}
