//! Configuration in two stages: [`RawConfig`] mirrors the TOML file, the
//! environment and the flags; [`RawConfig::validate`] turns it into a typed
//! [`ServerConfig`] or fails naming the field.
//!
//! Precedence, lowest to highest: built-in defaults, the TOML file
//! (`--config`), environment variables (`SHARDCAST_*`), command-line flags.
//! docs/configuration.md lists every key.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use shardcast_engine::{ChannelRules, EngineConfig, OutboxLimits, RateLimit, SlowConsumerPolicy};

use crate::auth::{ApiKeys, Role, Roles};

/// Channels that always exist.
pub const DEFAULT_CHANNELS: [&str; 4] =
    ["trader-status", "positions", "risk-alerts", "market-data"];

/// The development key used when no key is configured and the server
/// listens on loopback only.
pub const DEV_API_KEY: &str = "dev-api-key";

/// The settings as written: every field optional, defaults applied in [`RawConfig::validate`].
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RawConfig {
    pub listen: Option<String>,
    pub shards: Option<usize>,
    pub pin_threads: Option<bool>,
    pub demo: Option<bool>,
    pub max_connections: Option<usize>,
    pub max_frame_size: Option<usize>,
    pub max_publish_body: Option<usize>,
    pub max_publish_batch: Option<usize>,
    pub open_paths: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub outbox: RawOutbox,
    #[serde(default)]
    pub topics: RawTopics,
    pub api_keys: Option<Vec<RawApiKey>>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RawTelemetry {
    pub heartbeat_interval_seconds: Option<u64>,
    pub heartbeat_timeout_seconds: Option<u64>,
    pub rate_limit_per_second: Option<u32>,
    pub replay_limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RawOutbox {
    pub max_messages: Option<usize>,
    pub max_bytes: Option<usize>,
    pub slow_consumer: Option<String>,
    pub coalesce_above_cpu: Option<f64>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RawTopics {
    pub history: Option<usize>,
    pub max_keys: Option<usize>,
    pub max_topics: Option<usize>,
    pub max_subscriptions: Option<usize>,
    pub shard_inbox: Option<usize>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub key: String,
    pub roles: Vec<String>,
}

/// A setting that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Engine settings.
    pub engine: EngineConfig,
    /// API keys and their roles.
    pub api_keys: ApiKeys,
    /// The development key in use, if no key was configured.
    pub dev_key: Option<String>,
    /// Paths served without an API key.
    pub open_paths: Vec<String>,
    /// Most messages replayed per channel.
    pub replay_limit: usize,
    /// Events per second per connection (0 = unlimited), as announced in `welcome`.
    pub rate_limit_per_second: u32,
    /// WebSocket connections beyond which upgrades get HTTP 503.
    pub max_connections: usize,
    /// Largest HTTP publish body, in bytes.
    pub max_publish_body: usize,
    /// Most messages in one batch publish.
    pub max_publish_batch: usize,
    /// Run the simulated market feed.
    pub demo: bool,
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

    /// Checks every value and builds the typed configuration.
    pub fn validate(self) -> Result<ServerConfig, ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or("127.0.0.1:8000");
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:8000"),
            )
        })?;

        let shards = match self.shards.unwrap_or(0) {
            0 => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            n if n > 256 => return Err(invalid("shards", "at most 256")),
            n => NonZeroUsize::new(n).expect("non-zero"),
        };

        let t = &self.telemetry;
        let heartbeat_interval = t.heartbeat_interval_seconds.unwrap_or(15);
        let heartbeat_timeout = t.heartbeat_timeout_seconds.unwrap_or(45);
        if heartbeat_interval == 0 {
            return Err(invalid(
                "telemetry.heartbeat_interval_seconds",
                "must be at least 1",
            ));
        }
        if heartbeat_timeout < heartbeat_interval {
            return Err(invalid(
                "telemetry.heartbeat_timeout_seconds",
                "must be at least telemetry.heartbeat_interval_seconds",
            ));
        }
        let rate_limit_per_second = t.rate_limit_per_second.unwrap_or(120);
        let replay_limit = t.replay_limit.unwrap_or(50);
        let history = self.topics.history.unwrap_or(256);
        if replay_limit > history.max(self.topics.max_keys.unwrap_or(10_000)) {
            return Err(invalid(
                "telemetry.replay_limit",
                "larger than both topics.history and topics.max_keys: nothing could fill it",
            ));
        }

        let max_messages = positive("outbox.max_messages", self.outbox.max_messages, 4096)?;
        let max_bytes = positive("outbox.max_bytes", self.outbox.max_bytes, 4 * 1024 * 1024)?;
        let policy = match self.outbox.slow_consumer.as_deref().unwrap_or("drop") {
            "drop" => SlowConsumerPolicy::Drop,
            "disconnect" => SlowConsumerPolicy::Disconnect,
            other => {
                return Err(invalid(
                    "outbox.slow_consumer",
                    format!("{other:?}: use \"drop\" or \"disconnect\""),
                ))
            }
        };

        let coalesce_above_cpu = self
            .outbox
            .coalesce_above_cpu
            .unwrap_or(shardcast_engine::pacer::HIGH);
        if !(0.3..=1.0).contains(&coalesce_above_cpu) {
            return Err(invalid(
                "outbox.coalesce_above_cpu",
                "a share of one core from 0.3 to 1.0 (1.0: never coalesce)",
            ));
        }

        let max_frame_size = positive("max_frame_size", self.max_frame_size, 64 * 1024)?;
        if max_frame_size < 125 {
            return Err(invalid("max_frame_size", "at least 125 bytes"));
        }

        let mut channels = ChannelRules::default();
        for rule in DEFAULT_CHANNELS
            .iter()
            .copied()
            .chain(self.channels.iter().flatten().map(String::as_str))
        {
            channels
                .declare(rule)
                .map_err(|e| invalid("channels", e.to_string()))?;
        }

        let (api_keys, dev_key) = match self.api_keys {
            Some(list) if !list.is_empty() => {
                let mut keys = ApiKeys::default();
                for raw in list {
                    let roles =
                        parse_roles(&raw.roles).map_err(|m| invalid("api_keys.roles", m))?;
                    if raw.key.len() < 8 {
                        return Err(invalid(
                            "api_keys.key",
                            "keys must be at least 8 characters",
                        ));
                    }
                    keys.insert(raw.key, roles);
                }
                (keys, None)
            }
            _ => {
                let key = if listen.ip().is_loopback() {
                    DEV_API_KEY.to_owned()
                } else {
                    // Reachable from other machines: never a well-known key.
                    format!("dev-{}", uuid::Uuid::new_v4().simple())
                };
                let mut keys = ApiKeys::default();
                keys.insert(key.clone(), Roles::ALL);
                (keys, Some(key))
            }
        };

        let engine = EngineConfig {
            shards,
            pin_threads: self.pin_threads.unwrap_or(true),
            outbox: OutboxLimits {
                max_messages,
                max_bytes,
                policy,
            },
            rate_limit: RateLimit::per_second(rate_limit_per_second),
            history_capacity: history,
            max_keys_per_topic: self.topics.max_keys.unwrap_or(10_000),
            max_topics: positive("topics.max_topics", self.topics.max_topics, 10_000)?,
            max_subscriptions: positive(
                "topics.max_subscriptions",
                self.topics.max_subscriptions,
                256,
            )?,
            heartbeat_interval: Duration::from_secs(heartbeat_interval),
            heartbeat_timeout: Duration::from_secs(heartbeat_timeout),
            max_message_size: max_frame_size,
            shard_inbox_capacity: positive("topics.shard_inbox", self.topics.shard_inbox, 65_536)?,
            coalesce_above_cpu,
            channels,
        };

        Ok(ServerConfig {
            listen,
            engine,
            api_keys,
            dev_key,
            open_paths: self
                .open_paths
                .unwrap_or_else(|| vec!["/health".into(), "/metrics".into()]),
            replay_limit,
            rate_limit_per_second,
            max_connections: positive("max_connections", self.max_connections, 100_000)?,
            max_publish_body: positive("max_publish_body", self.max_publish_body, 1024 * 1024)?,
            max_publish_batch: positive("max_publish_batch", self.max_publish_batch, 1000)?,
            demo: self.demo.unwrap_or(true),
        })
    }
}

fn positive(
    field: &'static str,
    value: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(invalid(field, "must be greater than 0")),
        n => Ok(n),
    }
}

/// Parses role names: `subscribe`, `publish`, `admin`.
pub fn parse_roles<S: AsRef<str>>(names: &[S]) -> Result<Roles, String> {
    let mut roles = Roles::NONE;
    for name in names {
        roles = roles.with(match name.as_ref().trim() {
            "subscribe" => Role::Subscribe,
            "publish" => Role::Publish,
            "admin" => Role::Admin,
            other => {
                return Err(format!(
                    "unknown role {other:?}: use subscribe, publish or admin"
                ))
            }
        });
    }
    if roles == Roles::NONE {
        return Err("a key needs at least one role".into());
    }
    Ok(roles)
}

/// Parses `KEY:role+role` as given to `--api-key` and `SHARDCAST_API_KEYS`.
pub fn parse_key_spec(spec: &str) -> Result<RawApiKey, String> {
    let (key, roles) = spec.rsplit_once(':').ok_or_else(|| {
        format!("{spec:?}: expected KEY:role+role, e.g. s3cret-key:subscribe+publish")
    })?;
    Ok(RawApiKey {
        key: key.to_owned(),
        roles: roles.split('+').map(str::to_owned).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let config = RawConfig::default().validate().unwrap();
        assert_eq!(config.listen, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(config.engine.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(config.engine.heartbeat_timeout, Duration::from_secs(45));
        assert_eq!(config.rate_limit_per_second, 120);
        assert_eq!(config.replay_limit, 50);
        assert_eq!(config.dev_key.as_deref(), Some(DEV_API_KEY));
        assert!(config.engine.channels.allows("market-data"));
        assert!(config.demo);
    }

    #[test]
    fn bad_values_fail_naming_the_field() {
        let cases = [
            ("listen = \"nope\"", "listen"),
            (
                "[outbox]\nslow_consumer = \"maybe\"",
                "outbox.slow_consumer",
            ),
            (
                "[telemetry]\nheartbeat_interval_seconds = 0",
                "telemetry.heartbeat_interval_seconds",
            ),
            (
                "[telemetry]\nheartbeat_interval_seconds = 30\nheartbeat_timeout_seconds = 10",
                "telemetry.heartbeat_timeout_seconds",
            ),
            ("channels = [\"bad name\"]", "channels"),
            (
                "[[api_keys]]\nkey = \"abcdefgh\"\nroles = [\"root\"]",
                "api_keys.roles",
            ),
            ("max_connections = 0", "max_connections"),
            (
                "[outbox]\ncoalesce_above_cpu = 1.5",
                "outbox.coalesce_above_cpu",
            ),
        ];
        for (toml, field) in cases {
            let err = RawConfig::from_toml(toml).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains(field), "{toml}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = RawConfig::from_toml("lisen = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn public_listen_without_keys_gets_a_random_dev_key() {
        let raw = RawConfig::from_toml("listen = \"0.0.0.0:8000\"").unwrap();
        let key = raw.validate().unwrap().dev_key.unwrap();
        assert_ne!(key, DEV_API_KEY);
    }

    #[test]
    fn key_specs_parse() {
        let key = parse_key_spec("abc:def:subscribe+admin").unwrap();
        assert_eq!(key.key, "abc:def");
        assert_eq!(
            parse_roles(&key.roles).unwrap(),
            Roles::NONE.with(Role::Subscribe).with(Role::Admin)
        );
        assert!(parse_key_spec("nocolon").is_err());
    }
}
