//! A shard's figures and its clients, as asked for through its inbox.
//!
//! Owned by one shard thread (an `impl` block of [`ShardState`](super::ShardState)).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::conn::Conn;
use super::ShardState;
use crate::sansio::census::DepthHistogram;
use crate::sansio::ids::TopicId;
use crate::stats::{ClientInfo, ShardStats, SLOWEST};

impl ShardState {
    // ---- reporting -----------------------------------------------------------

    pub(super) fn stats(&self) -> ShardStats {
        let tally = self.tally.borrow();
        let topics: Vec<(TopicId, _)> = tally.per_topic();
        let counts = tally.totals();
        let writes = self.write_counters.borrow();
        let (mut queued_frames, mut max_queue_depth) = (0, 0);
        let formats = self.shared.formats().len();
        let mut connections_by_format = vec![0; formats];
        let mut subscriptions_by_format = vec![0; formats];
        let mut deflated_connections_by_format = vec![0; formats];
        let mut counts_by_format = self.closed_by_format.borrow().clone();
        let mut outbox_depth = DepthHistogram::default();
        for conn in self.conns.borrow().iter() {
            let format = conn.delivery.format.index();
            let state = conn.state.borrow();
            connections_by_format[format] += 1;
            deflated_connections_by_format[format] += usize::from(conn.delivery.deflate);
            subscriptions_by_format[format] += state.topics.len();
            counts_by_format[format].add(&state.mailbox.counts);
            let depth = state.mailbox.outbox.len();
            outbox_depth.record(depth);
            queued_frames += depth;
            max_queue_depth = max_queue_depth.max(depth);
        }
        let client_messages = self.client_messages.borrow();
        let frames = self.live_frames.borrow();
        ShardStats {
            index: self.index,
            connections: self.connection_count(),
            connections_by_format,
            counts_by_format,
            encodings_by_format: frames.encoder().encodings().to_vec(),
            deflate_by_format: frames.encoder().deflate().to_vec(),
            deflated_connections_by_format,
            connections_opened: writes.opened,
            counts,
            topics,
            writes: writes.writes,
            bytes_written: writes.bytes,
            flush_delay: self.flush_delay(),
            queued_frames,
            max_queue_depth,
            latency_us: self.latency_us.borrow().clone(),
            disconnects: self.disconnects.borrow().clone(),
            subscriptions_by_format,
            client_messages_by_format: client_messages.iter().map(|c| c.received).collect(),
            client_errors_by_format: client_messages.iter().map(|c| c.answered_error).collect(),
            outbox_depth,
        }
    }

    pub(super) fn clients(&self) -> Vec<ClientInfo> {
        let now = Instant::now();
        self.conns
            .borrow()
            .iter()
            .map(|conn| self.client(conn, now))
            .collect()
    }

    /// The [`SLOWEST`] clients of the shard that are furthest behind: the
    /// deepest outboxes, then the most events dropped (conflation, which a
    /// rate-limited subscription does by design, does not count). Only those are
    /// described, so asking costs one pass over the connections and no
    /// allocation per connection.
    pub(super) fn slowest(&self) -> Vec<ClientInfo> {
        let conns = self.conns.borrow();
        let mut top: Vec<((usize, u64), &Rc<Conn>)> = Vec::with_capacity(SLOWEST + 1);
        for conn in conns.iter() {
            let rank = {
                let state = conn.state.borrow();
                let dropped = state.mailbox.counts.dropped_total();
                (state.mailbox.outbox.len(), dropped)
            };
            if rank == (0, 0) || top.len() == SLOWEST && rank <= top[SLOWEST - 1].0 {
                continue;
            }
            let at = top.partition_point(|(r, _)| *r >= rank);
            top.insert(at, (rank, conn));
            top.truncate(SLOWEST);
        }
        let now = Instant::now();
        top.into_iter()
            .map(|(_, conn)| self.client(conn, now))
            .collect()
    }

    fn client(&self, conn: &Conn, now: Instant) -> ClientInfo {
        let state = conn.state.borrow();
        ClientInfo {
            client_id: Arc::clone(&conn.client_id),
            owner: Arc::clone(&conn.owner),
            peer: conn.peer(),
            shard: self.index,
            format: self.shared.formats().get(conn.delivery.format).name(),
            details: conn.details.clone(),
            channels: state
                .topics
                .iter()
                .map(|h| Arc::clone(h.topic.name()))
                .collect(),
            connected_at: std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(conn.connected_at_ms),
            idle: now.saturating_duration_since(state.last_seen),
            queue_depth: state.mailbox.outbox.len(),
            queued_bytes: state.mailbox.outbox.queued_bytes(),
            counts: state.mailbox.counts,
        }
    }
}
