//! Bus processes of the test's own, on ephemeral loopback ports: a
//! `redis-server`, a Redis Cluster of three, a `nats-server`; each killed on
//! drop, keeping nothing on disk. Depends on nothing but std, so the tests
//! of the real binary (`server/tests/common/mod.rs`) include this same file.
//!
//! Each program comes from PATH. Where it is missing the test says so in
//! one loud line and skips, except under CI (env `CI`), which installs
//! them all (`.ci/run`) and must never skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free on loopback now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `program` started with `args`; `None` (after one loud line) when it is
/// not installed.
fn spawn_or_skip<S: AsRef<std::ffi::OsStr>>(
    program: &str,
    args: &[S],
    package: &str,
) -> Option<Child> {
    let spawned = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => Some(child),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{program} is not installed ({e}) and CI must not skip"
            );
            eprintln!("!!! SKIPPED: {program} is not installed ({e}); install it (apt install {package}) to run this test");
            None
        }
    }
}

/// Waits until something listens on `port`.
fn wait_listening(program: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{program} did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A bus process, killed on drop. Keeps nothing on disk.
pub struct BusProcess {
    child: Option<Child>,
    pub port: u16,
}

impl BusProcess {
    /// Kills the process now (its data is gone with it).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for BusProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server`.
pub type RedisProcess = BusProcess;

impl BusProcess {
    /// Starts `redis-server` on an ephemeral port.
    pub fn start() -> Option<Self> {
        Self::start_on(free_port())
    }

    /// Starts `redis-server` on `port`.
    pub fn start_on(port: u16) -> Option<Self> {
        let child = spawn_or_skip("redis-server", &redis_args(port), "redis-server")?;
        wait_listening("redis-server", port);
        Some(Self {
            child: Some(child),
            port,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts `nats-server` on an ephemeral port.
    pub fn nats() -> Option<Self> {
        Self::nats_on(free_port())
    }

    /// Starts `nats-server` (core NATS, no JetStream) on `port`.
    pub fn nats_on(port: u16) -> Option<Self> {
        Self::nats_configured(port, "")
    }

    /// Starts `nats-server` on `port` with `config` (its configuration
    /// file's text) besides.
    pub fn nats_configured(port: u16, config: &str) -> Option<Self> {
        let file = std::env::temp_dir().join(format!("shardcast-nats-{port}.conf"));
        let mut args = vec![
            "-a".to_owned(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        if !config.is_empty() {
            std::fs::write(&file, config).expect("a temp file");
            args.extend(["-c".into(), file.to_str().expect("a UTF-8 temp dir").into()]);
        }
        let child = spawn_or_skip("nats-server", &args, "nats-server")?;
        wait_listening("nats-server", port);
        // Read at start: it goes once the server listens.
        let _ = std::fs::remove_file(&file);
        Some(Self {
            child: Some(child),
            port,
        })
    }

    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

fn redis_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A Redis Cluster of three primaries (no replicas), every slot assigned.
pub struct RedisCluster {
    pub nodes: Vec<BusProcess>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts three `redis-server`s in cluster mode and joins them with
    /// `redis-cli --cluster create`.
    pub fn start() -> Option<Self> {
        let dir = std::env::temp_dir().join(format!(
            "shardcast-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the cluster");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let mut args = redis_args(port);
            let config = dir.join(format!("nodes-{port}.conf"));
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    config.to_str().expect("a UTF-8 temp dir"),
                    "--cluster-port",
                    &free_port().to_string(),
                    "--dir",
                    dir.to_str().expect("a UTF-8 temp dir"),
                ]
                .map(str::to_owned),
            );
            let child = spawn_or_skip("redis-server", &args, "redis-server")?;
            wait_listening("redis-server", port);
            nodes.push(BusProcess {
                child: Some(child),
                port,
            });
        }
        let cluster = Self { nodes, dir };
        let mut create: Vec<String> = vec!["--cluster".into(), "create".into()];
        create.extend(
            cluster
                .nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port)),
        );
        create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(str::to_owned));
        let status = Command::new("redis-cli")
            .args(&create)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli comes with redis-server");
        assert!(status.success(), "redis-cli --cluster create failed");
        cluster.wait_ok();
        Some(cluster)
    }

    /// Waits until every node says the cluster is ok.
    fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &self.nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli runs");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not form");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The nodes' URLs, comma-separated, for `--broker-cluster`.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
