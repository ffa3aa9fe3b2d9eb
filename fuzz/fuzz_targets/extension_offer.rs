//! `Sec-WebSocket-Extensions` lines from a client, through the
//! permessage-deflate negotiation every upgrade runs: nothing may panic,
//! and an accepted offer is answered with no context takeover either way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_server::extensions::negotiate;

fuzz_target!(|data: &[u8]| {
    // Lines separated by newlines, as repeated header fields.
    if let Some(deflate) = negotiate(data.split(|&b| b == b'\n')) {
        let answer = deflate.response();
        assert!(answer.starts_with("permessage-deflate; server_no_context_takeover"));
        assert!(answer.contains("client_no_context_takeover"));
    }
});
