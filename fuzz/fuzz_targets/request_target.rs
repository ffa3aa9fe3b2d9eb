//! What the HTTP layer reads from a request target and headers: the query
//! (strict: no repeated credentials, bounded channel lists), path segments
//! and path-template parameters, client ids, and the one-credential rule
//! over headers and query.
#![no_main]

use hyper::header::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use shardcast_server::auth::credentials;
use shardcast_server::protocol::path::{PathTemplate, MAX_PARAM_LEN};
use shardcast_server::request::{
    percent_decode_segment, valid_client_id, Query, MAX_QUERY_CHANNELS,
};

fuzz_target!(|data: &[u8]| {
    let Some((split, rest)) = data.split_first() else {
        return;
    };
    let (target, header) = rest.split_at(usize::from(*split).min(rest.len()));
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let _ = percent_decode_segment(path);
    for template in [
        "/ws/telemetry",
        "/api/v1/ws/market/{isin}",
        "/a/{x}/b/{y}",
        "/c/{*rest}",
    ] {
        let template = PathTemplate::parse(template).expect("valid template");
        if let Some(params) = template.matches(path) {
            assert!(params.get("rest").is_some() == template.as_str().starts_with("/c/"));
            for name in ["isin", "x", "y"] {
                assert!(params
                    .get(name)
                    .is_none_or(|v| !v.is_empty() && v.len() <= MAX_PARAM_LEN));
            }
        }
    }
    let parsed = Query::parse(Some(query));
    if let Ok(query) = &parsed {
        assert!(query.channels.len() <= MAX_QUERY_CHANNELS);
        if let Some(id) = &query.client_id {
            let _ = valid_client_id(id);
        }
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(header) {
            headers.insert("x-api-key", value.clone());
            if header.first().is_some_and(|b| b % 2 == 0) {
                headers.insert("authorization", value);
            }
        }
        for upgrade in [false, true] {
            let _ = credentials::extract(&headers, query, upgrade);
        }
    }
});
