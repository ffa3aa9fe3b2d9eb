//! Compressed client messages (permessage-deflate): arbitrary bytes
//! inflated within a bound. Nothing may panic, and nothing may come out
//! past the bound, however well the input compresses. The decoder with the
//! extension negotiated is fuzzed by `client_frames.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_engine::deflate::inflate;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(limit) * 256;
    if let Ok(out) = inflate(rest, max) {
        assert!(out.len() <= max);
    }
});
