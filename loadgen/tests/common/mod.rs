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

/// A `redis-server` of the test's own on an ephemeral loopback port,
/// killed on drop; `None` (after one loud line) where it is not installed,
/// except under CI, which installs it (`.ci/run`).
pub struct Redis {
    child: std::process::Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "redis-server is not installed ({e}) and CI must not skip"
                );
                eprintln!("!!! SKIPPED: redis-server is not installed ({e}); apt install redis-server to run this test");
                return None;
            }
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(Self { child, port })
    }

    /// The `[broker]` section of a node named `node` joined through it.
    pub fn broker(&self, node: &str) -> String {
        format!(
            "[broker]\nurl = \"redis://127.0.0.1:{}/0\"\nnode_id = \"{node}\"",
            self.port
        )
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
