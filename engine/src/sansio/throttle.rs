//! A subscription's maximum rate: at most one round of updates per
//! interval, each round the latest message of every key that changed since
//! the last one (unkeyed messages count as one key), in sequence order.
//!
//! Sans-IO and owned by the subscription's shard. A message that may go now
//! goes at once; the others are held, a newer message of the same key
//! replacing the held one (which the caller counts as conflated). Every held
//! entry remembers how many of its topic's messages were replaced between it
//! and the entry before it, so when the round goes out each delivered
//! message can say exactly how many it follows (`skipped`).

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::sansio::message::Message;

/// Most messages (keys) one round holds: each message held costs a scan of
/// the held ones, and held messages are memory the subscription keeps.
pub const MAX_HELD: usize = 1024;

/// What to do with a message offered to a [`Throttle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttled {
    /// Deliver it now.
    Now,
    /// Held for the next round.
    Held {
        /// It replaced a held message of the same key, which will never be
        /// delivered (count it as conflated).
        replaced: bool,
        /// The round held [`MAX_HELD`] keys already: the oldest held
        /// message made room and will never be delivered (count it as
        /// dropped).
        dropped: bool,
        /// The round is not scheduled yet: schedule it at this instant
        /// (shard clock, nanoseconds).
        schedule_at: Option<u64>,
    },
}

/// One subscription's rate limit and held messages.
#[derive(Debug)]
pub struct Throttle {
    interval_ns: u64,
    /// The next round may not go before this instant.
    next_ns: u64,
    /// Held messages in sequence order, each with the number of its topic's
    /// messages replaced between it and the one before.
    held: Vec<(Arc<Message>, u32)>,
    /// Whether the next round is scheduled.
    scheduled: bool,
}

impl Throttle {
    /// At most `per_second` rounds a second.
    pub fn new(per_second: NonZeroU32) -> Self {
        Self {
            interval_ns: 1_000_000_000 / u64::from(per_second.get()),
            next_ns: 0,
            held: Vec::new(),
            scheduled: false,
        }
    }

    /// Rounds a second it allows.
    pub fn per_second(&self) -> NonZeroU32 {
        let rate = 1_000_000_000 / self.interval_ns.max(1);
        NonZeroU32::new(rate as u32).unwrap_or(NonZeroU32::MIN)
    }

    /// Changes the rate; takes effect from the next round.
    pub fn set_rate(&mut self, per_second: NonZeroU32) {
        self.interval_ns = 1_000_000_000 / u64::from(per_second.get());
    }

    /// Offers `msg` at `now_ns`.
    pub fn offer(&mut self, msg: &Arc<Message>, now_ns: u64) -> Throttled {
        if self.held.is_empty() && now_ns >= self.next_ns {
            self.next_ns = now_ns + self.interval_ns;
            return Throttled::Now;
        }
        let mut before = 0;
        let replaced = match self
            .held
            .iter()
            .position(|(m, _)| m.key_hash() == msg.key_hash())
        {
            Some(i) => {
                let (_, skipped) = self.held.remove(i);
                let carried = skipped.saturating_add(1);
                // The replaced message sat between the one before it and the
                // one after it (or this new one): that one says so.
                match self.held.get_mut(i) {
                    Some((_, next)) => *next = next.saturating_add(carried),
                    None => before = carried,
                }
                true
            }
            None => false,
        };
        let dropped = !replaced && self.held.len() >= MAX_HELD;
        if dropped {
            let (_, skipped) = self.held.remove(0);
            let carried = skipped.saturating_add(1);
            match self.held.first_mut() {
                Some((_, next)) => *next = next.saturating_add(carried),
                None => before = before.saturating_add(carried),
            }
        }
        self.held.push((Arc::clone(msg), before));
        let schedule_at = (!self.scheduled).then(|| {
            self.scheduled = true;
            self.next_ns
        });
        Throttled::Held {
            replaced,
            dropped,
            schedule_at,
        }
    }

    /// The round due at `now_ns`: the held messages in sequence order, each
    /// with how many of its topic's messages it follows undelivered. The
    /// next round may go one interval later.
    pub fn take_round(&mut self, now_ns: u64) -> Vec<(Arc<Message>, u32)> {
        self.scheduled = false;
        self.next_ns = now_ns + self.interval_ns;
        std::mem::take(&mut self.held)
    }

    /// When the scheduled round is due, if one is.
    pub fn due_at(&self) -> Option<u64> {
        self.scheduled.then_some(self.next_ns)
    }

    /// Messages held, which will never be delivered if the subscription ends.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sansio::ids::{Epoch, TopicId};
    use crate::sansio::message::Stamp;
    use bytes::Bytes;

    const MS: u64 = 1_000_000;

    fn msg(seq: u64, key: &str) -> Arc<Message> {
        Arc::new(Message::new(
            TopicId::new(0, 0),
            "t".into(),
            Epoch::from_u64(1),
            seq,
            Some(key.into()),
            Bytes::new(),
            Stamp::now(),
        ))
    }

    fn ten_a_second() -> Throttle {
        Throttle::new(NonZeroU32::new(10).unwrap())
    }

    #[test]
    fn one_key_at_a_hundred_a_second_goes_ten_times_a_second_latest_first() {
        let mut throttle = ten_a_second();
        let mut delivered = Vec::new();
        let mut due = None;
        // 100 updates a second for one second, rounds released when due.
        for n in 0..100u64 {
            let now = n * 10 * MS;
            if due.is_some_and(|at| at <= now) {
                delivered.extend(
                    throttle
                        .take_round(now)
                        .into_iter()
                        .map(|(m, s)| (m.seq, s)),
                );
                due = None;
            }
            match throttle.offer(&msg(n + 1, "A"), now) {
                Throttled::Now => delivered.push((n + 1, 0)),
                Throttled::Held { schedule_at, .. } => due = due.or(schedule_at),
            }
        }
        delivered.extend(
            throttle
                .take_round(1000 * MS)
                .into_iter()
                .map(|(m, s)| (m.seq, s)),
        );
        assert!(delivered.len() <= 11, "{delivered:?}");
        assert_eq!(delivered.last().unwrap().0, 100, "the last value goes out");
        // Each says exactly how many it follows.
        let mut last = 0;
        for (seq, skipped) in delivered {
            assert_eq!(u64::from(skipped), seq - last - 1);
            last = seq;
        }
    }

    #[test]
    fn a_round_holds_at_most_max_held_keys_dropping_the_oldest() {
        let mut throttle = ten_a_second();
        assert_eq!(throttle.offer(&msg(1, "first"), 0), Throttled::Now);
        let mut dropped = 0;
        for n in 0..MAX_HELD as u64 + 3 {
            let key = format!("k{n}");
            if let Throttled::Held { dropped: true, .. } = throttle.offer(&msg(n + 2, &key), MS) {
                dropped += 1;
            }
        }
        assert_eq!(dropped, 3);
        assert_eq!(throttle.held(), MAX_HELD);
        let round = throttle.take_round(100 * MS);
        // The three oldest went; the first left says so.
        assert_eq!((round[0].0.seq, round[0].1), (5, 3));
        assert!(round[1..].iter().all(|(_, skipped)| *skipped == 0));
    }

    #[test]
    fn a_round_holds_the_latest_of_each_key_in_order_each_telling_its_gap() {
        let mut throttle = ten_a_second();
        assert_eq!(throttle.offer(&msg(1, "A"), 0), Throttled::Now);
        let offers: Vec<_> = [(2, "B"), (3, "A"), (4, "B"), (5, "B"), (6, "C")]
            .into_iter()
            .map(|(seq, key)| throttle.offer(&msg(seq, key), MS))
            .collect();
        assert_eq!(
            offers[0],
            Throttled::Held {
                replaced: false,
                dropped: false,
                schedule_at: Some(100 * MS)
            }
        );
        assert!(matches!(
            offers[2],
            Throttled::Held {
                replaced: true,
                schedule_at: None,
                ..
            }
        ));
        let round: Vec<_> = throttle
            .take_round(100 * MS)
            .into_iter()
            .map(|(m, s)| (m.seq, s))
            .collect();
        // 2 (B) and 4 (B) were replaced: 3 follows 2, 5 follows 4.
        assert_eq!(round, [(3, 1), (5, 1), (6, 0)]);
        // The next round is an interval later.
        assert!(matches!(
            throttle.offer(&msg(7, "A"), 150 * MS),
            Throttled::Held { .. }
        ));
        assert_eq!(
            throttle.offer(&msg(8, "A"), 150 * MS),
            Throttled::Held {
                replaced: true,
                dropped: false,
                schedule_at: None
            }
        );
        assert_eq!(throttle.take_round(200 * MS)[0].1, 1);
        assert_eq!(throttle.offer(&msg(9, "A"), 300 * MS), Throttled::Now);
    }
}
