//! Bencode (BEP 3): a borrowing decoder that keeps each value's exact bytes, and an owned value
//! that encodes with sorted keys.
//!
//! Our own code rather than `serde_bencode`: the info hash must be taken over the exact bytes of
//! the `info` dictionary as they stand in the file, and hostile input needs bounded nesting and
//! lengths checked against the input before anything is allocated.

mod decode;
mod encode;

pub use decode::{decode, decode_prefix, DecodeError, Node, NodeKind};
pub use encode::Value;

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..8), inner, 0..6)
                    .prop_map(Value::Dict),
            ]
        })
    }

    fn back(node: &Node) -> Value {
        match &node.kind {
            NodeKind::Int(i) => Value::Int(*i),
            NodeKind::Bytes(b) => Value::Bytes(b.to_vec()),
            NodeKind::List(l) => Value::List(l.iter().map(back).collect()),
            NodeKind::Dict(d) => {
                Value::Dict(d.iter().map(|(k, v)| (k.to_vec(), back(v))).collect())
            }
        }
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(v in value()) {
            let bytes = v.encode();
            let node = decode(&bytes).unwrap();
            prop_assert_eq!(node.raw, &bytes[..]);
            prop_assert_eq!(back(&node), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }
}
