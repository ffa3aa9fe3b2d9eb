//! The publish seam: every publish goes through a [`Broker`].
//!
//! In one process the broker is [`InProcess`]: it stamps the message into
//! its topic and hands it straight to the local fan-out, and the publisher
//! has its sequence number at once ([`Published::Seq`]).
//!
//! A broker that joins several servers into one (Redis, NATS) is
//! *external*: it numbers messages itself, on the bus, so every server shows
//! the same sequence number for the same message. Its contract:
//! 1. [`Broker::publish`] never blocks: it queues the message for the
//!    broker's own thread and answers [`Published::Pending`]; the publisher
//!    learns the sequence number (or why the bus refused it) when the bus
//!    has accepted it. A full queue is refused at once
//!    ([`PublishError::Overloaded`]).
//! 2. Messages come back from the bus, already numbered, through
//!    [`crate::Engine::ingest`], which delivers them in sequence order and
//!    reports a gap rather than delivering across it silently.
//! 3. A server follows a topic on the bus only while it has local
//!    subscribers: the engine calls [`Broker::follow`] when a topic is
//!    first wanted here, and [`Broker::unfollow`] once nobody has wanted it
//!    for a while. Following begins with a catch-up
//!    ([`crate::Engine::catch_up`]): the topic's epoch, last sequence number
//!    and stored history, so a client that resumes here after another
//!    server finds every message it missed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::registry::TopicRegistry;
use crate::sansio::message::{Message, Publication};
use crate::sansio::pattern::TopicError;
use crate::shard::ShardInbox;
use crate::topic::{Rejected, Stamped, Topic};

/// Why a publish failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PublishError {
    /// The topic is invalid, undeclared, or over the topic limit.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The key is empty or longer than 128 bytes.
    #[error("invalid key: use 1-128 bytes")]
    InvalidKey,
    /// The topic expired while being published to and could not be had
    /// again (its name is no longer declared, or the channel limit is reached).
    #[error("the channel expired while being published to")]
    Retired,
    /// The server is shutting down: publishing stopped before its
    /// subscribers were closed, so nothing is accepted that would not be
    /// delivered or counted.
    #[error("the server is shutting down; publish to another server or retry once it is back")]
    ShuttingDown,
    /// The broker's queue is full: the bus is not keeping up. Nothing was
    /// published; retry after `retry_after`.
    #[error("the broker's queue is full ({queued} messages waiting for the bus); retry shortly")]
    Overloaded {
        /// Messages waiting when this one was refused.
        queued: usize,
        /// When a retry may find room.
        retry_after: Duration,
    },
    /// The message is larger than the bus carries (`max` bytes, its
    /// envelope included). Nothing was published; a retry cannot succeed.
    #[error("the message is larger than the bus carries ({max} bytes with its envelope)")]
    TooLarge {
        /// The most the bus takes.
        max: usize,
    },
    /// The broker could not take the message; the text says why. Nothing
    /// was published.
    #[error("broker unavailable: {0}")]
    Unavailable(Arc<str>),
}

/// A publish's answer: its sequence number, now or once the bus has it.
#[derive(Debug)]
pub enum Published {
    /// Published with this sequence number.
    Seq(u64),
    /// Queued for the bus; the answer comes when the bus has numbered it
    /// (or refused it).
    Pending(PendingSeq),
}

impl Published {
    /// The sequence number, waiting for the bus if need be.
    pub async fn seq(self) -> Result<u64, PublishError> {
        match self {
            Self::Seq(seq) => Ok(seq),
            Self::Pending(pending) => pending.await_seq().await,
        }
    }
}

/// The bus's answer to one queued publish.
#[derive(Debug)]
pub struct PendingSeq(oneshot::Receiver<Result<u64, PublishError>>);

impl PendingSeq {
    /// A pending answer and the handle its broker answers it with.
    pub fn new() -> (SeqReply, Self) {
        let (tx, rx) = oneshot::channel();
        (SeqReply(tx), Self(rx))
    }

    /// Waits for the bus's answer.
    pub async fn await_seq(self) -> Result<u64, PublishError> {
        self.0.await.unwrap_or_else(|_| {
            Err(PublishError::Unavailable(
                "the broker stopped before answering".into(),
            ))
        })
    }
}

/// How a broker answers a queued publish. Dropping it unanswered tells the
/// publisher the broker stopped.
#[derive(Debug)]
pub struct SeqReply(oneshot::Sender<Result<u64, PublishError>>);

impl SeqReply {
    /// Answers the publisher (who may have gone: then nobody hears).
    pub fn send(self, result: Result<u64, PublishError>) {
        let _ = self.0.send(result);
    }
}

/// Where publishes go. Shared by every publishing thread.
pub trait Broker: Send + Sync + 'static {
    /// Publishes `publication` to `topic`. Must not block.
    fn publish(
        &self,
        topic: &Arc<Topic>,
        publication: Publication,
        local: &Fanout<'_>,
    ) -> Result<Published, PublishError>;

    /// Whether messages are numbered on an external bus (and topics must be
    /// followed there before their state is known here).
    fn is_external(&self) -> bool {
        false
    }

    /// The first local subscriber wants `topic`: subscribe to it on the bus
    /// and catch up ([`crate::Engine::catch_up`]). Must not block.
    fn follow(&self, _topic: &Arc<Topic>) {}

    /// Nobody here has wanted `topic` for a while: stop receiving it. Must
    /// not block.
    fn unfollow(&self, _topic: &Arc<Topic>) {}
}

/// This process's shards, as a broker sees them.
#[derive(Clone, Copy)]
pub struct Fanout<'a> {
    pub(crate) inboxes: &'a [ShardInbox],
    pub(crate) topics: &'a TopicRegistry,
}

impl std::fmt::Debug for Fanout<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("shards", &self.inboxes.len())
            .finish()
    }
}

impl Fanout<'_> {
    /// Stamps `data` into `topic` and routes it to local subscribers; returns
    /// its sequence number.
    ///
    /// A handle to a topic that has expired meanwhile is not an error for
    /// the publisher: the message goes to the live topic of the same name,
    /// created again if need be (not charged to any quota: the publish was
    /// admitted against the topic as it was).
    pub fn deliver(&self, topic: &Topic, publication: Publication) -> Result<u64, PublishError> {
        self.deliver_then(topic, publication, |_| ())
            .map(|(seq, ())| seq)
    }

    /// As [`Fanout::deliver`], then calls `then` with the stamped message
    /// while the topic is still locked: whatever `then` does (hand it to a
    /// bus, say) happens in the topic's sequence order, whichever threads
    /// publish to it. Keep `then` short: the topic's publishers wait.
    pub fn deliver_then<R>(
        &self,
        topic: &Topic,
        publication: Publication,
        then: impl FnOnce(&Message) -> R,
    ) -> Result<(u64, R), PublishError> {
        match topic.publish(publication) {
            Ok(stamped) => Ok(self.route(stamped, then)),
            Err(Rejected(publication)) => {
                let live = self.topics.resolve(topic.name(), None)?;
                let stamped = live
                    .publish(publication)
                    .map_err(|_| PublishError::Retired)?;
                Ok(self.route(stamped, then))
            }
        }
    }

    /// Records a stamped message in its topic's history and writes it into
    /// the topic's feed for every shard with a subscriber (the topic still
    /// locked, so the feed holds its messages in order), then calls `then`
    /// before the lock is let go; returns its seq and `then`'s answer.
    fn route<R>(&self, mut stamped: Stamped<'_>, then: impl FnOnce(&Message) -> R) -> (u64, R) {
        let displaced = stamped.fan_out(self.inboxes);
        let answer = (stamped.msg.seq, then(&stamped.msg));
        // The lock goes first; then the message a lap older, often its
        // last reference, is freed without holding up the topic.
        drop(stamped);
        drop(displaced);
        answer
    }
}

/// The single-process broker: publish is local fan-out.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

impl Broker for InProcess {
    #[inline]
    fn publish(
        &self,
        topic: &Arc<Topic>,
        publication: Publication,
        local: &Fanout<'_>,
    ) -> Result<Published, PublishError> {
        local.deliver(topic, publication).map(Published::Seq)
    }
}
