//! The command line: scenarios, load shape and targets.

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Few topics, many subscribers each.
    Fanout,
    /// 50% market, 30% trading, 20% risk topics, in publish rate and subscriptions.
    Mixed,
    /// Clients drop and reconnect with replay; gaps are reported.
    Reconnect,
    /// A long run: watch the progress line's server memory (with
    /// --server-pid) and the per-second plots of --report for drift.
    Soak,
    /// Connection scale: idle connections, memory per connection.
    Connections,
    /// Keyed messages at a sustained rate with periodic bursts; reports how
    /// long after each burst every client holds the latest value of every key.
    Burst,
}

#[derive(Parser, Debug)]
#[command(name = "shardcast-loadgen", about = "Load generator for shardcast")]
pub struct Args {
    /// Server address.
    #[arg(long, default_value = "ws://127.0.0.1:8000")]
    pub url: String,
    /// API key with subscribe, publish and admin roles.
    #[arg(long, default_value = "dev-api-key", env = "SHARDCAST_API_KEY")]
    pub api_key: String,
    /// Connect with TLS (wss://, https://); implied by a wss:// --url. The
    /// certificate is checked against --tls-ca, or not at all without it.
    #[arg(long)]
    pub tls: bool,
    /// Offer permessage-deflate on every connection (fail if the server
    /// declines) and inflate what comes compressed.
    #[arg(long)]
    pub deflate: bool,
    /// PEM file of the roots to check the server's certificate against
    /// (implies --tls).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value = "fanout")]
    pub scenario: Scenario,
    /// Subscriber connections.
    #[arg(long, default_value_t = 200)]
    pub connections: usize,
    /// Topics, named PREFIX0..PREFIX{T-1}.
    #[arg(long, default_value_t = 10)]
    pub topics: usize,
    /// Subscriptions per connection, spread evenly over the topics.
    #[arg(long, default_value_t = 1)]
    pub subs: usize,
    /// Topic name prefix; the server must declare it (e.g. --channel 'load.*').
    #[arg(long, default_value = "load.")]
    pub prefix: String,
    /// Messages published per second, in total.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Publisher connections sharing the rate.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Publish over the WebSocket publish endpoint or HTTP.
    #[arg(long, value_enum, default_value = "ws")]
    pub via: ViaArg,
    /// Payload (data) size in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// New connections per second.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Seconds of traffic before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Source addresses 127.0.0.1..=127.0.0.K; 0 = one per 25,000 connections.
    #[arg(long, default_value_t = 0)]
    pub source_ips: u8,
    /// Seconds between a client's reconnects (scenario reconnect).
    #[arg(long, default_value_t = 3.0)]
    pub reconnect_every: f64,
    /// The server's pid, for its CPU time and memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Step the rate up by --sweep-factor until a target fails; report the highest that held.
    #[arg(long)]
    pub sweep: bool,
    #[arg(long, default_value_t = 1.5)]
    pub sweep_factor: f64,
    /// Print the report as JSON (progress lines go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Also write the report to this directory: index.html (plots, targets,
    /// parameters; readable offline), report.json (as --json) and
    /// latency.hlog (an HDR histogram interval log, one histogram per second).
    #[arg(long, value_name = "DIR")]
    pub report: Option<std::path::PathBuf>,
    /// Seconds between progress lines on stderr; 0 = none.
    #[arg(long, default_value_t = 5.0)]
    pub progress_every: f64,
    /// No progress lines (as --progress-every 0).
    #[arg(long)]
    pub quiet: bool,
    /// Target: P95 latency, ms.
    #[arg(long, default_value_t = 100.0)]
    pub p95_ms: f64,
    /// Target: P99 latency, ms (unchecked if absent).
    #[arg(long)]
    pub p99_ms: Option<f64>,
    /// Target: highest drop rate (0.01 = 1%).
    #[arg(long, default_value_t = 0.01)]
    pub max_drop_rate: f64,
    /// Target: lowest connection success (0.95 = 95%).
    #[arg(long, default_value_t = 0.95)]
    pub min_connect_success: f64,
    /// Target: most messages the server dropped for full queues.
    #[arg(long, default_value_t = 1000)]
    pub max_queue_overflow: u64,
    /// Target: loadgen delivered + server dropped + conflated (+ filtered) =
    /// published × subscribers, exactly, and the server's sent = delivered.
    #[arg(long)]
    pub exact_accounting: bool,
    /// Seconds from one burst's start to the next (scenario burst).
    #[arg(long, default_value_t = 2.0)]
    pub burst_every: f64,
    /// Seconds each burst lasts.
    #[arg(long, default_value_t = 0.2)]
    pub burst_for: f64,
    /// Publish rate during a burst, as a multiple of --rate.
    #[arg(long, default_value_t = 10.0)]
    pub burst_factor: f64,
    /// Keys per topic (scenario burst): key k of a topic gets values 1, 2, 3…
    #[arg(long, default_value_t = 16)]
    pub keys: usize,
    /// Target: every client holds the latest value of every key within this
    /// many ms of a burst's last publish (max over clients and bursts; unchecked if absent).
    #[arg(long)]
    pub max_freshness_ms: Option<f64>,
    /// Target: the server's latency histogram agrees with the loadgen's (server
    /// at or below, p50 gap at most this many ms). Use on a fresh server.
    #[arg(long)]
    pub max_latency_gap_ms: Option<f64>,
}

impl Args {
    /// Messages per second the run publishes: `--rate`, except that the
    /// connections scenario publishes nothing unless a rate is given.
    pub fn publish_rate(&self) -> f64 {
        if self.scenario == Scenario::Connections && self.rate == 1000.0 {
            0.0
        } else {
            self.rate
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ViaArg {
    Ws,
    Http,
}
