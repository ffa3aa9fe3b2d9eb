//! A published message and its cache of encoded frames.
//!
//! Shared by all shards; immutable once built except for the frame cache,
//! which holds each [`Variant`] (wire format and frame kind) at most once.
//! Whichever shard first needs a variant encodes it; every other subscriber
//! on every shard gets a refcount clone of the same `Bytes`. A variant nobody
//! receives is never encoded.
//!
//! The cache is one inline slot for the first variant encoded (nearly every
//! message is delivered in one variant: live, in the format of its
//! subscribers), set once through its `OnceLock`, plus a list for the others,
//! behind a mutex taken only to encode a variant or to find one that is not
//! the first. Its size does not depend on how many formats are registered.
//!
//! A compressed variant (permessage-deflate, [`Variant::deflated`]) is one
//! more entry, built from the plain frame of the same format and kind: one
//! compression per message however many subscribers negotiated it.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::sansio::encoder::Encoder;
use crate::sansio::format::{Formats, Variant};
use crate::sansio::ids::{Epoch, TopicId};
use crate::sansio::outbox::DeliveryClass;

/// One published message, stamped by its topic. Shared by all shards.
#[derive(Debug)]
pub struct Message {
    /// The topic's id.
    pub topic: TopicId,
    /// The topic's name.
    pub topic_name: Arc<str>,
    /// The run of the topic's sequence this message belongs to.
    pub epoch: Epoch,
    /// Position in the topic: 1, 2, 3… with no gaps.
    pub seq: u64,
    /// Optional key (a symbol, an account) for keyed snapshots and conflation.
    pub key: Option<Box<str>>,
    /// The payload exactly as the publisher sent it (a JSON value).
    pub data: Bytes,
    /// Wall-clock publish time, for the wire timestamp.
    pub timestamp: SystemTime,
    /// Monotonic publish time, for delivery latency.
    pub accepted_at: Instant,
    /// What the publisher says the message is (an ordinary event or an alert).
    pub kind: MessageKind,
    /// How its topic's messages are delivered (channel rules).
    pub class: DeliveryClass,
    key_hash: u64,
    reach: Reach,
    frames: FrameCache,
}

/// Where a message goes: to the subscribers live and into its topic's
/// history (every message a publisher sends, unless it says otherwise),
/// live only (a transient publish), or into the history only (one a bus
/// catch-up brings back, which the subscribers here saw or missed
/// before). A topic's feed carries all three (`topic/feed.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Delivered live and kept for replay.
    #[default]
    Both,
    /// Delivered live, never replayed.
    Live,
    /// Replayed, never delivered live.
    Replay,
}

#[derive(Debug, Default)]
struct FrameCache {
    /// The first variant encoded: a lock-free read once set.
    first: OnceLock<(Variant, Bytes)>,
    /// Every other variant, each encoded under the lock, so at most once.
    rest: Mutex<Vec<(Variant, Bytes)>>,
}

/// The process's key for hashing message keys: random, so no publisher can
/// choose two keys that collide.
fn key_hasher() -> &'static std::collections::hash_map::RandomState {
    static HASHER: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    HASHER.get_or_init(Default::default)
}

/// Which of a topic's messages one subscription receives: a protocol whose
/// clients choose a subset (symbols of a channel) sets one on the
/// subscription ([`ConnCtx::filter`](crate::ConnCtx::filter)). Asked once
/// per message and subscriber on the subscriber's shard thread, so it must
/// be cheap: work that depends on the message alone should be done once per
/// message (a memo keyed by topic and seq), not once per subscriber.
pub trait MessageFilter: std::fmt::Debug {
    /// Whether the subscription receives `msg`.
    fn admits(&self, msg: &Message) -> bool;

    /// Whether the session must hear at once that a message was left out:
    /// asked only after [`admits`](Self::admits) refused one. When `true`
    /// the connection calls [`Session::on_wake`](crate::Session::on_wake)
    /// next, as if the instant of [`ConnCtx::wake_at`](crate::ConnCtx::wake_at)
    /// had come. For a filter that watches the subscription's sequence and
    /// leaves out what follows a gap until its session has answered it
    /// (BondX's resync); by default, never.
    fn wakes_session(&self) -> bool {
        false
    }
}

/// What a publisher says a message is. Protocols that distinguish the two
/// (BondX's `alert` envelope) frame them differently; the others ignore it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// An ordinary update.
    #[default]
    Event,
    /// An important notification: a risk breach, a system alert.
    Alert,
}

impl MessageKind {
    /// Its name in the publish API: `event` or `alert`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Alert => "alert",
        }
    }
}

/// What a publisher hands the engine: the data, its optional key, its kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Publication {
    /// Optional key (a symbol, an account) for keyed snapshots and conflation.
    pub key: Option<Box<str>>,
    /// The payload exactly as the publisher sent it (a JSON value).
    pub data: Bytes,
    /// Event or alert.
    pub kind: MessageKind,
    /// Delivered but never kept in the topic's history (no replay, no
    /// snapshot): a topic that only ever gets transient messages holds
    /// nothing, so it expires once nobody subscribes, and stays charged to
    /// whoever created it. For generated data, such as the simulated feeds.
    pub transient: bool,
}

impl Publication {
    /// An ordinary event with `data` and an optional `key`.
    pub fn new(key: Option<Box<str>>, data: Bytes) -> Self {
        Self {
            key,
            data,
            kind: MessageKind::Event,
            transient: false,
        }
    }

    /// The same publication, delivered but not kept.
    pub fn transient(self) -> Self {
        Self {
            transient: true,
            ..self
        }
    }

    /// The same publication as `kind`.
    pub fn with_kind(self, kind: MessageKind) -> Self {
        Self { kind, ..self }
    }
}

/// When a message was accepted, on both clocks. Read by the caller (the
/// topic reads it before taking its lock); the message never reads a clock.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    /// Wall-clock time, for the wire timestamp.
    pub wall: SystemTime,
    /// Monotonic time, for delivery latency.
    pub mono: Instant,
}

impl Stamp {
    /// Both clocks, now.
    pub fn now() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

impl Message {
    /// A message as a topic stamps it, accepted at `stamp`.
    pub fn new(
        topic: TopicId,
        topic_name: Arc<str>,
        epoch: Epoch,
        seq: u64,
        key: Option<Box<str>>,
        data: Bytes,
        stamp: Stamp,
    ) -> Self {
        let key_hash = key.as_deref().map_or(0, |key| {
            let mut hasher = key_hasher().build_hasher();
            hasher.write(key.as_bytes());
            // 59 bits (the outbox keeps flags beside it); 0 means "no key".
            (hasher.finish() >> 5).max(1)
        });
        Self {
            topic,
            topic_name,
            epoch,
            seq,
            key,
            data,
            timestamp: stamp.wall,
            accepted_at: stamp.mono,
            kind: MessageKind::Event,
            class: DeliveryClass::default(),
            key_hash,
            reach: Reach::Both,
            frames: FrameCache::default(),
        }
    }

    /// The same message, going where `reach` says.
    pub(crate) fn reaching(mut self, reach: Reach) -> Self {
        self.reach = reach;
        self
    }

    /// Whether subscribers get it live.
    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        self.reach != Reach::Replay
    }

    /// Whether it is kept for replay.
    #[inline]
    pub(crate) fn is_replayed(&self) -> bool {
        self.reach != Reach::Live
    }

    /// A 59-bit digest of the key under a random per-process hash key; 0
    /// without a key. Equal keys have equal digests; different keys collide
    /// with probability 2⁻⁵⁹, so queued events compare keys by digest.
    #[inline]
    pub fn key_hash(&self) -> u64 {
        self.key_hash
    }

    /// Bytes this message holds while retained in a topic's history: its
    /// data twice (the data, and the frame encoded from it for the wire
    /// format that delivers it), its key twice (the message's and the
    /// snapshot index's), and the fixed size of the message and its entries.
    /// Proportional to what the publisher sent, never to the request around it.
    pub fn retained_cost(&self) -> usize {
        /// Arc counts, ring slot, snapshot map entries, frame headers.
        const ENTRY_OVERHEAD: usize = 128;
        let key = self.key.as_ref().map_or(0, |k| k.len());
        std::mem::size_of::<Self>() + ENTRY_OVERHEAD + 2 * self.data.len() + 2 * key
    }

    /// The complete frame of this message in `variant` (or the variant its
    /// format sends instead, see [`Formats::canonical`]), encoded on first use.
    #[inline]
    pub fn frame(&self, variant: Variant, formats: &Formats) -> Bytes {
        self.frame_counted(variant, formats, &mut Encoder::default())
    }

    /// [`Message::frame`], counting in `encoder` (and compressing with its
    /// compressor) when this call is the one that encodes or compresses.
    #[inline]
    pub fn frame_counted(
        &self,
        variant: Variant,
        formats: &Formats,
        encoder: &mut Encoder,
    ) -> Bytes {
        let variant = formats.canonical(variant);
        if variant.deflated {
            return self.deflated_frame(variant, formats, encoder);
        }
        // The first variant asked for takes the inline slot; a concurrent
        // caller wanting another waits for it (`OnceLock` runs one
        // initializer), sees it is not theirs, and goes to the list.
        let (first, frame) = self.frames.first.get_or_init(|| {
            encoder.count_encoding(variant.format);
            (variant, self.encode(variant, formats))
        });
        if *first == variant {
            return frame.clone();
        }
        self.other_frame(variant, || {
            encoder.count_encoding(variant.format);
            self.encode(variant, formats)
        })
    }

    /// A compressed variant: built from the plain frame, which is encoded
    /// first (never inside the cache's lock), and cached like any variant
    /// unless the plain payload is below the threshold (then it is the
    /// plain frame, and costs neither a lock nor a slot). The compression
    /// itself runs under the lock, so that two shards wanting it at once
    /// compress once: the second waits for the first's frame.
    fn deflated_frame(&self, variant: Variant, formats: &Formats, encoder: &mut Encoder) -> Bytes {
        let plain = self.frame_counted(variant.deflated_if(false), formats, encoder);
        let min_size = formats.deflate_min_size();
        let payload = crate::sansio::frame::split_server_frame(&plain).map_or(0, |(_, p)| p.len());
        if payload < min_size {
            return plain;
        }
        self.other_frame(variant, || {
            encoder.compress(variant.format, &plain, min_size)
        })
    }

    /// A variant other than the first: found in, or built by `build` into,
    /// the list.
    #[cold]
    fn other_frame(&self, variant: Variant, build: impl FnOnce() -> Bytes) -> Bytes {
        let mut rest = self.frames.rest.lock();
        if let Some((_, frame)) = rest.iter().find(|(cached, _)| *cached == variant) {
            return frame.clone();
        }
        let frame = build();
        rest.push((variant, frame.clone()));
        frame
    }

    fn encode(&self, variant: Variant, formats: &Formats) -> Bytes {
        formats.get(variant.format).encode_event(self, variant.kind)
    }
}

#[cfg(test)]
mod tests;
