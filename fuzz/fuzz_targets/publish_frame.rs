//! `/ws/publish` frames: any text gets a verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_server::protocol::publish::{parse_frame, PublishCommand};

fuzz_target!(|data: &[u8]| {
    match parse_frame(data) {
        Ok(PublishCommand::Publish(item)) => {
            let _ = item.data.get();
        }
        Ok(PublishCommand::Heartbeat | PublishCommand::Refresh(_)) => {}
        Err((_, message)) => assert!(!message.is_empty()),
    }
});
