//! BondX client messages (`/api/v1/ws/...`), as the session parses them:
//! any text gets a verdict within its bounds, never a panic or a stack
//! overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_server::protocol::bondx::{parse, Command};

fuzz_target!(|data: &[u8]| {
    // The decoder hands sessions only UTF-8 text.
    if std::str::from_utf8(data).is_err() {
        return;
    }
    let mut text = data.to_vec();
    let parsed = parse(&mut text);
    if let Some(id) = &parsed.correlation_id {
        // Echoed as JSON: a string or an integer, bounded.
        assert!(id.len() <= 128 * 6 + 2);
        assert!(serde_json::from_str::<serde_json::Value>(id).is_ok());
    }
    match parsed.command {
        Ok(Command::Subscribe(request)) => {
            assert!(!request.topic.is_empty() && request.topic.len() <= 256);
            assert!(request.batch_size.is_none_or(|n| (1..=1000).contains(&n)));
            if let Some(subtopics) = &request.subtopics {
                // Echoed verbatim in the ack: one JSON object, bounded.
                assert!(subtopics.len() <= 4096);
                assert!(subtopics.starts_with('{'));
                serde_json::from_str::<serde::de::IgnoredAny>(subtopics).unwrap();
            }
        }
        Ok(Command::Unsubscribe { topic }) => assert!(!topic.is_empty()),
        Ok(Command::Ping | Command::BackgroundMode { .. }) => {}
        Err(e) => assert!(!e.message.is_empty()),
    }
});
