//! Peer wire frames, the handshake and the extension payloads.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::peer_wire(data);
});
