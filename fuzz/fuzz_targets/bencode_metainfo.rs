//! Bencode decoding and torrent loading, as `bitseed inspect`/`verify` and the catalog do.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::bencode_metainfo(data);
});
