//! Compressed client messages (permessage-deflate): arbitrary bytes inflated
//! within a bound, and arbitrary frames through a decoder that negotiated
//! the extension, cut into reads at points the input chooses. Nothing may
//! panic, and no inflated message may exceed the limit, however well the
//! input compresses.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use shardcast_engine::decode::{Decoder, Inbound};
use shardcast_engine::deflate::inflate;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let max = 125 + usize::from(limit) * 64;
    if let Ok(out) = inflate(rest, max) {
        assert!(out.len() <= max);
    }
    let Some((&cut, mut rest)) = rest.split_first() else {
        return;
    };
    let cut = usize::from(cut) + 1;
    let mut decoder = Decoder::new(true);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(cut.min(rest.len()));
        rest = tail;
        let mut chunk = chunk.to_vec();
        let fed = decoder.feed(&mut chunk, max, |inbound| {
            match inbound {
                Inbound::Text(payload) => {
                    assert!(payload.len() <= max);
                    assert!(std::str::from_utf8(&payload).is_ok());
                }
                Inbound::Binary(payload) => assert!(payload.len() <= max),
                Inbound::Ping(_) | Inbound::Pong => {}
                Inbound::Close(_) => return ControlFlow::Break(()),
            }
            ControlFlow::Continue(())
        });
        if !matches!(fed, Ok(ControlFlow::Continue(()))) {
            return;
        }
    }
});
