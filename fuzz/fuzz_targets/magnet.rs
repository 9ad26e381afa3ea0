//! Magnet URI parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::magnet(data);
});
