//! Gaps the client can see: when an event of a topic is not delivered to a
//! connection (refused by a full outbox or the rate limit, dropped from the
//! queue to make room, or replaced by a newer value of its key), the next
//! event of that topic the connection receives says how many it missed,
//! `skipped`, inside the frame.
//!
//! Encode-once holds: only the frame after a gap is rewritten, for that
//! connection alone, from the shared frame — on the overflow path, never
//! for a connection that keeps up. Where the field goes is the format's
//! [`GapField`]: right after the payload's opening brace by default
//! (`{"skipped":3,"type":"event",…}`); BondX puts it inside `meta`.
//!
//! A frame compressed with permessage-deflate cannot be rewritten: it is
//! inflated (each is compressed on its own, see `deflate.rs`), marked, and
//! the marked frame goes plain (RSV1 clear), which RFC 7692 allows for any
//! message. Only frames after a gap pay for it.
//!
//! A marked frame is longer by its field (at most 21 bytes); a frame
//! already queued that is marked can take the outbox that far past its byte
//! limit, once per marked frame.
//!
//! Owned by the connection's shard, like the outbox.

use bytes::{BufMut, Bytes};

use super::{EventMeta, OutFrame, Outbox};
use crate::sansio::deflate;
use crate::sansio::frame::{split_server_frame, FrameBuf, OpCode};
use crate::sansio::ids::TopicId;

/// Where a format writes `"skipped":N,` in an event's payload: the byte
/// offset just after an opening `{`, or `None` when this payload has no
/// place for it (the client then sees only the seq jump).
pub type GapField = fn(payload: &[u8]) -> Option<usize>;

/// The default [`GapField`]: first in the payload's top-level object.
pub fn first_in_object(payload: &[u8]) -> Option<usize> {
    (payload.first() == Some(&b'{')).then_some(1)
}

/// `"skipped":` and the digits of a `u32` and a comma, at most.
const FIELD_MAX: usize = 10 + 10 + 1;

/// The field's text for `skipped` events.
fn field(skipped: u32) -> ([u8; FIELD_MAX], usize) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    let mut n = skipped;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    let mut out = [0u8; FIELD_MAX];
    let len = 10 + digits.len() + 1;
    out[..10].copy_from_slice(b"\"skipped\":");
    out[10..10 + digits.len()].copy_from_slice(digits);
    out[len - 1] = b',';
    (out, len)
}

/// `frame` (one complete, unmasked, final text frame as the engine encodes
/// them) saying `skipped` in the place `at` finds, where it said `was`
/// (0: no field yet). `None`, changing nothing, when `frame` is not such a
/// frame or has no place for the field.
pub(crate) fn mark(frame: &[u8], at: GapField, was: u32, skipped: u32) -> Option<Bytes> {
    let (first, payload) = split_server_frame(frame)?;
    if first != 0x80 | 0x1 {
        return None;
    }
    let offset = at(payload)?;
    let old = if was == 0 { 0 } else { field(was).1 };
    let (head, tail) = payload.split_at_checked(offset)?;
    if was != 0 && !tail.starts_with(&field(was).0[..old]) {
        return None;
    }
    let (text, text_len) = field(skipped);
    let mut out = FrameBuf::with_capacity(payload.len() - old + text_len);
    let body = out.payload();
    body.put_slice(head);
    body.put_slice(&text[..text_len]);
    body.put_slice(&tail[old..]);
    Some(out.finish(OpCode::Text))
}

impl Outbox {
    /// Marks gaps in this connection's frames with `at` (its format's
    /// [`GapField`]); `None`: not at all.
    pub fn mark_gaps_with(&mut self, at: Option<GapField>) {
        self.gap_field = at;
    }

    /// Notes `missed` events of `topic` not delivered (refused before they
    /// reached the queue): the next one queued says so.
    pub fn note_gap(&mut self, topic: TopicId, missed: u32) {
        let gaps = &mut self.misses().gaps;
        match gaps.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, n)) => *n = n.saturating_add(missed),
            None => gaps.push((topic, missed)),
        }
    }

    /// Forgets what `topic`'s next event would have said (the connection
    /// left it: a new subscription starts with no gap).
    pub fn forget_gaps(&mut self, topic: TopicId) {
        if let Some(misses) = &mut self.misses {
            misses.gaps.retain(|(t, _)| *t != topic);
        }
    }

    /// Events of `topic` missed and not yet told, taken.
    #[cold]
    pub(super) fn take_gap(&mut self, topic: TopicId) -> u32 {
        let Some(misses) = &mut self.misses else {
            return 0;
        };
        match misses.gaps.iter().position(|(t, _)| *t == topic) {
            Some(i) => misses.gaps.swap_remove(i).1,
            None => 0,
        }
    }

    /// `bytes` and `meta` saying `more` events were missed before it, on top
    /// of what it already says.
    #[cold]
    pub(super) fn marked(&self, bytes: Bytes, meta: EventMeta, more: u32) -> (Bytes, EventMeta) {
        let skipped = meta.skipped.saturating_add(more);
        let bytes = match self.gap_field {
            Some(at) => {
                // A compressed frame is marked on its plain payload, sent plain.
                let plain = deflate::plain_frame(&bytes);
                mark(plain.as_ref().unwrap_or(&bytes), at, meta.skipped, skipped).unwrap_or(bytes)
            }
            None => bytes,
        };
        let mut meta = meta;
        meta.skipped = skipped;
        (bytes, meta)
    }

    /// `removed` was taken out of the queue at `from` and will never be
    /// written: the next queued event of its topic says so, or, with none
    /// queued, the next one to come.
    #[cold]
    pub(super) fn carry_gap(&mut self, from: usize, removed: EventMeta) {
        let missed = removed.skipped.saturating_add(1);
        let next = self.queue.iter().skip(from).position(|f| {
            f.event
                .is_some_and(|e| e.topic == removed.topic && !e.is_replay())
        });
        let Some(index) = next.map(|i| i + from) else {
            self.note_gap(removed.topic, missed);
            return;
        };
        // Never the front frame while it is being written: only frames
        // behind the removed one are looked at, and the removed one was not
        // being written.
        let OutFrame { bytes, event } = self.queue[index].clone();
        let meta = event.expect("found as an event");
        let (bytes, meta) = self.marked(bytes, meta, missed);
        self.queued_bytes = self.queued_bytes - self.queue[index].bytes.len() + bytes.len();
        self.queue[index] = OutFrame {
            bytes,
            event: Some(meta),
        };
    }
}
