//! What a session sees of its connection during a callback: [`ConnCtx`],
//! and the outcome of its subscribing.
//!
//! Owned by one shard thread, alive for one callback. Every subscribe goes
//! through [`ConnCtx::subscribe`], which checks the connection's own limit
//! before the topic is looked up, so a refused subscription creates nothing.

use std::cell::Cell;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, info};

use super::conn::{Conn, Held};
use super::ShardState;
use crate::broker::{PublishError, Published};
use crate::engine::Engine;
use crate::sansio::close::CloseReason;
use crate::sansio::message::{MessageFilter, Publication};
use crate::sansio::outbox::{Admission, EventMeta};
use crate::sansio::pattern::TopicError;
use crate::sansio::quota::TopicQuota;
use crate::sansio::replay::{Position, Replay, ReplayError, Replayed};
use crate::topic::Topic;

/// Why a subscription was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SubscribeError {
    /// The topic name is invalid, undeclared, or over the topic limit.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The connection holds its maximum number of subscriptions.
    #[error("subscription limit of {limit} channels per connection reached")]
    TooMany {
        /// The configured limit.
        limit: usize,
    },
}

/// A successful subscription.
#[derive(Debug)]
pub struct Subscribed {
    /// The topic.
    pub topic: Arc<Topic>,
    /// `false` when the connection was already subscribed (nothing changed,
    /// nothing is replayed).
    pub new: bool,
    /// Live delivery begins after this position: a protocol may show its
    /// epoch and seq to the client, which can resume from it later. (For a
    /// subscription already held, the topic's position now.)
    pub position: Position,
    /// What to replay (see [`ConnCtx::send_replay`]), or why the replay
    /// asked for is not possible; the subscription holds either way, and the
    /// protocol decides what to tell its client.
    pub replay: Result<Replayed, ReplayError>,
}

/// A session's view of its connection during a callback.
pub struct ConnCtx<'a> {
    pub(super) shard: &'a Rc<ShardState>,
    pub(super) conn: &'a Rc<Conn>,
}

impl std::fmt::Debug for ConnCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnCtx")
            .field("client_id", &self.conn.client_id)
            .field("shard", &self.shard.index())
            .finish()
    }
}

impl ConnCtx<'_> {
    /// The client's id.
    pub fn client_id(&self) -> &Arc<str> {
        &self.conn.client_id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.conn.peer()
    }

    /// The shard that owns this connection.
    pub fn shard(&self) -> usize {
        self.shard.index()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.shard.engine()
    }

    /// Queues a control frame (reply, ack, error); it goes out in order
    /// after the events already queued. When replies pile up (half the
    /// outbox's headroom for them) they are written first, so a command that
    /// makes many replies never trips the slow-consumer rule of a client
    /// that reads.
    pub fn send(&mut self, frame: Bytes) {
        let piling = self.conn.state.borrow().mailbox.outbox.control_half_full();
        if piling {
            self.shard.flush(self.conn);
        }
        self.conn.send_control(frame);
    }

    /// Queues an error reply, as [`ConnCtx::send`] does, and counts the
    /// client message being handled as answered with an error (once, however
    /// many error replies it gets; an error sent outside the handling of a
    /// client message, as on open, counts nothing).
    pub fn send_error(&mut self, frame: Bytes) {
        self.shard.answered_error.set(true);
        self.send(frame);
    }

    /// Subscribes to `topic`, answering `replay` in the same step under the
    /// topic's lock: the replay ends exactly where live delivery begins (see
    /// [`ConnCtx::send_replay`]). Subscribing again to a topic already held
    /// changes nothing and replays nothing.
    ///
    /// The connection's own limit is checked before the topic is looked up,
    /// so a refused subscription never creates a topic; a topic that has to
    /// be created is charged to `quota` (none: free).
    pub fn subscribe(
        &mut self,
        topic: &str,
        replay: Replay,
        quota: Option<&Arc<TopicQuota>>,
    ) -> Result<Subscribed, SubscribeError> {
        let held = {
            let state = self.conn.state.borrow();
            if let Some(held) = state.topics.iter().find(|h| &**h.topic.name() == topic) {
                return Ok(Subscribed {
                    topic: Arc::clone(&held.topic),
                    new: false,
                    position: held.topic.position(),
                    replay: Ok(Replayed::default()),
                });
            }
            state.topics.len()
        };
        let limit = self.shard.shared().config().max_subscriptions;
        if held >= limit {
            return Err(SubscribeError::TooMany { limit });
        }
        let (topic, start, slot) = self.shard.subscribe(self.conn, topic, replay, quota)?;
        self.conn.state.borrow_mut().topics.push(Held {
            topic: Arc::clone(&topic),
            slot: Cell::new(slot),
        });
        info!(client = %self.conn.client_id, topic = %topic.name(), "subscribed");
        Ok(Subscribed {
            topic,
            new: true,
            position: start.position,
            replay: start.replay,
        })
    }

    /// Queues a replay in this connection's format, each message framed as
    /// the replay's kind (replayed or snapshot). Replayed messages bypass
    /// the rate limit and are counted as replayed, not as sent. Returns how
    /// many were queued: fewer than given only when the outbox filled, which
    /// the protocol should tell its client (the rest is not sent).
    pub fn send_replay(&mut self, replayed: &Replayed) -> usize {
        let formats = self.shard.shared().formats();
        let variant = self.conn.delivery.variant(replayed.kind);
        let mut state = self.conn.state.borrow_mut();
        let mut frames = self.shard.live_frames.borrow_mut();
        for (queued, msg) in replayed.messages.iter().enumerate() {
            let meta = EventMeta::replayed(msg.topic, msg.accepted_at, msg.key_hash());
            let frame = msg.frame_counted(variant, formats, frames.encoder_mut());
            if state.mailbox.outbox.push_event(frame, meta) != Admission::Queued {
                debug!(client = %self.conn.client_id, queued, of = replayed.messages.len(), "replay cut short by a full outbox");
                return queued;
            }
        }
        replayed.messages.len()
    }

    /// Queues a frame this connection alone gets about `topic` — a
    /// protocol's snapshot of the topic's state, built from a replay — under
    /// the event limits (not the small headroom of control frames), counted
    /// as replayed and never conflated away. `false` when the outbox has no
    /// room for it (nothing is queued; the protocol should say so) or the
    /// connection is closing (nothing may follow its close frame).
    pub fn send_state(&mut self, topic: &Topic, frame: Bytes) -> bool {
        let meta = EventMeta::replayed(topic.id(), Instant::now(), 0);
        let mut state = self.conn.state.borrow_mut();
        state.closing.is_none() && state.mailbox.outbox.push_event(frame, meta) == Admission::Queued
    }

    /// Sets which of `topic`'s messages this connection receives (`None`:
    /// all of them) from the next message on; `false` if the connection is
    /// not subscribed to it. Messages the filter leaves out are counted as
    /// `filtered`, not as drops.
    pub fn filter(&mut self, topic: &str, filter: Option<Rc<dyn MessageFilter>>) -> bool {
        let state = self.conn.state.borrow();
        let Some(held) = state.topics.iter().find(|h| &**h.topic.name() == topic) else {
            return false;
        };
        self.shard.set_filter(self.conn, held, filter);
        true
    }

    /// Limits this connection's subscription to `topic` to `per_second`
    /// rounds of updates a second (`None`: no limit of its own): each
    /// round carries the latest message of every key that changed since the
    /// last, in sequence order, each telling the messages it follows
    /// undelivered (`skipped`); replaced messages are counted as conflated.
    /// The channel's own `max_rate` is a ceiling no client can raise.
    /// Returns the rate in force (`Some(None)`: unlimited), or `None` if
    /// the connection is not subscribed to `topic`.
    pub fn limit_rate(
        &mut self,
        topic: &str,
        per_second: Option<NonZeroU32>,
    ) -> Option<Option<NonZeroU32>> {
        let (topic, slot) = {
            let state = self.conn.state.borrow();
            let held = state.topics.iter().find(|h| &**h.topic.name() == topic)?;
            (Arc::clone(&held.topic), held.slot.get())
        };
        Some(self.shard.set_rate(self.conn, &topic, slot, per_second))
    }

    /// The rate this connection's subscription to `topic` is limited to
    /// (see [`ConnCtx::limit_rate`]); `None` when it is not limited or not held.
    pub fn rate_of(&self, topic: &str) -> Option<NonZeroU32> {
        let state = self.conn.state.borrow();
        let held = state.topics.iter().find(|h| &**h.topic.name() == topic)?;
        self.shard
            .rate_of(self.conn, held.topic.id(), held.slot.get())
    }

    /// Leaves `topic`; `false` if the connection was not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let mut state = self.conn.state.borrow_mut();
        let Some(pos) = state.topics.iter().position(|h| &**h.topic.name() == topic) else {
            return false;
        };
        let held = state.topics.swap_remove(pos);
        drop(state);
        self.shard.unsubscribe(self.conn, &held);
        info!(client = %self.conn.client_id, topic = %held.topic.name(), "unsubscribed");
        true
    }

    /// Topics this connection is subscribed to.
    pub fn subscriptions(&self) -> Vec<Arc<str>> {
        let state = self.conn.state.borrow();
        state
            .topics
            .iter()
            .map(|h| Arc::clone(h.topic.name()))
            .collect()
    }

    /// Publishes through the engine's broker; a topic that has to be
    /// created is charged to `quota` (none: free).
    pub fn publish(
        &mut self,
        topic: &str,
        publication: Publication,
        quota: Option<&Arc<TopicQuota>>,
    ) -> Result<Published, PublishError> {
        self.shard.publish(topic, publication, quota)
    }

    /// Whether every topic in `topics` is ready to be subscribed to with
    /// its replay. Always, in one process. With an external broker a topic
    /// is ready once this server follows it on the bus and has caught up;
    /// until then this answers `false`, and the session must return at
    /// once, having done nothing: the engine holds the client message it is
    /// handling and hands it over again, unchanged, when the topics are
    /// ready (or after a few seconds without an answer from the bus; then
    /// with the topics as they are). A topic that has to be created is
    /// charged to `quota`, as [`ConnCtx::subscribe`] would charge it.
    pub fn prepare<'n>(
        &mut self,
        topics: impl IntoIterator<Item = &'n str>,
        quota: Option<&Arc<TopicQuota>>,
    ) -> bool {
        self.shard.prepare(self.conn, topics, quota)
    }

    /// Whether the client message being handled was held for its topics
    /// ([`ConnCtx::prepare`]) and is handed over again: a protocol that
    /// limits its clients' commands admitted it the first time.
    pub fn redelivered(&self) -> bool {
        self.shard.parking.redelivering()
    }

    /// Tells the client, in the frame `refusal` makes, if the bus refuses
    /// `published` (a publish is answered only when it fails). The answer
    /// comes after this callback: as a reply of no particular client
    /// message, and not at all if the connection has closed meanwhile.
    pub fn refuse_later(
        &mut self,
        published: Published,
        refusal: impl FnOnce(&PublishError) -> Bytes + 'static,
    ) {
        let Published::Pending(pending) = published else {
            return;
        };
        let conn = std::rc::Rc::downgrade(self.conn);
        let shard = std::rc::Rc::clone(self.shard);
        tokio::task::spawn_local(async move {
            let Err(e) = pending.await_seq().await else {
                return;
            };
            if let Some(conn) = conn.upgrade() {
                conn.send_control(refusal(&e));
                shard.flush(&conn);
            }
        });
    }

    /// Closes the connection for `reason` once this callback returns.
    pub fn close(&mut self, reason: CloseReason) {
        self.conn.request_close(reason);
    }

    /// Calls the session's [`Session::on_wake`](crate::Session::on_wake) at
    /// `at` (checked every shard tick, 250 ms), or never with `None`. A
    /// later call replaces the instant; each wake-up happens once.
    pub fn wake_at(&mut self, at: Option<Instant>) {
        let mut state = self.conn.state.borrow_mut();
        state.wake_at = at;
        state.woken = false;
    }

    /// Closes the connection for `reason` at `at` (checked every shard tick,
    /// 250 ms), or never with `None`. A later call replaces the deadline.
    pub fn close_at(&mut self, deadline: Option<(Instant, CloseReason)>) {
        self.conn.state.borrow_mut().deadline = deadline.map(Box::new);
    }
}
