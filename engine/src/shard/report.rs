//! A shard's figures and its clients, as asked for through its inbox.
//!
//! Owned by one shard thread (an `impl` block of [`ShardState`](super::ShardState)).

use std::sync::Arc;
use std::time::Instant;

use super::ShardState;
use crate::sansio::census::DepthHistogram;
use crate::sansio::format::FormatId;
use crate::sansio::ids::TopicId;
use crate::stats::{ClientInfo, ShardStats};

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
        let mut counts_by_format = self.closed_by_format.borrow().clone();
        let mut outbox_depth = DepthHistogram::default();
        for conn in self.conns.borrow().iter() {
            let format = conn.delivery.format.index();
            let state = conn.state.borrow();
            connections_by_format[format] += 1;
            subscriptions_by_format[format] += state.topics.len();
            counts_by_format[format].add(&state.mailbox.counts);
            let depth = state.mailbox.outbox.len();
            outbox_depth.record(depth);
            queued_frames += depth;
            max_queue_depth = max_queue_depth.max(depth);
        }
        let client_messages = self.client_messages.borrow();
        ShardStats {
            index: self.index,
            connections: self.connection_count(),
            connections_by_format,
            counts_by_format,
            encodings_by_format: self.live_frames.borrow().encodings().to_vec(),
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
        let format_name = |id: FormatId| self.shared.formats().get(id).name();
        self.conns
            .borrow()
            .iter()
            .map(|conn| {
                let state = conn.state.borrow();
                ClientInfo {
                    client_id: Arc::clone(&conn.client_id),
                    owner: Arc::clone(&conn.owner),
                    peer: conn.peer,
                    shard: self.index,
                    format: format_name(conn.delivery.format),
                    details: conn.details.clone(),
                    channels: state
                        .topics
                        .iter()
                        .map(|h| Arc::clone(h.topic.name()))
                        .collect(),
                    connected_at: conn.connected_at,
                    idle: now.saturating_duration_since(state.last_seen),
                    queue_depth: state.mailbox.outbox.len(),
                    queued_bytes: state.mailbox.outbox.queued_bytes(),
                    counts: state.mailbox.counts,
                }
            })
            .collect()
    }
}
