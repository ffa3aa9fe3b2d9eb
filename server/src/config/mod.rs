//! Configuration in two stages: [`RawConfig`] mirrors the TOML file, the
//! environment and the flags; [`RawConfig::validate`] (in `validate.rs`,
//! with the key and token sections in `auth.rs`) turns it into a typed
//! [`ServerConfig`] or fails naming the field. Durations, as seconds or
//! with units, are read by `duration.rs`; `show.rs` writes the settings in
//! force back out as TOML (`check-config`, `--help`).
//!
//! Precedence, lowest to highest: built-in defaults, the TOML file
//! (`--config`), environment variables (`SHARDCAST_*`), command-line flags.
//! docs/configuration.md lists every key with its default and how to size it.
//!
//! The file is operator input, but it is parsed with the same care as
//! client input: the TOML parser bounds its own nesting, unknown keys are
//! refused, and `fuzz/fuzz_targets/config.rs` feeds it arbitrary text.

mod auth;
mod broker;
mod channels;
mod compression;
pub mod duration;
mod show;
mod tls;
mod validate;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use shardcast_engine::{EngineConfig, QuotaLimits};

use crate::auth::origin::OriginPolicy;
use crate::auth::Authenticator;
use crate::metrics::MetricsConfig;
pub use crate::metrics::RawMetrics;
use crate::protocol::bondx::BondxConfig;
pub use crate::protocol::bondx::RawBondx;
use crate::protocol::fastws::FastwsConfig;
pub use crate::protocol::fastws::RawFastws;
use crate::protocol::publish::PublishConfig;
pub use crate::protocol::simple::RawSimple;
use crate::protocol::simple::SimpleConfig;
pub use crate::protocol::telemetry::RawTelemetry;
use crate::protocol::telemetry::TelemetryConfig;

pub use auth::{parse_key_spec, parse_roles};
pub use broker::{redacted, BrokerConfig, BusConfig, NatsConfig, RawBroker, RedisConfig};
pub use channels::{RawChannelRule, HIGH_PRIORITY_CHANNELS};
pub use compression::{CompressionConfig, RawCompression};
pub use show::{effective_settings, lookup, HIDDEN};
pub use tls::RawTls;

/// Channels that always exist.
pub const DEFAULT_CHANNELS: [&str; 6] = [
    "trader-status",
    "positions",
    "risk-alerts",
    "market-data",
    "signals",
    "trades",
];

/// The development key used when no key is configured and the server
/// listens on loopback only.
pub const DEV_API_KEY: &str = "dev-api-key";

/// The settings as written: every field optional, defaults applied in [`RawConfig::validate`].
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Each field is its key; docs/configuration.md describes them.
pub struct RawConfig {
    pub listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub listen_plain: Option<String>,
    pub shards: Option<usize>,
    pub pin_threads: Option<bool>,
    pub demo: Option<bool>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_http_connections: Option<usize>,
    pub max_http_connections_per_ip: Option<usize>,
    pub max_header_bytes: Option<usize>,
    #[serde(default, deserialize_with = "duration::whole_seconds")]
    pub request_timeout_seconds: Option<u64>,
    pub max_frame_size: Option<usize>,
    pub max_publish_body: Option<usize>,
    pub max_publish_batch: Option<usize>,
    pub open_paths: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub channel_rules: Option<Vec<RawChannelRule>>,
    pub allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub outbox: RawOutbox,
    #[serde(default)]
    pub topics: RawTopics,
    pub api_keys: Option<Vec<RawApiKey>>,
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub bondx: RawBondx,
    #[serde(default)]
    pub fastws: RawFastws,
    #[serde(default)]
    pub simple: RawSimple,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub compression: RawCompression,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub broker: RawBroker,
}

/// `[shutdown]`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Its keys are documented in docs/configuration.md.
pub struct RawShutdown {
    #[serde(default, deserialize_with = "duration::whole_seconds")]
    pub drain_seconds: Option<u64>,
}

/// `[outbox]`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)]
pub struct RawOutbox {
    pub max_messages: Option<usize>,
    pub max_bytes: Option<usize>,
    pub slow_consumer: Option<String>,
    pub coalesce_above_cpu: Option<f64>,
}

/// `[topics]`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)]
pub struct RawTopics {
    pub history: Option<usize>,
    pub max_keys: Option<usize>,
    pub history_bytes: Option<usize>,
    pub max_total_bytes: Option<usize>,
    pub max_topics: Option<usize>,
    pub max_subscriptions: Option<usize>,
    pub ring_slots: Option<usize>,
    pub ring_max_slots: Option<usize>,
    /// Replaced by `ring_slots` and `ring_max_slots`: named only to say so.
    pub shard_inbox: Option<usize>,
    #[serde(default, deserialize_with = "duration::whole_seconds")]
    pub idle_expiry_seconds: Option<u64>,
    pub creation_rate: Option<f64>,
    pub creation_burst: Option<u32>,
    pub max_created_per_key: Option<usize>,
}

/// One `[[api_keys]]` entry.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawApiKey {
    pub key: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub subscribe: Option<Vec<String>>,
    pub publish: Option<Vec<String>>,
    pub topic_creation_rate: Option<f64>,
    pub topic_creation_burst: Option<u32>,
}

/// `[jwt]`.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawJwt {
    pub hs256_secret: Option<String>,
    pub hs256_secret_file: Option<String>,
    pub rs256_public_keys: Option<Vec<String>>,
    pub es256_public_keys: Option<Vec<String>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    #[serde(default, deserialize_with = "duration::whole_seconds")]
    pub leeway_seconds: Option<u64>,
    pub default_channels: Option<Vec<String>>,
}

/// A setting that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A value out of range or malformed.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// The key.
        field: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The error for `field`, saying what is wrong with it.
pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// `value` (or `default` when absent) if it lies in `range`; otherwise the
/// error for `field`, naming the range and its `unit` (`" seconds"`, `""`).
pub(crate) fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
    field: &'static str,
    value: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T, ConfigError> {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        let (low, high) = (range.start(), range.end());
        Err(invalid(field, format!("from {low} to {high}{unit}")))
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A second address serving only `GET /metrics`, without credentials.
    pub metrics_listen: Option<SocketAddr>,
    /// With TLS: a second, plain address serving only `/health` and
    /// `/ready`, for a load balancer's checks.
    pub listen_plain: Option<SocketAddr>,
    /// `[tls]`: serve HTTPS and `wss://` on `listen`.
    pub tls: Option<crate::tls::TlsSettings>,
    /// `[broker]`: this process alone, or one of several joined by a bus.
    pub broker: BrokerConfig,
    /// Engine settings (connection gate included).
    pub engine: EngineConfig,
    /// Keys, tokens and their principals.
    pub auth: Arc<Authenticator>,
    /// Topic-creation limits of a key that sets none, and of each token user.
    pub quota: QuotaLimits,
    /// Which web pages may present credentials.
    pub origins: OriginPolicy,
    /// The development key in use, if no key was configured.
    pub dev_key: Option<String>,
    /// Paths served without credentials.
    pub open_paths: Vec<String>,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
    /// The publish API's limits.
    pub publish: PublishConfig,
    /// `[bondx]`.
    pub bondx: BondxConfig,
    /// `[fastws]`.
    pub fastws: FastwsConfig,
    /// `[simple]`.
    pub simple: SimpleConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// Largest HTTP request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Time a client has to send a request's head, and again its body.
    pub request_timeout: Duration,
    /// Run the simulated market feed.
    pub demo: bool,
    /// How long a shutdown spends closing WebSocket connections in paced
    /// batches (lame duck) before it stops; see [`crate::Server::drain`].
    pub drain: Duration,
    /// `[compression]`: permessage-deflate.
    pub compression: CompressionConfig,
}

impl RawConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused() {
        let err = RawConfig::from_toml("lisen = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.contains("lisen"), "{err}");
        let err = RawConfig::from_toml(
            "[[api_keys]]\nkey = \"abcdefgh\"\nroles = [\"subscribe\"]\nscope = [\"x\"]",
        )
        .unwrap_err();
        assert!(err.contains("scope"), "{err}");
    }

    #[test]
    fn deeply_nested_toml_is_an_error_not_a_crash() {
        let deep = format!("x = {}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(RawConfig::from_toml(&deep).is_err());
        let inline = format!("x = {}{}", "{a=".repeat(50_000), "}".repeat(50_000));
        assert!(RawConfig::from_toml(&inline).is_err());
    }
}
