//! Command-line flags of `shardcast serve` and `shardcast check-config`,
//! how they (and their environment variables) override the TOML file, and
//! the defaults `--help` shows for them.
//!
//! Switches read from the environment accept `1/0`, `true/false`,
//! `yes/no`, `on/off` (any case); anything else is refused. Durations take
//! seconds or a duration with units (`config::duration`).

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::Args;

use crate::config::duration::parse_whole_seconds;
use crate::config::{parse_key_spec, ConfigError, RawConfig};

mod help;

pub use help::document_defaults;

/// Flags of the server. Each also reads the environment variable named in its help.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "SHARDCAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "SHARDCAST_LISTEN")]
    pub listen: Option<String>,
    /// Shard threads; 0 = one per available core.
    #[arg(long, env = "SHARDCAST_SHARDS")]
    pub shards: Option<usize>,
    /// Do not pin shard threads to cores.
    #[arg(long, env = "SHARDCAST_NO_PIN", value_parser = BoolishValueParser::new())]
    pub no_pin: bool,
    /// Do not run the simulated market feed.
    #[arg(long, env = "SHARDCAST_NO_DEMO", value_parser = BoolishValueParser::new())]
    pub no_demo: bool,
    /// WebSocket connections beyond which upgrades get HTTP 503.
    #[arg(long, env = "SHARDCAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Connections (HTTP and WebSocket) one address may hold; 0 = no cap.
    #[arg(long, env = "SHARDCAST_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Connections in their HTTP stage (requests, handshakes) at once.
    #[arg(long, env = "SHARDCAST_MAX_HTTP_CONNECTIONS")]
    pub max_http_connections: Option<usize>,
    /// Connections in their HTTP stage one address may hold; 0 = no cap.
    #[arg(long, env = "SHARDCAST_MAX_HTTP_CONNECTIONS_PER_IP")]
    pub max_http_connections_per_ip: Option<usize>,
    /// Web origins allowed to present credentials (repeat, or comma-separate); "*" = any.
    #[arg(
        long = "allowed-origin",
        env = "SHARDCAST_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// File holding the HS256 secret that signs user tokens.
    #[arg(long, env = "SHARDCAST_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<String>,
    /// Largest client message, in bytes.
    #[arg(long, env = "SHARDCAST_MAX_FRAME_SIZE")]
    pub max_frame_size: Option<usize>,
    /// Interval between server heartbeats, in seconds or as a duration (15s, 1m).
    #[arg(long, env = "SHARDCAST_HEARTBEAT_INTERVAL", value_parser = parse_whole_seconds)]
    pub heartbeat_interval: Option<u64>,
    /// Client silence before disconnecting, in seconds or as a duration (45s, 2m).
    #[arg(long, env = "SHARDCAST_HEARTBEAT_TIMEOUT", value_parser = parse_whole_seconds)]
    pub heartbeat_timeout: Option<u64>,
    /// Events per second per connection; 0 = unlimited.
    #[arg(long, env = "SHARDCAST_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Most messages replayed per channel.
    #[arg(long, env = "SHARDCAST_REPLAY_LIMIT")]
    pub replay_limit: Option<usize>,
    /// Most events queued per connection.
    #[arg(long, env = "SHARDCAST_OUTBOX_MAX_MESSAGES")]
    pub outbox_max_messages: Option<usize>,
    /// Most bytes queued per connection.
    #[arg(long, env = "SHARDCAST_OUTBOX_MAX_BYTES")]
    pub outbox_max_bytes: Option<usize>,
    /// What a full outbox does: conflate, drop_oldest, drop_newest or disconnect.
    #[arg(long, env = "SHARDCAST_SLOW_CONSUMER")]
    pub slow_consumer: Option<String>,
    /// Share of a core above which a shard coalesces writes; 1.0 = never.
    #[arg(long, env = "SHARDCAST_COALESCE_ABOVE_CPU")]
    pub coalesce_above_cpu: Option<f64>,
    /// Extra channel names or patterns (repeat, or comma-separate).
    #[arg(long = "channel", env = "SHARDCAST_CHANNELS", value_delimiter = ',')]
    pub channels: Vec<String>,
    /// API keys as KEY:role+role (repeat, or comma-separate); replaces the file's keys.
    #[arg(long = "api-key", env = "SHARDCAST_API_KEYS", value_delimiter = ',')]
    pub api_keys: Vec<String>,
    /// A second address serving only GET /metrics, without credentials (e.g. 127.0.0.1:8001).
    #[arg(long, env = "SHARDCAST_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// The HS256 secret of BondX tokens (prefer the environment or --bondx-jwt-secret-file).
    #[arg(long, env = "SHARDCAST_BONDX_JWT_SECRET", hide_env_values = true)]
    pub bondx_jwt_secret: Option<String>,
    /// File holding the HS256 secret of BondX tokens.
    #[arg(long, env = "SHARDCAST_BONDX_JWT_SECRET_FILE")]
    pub bondx_jwt_secret_file: Option<String>,
    /// BondX deployments' name for --max-connections (which wins when both are set).
    #[arg(long, env = "WS_MAX_CONNECTIONS", hide = true)]
    pub ws_max_connections: Option<usize>,
    /// BondX deployments' name for [bondx] heartbeat_interval_seconds.
    #[arg(long, env = "WS_HEARTBEAT_INTERVAL", hide = true, value_parser = parse_whole_seconds)]
    pub ws_heartbeat_interval: Option<u64>,
    /// BondX deployments' name for [bondx] connection_timeout_seconds.
    #[arg(long, env = "WS_CONNECTION_TIMEOUT", hide = true, value_parser = parse_whole_seconds)]
    pub ws_connection_timeout: Option<u64>,
    /// BondX deployments' name for --outbox-max-messages (which wins when both are set).
    #[arg(long, env = "WS_MAX_QUEUE_SIZE", hide = true)]
    pub ws_max_queue_size: Option<usize>,
    /// Simple-protocol deployments' name for [simple] enabled.
    #[arg(long, env = "WEBSOCKET_ENABLED", hide = true, value_parser = BoolishValueParser::new())]
    pub websocket_enabled: Option<bool>,
    /// Simple-protocol deployments' name for [simple] ping_interval_seconds.
    #[arg(long, env = "WEBSOCKET_PING_INTERVAL", hide = true, value_parser = parse_whole_seconds)]
    pub websocket_ping_interval: Option<u64>,
    /// Simple-protocol deployments' name for [simple] price_update_interval_seconds.
    #[arg(long, env = "WEBSOCKET_PRICE_UPDATE_INTERVAL", hide = true, value_parser = parse_whole_seconds)]
    pub websocket_price_update_interval: Option<u64>,
    /// Simple-protocol deployments' name for [simple] portfolio_update_interval_seconds.
    #[arg(long, env = "WEBSOCKET_PORTFOLIO_UPDATE_INTERVAL", hide = true, value_parser = parse_whole_seconds)]
    pub websocket_portfolio_update_interval: Option<u64>,
    /// Simple-protocol deployments' name for [simple] max_connections.
    #[arg(long, env = "WEBSOCKET_MAX_CONNECTIONS", hide = true)]
    pub websocket_max_connections: Option<usize>,
    /// How this server joins others: memory (alone), redis or nats.
    #[arg(long, env = "SHARDCAST_BROKER")]
    pub broker: Option<String>,
    /// The broker's URL, e.g. redis://127.0.0.1:6379/0 or
    /// nats://127.0.0.1:4222 (alone, it names the broker).
    #[arg(long, env = "SHARDCAST_BROKER_URL")]
    pub broker_url: Option<String>,
    /// Redis Cluster seed nodes, comma-separated, e.g.
    /// redis://127.0.0.1:7000,redis://127.0.0.1:7001 (alone, it means
    /// --broker redis).
    #[arg(long, env = "SHARDCAST_BROKER_CLUSTER", value_delimiter = ',')]
    pub broker_cluster: Option<Vec<String>>,
    /// BondX deployments' name for --broker-url.
    #[arg(long, env = "REDIS_URL", hide = true)]
    pub redis_url: Option<String>,
    /// This server's name on the bus (default: random, logged at start).
    #[arg(long, env = "SHARDCAST_NODE_ID")]
    pub node_id: Option<String>,
    /// PEM certificate chain: serve HTTPS and wss:// (with --tls-key).
    #[arg(long, env = "SHARDCAST_TLS_CERT")]
    pub tls_cert: Option<String>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SHARDCAST_TLS_KEY")]
    pub tls_key: Option<String>,
    /// With TLS, a second plain address serving only /health and /ready
    /// (e.g. 127.0.0.1:8080), for a load balancer's checks.
    #[arg(long, env = "SHARDCAST_LISTEN_PLAIN")]
    pub listen_plain: Option<String>,
    /// How long a shutdown spends closing connections in batches (lame
    /// duck) before it stops, in seconds or as a duration (30s, 2m); 0 =
    /// close them all at once.
    #[arg(long, env = "SHARDCAST_DRAIN_SECONDS", value_parser = parse_whole_seconds)]
    pub drain_seconds: Option<u64>,
    /// Do not accept permessage-deflate offers: every connection plain.
    #[arg(long, env = "SHARDCAST_NO_COMPRESSION", value_parser = BoolishValueParser::new())]
    pub no_compression: bool,
    /// Payload bytes from which events are sent compressed to clients that
    /// negotiated permessage-deflate; smaller ones go plain.
    #[arg(long, env = "SHARDCAST_COMPRESSION_MIN_SIZE")]
    pub compression_min_size: Option<usize>,
    /// Log filter, e.g. info or shardcast_engine=debug [default: RUST_LOG,
    /// else info].
    #[arg(long, env = "SHARDCAST_LOG")]
    pub log: Option<String>,
    /// Log lines as `text` or `json` (one object per line), on stderr
    /// [default: text on a terminal, json otherwise].
    #[arg(long, env = "SHARDCAST_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: one line per event, coloured on a terminal.
    Text,
    /// For collectors: one JSON object per line.
    Json,
}

/// Flags of `shardcast check-config`: the server's, so that it checks what
/// `serve` would run with, given the same file, environment and flags.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// The TOML file to check [default: --config or SHARDCAST_CONFIG, else
    /// none: the defaults with the environment and flags].
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)] // The server's flags.
    pub serve: ServeArgs,
}

impl CheckArgs {
    /// The server flags with `FILE`, when given, as the configuration file.
    pub fn into_serve(self) -> ServeArgs {
        ServeArgs {
            config: self.file.or(self.serve.config),
            ..self.serve
        }
    }
}

impl ServeArgs {
    /// The file's settings (if any) with these flags laid over them.
    pub fn to_raw_config(&self) -> Result<RawConfig, ConfigError> {
        let mut raw = match &self.config {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
        self.apply(&mut raw)?;
        Ok(raw)
    }

    /// Lays these flags over `raw`: a flag given wins, one absent leaves `raw` as is.
    pub fn apply(&self, raw: &mut RawConfig) -> Result<(), ConfigError> {
        fn set<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
            if value.is_some() {
                slot.clone_from(value);
            }
        }
        // BondX's WS_* names first, so that shardcast's own win over them.
        set(&mut raw.max_connections, &self.ws_max_connections);
        set(
            &mut raw.bondx.heartbeat_interval_seconds,
            &self.ws_heartbeat_interval,
        );
        set(
            &mut raw.bondx.connection_timeout_seconds,
            &self.ws_connection_timeout,
        );
        set(&mut raw.outbox.max_messages, &self.ws_max_queue_size);
        // The simple protocol's WEBSOCKET_* names (its settings have no other).
        let simple = &mut raw.simple;
        set(&mut simple.enabled, &self.websocket_enabled);
        set(
            &mut simple.ping_interval_seconds,
            &self.websocket_ping_interval,
        );
        set(
            &mut simple.price_update_interval_seconds,
            &self.websocket_price_update_interval,
        );
        set(
            &mut simple.portfolio_update_interval_seconds,
            &self.websocket_portfolio_update_interval,
        );
        set(&mut simple.max_connections, &self.websocket_max_connections);
        if self.bondx_jwt_secret.is_some() || self.bondx_jwt_secret_file.is_some() {
            raw.bondx.jwt_secret.clone_from(&self.bondx_jwt_secret);
            raw.bondx
                .jwt_secret_file
                .clone_from(&self.bondx_jwt_secret_file);
        }
        set(&mut raw.listen, &self.listen);
        set(&mut raw.metrics_listen, &self.metrics_listen);
        set(&mut raw.listen_plain, &self.listen_plain);
        set(&mut raw.broker.url, &self.redis_url);
        set(&mut raw.broker.url, &self.broker_url);
        set(&mut raw.broker.cluster, &self.broker_cluster);
        set(&mut raw.broker.kind, &self.broker);
        set(&mut raw.broker.node_id, &self.node_id);
        set(&mut raw.tls.cert, &self.tls_cert);
        set(&mut raw.tls.key, &self.tls_key);
        set(&mut raw.shards, &self.shards);
        set(&mut raw.max_connections, &self.max_connections);
        set(
            &mut raw.max_connections_per_ip,
            &self.max_connections_per_ip,
        );
        set(&mut raw.max_http_connections, &self.max_http_connections);
        set(
            &mut raw.max_http_connections_per_ip,
            &self.max_http_connections_per_ip,
        );
        if !self.allowed_origins.is_empty() {
            raw.allowed_origins = Some(self.allowed_origins.clone());
        }
        if let Some(path) = &self.jwt_hs256_secret_file {
            let jwt = raw.jwt.get_or_insert_with(Default::default);
            jwt.hs256_secret = None;
            jwt.hs256_secret_file = Some(path.clone());
        }
        set(&mut raw.max_frame_size, &self.max_frame_size);
        set(
            &mut raw.telemetry.heartbeat_interval_seconds,
            &self.heartbeat_interval,
        );
        set(
            &mut raw.telemetry.heartbeat_timeout_seconds,
            &self.heartbeat_timeout,
        );
        set(&mut raw.telemetry.rate_limit_per_second, &self.rate_limit);
        set(&mut raw.telemetry.replay_limit, &self.replay_limit);
        set(&mut raw.outbox.max_messages, &self.outbox_max_messages);
        set(&mut raw.outbox.max_bytes, &self.outbox_max_bytes);
        set(&mut raw.outbox.slow_consumer, &self.slow_consumer);
        set(&mut raw.outbox.coalesce_above_cpu, &self.coalesce_above_cpu);
        set(&mut raw.shutdown.drain_seconds, &self.drain_seconds);
        set(&mut raw.compression.min_size, &self.compression_min_size);
        if self.no_compression {
            raw.compression.enabled = Some(false);
        }
        if self.no_pin {
            raw.pin_threads = Some(false);
        }
        if self.no_demo {
            raw.demo = Some(false);
        }
        if !self.channels.is_empty() {
            raw.channels
                .get_or_insert_with(Vec::new)
                .extend(self.channels.iter().cloned());
        }
        if !self.api_keys.is_empty() {
            let keys = self
                .api_keys
                .iter()
                .map(|spec| parse_key_spec(spec))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|message| ConfigError::Invalid {
                    field: "api_keys",
                    message,
                })?;
            raw.api_keys = Some(keys);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_absent_flags_do_not() {
        let mut raw = RawConfig::from_toml(
            "listen = \"127.0.0.1:9000\"\nchannels = [\"prices.*\"]\n[telemetry]\nreplay_limit = 10\nrate_limit_per_second = 5",
        )
        .unwrap();
        let args = ServeArgs {
            replay_limit: Some(20),
            channels: vec!["orders".into()],
            no_demo: true,
            ..ServeArgs::default()
        };
        args.apply(&mut raw).unwrap();
        let config = raw.validate().unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.telemetry.replay_limit, 20);
        assert_eq!(config.telemetry.rate_limit_per_second, 5);
        assert!(config.engine.channels.allows("prices.X"));
        assert!(config.engine.channels.allows("orders"));
        assert!(!config.demo);
    }

    #[test]
    fn bondx_environment_names_map_onto_settings_and_lose_to_ours() {
        let mut raw = RawConfig::from_toml("max_connections = 10").unwrap();
        let args = ServeArgs {
            ws_max_connections: Some(1000),
            ws_heartbeat_interval: Some(20),
            ws_connection_timeout: Some(60),
            ws_max_queue_size: Some(500),
            ..ServeArgs::default()
        };
        args.apply(&mut raw).unwrap();
        let config = raw.clone().validate().unwrap();
        assert_eq!(config.engine.gate.max_connections, 1000);
        assert_eq!(config.bondx.heartbeat_interval.as_secs(), 20);
        assert_eq!(config.bondx.connection_timeout.as_secs(), 60);
        assert_eq!(config.engine.outbox.max_messages, 500);
        let ours = ServeArgs {
            max_connections: Some(50),
            outbox_max_messages: Some(64),
            ws_max_connections: Some(1000),
            ws_max_queue_size: Some(500),
            ..ServeArgs::default()
        };
        ours.apply(&mut raw).unwrap();
        let config = raw.validate().unwrap();
        assert_eq!(config.engine.gate.max_connections, 50);
        assert_eq!(config.engine.outbox.max_messages, 64);
    }

    #[test]
    fn simple_protocol_environment_names_win_over_the_file() {
        let mut raw = RawConfig::from_toml(
            "[simple]\nping_interval_seconds = 10\nprice_update_interval_seconds = 7",
        )
        .unwrap();
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let args = <Cli as clap::Parser>::try_parse_from([
            "serve",
            "--websocket-enabled",
            "no",
            "--websocket-ping-interval",
            "15",
            "--websocket-portfolio-update-interval",
            "9",
            "--websocket-max-connections",
            "100",
        ])
        .unwrap()
        .serve;
        args.apply(&mut raw).unwrap();
        let config = raw.validate().unwrap();
        let simple = &config.simple;
        assert!(!simple.enabled);
        assert_eq!(simple.ping_interval.as_secs(), 15);
        assert_eq!(simple.price_update_interval.as_secs(), 7, "from the file");
        assert_eq!(simple.portfolio_update_interval.as_secs(), 9);
        assert_eq!(simple.max_connections, 100);
    }
}
