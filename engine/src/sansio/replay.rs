//! What a new subscriber asks to see of a topic's past ([`Replay`]), and
//! the answer: every message it asked for, in order, or why that is not
//! possible ([`ReplayError`]).
//!
//! Sans-IO: answered by [`crate::sansio::history::History::replay`] under
//! the topic's lock, in the same step that registers the subscription, so
//! the replay ends exactly where live delivery begins.
//!
//! A resume ([`Replay::After`]) is all or nothing: either every message
//! after the client's position is still held, in one contiguous run of the
//! ring, or the answer says why not. A protocol can then tell its client
//! "resume failed" (and, say, send a snapshot) instead of leaving a silent
//! gap.

use std::sync::Arc;

use crate::sansio::format::FrameKind;
use crate::sansio::ids::Epoch;
use crate::sansio::message::Message;

/// A place in a topic's stream: the last sequence number of an epoch that a
/// client has seen (0: nothing yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// The run of the topic's sequence.
    pub epoch: Epoch,
    /// The last sequence number seen.
    pub seq: u64,
}

/// What a new subscriber replays before its live messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Replay {
    /// Nothing: live messages only.
    #[default]
    None,
    /// The last `n` messages of the ring (fewer if it holds fewer).
    Last(usize),
    /// The latest message of each key, at most `n` keys, oldest first.
    Snapshot(usize),
    /// The snapshot when the topic has keyed messages, otherwise the last `n`
    /// (what the telemetry protocol's `replay` asks for).
    Recent(usize),
    /// The topic's current state: the latest message of each key (at most
    /// `n` keys, oldest first) when the topic has keyed messages, otherwise
    /// its latest message (none for an empty topic). Framed as snapshots.
    State(usize),
    /// Every message after this position, or an error saying why not.
    After(Position),
}

/// Why a resume cannot be answered with every message after its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The position is of another run of the topic's sequence (the topic was
    /// created again, or the server restarted): its numbers mean nothing now.
    #[error("position of epoch {asked} cannot be resumed: the channel's epoch is now {current} (its sequence restarted); last seq {last}")]
    EpochMismatch {
        /// The epoch asked for.
        asked: Epoch,
        /// The topic's epoch.
        current: Epoch,
        /// The topic's last sequence number.
        last: u64,
    },
    /// The position is beyond the last message published.
    #[error("position {asked} is ahead of the channel, whose last seq is {last}")]
    Ahead {
        /// The sequence number asked for.
        asked: u64,
        /// The topic's last sequence number.
        last: u64,
    },
    /// Some messages after the position are no longer held.
    #[error("messages after seq {asked} are no longer held (history starts at seq {oldest}, last is {last})")]
    TooOld {
        /// The sequence number asked for.
        asked: u64,
        /// The oldest message held (`last + 1` when none is).
        oldest: u64,
        /// The topic's last sequence number.
        last: u64,
    },
}

/// A replay's messages, oldest first, and how they are framed.
#[derive(Clone, Debug, Default)]
pub struct Replayed {
    /// The messages.
    pub messages: Vec<Arc<Message>>,
    /// [`FrameKind::Snapshot`] for the latest per key, [`FrameKind::Replay`]
    /// for a run of the ring.
    pub kind: FrameKind,
}
