//! What the tests of the real binary share: waiting for a log line.
#![allow(dead_code)] // Each test binary uses its own subset.

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
