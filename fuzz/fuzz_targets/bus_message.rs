//! A message read off the bus (Redis), as another node or anything else
//! with access to the channel may have written it: nothing may panic, and
//! what parses is a numbered message whose fields are within their bounds
//! and whose body reads back the same once written again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_engine::{Publication, MAX_KEY_LEN};
use shardcast_server::broker::envelope::{body, parse, valid_node_id};

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = parse(data) else {
        return;
    };
    let m = &envelope.message;
    assert!(m.seq > 0);
    assert!(valid_node_id(&envelope.origin));
    assert!(m
        .key
        .as_deref()
        .is_none_or(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN));
    // Written again by its origin, it reads back as the same message.
    let mut publication = Publication::new(m.key.clone(), m.data.clone()).with_kind(m.kind);
    publication.transient = m.transient;
    let mut again = format!("{:016x}:{}:", m.epoch.as_u64(), m.seq).into_bytes();
    again.extend(body(&envelope.origin, &publication, m.timestamp));
    let reread = parse(&again).expect("a written message parses");
    assert_eq!((reread.message.seq, reread.message.epoch), (m.seq, m.epoch));
    assert_eq!(reread.message.key, m.key);
    assert_eq!(reread.message.data, m.data);
    assert_eq!(reread.message.timestamp, m.timestamp);
});
