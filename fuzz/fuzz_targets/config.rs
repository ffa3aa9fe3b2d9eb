//! Configuration files: parsed and validated; any text is accepted or
//! refused naming a key, never a panic. (Key files named by `[jwt]` are not
//! read here: the fuzzer would name /dev/zero.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast_server::RawConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mut raw) = RawConfig::from_toml(text) {
        raw.jwt = None;
        let _ = raw.validate();
    }
});
