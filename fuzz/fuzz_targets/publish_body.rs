//! `POST /api/v1/publish` bodies: parsed, then each message admitted as
//! the server would (the `data` contract, scope, copy of the data).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shardcast_engine::{QuotaLimits, TopicQuota};
use shardcast_server::auth::{Principal, Role, Roles, Scope};
use shardcast_server::input::{check_data, check_depth, MAX_DATA_DEPTH};
use shardcast_server::protocol::publish::{parse_body, PublishBody};

fuzz_target!(|data: &[u8]| {
    let principal = Principal {
        name: "key:fuzz".into(),
        roles: Roles::NONE.with(Role::Publish),
        subscribe: Scope::All,
        publish: Scope::parse(&["prices.*", "market-data"]).unwrap(),
        expires_at: None,
        quota: Arc::new(TopicQuota::new(QuotaLimits::UNLIMITED)),
    };
    let items = match parse_body(data, 64) {
        Ok(PublishBody::Single(item)) => vec![item],
        Ok(PublishBody::Batch(items)) => {
            assert!(items.len() <= 64);
            items
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            return;
        }
    };
    // Whatever parses is JSON.
    assert!(serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok());
    for item in items {
        if let Ok(publication) = item.admit(&principal) {
            let bytes = &publication.data;
            assert_eq!(&bytes[..], item.data.get().as_bytes());
            assert!(matches!(bytes.first(), Some(b'{' | b'[')));
            assert!(check_depth(bytes, MAX_DATA_DEPTH).is_ok());
            assert!(check_data(bytes, MAX_DATA_DEPTH).is_ok());
            assert!(principal.may_publish(&item.channel));
        }
    }
});
