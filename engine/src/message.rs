//! A published message and its per-format frame cache.
//!
//! Shared by all shards; immutable once built except for the frame cache,
//! which each wire format fills at most once (`OnceLock`). Whichever shard
//! first needs a format's frame encodes it; every other subscriber on every
//! shard gets a refcount clone of the same `Bytes`. A format nobody uses is
//! never encoded.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::format::{FormatId, Formats, MAX_FORMATS};
use crate::topic::TopicId;

/// One published message, stamped by its topic. Shared by all shards.
#[derive(Debug)]
pub struct Message {
    /// The topic's id.
    pub topic: TopicId,
    /// The topic's name.
    pub topic_name: Arc<str>,
    /// Position in the topic: 1, 2, 3… with no gaps.
    pub seq: u64,
    /// Optional key (a symbol, an account) for keyed snapshots.
    pub key: Option<Box<str>>,
    /// The payload exactly as the publisher sent it (a JSON value).
    pub data: Bytes,
    /// Wall-clock publish time, for the wire timestamp.
    pub timestamp: SystemTime,
    /// Monotonic publish time, for delivery latency.
    pub accepted_at: Instant,
    frames: [OnceLock<Bytes>; MAX_FORMATS],
}

impl Message {
    /// A message as a topic stamps it.
    pub fn new(
        topic: TopicId,
        topic_name: Arc<str>,
        seq: u64,
        key: Option<Box<str>>,
        data: Bytes,
    ) -> Self {
        Self {
            topic,
            topic_name,
            seq,
            key,
            data,
            timestamp: SystemTime::now(),
            accepted_at: Instant::now(),
            frames: Default::default(),
        }
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

    /// The complete frame of this message in `format`, encoded on first use.
    #[inline]
    pub fn frame(&self, format: FormatId, formats: &Formats) -> &Bytes {
        self.frames[format.index()].get_or_init(|| formats.get(format).encode_event(self))
    }
}
