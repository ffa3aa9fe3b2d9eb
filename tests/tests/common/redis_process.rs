//! A `redis-server` of the test's own on an ephemeral loopback port, killed
//! on drop. Depends on nothing but std, so the tests of the real binary
//! (`server/tests/common/mod.rs`) include this same file.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis process, killed on drop. Keeps nothing on disk.
pub struct RedisProcess {
    child: Option<Child>,
    pub port: u16,
}

impl RedisProcess {
    /// Starts `redis-server` from PATH; `None` (after one loud line) when
    /// it is not installed, so the test can skip.
    pub fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self::start_on(port)
    }

    /// Starts `redis-server` on `port`.
    pub fn start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                // CI installs it (.ci/run): there a missing one is a failure.
                assert!(
                    std::env::var_os("CI").is_none(),
                    "redis-server is not installed ({e}) and CI must not skip"
                );
                eprintln!("!!! SKIPPED: redis-server is not installed ({e}); install it (apt install redis-server) to run this test");
                return None;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self {
            child: Some(child),
            port,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the process now (its data is gone with it).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
