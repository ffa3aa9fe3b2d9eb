//! Channel names and patterns, as clients send names and operators write
//! rules: any text gets a verdict; a valid name is escaped into JSON that
//! parses back to itself; a pattern prints back to itself; matching never
//! panics and an exact pattern matches only its own name.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shardcast_engine::{json, validate_name, Pattern, MAX_NAME_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rule, name) = text.split_once('\n').unwrap_or((text, text));
    if validate_name(name).is_ok() {
        assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN);
        assert!(!name.chars().any(|c| c.is_control() || c.is_whitespace()));
    }
    let mut out = BytesMut::new();
    json::write_str(&mut out, name);
    let parsed: String = serde_json::from_slice(&out).expect("escaped names are JSON strings");
    assert_eq!(parsed, name);
    if let Ok(pattern) = Pattern::parse(rule) {
        assert_eq!(Pattern::parse(&pattern.to_string()), Ok(pattern.clone()));
        let matched = pattern.matches(name);
        if pattern.is_exact() {
            assert_eq!(matched, rule == name);
        }
    }
});
