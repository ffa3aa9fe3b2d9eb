//! A topic whose messages are numbered on an external bus (an external
//! [`Broker`](crate::Broker)): following it there, catching up, and taking
//! its numbered messages in order.
//!
//! Every topic has a [`Follow`] state, under its lock:
//! - `Local`: one process; the topic numbers its own messages.
//! - `Cold`: not followed on the bus; what the topic holds here is not to
//!   be trusted, so a subscriber waits (`ConnCtx::prepare`) while the topic
//!   is followed and caught up.
//! - `Syncing`: followed, the catch-up not in yet; connections waiting for
//!   it are listed ([`Waiter`]) and woken when it comes, or when the broker
//!   gives up on it.
//! - `Live`: caught up; the bus's messages are taken as they come.
//!
//! Taking a numbered message ([`Topic::ingest`]), under the topic's lock:
//! 1. in another epoch, or past the next sequence number: a gap; nothing is
//!    taken, and the broker repairs it from the bus's history or, when it
//!    cannot, accepts the jump ([`Topic::skip_to`]), which clients see as a
//!    jump in the sequence (counted in [`TopicStats::gaps`](crate::TopicStats));
//! 2. at or before the last sequence number: a duplicate, dropped;
//! 3. otherwise it is stamped, recorded in the history and routed exactly
//!    like a message published here.
//!
//! A catch-up ([`Topic::catch_up`]) brings the topic's epoch, last sequence
//! number and the history the bus holds. The first catch-up after the topic
//! is followed, or one of a topic with nobody subscribed, takes it whole; a
//! later one of a topic with subscribers (a gap, or the bus back after an
//! outage) takes what they missed as live messages, across a counted gap
//! where the bus's history no longer reaches.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::{Topic, TopicState};
use crate::broker::Fanout;
use crate::ring::Displaced;
use crate::sansio::ids::{ConnKey, Epoch};
use crate::sansio::message::{Message, MessageKind, Reach, Stamp};

/// A connection waiting for a topic's catch-up: (shard index, connection).
pub(crate) type Waiter = (usize, ConnKey);

/// Where a topic's state comes from (see the module docs).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Follow {
    Local,
    Cold,
    Syncing(Vec<Waiter>),
    Live,
}

impl Follow {
    /// Whether the topic is followed on the bus.
    pub(crate) fn is_followed(&self) -> bool {
        matches!(self, Self::Syncing(_) | Self::Live)
    }
}

/// A message as the bus numbered it.
#[derive(Clone, Debug)]
pub struct Numbered {
    /// The run of the topic's sequence it belongs to.
    pub epoch: Epoch,
    /// Its sequence number in that run.
    pub seq: u64,
    /// Optional key.
    pub key: Option<Box<str>>,
    /// The payload as published.
    pub data: Bytes,
    /// Event or alert.
    pub kind: MessageKind,
    /// When it was published, on the publishing server's clock.
    pub timestamp: SystemTime,
    /// Delivered but not kept in the history.
    pub transient: bool,
}

/// What became of a numbered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// Delivered to this server's subscribers.
    Delivered,
    /// Already had (its sequence number is not past the last).
    Duplicate,
    /// Not the next one: messages from `expected` on (or of another
    /// epoch) are missing. Nothing was delivered.
    Gap {
        /// The next sequence number this server expected.
        expected: u64,
        /// Whether the message belongs to another epoch.
        new_epoch: bool,
    },
    /// The topic is not followed here, or not caught up yet.
    NotFollowed,
}

/// What to do with a topic that nobody here wants any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cooled {
    /// Still wanted, or not followed.
    No,
    /// Now cold: the caller stops following it on the bus.
    Unfollow,
}

impl Topic {
    /// Whether the topic is followed on the bus now (wanted here). A
    /// broker's thread checks it before acting on an unfollow: the topic
    /// may have been wanted again, and followed, since it was asked.
    pub fn is_followed(&self) -> bool {
        self.state.lock().follow.is_followed()
    }

    /// Whether a subscriber may join now. When not, `waiter` is listed to
    /// be woken by the catch-up; `Err(true)` says the caller must ask the
    /// broker to follow the topic (it was cold).
    pub(crate) fn want(&self, waiter: Waiter) -> Result<(), bool> {
        let mut state = self.state.lock();
        match &mut state.follow {
            Follow::Local | Follow::Live => Ok(()),
            Follow::Syncing(waiters) => {
                if !waiters.contains(&waiter) {
                    waiters.push(waiter);
                }
                Err(false)
            }
            Follow::Cold => {
                state.follow = Follow::Syncing(vec![waiter]);
                Err(true)
            }
        }
    }

    /// Takes one numbered message (steps 1-3 of the module docs).
    pub(crate) fn ingest(&self, numbered: Numbered, local: &Fanout<'_>) -> Ingested {
        let mut state = self.state.lock();
        if state.follow != Follow::Live {
            return Ingested::NotFollowed;
        }
        let epoch = self.epoch();
        if numbered.epoch != epoch || numbered.seq > state.seq + 1 {
            return Ingested::Gap {
                expected: state.seq + 1,
                new_epoch: numbered.epoch != epoch,
            };
        }
        if numbered.seq <= state.seq {
            return Ingested::Duplicate;
        }
        let displaced = self.take(&mut state, numbered, local);
        // The lock goes first, then the message the feed displaced.
        drop(state);
        drop(displaced);
        Ingested::Delivered
    }

    /// Accepts a gap that cannot be repaired: the next message taken is
    /// `(epoch, seq)`. Returns how many messages were skipped (`None` when
    /// there is no gap before it, or the topic is not live).
    pub(crate) fn skip_to(&self, epoch: Epoch, seq: u64) -> Option<u64> {
        let mut state = self.state.lock();
        if state.follow != Follow::Live {
            return None;
        }
        let skipped = self.jump(&mut state, epoch, seq.saturating_sub(1))?;
        Some(skipped)
    }

    /// Catches up with the bus: the topic's `epoch`, its `last` sequence
    /// number and `history` (any order). Returns the connections to wake,
    /// and how many missed messages the history no longer held (delivered
    /// as a jump: 0 when the catch-up repaired everything).
    pub(crate) fn catch_up(
        &self,
        epoch: Epoch,
        last: u64,
        history: Vec<Numbered>,
        local: &Fanout<'_>,
    ) -> (Vec<Waiter>, u64) {
        let mut state = self.state.lock();
        let (waiters, first) = match std::mem::replace(&mut state.follow, Follow::Live) {
            Follow::Syncing(waiters) => (waiters, true),
            Follow::Live => (Vec::new(), false),
            other => {
                // Unfollowed (or local) meanwhile: this catch-up is stale.
                state.follow = other;
                return (Vec::new(), 0);
            }
        };
        if first || state.subscribers == 0 {
            // The first catch-up, or nobody to deliver to: take the bus's
            // state whole. (A subscriber that joined before the first one,
            // without waiting, had nothing to replay; its live messages
            // start after `last`.)
            state.clear_history(&self.budget);
            self.epoch.store(epoch.as_u64(), Ordering::Relaxed);
            let mut history = history;
            history.retain(|n| n.epoch == epoch && n.seq <= last);
            history.sort_unstable_by_key(|n| n.seq);
            history.dedup_by_key(|n| n.seq);
            // The window must be one contiguous run ending at `last`: it
            // takes the newest of that run, as many as it keeps, written
            // into the feed for replay only (the subscribers here, if any,
            // start after `last`). Older entries count for the snapshot.
            let run_start = contiguous_tail(&history, last);
            let window = state.history.limits().capacity;
            let windowed = run_start.max(history.len().saturating_sub(window));
            let mut displaced = Vec::new();
            for (i, numbered) in history.into_iter().enumerate() {
                state.seq = numbered.seq - 1;
                if i < windowed {
                    let msg = self.stamp(numbered, Reach::Both);
                    state.history.record_keyed(&msg, &self.budget);
                } else {
                    let msg = self.stamp(numbered, Reach::Replay);
                    state.seq = msg.seq;
                    displaced.extend(self.append(&mut state, &msg, local.inboxes));
                }
            }
            state.seq = last;
            drop(state);
            drop(displaced);
            return (waiters, 0);
        }
        // Subscribers here: what they missed comes as live messages.
        let mut skipped = 0;
        let newer = history
            .into_iter()
            .filter(|n| n.epoch != self.epoch() || n.seq > state.seq);
        let mut newer: Vec<Numbered> = newer.collect();
        newer.sort_unstable_by_key(|n| n.seq);
        let run_start = contiguous_tail(&newer, last);
        // What the feed displaces (messages, or a ring it outgrew) is
        // dropped once the lock is let go.
        let mut displaced = Vec::new();
        for numbered in newer.into_iter().skip(run_start) {
            if numbered.epoch != self.epoch() || numbered.seq != state.seq + 1 {
                skipped += self
                    .jump(&mut state, numbered.epoch, numbered.seq - 1)
                    .unwrap_or(0);
            }
            displaced.extend(self.take(&mut state, numbered, local));
        }
        if state.seq < last || self.epoch() != epoch {
            // The bus holds no history to show: the next message is `last + 1`.
            skipped += self.jump(&mut state, epoch, last).unwrap_or(0);
        }
        drop(state);
        drop(displaced);
        (waiters, skipped)
    }

    /// Gives up waiting for the catch-up (the bus is unreachable): the
    /// topic is taken as it is here. Returns the connections to wake.
    pub(crate) fn settle(&self) -> Vec<Waiter> {
        let mut state = self.state.lock();
        match std::mem::replace(&mut state.follow, Follow::Live) {
            Follow::Syncing(waiters) => waiters,
            other => {
                state.follow = other;
                Vec::new()
            }
        }
    }

    /// Makes the topic cold if it is followed and nobody here has wanted
    /// it for `after`: its history here is dropped (the bus keeps its own).
    pub(crate) fn cool_if_unwanted(&self, now: Instant, after: Duration) -> Cooled {
        let mut state = self.state.lock();
        let unwanted = match &state.follow {
            Follow::Live => true,
            Follow::Syncing(waiters) => waiters.is_empty(),
            Follow::Local | Follow::Cold => false,
        };
        if !unwanted
            || state.subscribers != 0
            || now.saturating_duration_since(state.last_active) < after
        {
            return Cooled::No;
        }
        state.follow = Follow::Cold;
        state.clear_history(&self.budget);
        // Nobody subscribes, and the window is empty.
        state.feed = None;
        Cooled::Unfollow
    }

    /// Moves the topic to `(epoch, last)`, counting the gap; returns how
    /// many messages it skipped (`None`: no gap).
    fn jump(&self, state: &mut TopicState, epoch: Epoch, last: u64) -> Option<u64> {
        let same_epoch = epoch == self.epoch();
        if same_epoch && last <= state.seq {
            return None;
        }
        let skipped = if same_epoch { last - state.seq } else { last };
        self.epoch.store(epoch.as_u64(), Ordering::Relaxed);
        state.seq = last;
        if same_epoch {
            // The window is one contiguous run: it cannot span the gap.
            state.clear_window(&self.budget);
        } else {
            // Nor may the keyed snapshot mix runs: their seqs collide.
            state.clear_history(&self.budget);
        }
        state.gaps += 1;
        state.gap_skipped += skipped;
        Some(skipped)
    }

    /// Stamps, records and routes the next message (`numbered.seq` is
    /// `state.seq + 1`, in the topic's epoch); returns what it displaced
    /// from the feed, to be dropped after the lock.
    fn take(
        &self,
        state: &mut TopicState,
        numbered: Numbered,
        local: &Fanout<'_>,
    ) -> Option<Displaced<Arc<Message>>> {
        debug_assert_eq!(numbered.seq, state.seq + 1);
        let reach = if numbered.transient {
            Reach::Live
        } else {
            Reach::Both
        };
        let msg = self.stamp(numbered, reach);
        state.seq = msg.seq;
        state.last_active = msg.accepted_at;
        self.append(state, &msg, local.inboxes)
    }

    fn stamp(&self, numbered: Numbered, reach: Reach) -> Arc<Message> {
        let stamp = Stamp {
            wall: numbered.timestamp,
            mono: Instant::now(),
        };
        let mut msg = Message::new(
            self.id,
            Arc::clone(&self.name),
            numbered.epoch,
            numbered.seq,
            numbered.key,
            numbered.data,
            stamp,
        );
        msg.kind = numbered.kind;
        msg.class = self.class;
        Arc::new(msg.reaching(reach))
    }
}

/// The index in `sorted` (ascending by seq) where its contiguous run ending
/// at `last` begins (`sorted.len()` when it does not end at `last`).
fn contiguous_tail(sorted: &[Numbered], last: u64) -> usize {
    let mut start = sorted.len();
    let mut expect = last;
    while start > 0 && sorted[start - 1].seq == expect {
        start -= 1;
        expect = expect.saturating_sub(1);
    }
    start
}

#[cfg(all(test, not(shardcast_loom)))]
mod tests;
