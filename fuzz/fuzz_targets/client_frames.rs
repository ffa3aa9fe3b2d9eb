//! Client bytes, cut into reads at points the input chooses, through the
//! decoder every connection uses: frame parsing, unmasking, reassembly,
//! UTF-8 and close-frame checks; with permessage-deflate negotiated when the
//! input says so (then compressed messages are inflated within the limit).
//! Nothing may panic, no message may exceed the limit (however well it
//! compresses), text must be UTF-8, and what is held between reads is bounded.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use shardcast_engine::decode::{Decoder, Inbound};

/// Room for one frame header beyond the payload limit.
const HEADER: usize = 14;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let max = 125 + usize::from(limit) * 16;
    let Some((&cut, mut rest)) = rest.split_first() else {
        return;
    };
    let mut decoder = Decoder::new(cut & 0x80 != 0);
    let cut = usize::from(cut & 0x7F) + 1;
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
                Inbound::Ping(payload) => assert!(payload.len() <= 125),
                Inbound::Pong => {}
                Inbound::Close(body) => {
                    if let Some((code, reason)) = body {
                        assert!(shardcast_engine::frame::is_valid_close_code(code));
                        assert!(reason.len() <= 123);
                    }
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        match fed {
            Ok(ControlFlow::Continue(())) => {
                assert!(decoder.buffered() <= 2 * (max + HEADER));
            }
            Ok(ControlFlow::Break(())) | Err(_) => return,
        }
    }
});
