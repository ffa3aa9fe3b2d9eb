//! What a queued event carries besides its bytes ([`EventMeta`]), and how a
//! channel's events are treated in a full outbox ([`DeliveryClass`]).

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::SlowConsumerPolicy;
use crate::sansio::ids::TopicId;

/// Where a channel's events stand in a connection's outbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Queued in order, dropped or conflated when the outbox is full.
    #[default]
    Normal,
    /// Queued ahead of normal events, never conflated, never dropped to
    /// make room for normal events, and exempt from the event rate limit;
    /// when one still cannot be queued the connection is closed
    /// ([`crate::CloseReason::PriorityOverflow`]) rather than miss it.
    High,
}

impl Priority {
    /// Its name in configuration: `normal`, `high`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}

/// How one channel's events are delivered: set per channel by the
/// engine's channel rules, fixed for the topic's life, carried by each of
/// its messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryClass {
    /// Ahead of normal traffic or not.
    pub priority: Priority,
    /// What a full outbox does with the channel's events; `None`: the
    /// connection's own policy (its protocol's, or the server default).
    pub overflow: Option<SlowConsumerPolicy>,
    /// Most rounds of updates a second any subscription of the channel
    /// gets (each round the latest message of every key that changed); a
    /// client may ask for fewer, never more. `None`: no limit. Never for a
    /// high-priority channel, whose messages are never held or conflated.
    pub max_rate: Option<NonZeroU32>,
}

/// What one channel rule says about delivery: each field it leaves unset is
/// left to the next rule matching the channel (then to the defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassRule {
    /// The channel's priority.
    pub priority: Option<Priority>,
    /// Its overflow policy.
    pub overflow: Option<SlowConsumerPolicy>,
    /// Its maximum rate per subscription.
    pub max_rate: Option<NonZeroU32>,
}

/// What the writer needs to account for a delivered event, conflation to
/// find its predecessor, and gap marking to say how many of its topic's
/// events the client missed before it.
///
/// 32 bytes, so that a queued frame ([`super::OutFrame`]) is 64: one cache
/// line. The key's digest (59 bits), the replay flag, the priority and the
/// channel's overflow policy share one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// The event's topic.
    pub topic: TopicId,
    /// Events of the topic not delivered to this connection just before
    /// this one, as the frame says (`skipped`): 0 for a frame as encoded.
    pub skipped: u32,
    /// When the publish was accepted: nanoseconds from [`clock_origin`],
    /// plus one (never zero, so `Option<EventMeta>` needs no tag word).
    accepted_ns: NonZeroU64,
    /// The key's digest in the low bits (0: no key), then the flags.
    tag: u64,
}

/// The instant queued events count their publish time from: the first
/// time it is asked for, which the engine does when it starts, before any
/// message exists. (An [`Instant`] is 16 bytes; 8 keep [`EventMeta`] at 32.)
pub fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The replay flag in [`EventMeta`]'s tag.
const REPLAY: u64 = 1 << 63;
/// The high-priority flag.
const HIGH: u64 = 1 << 62;
/// The channel's overflow policy: 0 for none, else 1 + its index.
const POLICY_SHIFT: u32 = 59;
const POLICY: u64 = 0b111 << POLICY_SHIFT;
/// The bits of the key's digest.
const KEY: u64 = (1 << POLICY_SHIFT) - 1;

const POLICIES: [SlowConsumerPolicy; 4] = [
    SlowConsumerPolicy::Drop,
    SlowConsumerPolicy::DropOldest,
    SlowConsumerPolicy::Disconnect,
    SlowConsumerPolicy::Conflate,
];

// A policy is stored as its discriminant + 1 and read back by index.
const _: () = {
    let mut i = 0;
    while i < POLICIES.len() {
        assert!(POLICIES[i] as usize == i);
        i += 1;
    }
    assert!(POLICIES.len() < 1 << 3);
};

impl EventMeta {
    /// A live event of `topic`, accepted at `accepted_at`, with the
    /// message's [`crate::Message::key_hash`] (0: no key), of a normal
    /// channel with no policy of its own.
    #[inline]
    pub fn live(topic: TopicId, accepted_at: Instant, key: u64) -> Self {
        Self {
            topic,
            skipped: 0,
            accepted_ns: NonZeroU64::MIN.saturating_add(
                accepted_at
                    .saturating_duration_since(clock_origin())
                    .as_nanos() as u64,
            ),
            tag: key & KEY,
        }
    }

    /// A replayed event: counted as replayed, not sent, never as a drop,
    /// never conflated away, never marked as following a gap.
    #[inline]
    pub fn replayed(topic: TopicId, accepted_at: Instant, key: u64) -> Self {
        let live = Self::live(topic, accepted_at, key);
        Self {
            tag: live.tag | REPLAY,
            ..live
        }
    }

    /// The same event, of a channel delivered as `class`.
    #[inline]
    pub fn with_class(self, class: DeliveryClass) -> Self {
        let mut tag = self.tag & !(HIGH | POLICY);
        if class.priority == Priority::High {
            tag |= HIGH;
        }
        if let Some(policy) = class.overflow {
            tag |= (policy as u64 + 1) << POLICY_SHIFT;
        }
        Self { tag, ..self }
    }

    /// When the publish was accepted.
    #[inline]
    pub fn accepted_at(self) -> Instant {
        clock_origin() + Duration::from_nanos(self.accepted_ns.get() - 1)
    }

    /// Whether the event is replayed.
    #[inline]
    pub fn is_replay(self) -> bool {
        self.tag & REPLAY != 0
    }

    /// Whether the event's channel is high priority.
    #[inline]
    pub fn is_high(self) -> bool {
        self.tag & HIGH != 0
    }

    /// The channel's own overflow policy, if it has one.
    #[inline]
    pub fn policy(self) -> Option<SlowConsumerPolicy> {
        match ((self.tag & POLICY) >> POLICY_SHIFT) as usize {
            0 => None,
            n => POLICIES.get(n - 1).copied(),
        }
    }

    /// The key's digest (0: no key).
    #[inline]
    pub fn key(self) -> u64 {
        self.tag & KEY
    }
}
