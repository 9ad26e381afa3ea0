//! Request headers: Range, validators, and what a trusted proxy forwards.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::http_headers(data);
});
