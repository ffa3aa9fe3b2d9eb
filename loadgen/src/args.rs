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
    /// Instead of --url: several shardcast nodes acting as one through a
    /// broker, comma-separated or repeated.
    ///
    /// All ws:// or all wss:// (a mix is refused; --tls and --tls-ca apply to
    /// all). Publishers connect to the first url; subscriber connection i to
    /// url i mod n. The server's figures are read from every node and summed
    /// (published and its latency: the first node's), once per distinct
    /// address: a url given twice is read and counted once, and is one node.
    /// With more than one url the report breaks latency down per node (p50,
    /// p99, p99.9) and gives the cross-node overhead: p50 and p99 of the
    /// subscribers on other nodes minus those on the first.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "url",
        value_name = "URL,...",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    pub urls: Vec<String>,
    /// API key with subscribe, publish and admin roles.
    #[arg(long, default_value = "dev-api-key", env = "SHARDCAST_API_KEY")]
    pub api_key: String,
    /// Connect with TLS (wss://, https://); implied by a wss:// --url or
    /// --urls. The certificate is checked against --tls-ca, or not at all
    /// without it.
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
    /// The server's pid, for its CPU time and memory from /proc. With
    /// --urls, every node's pid (comma-separated or repeated): their CPU time
    /// and memory are summed, a pid given twice counted once.
    #[arg(long, value_delimiter = ',', value_name = "PID")]
    pub server_pid: Vec<u32>,
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
    /// With several --urls: the first node's, against its own subscribers.
    #[arg(long)]
    pub max_latency_gap_ms: Option<f64>,
}

impl Args {
    /// The urls of the run: `--urls`, or else `--url` alone.
    pub fn urls(&self) -> Vec<String> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }

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

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("shardcast-loadgen").chain(flags.iter().copied()))
    }

    #[test]
    fn urls_are_comma_separated_or_repeated() {
        let args = parse(&["--urls", "ws://a:1,ws://b:2", "--urls", "ws://c:3"]).unwrap();
        assert_eq!(args.urls(), ["ws://a:1", "ws://b:2", "ws://c:3"]);
        assert_eq!(parse(&[]).unwrap().urls(), ["ws://127.0.0.1:8000"]);
        let args = parse(&["--url", "ws://a:1"]).unwrap();
        assert_eq!(args.urls(), ["ws://a:1"]);
    }

    #[test]
    fn an_empty_url_is_refused() {
        assert!(parse(&["--urls", "ws://a:1,,ws://b:2"]).is_err());
    }

    #[test]
    fn url_with_urls_is_refused() {
        let err = parse(&["--url", "ws://a:1", "--urls", "ws://b:2"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn server_pids_are_comma_separated_or_repeated() {
        assert!(parse(&[]).unwrap().server_pid.is_empty());
        let args = parse(&["--server-pid", "10,11", "--server-pid", "12"]).unwrap();
        assert_eq!(args.server_pid, [10, 11, 12]);
    }
}
