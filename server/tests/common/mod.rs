//! What the tests of the real binary share: starting it, waiting for a
//! log line, and a `redis-server` of the test's own.
#![allow(dead_code)] // Each test binary uses its own subset.

// The integration tests' own file (std only), not a copy of it.
#[path = "../../../tests/tests/common/bus_process.rs"]
mod bus_process;
#[allow(unused_imports)] // Only the tests of several nodes use the process.
pub use bus_process::{free_port, RedisProcess};

use std::time::Duration;

use tokio::io::BufReader;
use tokio::process::ChildStderr;

/// How long a test waits for any single thing before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// The server's stderr, line by line.
pub type Logs = tokio::io::Lines<BufReader<ChildStderr>>;

/// The next log line containing `text`; panics if the server exits or
/// [`WAIT`] passes first.
pub async fn wait_for_log(logs: &mut Logs, text: &str) -> String {
    tokio::time::timeout(WAIT, async {
        while let Some(line) = logs.next_line().await.unwrap() {
            if line.contains(text) {
                return line;
            }
        }
        panic!("the server exited before logging {text:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {text:?}"))
}

/// Starts the binary (one unpinned shard, no demo, JSON logs on stderr)
/// with `args`, and waits until it is listening.
pub async fn start_binary(args: &[&str]) -> (tokio::process::Child, Logs) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args([
            "--no-demo",
            "--no-pin",
            "--shards",
            "1",
            "--log-format",
            "json",
        ])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SHARDCAST_LOG")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    let mut logs = tokio::io::AsyncBufReadExt::lines(BufReader::new(child.stderr.take().unwrap()));
    wait_for_log(&mut logs, "shardcast listening").await;
    (child, logs)
}
