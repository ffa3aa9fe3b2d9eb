//! Bearer tokens from clients, verified with an HS256 key: any text is
//! refused or granted, never a panic.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shardcast_server::auth::token::{TokenKeys, TokenVerifier};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let verifier = TokenVerifier::new(
        &TokenKeys {
            hs256_secret: Some(b"fuzzing-secret-fuzzing-secret-32b".to_vec()),
            ..TokenKeys::default()
        },
        None,
        None,
        Duration::ZERO,
        vec!["positions.{sub}".into()],
    )
    .unwrap();
    let _ = verifier.verify(token);
});
