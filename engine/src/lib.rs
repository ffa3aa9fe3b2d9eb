//! shardcast-engine: a sharded WebSocket broadcast engine.
//!
//! - **Shards**: one pinned thread per shard, each with a current-thread tokio
//!   runtime, each owning its connections for their whole life
//!   ([`Engine::start`], [`LocalShard`]).
//! - **Topics**: gapless per-topic sequence numbers, a ring of recent
//!   messages and a keyed snapshot for replay ([`Topic`]).
//! - **Encode once**: a message becomes one complete WebSocket frame per
//!   wire format ([`WireFormat`]); every subscriber gets a clone of the same
//!   `Bytes`.
//! - **Backpressure**: a bounded [`Outbox`] per connection, drained with
//!   vectored writes; a full outbox drops (counted) or disconnects.
//! - **Broker seam**: publishing goes through a [`Broker`] ([`InProcess`] by default).
//!
//! The engine has no HTTP in it. A server accepts through
//! [`Engine::serve`], performs the upgrade in its [`ConnectionHandler`], and
//! hands the socket to [`LocalShard::attach`] with a [`Session`] that gives
//! client messages their meaning.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod broker;
mod budget;
mod close;
mod config;
mod conn;
mod ctx;
pub mod decode;
mod delivery;
mod engine;
mod format;
pub mod frame;
mod gate;
mod handle;
mod history;
mod local;
mod mailbox;
mod message;
mod outbox;
pub mod pacer;
mod pattern;
mod quota;
mod rate;
mod reader;
mod registry;
mod shard;
mod slab;
mod stats;
mod topic;

pub use broker::{Broker, Fanout, InProcess, PublishError};
pub use budget::MemoryBudget;
pub use close::CloseReason;
pub use config::EngineConfig;
pub use conn::{ConnKey, Session};
pub use ctx::{ConnCtx, SubscribeError, Subscribed};
pub use engine::Engine;
pub use format::{write_iso8601, FormatId, Formats, TooManyFormats, WireFormat, MAX_FORMATS};
pub use gate::{Gate, GateLimits, GateStats, PeerPermit, Refused, REFUSAL_LABELS};
pub use handle::{Attachment, LocalShard};
pub use history::{History, HistoryLimits, Retention};
pub use mailbox::Mailbox;
pub use message::Message;
pub use outbox::{
    Admission, DropReason, EventMeta, OutFrame, Outbox, OutboxLimits, SlowConsumerPolicy,
    MAX_IOVECS,
};
pub use pattern::{validate_name, ChannelRules, Pattern, MAX_NAME_LEN};
pub use quota::{QuotaError, QuotaLimits, TopicQuota};
pub use rate::{RateLimit, RateLimiter};
pub use registry::{RetiredTotals, TopicRegistry};
pub use shard::ConnectionHandler;
pub use stats::{ClientInfo, Counts, EngineStats, ShardStats, TopicSummary};
pub use topic::{Topic, TopicError, TopicId, TopicStats};
