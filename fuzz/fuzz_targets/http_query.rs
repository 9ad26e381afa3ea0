//! The HTTP tracker's announce and scrape query parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::http_query(data);
});
