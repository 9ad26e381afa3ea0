//! The MSE receiver: plaintext sniffing, Ya, the sync search, and (guided) the encrypted fields.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitseed::fuzzing::mse_receiver(data);
});
