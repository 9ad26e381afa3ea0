//! UDP tracker packets (BEP 15).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::udp_packet(data);
});
