//! What the loadgen's tests share: a real server started in-process on an
//! ephemeral port, and the loadgen binary run against it.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::process::{Command, Output};

use shardcast_server::{RawConfig, Server};

/// The one key of the test server, with every role.
pub const KEY: &str = "loadgen-test-key";

/// A server on one unpinned shard declaring `channels`, no demo feed, no
/// per-connection delivery rate limit (the loadgen's own target), and
/// `extra` TOML (a `[tls]` section, say).
pub fn server(channels: &[&str], extra: &str) -> Server {
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
shards = 1
pin_threads = false
demo = false
channels = {}

[telemetry]
rate_limit_per_second = 0

{extra}

[[api_keys]]
key = "{KEY}"
roles = ["subscribe", "publish", "admin"]
"#,
        serde_json::to_string(channels).unwrap()
    );
    let config = RawConfig::from_toml(&toml)
        .expect("config parses")
        .validate()
        .expect("config is valid");
    Server::start(config).expect("server starts")
}

/// Runs the loadgen with the test key and `flags`.
pub fn loadgen(flags: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardcast-loadgen"))
        .args(["--api-key", KEY])
        .args(flags)
        .output()
        .expect("the loadgen runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
