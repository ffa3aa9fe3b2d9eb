//! The engine as an external broker's receiving side sees it: messages
//! numbered on the bus (or relayed, to be numbered here), catch-ups, and
//! topics nobody here wants any more.
//! The steps are in `topic/follow.rs`; this is where their answers reach
//! the shards (waiting connections woken through their shard's inbox).
//!
//! Called from the broker's own thread, never from a shard.

use std::sync::Arc;
use std::time::Instant;

use super::{Engine, EngineShared};
use crate::broker::PublishError;
use crate::sansio::ids::Epoch;
use crate::sansio::message::Publication;
use crate::shard::ShardCommand;
use crate::topic::{Ingested, Numbered, Topic, Waiter};

impl Engine {
    /// Takes a message numbered on the bus: delivered to this server's
    /// subscribers if it is the topic's next, otherwise the answer says
    /// why not (see [`Ingested`]).
    pub fn ingest(&self, topic: &Topic, numbered: Numbered) -> Result<Ingested, PublishError> {
        let Some(_in_flight) = self.shared.publishing.enter(usize::MAX) else {
            return Err(PublishError::ShuttingDown);
        };
        Ok(topic.ingest(numbered, &self.shared.fanout()))
    }

    /// Accepts a gap the bus cannot repair: the topic's next message is
    /// `(epoch, seq)`; its subscribers see the sequence jump. Returns how
    /// many messages were skipped (`None`: there was no gap).
    pub fn skip_to(&self, topic: &Topic, epoch: Epoch, seq: u64) -> Option<u64> {
        topic.skip_to(epoch, seq)
    }

    /// Catches `topic` up with the bus: its `epoch`, `last` sequence number
    /// and the `history` the bus holds (any order); then wakes the
    /// connections waiting to subscribe to it. Returns how many messages
    /// its subscribers missed that the history no longer held (they see
    /// the sequence jump): 0 when the catch-up repaired every gap.
    pub fn catch_up(&self, topic: &Topic, epoch: Epoch, last: u64, history: Vec<Numbered>) -> u64 {
        let Some(_in_flight) = self.shared.publishing.enter(usize::MAX) else {
            return 0;
        };
        let (waiters, skipped) = topic.catch_up(epoch, last, history, &self.shared.fanout());
        self.shared.wake(waiters);
        skipped
    }

    /// Delivers a message another server published, numbering it here:
    /// for a bus that carries messages without numbering them (NATS),
    /// where each server numbers what it delivers. Returns its sequence
    /// number on this server.
    pub fn relay(&self, topic: &Topic, publication: Publication) -> Result<u64, PublishError> {
        let Some(_in_flight) = self.shared.publishing.enter(usize::MAX) else {
            return Err(PublishError::ShuttingDown);
        };
        self.shared.fanout().deliver(topic, publication)
    }

    /// Gives up on `topic`'s catch-up (the bus cannot answer): connections
    /// waiting for it go on with the topic as it is here.
    pub fn settle(&self, topic: &Topic) {
        self.shared.wake(topic.settle());
    }
}

impl EngineShared {
    /// Hands each waiting connection its wake-up, through its shard.
    pub(crate) fn wake(&self, waiters: Vec<Waiter>) {
        for (shard, conn) in waiters {
            if let Some(inbox) = self.inboxes.get(shard) {
                inbox.command(ShardCommand::Resume { conn });
            }
        }
    }

    /// Asks the broker to follow `topic` (its first local subscriber).
    pub(crate) fn follow(&self, topic: &Arc<Topic>) {
        self.broker.follow(topic);
    }

    /// Stops following the topics nobody here has wanted for the
    /// configured linger (shard 0's sweep).
    pub(crate) fn cool_unwanted(&self, now: Instant) {
        if !self.broker.is_external() {
            return;
        }
        for topic in self.topics.cool_unwanted(now, self.config.follow_linger) {
            self.broker.unfollow(&topic);
        }
    }
}
