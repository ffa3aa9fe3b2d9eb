//! The engine's typed configuration. The server validates its raw settings
//! into this; every field here is already in range.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::gate::GateLimits;
use crate::sansio::delivery::{AliveOn, Delivery, Liveness};
use crate::sansio::format::FormatId;
use crate::sansio::history::HistoryLimits;
use crate::sansio::outbox::{OutboxLimits, SlowConsumerPolicy};
use crate::sansio::pattern::ChannelRules;
use crate::sansio::rate::RateLimit;

/// How an engine runs. Read-only once the engine starts.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Shard threads.
    pub shards: NonZeroUsize,
    /// Pin shard `i` to core `i mod cores`.
    pub pin_threads: bool,
    /// Per-connection outbox bounds and slow-consumer policy.
    pub outbox: OutboxLimits,
    /// Per-connection event rate: the default of [`EngineConfig::delivery`]
    /// (each protocol's connections may have their own).
    pub rate_limit: RateLimit,
    /// Each topic's history: messages in the ring, keys in the snapshot, bytes.
    pub history: HistoryLimits,
    /// Bytes of history across all topics.
    pub max_history_bytes: usize,
    /// Topics alive at once.
    pub max_topics: usize,
    /// How long a topic with no subscribers and no retained state lives on.
    pub topic_idle_expiry: Duration,
    /// With an external broker: how long a topic nobody here subscribes to
    /// stays followed on the bus (so a client that leaves and comes back,
    /// or a flapping subscriber, does not make the server unsubscribe and
    /// catch up again each time).
    pub follow_linger: Duration,
    /// Connection admission: WebSockets, sockets per address, HTTP stage.
    pub gate: GateLimits,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Interval between server heartbeats.
    pub heartbeat_interval: Duration,
    /// Silence after which a connection is closed, unless its protocol
    /// chooses otherwise ([`Delivery::liveness`]).
    pub heartbeat_timeout: Duration,
    /// Largest client message (after reassembly), in bytes.
    pub max_message_size: usize,
    /// Messages each topic's feed holds for its shards to begin with (at
    /// most 2^20, rounded up to a power of two). The feed grows while a
    /// shard with a subscriber lags further behind, and shrinks back once
    /// the shards have caught up.
    pub ring_slots: usize,
    /// Most messages a topic's feed grows to (at least the history's
    /// capacity, at most 2^20, rounded up to a power of two): a shard that
    /// falls this many of one topic's messages behind loses the oldest,
    /// counted as `shard_overflow`.
    pub ring_max_slots: usize,
    /// Share of a core above which a shard coalesces writes (1.0: never).
    pub coalesce_above_cpu: f64,
    /// Which topic names exist.
    pub channels: ChannelRules,
    /// Payload bytes from which events are compressed for connections that
    /// negotiated permessage-deflate; smaller ones go plain.
    pub deflate_min_size: usize,
}

/// Messages a topic's feed holds unless configured otherwise.
pub(crate) const DEFAULT_RING_SLOTS: usize = 256;
/// Messages a topic's feed grows to unless configured otherwise: four
/// batch publishes of the largest size allowed by default, queued on one
/// topic while its shard cannot read. Per topic, so it stays well below
/// the 65,536 a shard's queue held for all topics before feeds had rings.
pub(crate) const DEFAULT_RING_MAX_SLOTS: usize = 4096;

impl Default for EngineConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Self {
            shards: cores,
            pin_threads: true,
            outbox: OutboxLimits {
                max_messages: 4096,
                max_bytes: 4 * 1024 * 1024,
                policy: SlowConsumerPolicy::Drop,
            },
            rate_limit: RateLimit::per_second(120),
            history: HistoryLimits {
                capacity: 256,
                max_keys: 10_000,
                max_bytes: 8 * 1024 * 1024,
                floor: 0,
            },
            max_history_bytes: 256 * 1024 * 1024,
            max_topics: 10_000,
            topic_idle_expiry: Duration::from_secs(60),
            follow_linger: Duration::from_secs(10),
            gate: GateLimits {
                max_connections: 100_000,
                max_per_address: 4096,
                max_http: 1024,
                max_http_per_address: 128,
                max_sockets: usize::MAX,
            },
            max_subscriptions: 256,
            heartbeat_interval: Duration::from_secs(15),
            heartbeat_timeout: Duration::from_secs(45),
            max_message_size: 64 * 1024,
            ring_slots: DEFAULT_RING_SLOTS,
            ring_max_slots: DEFAULT_RING_MAX_SLOTS,
            coalesce_above_cpu: crate::sansio::pacer::HIGH,
            channels: ChannelRules::default(),
            deflate_min_size: 256,
        }
    }
}

impl EngineConfig {
    /// Delivery in `format` with the engine's defaults: the outbox's
    /// slow-consumer policy, the engine's event rate limit, and
    /// `heartbeat_timeout` of silence (any frame breaks it). A protocol
    /// starts from this and changes what it needs.
    pub fn delivery(&self, format: FormatId) -> Delivery {
        Delivery {
            format,
            overflow: self.outbox.policy,
            rate_limit: self.rate_limit,
            liveness: Liveness {
                timeout: self.heartbeat_timeout,
                alive_on: AliveOn::Anything,
            },
            deflate: false,
        }
    }
}
