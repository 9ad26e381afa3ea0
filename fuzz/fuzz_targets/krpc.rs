//! DHT datagrams (KRPC, BEP 5) against the node's core.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::krpc(data);
});
