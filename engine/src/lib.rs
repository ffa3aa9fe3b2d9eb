//! shardcast-engine: a sharded WebSocket broadcast engine.
//!
//! - **Shards**: one pinned thread per shard, each with a current-thread tokio
//!   runtime, each owning its connections for their whole life
//!   ([`Engine::start`], [`LocalShard`]).
//! - **Topics**: gapless per-topic sequence numbers within an [`Epoch`], a
//!   ring of recent messages and a keyed snapshot, and [`Replay`] by count,
//!   by key or from a [`Position`] ([`Topic`]).
//! - **Encode once**: a message becomes one complete WebSocket frame per
//!   wire format and [`FrameKind`] ([`WireFormat`], [`Variant`]); every
//!   subscriber gets a clone of the same `Bytes`; connections that
//!   negotiated permessage-deflate share one compressed frame per variant.
//! - **Backpressure**: a bounded [`Outbox`] per connection, drained with
//!   vectored writes; a full outbox drops, conflates by key or disconnects,
//!   as the connection's [`Delivery`] says, and counts what it did.
//! - **Broker seam**: publishing goes through a [`Broker`] ([`InProcess`] by default).
//!
//! Layers, from the bottom: the sans-IO core (`src/sansio/`: messages,
//! frames, history, outbox, rate limits — no sockets, threads or clocks of
//! their own, and no imports from above), then topics and their registry,
//! then the runtime (shards, connections, the broker's fan-out, the
//! [`Engine`] handle).
//!
//! The engine has no HTTP in it. A server accepts through
//! [`Engine::serve`], performs the upgrade in its [`ConnectionHandler`], and
//! hands the socket to [`LocalShard::attach`] with a [`Session`] that gives
//! client messages their meaning.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod broker;
mod config;
mod engine;
mod gate;
mod registry;
#[doc(hidden)] // Public for the benches until topics publish through it.
pub mod ring;
mod sansio;
mod shard;
mod stats;
mod topic;

pub use broker::{Broker, Fanout, InProcess, PendingSeq, PublishError, Published, SeqReply};
pub use config::EngineConfig;
pub use engine::Engine;
pub use gate::{address_block, Gate, GateLimits, GateStats, PeerPermit, Refused, REFUSAL_LABELS};
pub use registry::{RetiredTotals, TopicRegistry};
pub use sansio::budget::MemoryBudget;
pub use sansio::census::{DepthHistogram, Disconnect, Disconnects, OUTBOX_DEPTH_BOUNDS};
pub use sansio::close::{CloseReason, ProtocolCloseCode};
pub use sansio::counts::Counts;
pub use sansio::deflate::{DeflateCounts, InflateError};
pub use sansio::delivery::{AliveOn, Delivery, InboundKind, Liveness};
pub use sansio::encoder::Encoder;
pub use sansio::format::{
    civil_from_days, write_iso8601, FormatId, Formats, FrameKind, TooManyFormats, Variant,
    WireFormat, MAX_FORMATS,
};
pub use sansio::history::{History, HistoryLimits, Retention};
pub use sansio::ids::{ConnKey, Epoch, InvalidEpoch, TopicId};
pub use sansio::mailbox::Mailbox;
pub use sansio::message::{Message, MessageFilter, MessageKind, Publication, Stamp};
pub use sansio::outbox::{
    first_in_object, Admission, ClassRule, DeliveryClass, DropReason, EventMeta, GapField,
    OutFrame, Outbox, OutboxLimits, Priority, SlowConsumerPolicy, MAX_IOVECS,
};
pub use sansio::pattern::{
    validate_name, ChannelRules, Pattern, TopicError, MAX_KEY_LEN, MAX_NAME_LEN,
};
pub use sansio::quota::{QuotaError, QuotaLimits, TopicQuota};
pub use sansio::rate::{RateLimit, RateLimiter};
pub use sansio::replay::{Position, Replay, ReplayError, Replayed};
pub use sansio::{decode, deflate, frame, json, pacer};
pub use shard::{
    AttachError, Attachment, ConnCtx, ConnectionHandler, Details, LocalShard, Session,
    SubscribeError, Subscribed, Transport, TLS_BUFFER_LIMIT,
};
pub use stats::{ClientInfo, EngineStats, ShardStats, TopicSummary, SLOWEST};
pub use topic::{Ingested, Numbered, Topic, TopicStats};
