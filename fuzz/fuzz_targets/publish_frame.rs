//! `/ws/publish` frames: any text gets a verdict, and a publish gets the
//! verdict an HTTP body of the same message gets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_server::protocol::publish::{parse_body, parse_frame, PublishBody, PublishCommand};

fuzz_target!(|data: &[u8]| {
    match parse_frame(data) {
        Ok(PublishCommand::Publish(item)) => {
            // The same message, without its action, as an HTTP body: `data`
            // byte for byte.
            let key = match &item.key {
                Some(key) => format!(r#","key":{}"#, serde_json::to_string(key).unwrap()),
                None => String::new(),
            };
            let body = format!(
                r#"{{"channel":{},"data":{}{key}}}"#,
                serde_json::to_string(&item.channel).unwrap(),
                item.data.get()
            );
            let Ok(PublishBody::Single(same)) = parse_body(body.as_bytes(), 1) else {
                panic!("a frame's message is a body's message: {body}");
            };
            assert_eq!(item.check_data(), same.check_data());
        }
        Ok(PublishCommand::Heartbeat | PublishCommand::Refresh(_)) => {}
        Err(e) => assert!(!e.message.is_empty()),
    }
});
