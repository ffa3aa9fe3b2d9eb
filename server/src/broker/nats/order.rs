//! Telling when NATS lost a message: each server numbers what it sends on
//! each subject, in a run of its own (`Outbound`), and each receiving
//! server checks every sender's numbers on the subjects it follows
//! (`Inbound`). A number skipped is a message the bus lost: the receiver
//! starts a new run of the topic, so its subscribers see it.
//!
//! The numbers travel in the envelope's epoch and seq fields
//! (`envelope.rs`): on NATS they are the sender's, not the topic's.
//!
//! Sans-IO. `Outbound` is owned by the broker thread; each `Inbound` by the
//! task reading one subject.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcast_engine::Epoch;

/// Most senders remembered per subject: beyond, the map starts again
/// (whoever writes on the subject cannot make it grow without bound).
const MAX_SENDERS: usize = 1024;

/// The sending side: per topic, its run, the last number sent, and when.
#[derive(Debug, Default)]
pub(super) struct Outbound {
    topics: HashMap<Arc<str>, (Epoch, u64, Instant)>,
}

impl Outbound {
    /// The number of the next message sent on `topic`.
    pub(super) fn next(&mut self, topic: &Arc<str>, now: Instant) -> (Epoch, u64) {
        let entry = self
            .topics
            .entry(Arc::clone(topic))
            .or_insert_with(|| (Epoch::fresh(), 0, now));
        entry.1 += 1;
        entry.2 = now;
        (entry.0, entry.1)
    }

    /// Forgets the topics not sent on for `idle`: the next message on one
    /// starts a new run, which receivers take as such (no gap).
    pub(super) fn prune(&mut self, now: Instant, idle: Duration) {
        self.topics
            .retain(|_, (_, _, at)| now.saturating_duration_since(*at) < idle);
    }
}

/// What a message's number says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Arrival {
    /// The sender's next, or the first of its run.
    Next,
    /// After `missed` messages of the sender's that never came.
    AfterLoss(u64),
    /// At or before one already taken: not delivered again.
    Stale,
}

/// The receiving side of one subject: each sender's run and last number.
#[derive(Debug, Default)]
pub(super) struct Inbound {
    senders: HashMap<String, (Epoch, u64)>,
}

impl Inbound {
    /// Takes a message numbered `(epoch, seq)` by `origin`.
    pub(super) fn take(&mut self, origin: &str, epoch: Epoch, seq: u64) -> Arrival {
        if let Some((run, last)) = self.senders.get_mut(origin) {
            if *run == epoch {
                let arrival = match seq.checked_sub(*last + 1) {
                    None => return Arrival::Stale,
                    Some(0) => Arrival::Next,
                    Some(missed) => Arrival::AfterLoss(missed),
                };
                *last = seq;
                return arrival;
            }
        }
        if self.senders.len() >= MAX_SENDERS && !self.senders.contains_key(origin) {
            self.senders.clear();
        }
        self.senders.insert(origin.to_owned(), (epoch, seq));
        Arrival::Next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_senders_numbers_run_per_topic_and_start_again_once_forgotten() {
        let mut out = Outbound::default();
        let (t1, t2): (Arc<str>, Arc<str>) = ("t1".into(), "t2".into());
        let now = Instant::now();
        let (run, first) = out.next(&t1, now);
        assert_eq!(first, 1);
        assert_eq!(out.next(&t1, now), (run, 2));
        assert_eq!(out.next(&t2, now).1, 1);
        out.prune(now + Duration::from_secs(60), Duration::from_secs(30));
        let (again, seq) = out.next(&t1, now);
        assert_eq!(seq, 1);
        assert_ne!(again, run);
    }

    #[test]
    fn a_skipped_number_is_a_loss_and_an_old_one_is_stale() {
        let mut inbound = Inbound::default();
        let (e1, e2) = (Epoch::from_u64(1), Epoch::from_u64(2));
        assert_eq!(inbound.take("a", e1, 5), Arrival::Next, "joining mid-run");
        assert_eq!(inbound.take("a", e1, 6), Arrival::Next);
        assert_eq!(inbound.take("b", e1, 1), Arrival::Next, "senders apart");
        assert_eq!(inbound.take("a", e1, 9), Arrival::AfterLoss(2));
        assert_eq!(inbound.take("a", e1, 9), Arrival::Stale);
        assert_eq!(inbound.take("a", e1, 3), Arrival::Stale);
        assert_eq!(inbound.take("a", e2, 1), Arrival::Next, "a new run");
        assert_eq!(inbound.take("a", e2, 2), Arrival::Next);
    }

    #[test]
    fn senders_are_bounded() {
        let mut inbound = Inbound::default();
        let e = Epoch::from_u64(1);
        for n in 0..MAX_SENDERS * 3 {
            inbound.take(&format!("n{n}"), e, 1);
        }
        assert!(inbound.senders.len() <= MAX_SENDERS);
    }
}
