//! The per-connection state machine fed an arbitrary byte stream, as the session feeds it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::peer_connection(data);
});
