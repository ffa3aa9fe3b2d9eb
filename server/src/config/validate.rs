//! Raw settings to typed configuration: every value checked, every default
//! applied, every error naming its key.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use shardcast_engine::{
    EngineConfig, GateLimits, HistoryLimits, OutboxLimits, QuotaLimits, RateLimit,
};

use super::auth::Keys;
use super::channels::{channel_rules, parse_policy};
use super::{in_range, invalid, ConfigError, RawConfig, RawTopics, ServerConfig};
use crate::auth::origin::OriginPolicy;
use crate::auth::Authenticator;
use crate::protocol::publish::PublishConfig;

/// Read-only endpoints that may be served without credentials.
const OPENABLE_PATHS: [&str; 9] = [
    "/health",
    "/ready",
    "/metrics",
    "/api/v1/websocket/stats",
    "/api/v1/ws/health",
    "/api/v1/ws/topics",
    "/api/v1/ws/asyncapi.json",
    "/api/v1/ws/asyncapi",
    "/websocket/status",
];

/// `shutdown.drain_seconds` by default: long enough for a load balancer
/// polling `/ready` every second or two to move new clients elsewhere, and
/// with the rest of the shutdown within Docker's 10 s before a kill.
const DRAIN_SECONDS: u64 = 5;
/// An orchestrator's kill timeout is usually shorter than this.
const MAX_DRAIN_SECONDS: u64 = 3600;

/// hyper refuses read buffers below this.
const MIN_HEADER_BYTES: usize = 8192;

impl RawConfig {
    /// Checks every value and builds the typed configuration.
    pub fn validate(self) -> Result<ServerConfig, ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or("127.0.0.1:8000");
        let listen: std::net::SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:8000"),
            )
        })?;

        let metrics_listen = match self.metrics_listen.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|_| {
                invalid(
                    "metrics_listen",
                    format!("{text:?} is not an address like 127.0.0.1:8001"),
                )
            })?),
        };

        let (tls, listen_plain) = self.tls.validate(self.listen_plain.as_deref())?;

        let shards = match self.shards.unwrap_or(0) {
            0 => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            n if n > 256 => return Err(invalid("shards", "at most 256")),
            n => NonZeroUsize::new(n).expect("non-zero"),
        };

        let history = self.topics.history.unwrap_or(256);
        if history > MAX_RING_MAX_SLOTS {
            // The history is the newest numbers of the channel's feed.
            return Err(invalid(
                "topics.history",
                "must be at most 1048576 (the most a channel's feed holds)",
            ));
        }
        let max_keys = self.topics.max_keys.unwrap_or(10_000);
        let telemetry = self.telemetry.validate(history, max_keys)?;
        let bondx = self.bondx.validate()?;
        let fastws = self.fastws.validate()?;

        let max_messages = positive("outbox.max_messages", self.outbox.max_messages, 4096)?;
        let max_bytes = positive("outbox.max_bytes", self.outbox.max_bytes, 4 * 1024 * 1024)?;
        // By default a client that falls behind ends with the newest data:
        // the latest value of every key, and the newest unkeyed events.
        let policy = parse_policy(
            "outbox.slow_consumer",
            self.outbox.slow_consumer.as_deref().unwrap_or("conflate"),
        )?;

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

        let channels = channel_rules(
            self.channels.as_deref().unwrap_or_default(),
            self.channel_rules.as_deref().unwrap_or_default(),
        )?;

        let history_bytes = positive("topics.history_bytes", self.topics.history_bytes, 8 << 20)?;
        let max_total_bytes = positive(
            "topics.max_total_bytes",
            self.topics.max_total_bytes,
            256 << 20,
        )?;
        if history_bytes > max_total_bytes {
            return Err(invalid(
                "topics.history_bytes",
                "larger than topics.max_total_bytes: one channel could never hold it",
            ));
        }
        let idle_expiry = self.topics.idle_expiry_seconds.unwrap_or(60);
        if idle_expiry == 0 {
            return Err(invalid("topics.idle_expiry_seconds", "must be at least 1"));
        }
        let quota = QuotaLimits {
            rate_per_second: rate("topics.creation_rate", self.topics.creation_rate, 50.0)?,
            burst: burst("topics.creation_burst", self.topics.creation_burst, 500)?,
            max_live: positive(
                "topics.max_created_per_key",
                self.topics.max_created_per_key,
                1000,
            )?,
        };

        let (ring_slots, ring_max_slots) = ring_slots(&self.topics)?;
        let max_connections = positive("max_connections", self.max_connections, 100_000)?;
        let simple = self.simple.validate(max_connections)?;
        let gate = GateLimits {
            max_connections,
            max_per_address: unlimited_if_zero(self.max_connections_per_ip.unwrap_or(4096)),
            max_http: positive("max_http_connections", self.max_http_connections, 1024)?,
            max_http_per_address: unlimited_if_zero(
                self.max_http_connections_per_ip.unwrap_or(128),
            ),
            // Set at start-up from the open-file limit (files.rs).
            max_sockets: usize::MAX,
        };
        let max_header_bytes = in_range(
            "max_header_bytes",
            self.max_header_bytes,
            16 * 1024,
            MIN_HEADER_BYTES..=1 << 20,
            " bytes",
        )?;
        let request_timeout = in_range(
            "request_timeout_seconds",
            self.request_timeout_seconds,
            10,
            1..=300,
            " seconds",
        )?;

        let Keys { keys, dev_key } = Keys::from_raw(self.api_keys, listen, quota)?;
        let tokens = self.jwt.map(super::auth::token_verifier).transpose()?;
        // Only the well-known key needs the loopback rule: a random one is
        // as secret as any configured key.
        let origins = OriginPolicy::new(
            self.allowed_origins.as_deref().unwrap_or_default(),
            dev_key.as_deref() == Some(super::DEV_API_KEY),
        )
        .map_err(|m| invalid("allowed_origins", m))?;

        let compression = self.compression.validate()?;
        let broker = self.broker.validate()?;
        let engine = EngineConfig {
            shards,
            pin_threads: self.pin_threads.unwrap_or(true),
            outbox: OutboxLimits {
                max_messages,
                max_bytes,
                policy,
            },
            rate_limit: RateLimit::per_second(telemetry.rate_limit_per_second),
            history: HistoryLimits {
                capacity: history,
                max_keys,
                max_bytes: history_bytes,
                // Set by the engine from max_total_bytes and max_topics.
                floor: 0,
            },
            max_history_bytes: max_total_bytes,
            max_topics: positive("topics.max_topics", self.topics.max_topics, 10_000)?,
            topic_idle_expiry: Duration::from_secs(idle_expiry),
            // Sessions that watch a topic without subscribing (simple's
            // conflated channels, BondX's background mode) look at it once
            // per interval: it lingers over two of the longest.
            follow_linger: [
                bondx.background_interval,
                simple.price_update_interval,
                simple.portfolio_update_interval,
            ]
            .into_iter()
            .map(|interval| 2 * interval)
            .fold(EngineConfig::default().follow_linger, Duration::max),
            gate,
            max_subscriptions: positive(
                "topics.max_subscriptions",
                self.topics.max_subscriptions,
                256,
            )?,
            heartbeat_interval: telemetry.heartbeat_interval,
            heartbeat_timeout: telemetry.heartbeat_timeout,
            max_message_size: max_frame_size,
            ring_slots,
            ring_max_slots,
            coalesce_above_cpu,
            channels,
            deflate_min_size: compression.min_size,
        };

        let drain_seconds = self.shutdown.drain_seconds.unwrap_or(DRAIN_SECONDS);
        if drain_seconds > MAX_DRAIN_SECONDS {
            return Err(invalid(
                "shutdown.drain_seconds",
                format!("must be at most {MAX_DRAIN_SECONDS}"),
            ));
        }
        let open_paths = self.open_paths.unwrap_or_else(|| {
            vec![
                "/health".into(),
                "/ready".into(),
                "/metrics".into(),
                "/api/v1/ws/health".into(),
                "/api/v1/ws/asyncapi.json".into(),
                "/api/v1/ws/asyncapi".into(),
                "/websocket/status".into(),
            ]
        });
        if let Some(path) = open_paths
            .iter()
            .find(|p| !OPENABLE_PATHS.contains(&p.as_str()))
        {
            return Err(invalid(
                "open_paths",
                format!(
                    "{path:?} cannot be served without credentials; choose from {}",
                    OPENABLE_PATHS.join(", ")
                ),
            ));
        }

        Ok(ServerConfig {
            listen,
            metrics_listen,
            listen_plain,
            tls,
            broker,
            engine,
            auth: Arc::new(Authenticator::new(keys, tokens, quota)),
            quota,
            origins,
            dev_key,
            open_paths,
            telemetry,
            publish: PublishConfig {
                max_body: positive("max_publish_body", self.max_publish_body, 1024 * 1024)?,
                max_batch: positive("max_publish_batch", self.max_publish_batch, 1000)?,
            },
            bondx,
            fastws,
            simple,
            metrics: self.metrics.validate()?,
            max_header_bytes,
            request_timeout: Duration::from_secs(request_timeout),
            demo: self.demo.unwrap_or(true),
            drain: Duration::from_secs(drain_seconds),
            compression,
        })
    }
}

/// Most slots a channel's fan-out ring starts with (16 bytes each).
const MAX_RING_SLOTS: usize = 1 << 16;
/// Most slots a channel's fan-out ring may grow to.
const MAX_RING_MAX_SLOTS: usize = 1 << 20;

/// `topics.ring_slots` (1 to [`MAX_RING_SLOTS`]) and
/// `topics.ring_max_slots` (`ring_slots` to [`MAX_RING_MAX_SLOTS`]). The
/// key they replaced, `topics.shard_inbox` (a per-shard queue that is
/// gone), is refused with a message that names them.
fn ring_slots(topics: &RawTopics) -> Result<(usize, usize), ConfigError> {
    if topics.shard_inbox.is_some() {
        return Err(invalid(
            "topics.shard_inbox",
            "no longer exists: shards now read each channel's feed, which starts at topics.ring_slots messages (default 256) and grows to topics.ring_max_slots (default 4096); remove shard_inbox",
        ));
    }
    let field = "topics.ring_slots";
    let slots = match positive(field, topics.ring_slots, 256)? {
        n if n > MAX_RING_SLOTS => return Err(invalid(field, "must be at most 65536")),
        n => n,
    };
    let field = "topics.ring_max_slots";
    match positive(field, topics.ring_max_slots, 4096)? {
        n if n > MAX_RING_MAX_SLOTS => Err(invalid(field, "must be at most 1048576")),
        // Both are rounded up to powers of two: compare what they become.
        n if n.next_power_of_two() < slots.next_power_of_two() => Err(invalid(
            field,
            format!("is {n}, below topics.ring_slots ({slots}): a feed grows from ring_slots to ring_max_slots"),
        )),
        n => Ok((slots, n)),
    }
}

pub(super) fn positive(
    field: &'static str,
    value: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(invalid(field, "must be greater than 0")),
        n => Ok(n),
    }
}

pub(super) fn rate(
    field: &'static str,
    value: Option<f64>,
    default: f64,
) -> Result<f64, ConfigError> {
    let value = value.unwrap_or(default);
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid(field, "a number of creations per second above 0"));
    }
    Ok(value)
}

pub(super) fn burst(
    field: &'static str,
    value: Option<u32>,
    default: u32,
) -> Result<u32, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(invalid(field, "must be at least 1")),
        n => Ok(n),
    }
}

fn unlimited_if_zero(value: usize) -> usize {
    if value == 0 {
        usize::MAX
    } else {
        value
    }
}

#[cfg(test)]
mod tests;
