//! FastWS client messages (`/api/v1/ws`): any bytes get a verdict — a
//! request whose topic is the canonical one for its parameters, or one of
//! the three 1003 reasons — never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_server::protocol::fastws::{build_topic_params, parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(request) => {
            let params = build_topic_params(&serde_json::Value::Object(request.parameters.clone()));
            assert_eq!(request.topic, format!("{}:{params}", request.route.name));
            // The topic's parameters are JSON that parses back.
            assert!(serde_json::from_str::<serde_json::Value>(&params).is_ok());
        }
        Err(violation) => {
            assert!(matches!(
                violation.reason(),
                "Unsupported Data" | "No matching type" | "Could not validate payload"
            ));
        }
    }
});
