//! `[broker]`: how this server joins others into one, raw and typed.
//!
//! `kind = "memory"` (the default) keeps everything in this process.
//! `kind = "redis"` numbers every message in Redis (one server, or a Redis
//! Cluster with `cluster`) and carries it to every server that has
//! subscribers for its topic; `kind = "nats"` carries messages over core
//! NATS, each server numbering what it delivers (`crate::broker`). Read at
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

/// Most Redis Cluster seed nodes.
const MAX_SEEDS: usize = 64;

/// `[broker]` as written.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Its keys are documented in docs/configuration.md.
pub struct RawBroker {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub cluster: Option<Vec<String>>,
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
    /// Through Redis: one server, or a Redis Cluster.
    Redis(RedisConfig),
    /// Through core NATS.
    Nats(NatsConfig),
}

/// What every bus shares: who this server is there, and its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusConfig {
    /// The bus's URL (for Redis Cluster, the first seed node).
    pub url: String,
    /// This server's name on the bus (random unless set).
    pub node_id: String,
    /// Most messages waiting for the bus before publishes are refused.
    pub queue_size: usize,
    /// Longest wait for one command to the bus (and for connecting).
    pub timeout: Duration,
    /// Prefix of every key, channel and subject, so deployments can share
    /// a bus.
    pub prefix: String,
}

/// `[broker]` with `kind = "redis"`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// Where, who, and the limits; `url` is `redis://host:port/db` (or
    /// `rediss://`).
    pub bus: BusConfig,
    /// Redis Cluster seed nodes; empty for one Redis server at `url`.
    pub cluster: Vec<String>,
    /// How long the bus keeps an idle topic's number, epoch and history.
    pub history_ttl: Duration,
}

/// `[broker]` with `kind = "nats"`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    /// Where, who, and the limits; `url` is `nats://host:port` (or
    /// `tls://`), or several of them separated by commas.
    pub bus: BusConfig,
}

impl RawBroker {
    pub(super) fn validate(&self) -> Result<BrokerConfig, ConfigError> {
        let kind = match (self.kind.as_deref(), &self.url) {
            (Some(kind), _) => kind,
            // A URL alone says which bus (`REDIS_URL`, as BondX deployments
            // set it, says redis).
            (None, Some(url)) if is_nats_url(url) => "nats",
            (None, Some(_)) => "redis",
            (None, None) if self.cluster.is_some() => "redis",
            (None, None) => "memory",
        };
        match kind {
            "memory" => Ok(BrokerConfig::Memory),
            "redis" => self.redis().map(BrokerConfig::Redis),
            "nats" => self.nats().map(BrokerConfig::Nats),
            other => Err(invalid(
                "broker.kind",
                format!("{other:?} is not a broker: use \"memory\", \"redis\" or \"nats\""),
            )),
        }
    }

    fn redis(&self) -> Result<RedisConfig, ConfigError> {
        let cluster = self.cluster.clone().unwrap_or_default();
        if cluster.len() > MAX_SEEDS {
            return Err(invalid(
                "broker.cluster",
                format!("at most {MAX_SEEDS} seed nodes"),
            ));
        }
        for seed in &cluster {
            if !is_redis_url(seed) {
                return Err(invalid(
                    "broker.cluster",
                    format!("{seed:?} is not a Redis URL like redis://127.0.0.1:7000"),
                ));
            }
        }
        if self.url.is_some() && !cluster.is_empty() {
            return Err(invalid(
                "broker.cluster",
                "set broker.url (one Redis server) or broker.cluster (a Redis Cluster's nodes), not both",
            ));
        }
        let url = self
            .url
            .clone()
            .or_else(|| cluster.first().cloned())
            .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
        if !is_redis_url(&url) {
            return Err(invalid(
                "broker.url",
                format!("{url:?} is not a Redis URL like redis://127.0.0.1:6379/0"),
            ));
        }
        let prefix = self.prefix.clone().unwrap_or_else(|| "shardcast".into());
        if prefix.is_empty() || prefix.len() > 64 || prefix.contains(['{', '}']) {
            return Err(invalid(
                "broker.prefix",
                "use 1-64 bytes without braces (they would break Redis Cluster hash tags)",
            ));
        }
        Ok(RedisConfig {
            bus: self.bus(url, prefix)?,
            cluster,
            history_ttl: Duration::from_secs(in_range(
                "broker.history_ttl_seconds",
                self.history_ttl_seconds,
                HISTORY_TTL_SECONDS,
                1..=31_536_000,
                " seconds",
            )?),
        })
    }

    fn nats(&self) -> Result<NatsConfig, ConfigError> {
        if self.cluster.is_some() {
            return Err(invalid(
                "broker.cluster",
                "is for Redis Cluster; list several NATS servers in broker.url, separated by commas",
            ));
        }
        if self.history_ttl_seconds.is_some() {
            return Err(invalid(
                "broker.history_ttl_seconds",
                "is for Redis: NATS keeps no history",
            ));
        }
        let url = self
            .url
            .clone()
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        if !url.split(',').all(|u| is_nats_url(u.trim())) {
            return Err(invalid(
                "broker.url",
                format!("{url:?} is not a NATS URL like nats://127.0.0.1:4222"),
            ));
        }
        let prefix = self.prefix.clone().unwrap_or_else(|| "shardcast".into());
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        };
        if prefix.len() > 64 || !prefix.split('.').all(token) {
            return Err(invalid(
                "broker.prefix",
                "use 1-64 bytes of A-Z a-z 0-9 _ - in tokens separated by dots (a NATS subject)",
            ));
        }
        Ok(NatsConfig {
            bus: self.bus(url, prefix)?,
        })
    }

    /// The settings every bus shares.
    fn bus(&self, url: String, prefix: String) -> Result<BusConfig, ConfigError> {
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
        Ok(BusConfig {
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
            prefix,
        })
    }
}

fn is_redis_url(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("rediss://")
}

fn is_nats_url(url: &str) -> bool {
    url.starts_with("nats://") || url.starts_with("tls://")
}

/// `[broker]` as `check-config` lists it: only when it is not the default.
pub(super) fn show(config: &ServerConfig, top: &mut toml::Table) {
    let (kind, bus) = match &config.broker {
        BrokerConfig::Memory => return,
        BrokerConfig::Redis(redis) => ("redis", &redis.bus),
        BrokerConfig::Nats(nats) => ("nats", &nats.bus),
    };
    let mut section = toml::Table::new();
    section.insert("kind".into(), kind.into());
    section.insert("url".into(), redacted(&bus.url).into());
    if let BrokerConfig::Redis(redis) = &config.broker {
        if !redis.cluster.is_empty() {
            let seeds: Vec<toml::Value> = redis
                .cluster
                .iter()
                .map(|seed| redacted(seed).into())
                .collect();
            section.insert("cluster".into(), seeds.into());
        }
        section.insert(
            "history_ttl_seconds".into(),
            (redis.history_ttl.as_secs() as i64).into(),
        );
    }
    section.insert("node_id".into(), bus.node_id.clone().into());
    section.insert("queue_size".into(), (bus.queue_size as i64).into());
    section.insert("timeout_ms".into(), (bus.timeout.as_millis() as i64).into());
    section.insert("prefix".into(), bus.prefix.clone().into());
    top.insert("broker".into(), section.into());
}

/// `url` (or a comma-separated list of them) with any password replaced,
/// for logs and `check-config`.
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://***@{}", &url[..scheme], &url[at + 1..])
            }
            _ => url.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
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
        assert_eq!(redis.bus.url, "redis://10.0.0.1:6380/2");
        assert_eq!(redis.bus.node_id, "a");
        assert_eq!(redis.bus.queue_size, QUEUE_SIZE);
        assert!(redis.cluster.is_empty());
    }

    #[test]
    fn a_nats_url_means_nats_and_seeds_mean_a_redis_cluster() {
        let raw = RawBroker {
            url: Some("nats://10.0.0.1:4222,nats://10.0.0.2:4222".into()),
            ..RawBroker::default()
        };
        let BrokerConfig::Nats(nats) = raw.validate().unwrap() else {
            panic!("not nats");
        };
        assert_eq!(nats.bus.prefix, "shardcast");
        assert!(nats.bus.node_id.starts_with("node-"));
        let raw = RawBroker {
            cluster: Some(vec!["redis://h:7000".into(), "redis://h:7001".into()]),
            ..RawBroker::default()
        };
        let BrokerConfig::Redis(redis) = raw.validate().unwrap() else {
            panic!("not redis");
        };
        assert_eq!(redis.cluster.len(), 2);
        assert_eq!(redis.bus.url, "redis://h:7000");
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
                    kind: Some("nats".into()),
                    prefix: Some("a.*".into()),
                    ..Default::default()
                },
                "broker.prefix",
            ),
            (
                RawBroker {
                    kind: Some("nats".into()),
                    url: Some("redis://h:1".into()),
                    ..Default::default()
                },
                "broker.url",
            ),
            (
                RawBroker {
                    cluster: Some(vec!["h:7000".into()]),
                    ..Default::default()
                },
                "broker.cluster",
            ),
            (
                RawBroker {
                    url: Some("redis://h:6379".into()),
                    cluster: Some(vec!["redis://h:7000".into()]),
                    ..Default::default()
                },
                "broker.cluster",
            ),
            (
                RawBroker {
                    kind: Some("nats".into()),
                    history_ttl_seconds: Some(60),
                    ..Default::default()
                },
                "broker.history_ttl_seconds",
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
        assert_eq!(
            redacted("nats://u:p@a:1,nats://b:2,nats://v:q@c:3"),
            "nats://***@a:1,nats://b:2,nats://***@c:3"
        );
    }
}
