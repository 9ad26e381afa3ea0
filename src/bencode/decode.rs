//! Decoding: `decode(&[u8]) -> Node` borrowing from the input, each node carrying its raw bytes.

use thiserror::Error;

/// Nesting deeper than this is refused: real torrents nest a few levels (the v2 file tree follows
/// the folder depth), and an unbounded depth would let input overflow the stack.
pub const MAX_DEPTH: usize = 256;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unexpected end of data at byte {0}")]
    Eof(usize),
    #[error("unexpected byte {byte:#04x} at byte {at}")]
    Unexpected { byte: u8, at: usize },
    #[error("malformed integer at byte {0}")]
    BadInt(usize),
    #[error("string length at byte {0} runs past the end of the data")]
    StringTooLong(usize),
    #[error("dictionary key at byte {0} is not a string")]
    KeyNotString(usize),
    #[error("duplicate dictionary key {key:?} at byte {at}")]
    DuplicateKey { key: String, at: usize },
    #[error("nesting deeper than {MAX_DEPTH} levels at byte {0}")]
    TooDeep(usize),
    #[error("{0} bytes of trailing data after the value")]
    Trailing(usize),
}

/// A decoded value and the exact bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    pub raw: &'a [u8],
    pub kind: NodeKind<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Node<'a>>),
    /// Entries in input order; duplicate keys are refused while decoding.
    Dict(Vec<(&'a [u8], Node<'a>)>),
}

impl<'a> Node<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            NodeKind::Int(i) => Some(i),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            NodeKind::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }
    pub fn as_list(&self) -> Option<&[Node<'a>]> {
        match &self.kind {
            NodeKind::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Node<'a>)]> {
        match &self.kind {
            NodeKind::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// The value under `key` if this is a dictionary that has it.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| v)
    }
}

/// Decodes exactly one value that must span the whole input.
pub fn decode(input: &[u8]) -> Result<Node<'_>, DecodeError> {
    let (node, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(DecodeError::Trailing(input.len() - used));
    }
    Ok(node)
}

/// Decodes one value from the start of `input`, returning it and the number of bytes it used
/// (for messages where bencode is followed by other data, as in BEP 9 and BEP 30).
pub fn decode_prefix(input: &[u8]) -> Result<(Node<'_>, usize), DecodeError> {
    let mut d = Decoder { input, pos: 0 };
    let node = d.value(0)?;
    Ok((node, d.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Eof(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(self.pos));
        }
        let start = self.pos;
        let kind = match self.peek()? {
            b'i' => {
                self.pos += 1;
                NodeKind::Int(self.int(b'e')?)
            }
            b'0'..=b'9' => NodeKind::Bytes(self.bytes()?),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                NodeKind::List(items)
            }
            b'd' => {
                self.pos += 1;
                let mut entries: Vec<(&'a [u8], Node<'a>)> = Vec::new();
                let mut sorted = true;
                while self.peek()? != b'e' {
                    let key_at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(DecodeError::KeyNotString(key_at));
                    }
                    let key = self.bytes()?;
                    if let Some((last, _)) = entries.last() {
                        if key <= *last {
                            sorted = false;
                        }
                    }
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                }
                self.pos += 1;
                // Keys should be sorted (BEP 3) and real files mostly are; unsorted ones are
                // accepted (the info hash is over the raw bytes anyway) but never duplicates.
                if !sorted {
                    let mut keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
                    keys.sort_unstable();
                    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
                        return Err(DecodeError::DuplicateKey {
                            key: String::from_utf8_lossy(w[0]).into_owned(),
                            at: start,
                        });
                    }
                }
                NodeKind::Dict(entries)
            }
            byte => return Err(DecodeError::Unexpected { byte, at: self.pos }),
        };
        Ok(Node {
            raw: &self.input[start..self.pos],
            kind,
        })
    }

    /// Reads a decimal integer up to `end`, refusing leading zeros, "-0" and overflow.
    fn int(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let rest = &self.input[start..];
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(DecodeError::Eof(self.input.len()))?;
        let digits = &rest[..len];
        let (neg, body) = match digits.split_first() {
            Some((b'-', body)) => (true, body),
            _ => (false, digits),
        };
        let well_formed = !body.is_empty()
            && body.iter().all(u8::is_ascii_digit)
            && (body.len() == 1 || body[0] != b'0')
            && (!neg || body != b"0");
        if !well_formed {
            return Err(DecodeError::BadInt(start));
        }
        let mut value: i64 = 0;
        for &b in body {
            let digit = i64::from(b - b'0');
            value = value
                .checked_mul(10)
                .and_then(|v| {
                    if neg {
                        v.checked_sub(digit)
                    } else {
                        v.checked_add(digit)
                    }
                })
                .ok_or(DecodeError::BadInt(start))?;
        }
        self.pos = start + len + 1;
        Ok(value)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.int(b':')?;
        if len < 0 {
            return Err(DecodeError::BadInt(at));
        }
        // Checked against what is left before slicing: a huge prefix never allocates.
        let len = usize::try_from(len).map_err(|_| DecodeError::StringTooLong(at))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or(DecodeError::StringTooLong(at))?;
        let out = &self.input[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_kind_with_raw_spans() {
        let input = b"d4:infod6:lengthi5ee4:listli-3e3:abcee";
        let node = decode(input).unwrap();
        assert_eq!(node.raw, input);
        let info = node.get("info").unwrap();
        assert_eq!(info.raw, b"d6:lengthi5ee");
        assert_eq!(info.get("length").unwrap().as_int(), Some(5));
        let list = node.get("list").unwrap().as_list().unwrap();
        assert_eq!(list[0].as_int(), Some(-3));
        assert_eq!(list[1].as_bytes(), Some(&b"abc"[..]));
    }

    #[test]
    fn refuses_malformed_integers() {
        for bad in [
            &b"i-0e"[..],
            b"i03e",
            b"ie",
            b"i-e",
            b"i1x2e",
            b"i99999999999999999999e",
        ] {
            assert!(
                matches!(decode(bad), Err(DecodeError::BadInt(1))),
                "{bad:?}"
            );
        }
        assert_eq!(decode(b"i0e").unwrap().as_int(), Some(0));
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap().as_int(),
            Some(i64::MIN)
        );
    }

    #[test]
    fn bounds_lengths_and_depth() {
        assert_eq!(decode(b"4294967296:x"), Err(DecodeError::StringTooLong(0)));
        assert_eq!(decode(b"5:abc"), Err(DecodeError::StringTooLong(0)));
        assert_eq!(
            decode(b"-1:"),
            Err(DecodeError::Unexpected { byte: b'-', at: 0 })
        );
        let deep = "l".repeat(100_000);
        assert!(matches!(
            decode(deep.as_bytes()),
            Err(DecodeError::TooDeep(_))
        ));
        assert_eq!(decode(b"l"), Err(DecodeError::Eof(1)));
        assert_eq!(decode(b"i1ei2e"), Err(DecodeError::Trailing(3)));
    }

    #[test]
    fn refuses_duplicate_keys_and_non_string_keys() {
        assert!(matches!(
            decode(b"d1:bi1e1:ai1e1:bi2ee"),
            Err(DecodeError::DuplicateKey { .. })
        ));
        assert!(matches!(
            decode(b"d1:ai1e1:ai2ee"),
            Err(DecodeError::DuplicateKey { .. })
        ));
        assert_eq!(decode(b"di1ei2ee"), Err(DecodeError::KeyNotString(1)));
        // Unsorted but distinct keys are accepted.
        assert!(decode(b"d1:bi1e1:ai1ee").is_ok());
    }

    #[test]
    fn prefix_reports_bytes_used() {
        let (node, used) = decode_prefix(b"d1:ai1eeXYZ").unwrap();
        assert_eq!(used, 8);
        assert_eq!(node.get("a").unwrap().as_int(), Some(1));
    }
}
