//! Encoding: an owned value whose dictionaries are ordered maps, so keys always come out sorted
//! by their raw bytes as BEP 3 requires.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
    /// Already-encoded bytes written as they are: an info dictionary keeps its exact bytes.
    Raw(Vec<u8>),
}

impl Value {
    pub fn dict() -> Self {
        Value::Dict(BTreeMap::new())
    }

    pub fn str(s: &str) -> Self {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// Inserts into a dictionary; does nothing on other kinds (a builder convenience).
    pub fn insert(&mut self, key: &str, value: Value) {
        if let Value::Dict(map) = self {
            map.insert(key.as_bytes().to_vec(), value);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => write_bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.write_to(out);
                }
                out.push(b'e');
            }
            Value::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    write_bytes(out, k);
                    v.write_to(out);
                }
                out.push(b'e');
            }
            Value::Raw(raw) => out.extend_from_slice(raw),
        }
    }
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_in_raw_byte_order() {
        let mut d = Value::dict();
        d.insert("piece length", Value::Int(16384));
        d.insert("name", Value::str("a"));
        d.insert("file tree", Value::dict());
        d.insert("Z", Value::Int(-1));
        d.insert("length", Value::Int(0));
        assert_eq!(
            d.encode(),
            b"d1:Zi-1e9:file treede6:lengthi0e4:name1:a12:piece lengthi16384ee".to_vec()
        );
    }

    #[test]
    fn round_trips_through_the_decoder() {
        let mut d = Value::dict();
        d.insert(
            "list",
            Value::List(vec![Value::Int(1), Value::Bytes(vec![0, 255])]),
        );
        d.insert("raw", Value::Raw(b"d1:xi2ee".to_vec()));
        let bytes = d.encode();
        let node = super::super::decode(&bytes).unwrap();
        assert_eq!(node.get("raw").unwrap().raw, b"d1:xi2ee");
        assert_eq!(node.raw, &bytes[..]);
    }
}
