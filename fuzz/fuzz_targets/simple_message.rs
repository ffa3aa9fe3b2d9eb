//! Simple-protocol client messages (`/ws`): any bytes get a verdict — a
//! request within the symbol limit, or an error text for the client that
//! is short and never echoes unbounded input — never a panic or a stack
//! overflow. A parsed subscription's symbols then go through the symbol
//! set's add and remove (from a list, and from all symbols), which must
//! keep to the limit and admit exactly what they say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_engine::MAX_KEY_LEN;
use shardcast_server::protocol::simple::{parse, Request, Symbols};

const LIMIT: usize = 8;

fuzz_target!(|data: &[u8]| {
    match parse(data, LIMIT) {
        Ok(Request::Ping) => {}
        Ok(Request::Subscribe { symbols, .. } | Request::Unsubscribe { symbols, .. }) => {
            if let Some(list) = &symbols {
                assert!(!list.is_empty() && list.len() <= LIMIT);
                assert!(list.iter().all(|s| !s.is_empty() && s.len() <= MAX_KEY_LEN));
            }
            let mut set = Symbols::Only(Default::default());
            if set.add(symbols.as_deref(), LIMIT).is_ok() {
                assert!(symbols.iter().flatten().all(|s| set.admits(Some(s))));
            }
            let _ = set.remove(symbols.as_deref(), LIMIT);
            // From all symbols, a removal leaves all but those.
            let mut all = Symbols::All;
            if all.remove(symbols.as_deref(), LIMIT) == Ok(true) {
                assert!(symbols.iter().flatten().all(|s| !all.admits(Some(s))));
            }
            for set in [&set, &all] {
                if let Symbols::Only(s) | Symbols::AllBut(s) = set {
                    assert!(s.len() <= LIMIT);
                }
            }
        }
        Err(invalid) => assert!(invalid.0.len() < 1000, "{}", invalid.0.len()),
    }
});
