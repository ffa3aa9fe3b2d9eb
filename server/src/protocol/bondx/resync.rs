//! A gap in a topic's sequence, answered with a fresh snapshot. Owned by
//! the connection's shard.
//!
//! A BondX client applies deltas to the state a snapshot gave it; a delta
//! after a hole (the bus lost messages and its history no longer holds
//! them, Redis came back empty under a new epoch, or this shard fell a lap
//! behind the topic's feed) would leave that state silently wrong. So every live
//! subscription carries a [`GapWatch`] as its filter, and:
//! 1. the watch admits a message only when it is the next of the position
//!    the client has (same epoch, `seq + 1`);
//! 2. at the first that is not, it notes the position the client had,
//!    leaves the message out and asks for the session
//!    ([`MessageFilter::wakes_session`]), and leaves out every later one:
//!    the snapshot to come holds them;
//! 3. the session, woken, takes the subscription again with the topic's
//!    state (in the topic's lock, as any subscribe: live delivery resumes
//!    exactly after the snapshot's `seq`), sends it as a `snapshot` whose
//!    `meta.resync` is `"gap"` ([`resync_meta`]), and watches from there.
//!
//! Nothing is sent twice and nothing lost between the snapshot and the
//! deltas after it; the client sees that it happened, and where it was.
//! The messages left out between the gap and the snapshot are counted as
//! `filtered` (the snapshot carries them), so the delivery accounting
//! stays exact.

use std::cell::Cell;
use std::rc::Rc;

use shardcast_engine::{ConnCtx, Message, MessageFilter, Position};

/// Watches one subscription's sequence for gaps (module docs). Owned by
/// the connection's shard.
#[derive(Debug)]
pub struct GapWatch {
    /// The position the client has: the last message admitted, or where
    /// the subscription started.
    last: Cell<Position>,
    /// Set at the first gap: the position the client had then.
    gap: Cell<Option<Position>>,
}

impl GapWatch {
    /// A watch of a subscription whose client has everything up to `start`.
    pub fn new(start: Position) -> Self {
        Self {
            last: Cell::new(start),
            gap: Cell::new(None),
        }
    }

    /// The position the client had before a gap, once one was seen.
    pub fn gap(&self) -> Option<Position> {
        self.gap.get()
    }
}

impl MessageFilter for GapWatch {
    fn admits(&self, msg: &Message) -> bool {
        if self.gap.get().is_some() {
            return false;
        }
        let last = self.last.get();
        if msg.epoch == last.epoch && msg.seq <= last.seq {
            // Already had (never happens on one shard's ordered stream).
            return false;
        }
        if msg.epoch == last.epoch && msg.seq == last.seq + 1 {
            self.last.set(Position {
                epoch: msg.epoch,
                seq: msg.seq,
            });
            return true;
        }
        self.gap.set(Some(last));
        false
    }

    fn wakes_session(&self) -> bool {
        self.gap.get().is_some()
    }
}

/// The watches of one connection's live subscriptions, by topic. Owned by
/// the connection's shard.
#[derive(Debug, Default)]
pub struct Watches {
    list: Vec<(String, Rc<GapWatch>)>,
}

impl Watches {
    /// Watches `topic` (subscribed, its client up to `start`) from its next
    /// message on, replacing any earlier watch of it.
    pub fn watch(&mut self, ctx: &mut ConnCtx<'_>, topic: &str, start: Position) {
        let watch = Rc::new(GapWatch::new(start));
        if ctx.filter(topic, Some(Rc::clone(&watch) as Rc<dyn MessageFilter>)) {
            self.forget(topic);
            self.list.push((topic.to_owned(), watch));
        }
    }

    /// Stops watching `topic` (the connection left it).
    pub fn forget(&mut self, topic: &str) {
        self.list.retain(|(name, _)| name != topic);
    }

    /// Stops watching every topic (the connection left them all).
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// The topics that saw a gap, each with the position its client had,
    /// taken: the caller resyncs them (and watches them afresh).
    pub fn take_gaps(&mut self) -> Vec<(String, Position)> {
        let mut gaps = Vec::new();
        self.list.retain(|(name, watch)| match watch.gap() {
            Some(before) => {
                gaps.push((name.clone(), before));
                false
            }
            None => true,
        });
        gaps
    }
}

/// What a resync snapshot's `meta` adds to its epoch: why it came, and the
/// position the client had before the gap (`previous_seq` of
/// `previous_epoch`).
pub fn resync_meta(before: Position) -> serde_json::Value {
    serde_json::json!({
        "resync": "gap",
        "previous_seq": before.seq,
        "previous_epoch": before.epoch.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use shardcast_engine::{Epoch, Stamp, TopicId};

    fn message(epoch: u64, seq: u64) -> Message {
        Message::new(
            TopicId::new(0, 0),
            "prices.X".into(),
            Epoch::from_u64(epoch),
            seq,
            None,
            Bytes::from_static(b"{}"),
            Stamp::now(),
        )
    }

    fn at(epoch: u64, seq: u64) -> Position {
        Position {
            epoch: Epoch::from_u64(epoch),
            seq,
        }
    }

    #[test]
    fn the_next_seq_passes_and_the_first_jump_holds_everything_after_it() {
        let watch = GapWatch::new(at(7, 3));
        assert!(watch.admits(&message(7, 4)));
        assert!(watch.admits(&message(7, 5)));
        assert!(!watch.admits(&message(7, 5)), "a duplicate");
        assert_eq!((watch.gap(), watch.wakes_session()), (None, false));
        assert!(!watch.admits(&message(7, 9)));
        assert_eq!((watch.gap(), watch.wakes_session()), (Some(at(7, 5)), true));
        // Everything after the gap waits for the snapshot.
        assert!(!watch.admits(&message(7, 10)));
        assert_eq!(watch.gap(), Some(at(7, 5)));
    }

    #[test]
    fn a_new_epoch_is_a_gap_even_at_the_next_seq() {
        let watch = GapWatch::new(at(7, 3));
        assert!(!watch.admits(&message(8, 4)));
        assert_eq!(watch.gap(), Some(at(7, 3)));
        let meta = resync_meta(at(7, 3));
        assert_eq!(meta["resync"], "gap");
        assert_eq!(meta["previous_seq"], 3);
        assert_eq!(meta["previous_epoch"], Epoch::from_u64(7).to_string());
    }
}
