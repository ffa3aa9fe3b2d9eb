//! The publish seam: every publish goes through a [`Broker`].
//!
//! In one process the broker is [`InProcess`]: it hands the message straight
//! to the local fan-out. To join several servers, a broker publishes to an
//! external bus (Redis pub/sub, NATS) instead, and the bus's subscriber loop
//! calls [`crate::Engine::fanout`] on every server; shards never change.

use std::sync::Arc;

use crate::registry::TopicRegistry;
use crate::sansio::message::Publication;
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
    /// The broker could not take the message; the text says why.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Where publishes go. Shared by every publishing thread.
pub trait Broker: Send + Sync + 'static {
    /// Publishes `publication` to `topic`; returns its sequence number.
    fn publish(
        &self,
        topic: &Arc<Topic>,
        publication: Publication,
        local: &Fanout<'_>,
    ) -> Result<u64, PublishError>;
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
        match topic.publish(publication) {
            Ok(stamped) => Ok(self.route(stamped)),
            Err(Rejected(publication)) => {
                let live = self.topics.resolve(topic.name(), None)?;
                let stamped = live
                    .publish(publication)
                    .map_err(|_| PublishError::Retired)?;
                Ok(self.route(stamped))
            }
        }
    }

    /// Offers a stamped message to every shard with a subscriber (the topic
    /// still locked, so shards see its messages in order); returns its seq.
    fn route(&self, mut stamped: Stamped<'_>) -> u64 {
        for (index, inbox) in self.inboxes.iter().enumerate() {
            let subscribers = stamped.shard_subscribers()[index];
            if subscribers > 0 && !inbox.deliver(&stamped.msg) {
                stamped.overflowed(subscribers);
            }
        }
        stamped.msg.seq
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
    ) -> Result<u64, PublishError> {
        local.deliver(topic, publication)
    }
}
