//! `[broker]`: how this server joins others into one, raw and typed.
//!
//! `kind = "memory"` (the default) keeps everything in this process.
//! `kind = "redis"` numbers every message in Redis and carries it to every
//! server that has subscribers for its topic (`crate::broker`). Read at
//! start-up; the typed settings are read-only after.

use std::time::Duration;

use serde::Deserialize;

use super::{in_range, invalid, ConfigError, ServerConfig};
use crate::broker::envelope::valid_node_id;

/// Messages waiting for the bus, by default: about a tenth of a second of
/// a busy server's publishes, so a stalled bus is refused to publishers
/// (503) within that, not after minutes of queued memory.
const QUEUE_SIZE: usize = 65_536;

/// How long a command to the bus may take, by default, before the bus is
/// treated as lost.
const TIMEOUT_MS: u64 = 2_000;

/// How long the bus keeps a topic that nobody publishes to, by default.
const HISTORY_TTL_SECONDS: u64 = 86_400;

/// `[broker]` as written.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Its keys are documented in docs/configuration.md.
pub struct RawBroker {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub node_id: Option<String>,
    pub queue_size: Option<usize>,
    pub timeout_ms: Option<u64>,
    pub history_ttl_seconds: Option<u64>,
    pub prefix: Option<String>,
}

/// Which broker joins servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerConfig {
    /// In this process only.
    Memory,
    /// Through Redis.
    Redis(RedisConfig),
}

/// `[broker]` with `kind = "redis"`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://`).
    pub url: String,
    /// This server's name on the bus (random unless set).
    pub node_id: String,
    /// Most messages waiting for the bus before publishes are refused.
    pub queue_size: usize,
    /// Longest wait for one command to the bus.
    pub timeout: Duration,
    /// How long the bus keeps an idle topic's number, epoch and history.
    pub history_ttl: Duration,
    /// Prefix of every key and channel, so deployments can share a Redis.
    pub prefix: String,
}

impl RawBroker {
    pub(super) fn validate(&self) -> Result<BrokerConfig, ConfigError> {
        let kind = match (self.kind.as_deref(), &self.url) {
            (Some(kind), _) => kind,
            // A URL alone (`REDIS_URL`, as BondX deployments set it) says redis.
            (None, Some(_)) => "redis",
            (None, None) => "memory",
        };
        match kind {
            "memory" => Ok(BrokerConfig::Memory),
            "redis" => self.redis().map(BrokerConfig::Redis),
            other => Err(invalid(
                "broker.kind",
                format!("{other:?} is not a broker: use \"memory\" or \"redis\""),
            )),
        }
    }

    fn redis(&self) -> Result<RedisConfig, ConfigError> {
        let url = self
            .url
            .clone()
            .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(invalid(
                "broker.url",
                format!("{url:?} is not a Redis URL like redis://127.0.0.1:6379/0"),
            ));
        }
        let node_id = match &self.node_id {
            Some(id) if valid_node_id(id) => id.clone(),
            Some(id) => {
                return Err(invalid(
                    "broker.node_id",
                    format!("{id:?}: use 1-64 of A-Z a-z 0-9 . _ -"),
                ))
            }
            None => format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        };
        let prefix = self.prefix.clone().unwrap_or_else(|| "shardcast".into());
        if prefix.is_empty() || prefix.len() > 64 || prefix.contains(['{', '}']) {
            return Err(invalid(
                "broker.prefix",
                "use 1-64 bytes without braces (they would break Redis Cluster hash tags)",
            ));
        }
        Ok(RedisConfig {
            url,
            node_id,
            queue_size: in_range(
                "broker.queue_size",
                self.queue_size,
                QUEUE_SIZE,
                1..=16_777_216,
                " messages",
            )?,
            timeout: Duration::from_millis(in_range(
                "broker.timeout_ms",
                self.timeout_ms,
                TIMEOUT_MS,
                10..=60_000,
                " milliseconds",
            )?),
            history_ttl: Duration::from_secs(in_range(
                "broker.history_ttl_seconds",
                self.history_ttl_seconds,
                HISTORY_TTL_SECONDS,
                1..=31_536_000,
                " seconds",
            )?),
            prefix,
        })
    }
}

/// `[broker]` as `check-config` lists it: only when it is not the default.
pub(super) fn show(config: &ServerConfig, top: &mut toml::Table) {
    let BrokerConfig::Redis(redis) = &config.broker else {
        return;
    };
    let mut section = toml::Table::new();
    section.insert("kind".into(), "redis".into());
    section.insert("url".into(), redacted(&redis.url).into());
    section.insert("node_id".into(), redis.node_id.clone().into());
    section.insert("queue_size".into(), (redis.queue_size as i64).into());
    section.insert(
        "timeout_ms".into(),
        (redis.timeout.as_millis() as i64).into(),
    );
    section.insert(
        "history_ttl_seconds".into(),
        (redis.history_ttl.as_secs() as i64).into(),
    );
    section.insert("prefix".into(), redis.prefix.clone().into());
    top.insert("broker".into(), section.into());
}

/// `url` with any password replaced, for logs and `check-config`.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_alone_means_redis_and_memory_is_the_default() {
        assert_eq!(
            RawBroker::default().validate().unwrap(),
            BrokerConfig::Memory
        );
        let raw = RawBroker {
            url: Some("redis://10.0.0.1:6380/2".into()),
            node_id: Some("a".into()),
            ..RawBroker::default()
        };
        let BrokerConfig::Redis(redis) = raw.validate().unwrap() else {
            panic!("not redis");
        };
        assert_eq!(redis.url, "redis://10.0.0.1:6380/2");
        assert_eq!(redis.node_id, "a");
        assert_eq!(redis.queue_size, QUEUE_SIZE);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                RawBroker {
                    kind: Some("kafka".into()),
                    ..Default::default()
                },
                "broker.kind",
            ),
            (
                RawBroker {
                    url: Some("http://x".into()),
                    ..Default::default()
                },
                "broker.url",
            ),
            (
                RawBroker {
                    kind: Some("redis".into()),
                    node_id: Some("a b".into()),
                    ..Default::default()
                },
                "broker.node_id",
            ),
            (
                RawBroker {
                    kind: Some("redis".into()),
                    prefix: Some("a{b".into()),
                    ..Default::default()
                },
                "broker.prefix",
            ),
            (
                RawBroker {
                    kind: Some("redis".into()),
                    queue_size: Some(0),
                    ..Default::default()
                },
                "broker.queue_size",
            ),
        ];
        for (raw, key) in cases {
            let e = raw.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redacted("redis://:secret@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redacted("redis://h:1/0"), "redis://h:1/0");
    }
}
