//! Peer batches and hashing records read from Redis (cluster mode).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::cluster_batch(data);
});
