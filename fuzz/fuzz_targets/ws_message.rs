//! The WebSocket tracker's message parsing (WebTorrent's JSON).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::ws_message(data);
});
