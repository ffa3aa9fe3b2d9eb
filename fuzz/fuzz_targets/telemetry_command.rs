//! Telemetry commands (`/ws/telemetry`), as the session parses them: any
//! text gets a verdict, never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_server::protocol::telemetry::{parse_command, Command};

fuzz_target!(|data: &[u8]| {
    // The decoder hands sessions only UTF-8 text.
    if std::str::from_utf8(data).is_err() {
        return;
    }
    let mut text = data.to_vec();
    match parse_command(&mut text, 16) {
        Ok(Command::Subscribe {
            channels, resume, ..
        }) => {
            assert!(channels.len() <= 16 && resume.len() <= channels.len());
            assert!(resume.iter().all(|(name, _)| channels.contains(name)));
        }
        Ok(Command::Unsubscribe { channels }) => assert!(channels.len() <= 16),
        Ok(Command::Heartbeat | Command::Refresh { .. }) => {}
        Err(e) => assert!(!e.message.is_empty()),
    }
});
