//! A shard's figures about its connections rather than their events:
//! closes by reason, client messages and the ones answered with an error,
//! and how deep the outboxes are.
//!
//! Plain values owned by one shard thread (counted on the cold paths: a
//! close, a client message, a stats request), merged by whoever reports
//! them.

use crate::sansio::close::CloseReason;

/// Connections closed, by reason and close code. Owned by one shard.
///
/// A short list, not a map: the reasons are the [`CloseReason`] labels plus
/// the few protocols' own, so a scan of a dozen entries on a close is
/// cheaper than hashing, and the list stays in first-seen order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disconnects {
    counts: Vec<Disconnect>,
}

/// Connections closed for one reason with one code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// The reason's label ([`CloseReason::label`]).
    pub reason: &'static str,
    /// The close code sent ([`CloseReason::code`]).
    pub code: u16,
    /// How many connections.
    pub count: u64,
}

impl Disconnects {
    /// Counts one connection closed for `reason`.
    pub fn count(&mut self, reason: &CloseReason) {
        self.add_one(reason.label(), reason.code(), 1);
    }

    fn add_one(&mut self, reason: &'static str, code: u16, count: u64) {
        match self
            .counts
            .iter_mut()
            .find(|d| d.reason == reason && d.code == code)
        {
            Some(d) => d.count += count,
            None => self.counts.push(Disconnect {
                reason,
                code,
                count,
            }),
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Disconnects) {
        for d in &other.counts {
            self.add_one(d.reason, d.code, d.count);
        }
    }

    /// Every (reason, code) counted so far, sorted by reason then code.
    pub fn sorted(&self) -> Vec<Disconnect> {
        let mut all = self.counts.clone();
        all.sort_by_key(|d| (d.reason, d.code));
        all
    }

    /// Closes of every reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|d| d.count).sum()
    }
}

/// Upper bounds of the outbox depth buckets, in frames. 1000 is one of
/// them: the BondX guide alerts on a queue over 1000 messages.
pub const OUTBOX_DEPTH_BOUNDS: [usize; 9] = [0, 1, 4, 16, 64, 256, 1000, 4096, 16384];

/// How many connections' outboxes hold how many frames, at one moment.
/// Built by a shard walking its connections for a stats request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DepthHistogram {
    /// Connections per bucket (not cumulative), by [`OUTBOX_DEPTH_BOUNDS`]
    /// index; the last slot holds the depths above every bound.
    pub buckets: [u64; OUTBOX_DEPTH_BOUNDS.len() + 1],
    /// Frames over all the connections counted.
    pub sum: u64,
}

impl DepthHistogram {
    /// Counts one outbox holding `depth` frames.
    pub fn record(&mut self, depth: usize) {
        let slot = OUTBOX_DEPTH_BOUNDS.partition_point(|&bound| bound < depth);
        self.buckets[slot] += 1;
        self.sum += depth as u64;
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &DepthHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
    }

    /// Outboxes counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Outboxes holding at most each bound's frames, by
    /// [`OUTBOX_DEPTH_BOUNDS`] index (the `le` buckets of a Prometheus
    /// histogram, `+Inf` being [`DepthHistogram::count`]).
    pub fn cumulative(&self) -> [u64; OUTBOX_DEPTH_BOUNDS.len()] {
        let mut out = [0; OUTBOX_DEPTH_BOUNDS.len()];
        let mut running = 0;
        for (slot, count) in out.iter_mut().zip(self.buckets) {
            running += count;
            *slot = running;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnects_are_counted_per_reason_and_code_and_merge() {
        let mut a = Disconnects::default();
        a.count(&CloseReason::SlowConsumer);
        a.count(&CloseReason::SlowConsumer);
        a.count(&CloseReason::ClientClosed);
        let mut b = Disconnects::default();
        b.count(&CloseReason::ClientClosed);
        b.count(&CloseReason::Kicked("why".into()));
        a.add(&b);
        let shown: Vec<_> = a
            .sorted()
            .iter()
            .map(|d| (d.reason, d.code, d.count))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("client_closed", 1000, 2),
                ("kicked", 4000, 1),
                ("slow_consumer", 4429, 2)
            ]
        );
        assert_eq!(a.total(), 5);
    }

    #[test]
    fn depths_fall_in_the_first_bucket_that_holds_them() {
        let mut h = DepthHistogram::default();
        for depth in [0, 1, 2, 4, 5, 1000, 1001, 16384, 20000] {
            h.record(depth);
        }
        assert_eq!(h.buckets, [1, 1, 2, 1, 0, 0, 1, 1, 1, 1]);
        assert_eq!(h.cumulative(), [1, 2, 4, 5, 5, 5, 6, 7, 8]);
        assert_eq!(h.count(), 9);
        assert_eq!(h.sum, 38_397);
        let mut merged = h;
        merged.add(&h);
        assert_eq!(merged.count(), 18);
        assert_eq!(merged.sum, 2 * 38_397);
    }
}
