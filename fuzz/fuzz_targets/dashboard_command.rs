//! Dashboard stream commands (`/api/v1/dashboard/ws`): any bytes get a
//! verdict — a command whose channel name is within the limit, or a short
//! error text — never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_engine::MAX_NAME_LEN;
use shardcast_server::dashboard::{parse_command, Command, MAX_ERROR_LEN};

fuzz_target!(|data: &[u8]| {
    match parse_command(data) {
        Ok(Command::Tail { channel }) => {
            assert!(!channel.is_empty() && channel.len() <= MAX_NAME_LEN);
        }
        Ok(Command::Untail {} | Command::Heartbeat {}) => {}
        Err(error) => assert!(error.len() <= MAX_ERROR_LEN, "{}", error.len()),
    }
});
