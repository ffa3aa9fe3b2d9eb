//! A shard's connections coming and going, and its periodic tick.
//!
//! Owned by one shard thread (an `impl` block of [`ShardState`](super::ShardState)).
//!
//! The tick (every 250 ms), for each connection not already closing, the
//! connections of [`TICK_SLICE`] slots of the slab at a time, with the
//! shard's other work in between while the sweep keeps within half a tick:
//! 1. a deadline set by its session (a token's expiry) that has passed
//!    closes it;
//! 2. silence longer than its protocol's liveness timeout closes it;
//! 3. a wake-up its session asked for ([`crate::ConnCtx::wake_at`]) that is
//!    due is handed to the connection, whose next poll by the driver calls
//!    the session's `on_wake` (never the tick itself);
//! 4. when its format's heartbeat is due (each format has its own interval,
//!    [`crate::WireFormat::heartbeat_interval`]), the heartbeat frame
//!    (encoded once per format per tick) is queued and flushed.
//!
//! Every 20 ticks the shard prunes retired topics from its cache and asks
//! each topic feed it reads at a grown size to settle back (`feeds.rs`);
//! shard 0 also expires idle topics and rebalances the history budget.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tracing::info;

use super::conn::{self, Conn};
use super::handle::{AttachError, Attachment};
use super::run::TICK;
use super::{poller, ShardState, SWEEP_EVERY_TICKS};
use crate::sansio::close::CloseReason;
use crate::sansio::ids::ConnKey;
use crate::sansio::{beat, drain};

/// Slab slots a tick checks (each holding a connection or none) before it
/// lets the shard deliver again: about 30 µs of work, most of it cache
/// misses on each connection's state.
pub(super) const TICK_SLICE: usize = 256;

/// One tick's walk over a shard's connections, a slice at a time.
pub(super) struct TickSweep {
    started: Instant,
    wall: SystemTime,
    ticks: u32,
    heartbeats: Vec<Beat>,
    /// The slab slot the next slice starts at.
    next: usize,
}

impl TickSweep {
    /// Whether the tick loop may let the shard's other work run before the
    /// next slice: while the sweep has taken less than half a tick. A
    /// loaded shard gives each yield a whole turn (a dispatch batch and a
    /// flush slice, milliseconds), and a sweep stretched past the tick
    /// would stretch every heartbeat interval with it (heartbeats fall on
    /// sweeps, `beat::due`), so past that it finishes in one pass.
    pub(super) fn may_yield(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) < TICK / 2
    }
}

/// A format's heartbeat on one tick.
#[derive(Clone, Debug, PartialEq)]
enum Beat {
    /// Not encoded yet (no connection of the format due so far this tick).
    Due,
    /// Its frame, encoded once for the shard (`None`: the format has none).
    Encoded(Option<Bytes>),
}

impl ShardState {
    // ---- connections -------------------------------------------------------

    /// Registers a new WebSocket connection and starts its opening.
    pub(super) fn attach(self: &Rc<Self>, attachment: Attachment) -> Result<ConnKey, AttachError> {
        let Attachment {
            transport,
            read_buf,
            client_id,
            owner,
            delivery,
            session,
            mut permit,
            details,
        } = attachment;
        permit.establish()?;
        if !self.polling.get() {
            return Err(AttachError::Poll(std::io::Error::other(
                "the shard's poll has failed",
            )));
        }
        // Its address is the permit's (admitted for it); a peer gone
        // already shows port 0.
        let peer = SocketAddr::new(
            permit.address(),
            transport.peer_addr().map_or(0, |peer| peer.port()),
        );
        let key = self.conns.borrow_mut().vacant_key();
        // From here on its readiness comes from the shard's poll.
        let transport = transport.attach(&self.registry, poller::token(key))?;
        let gap_field = self.shared.formats().get(delivery.format).gap_field();
        let mut conn = Conn::new(
            key,
            transport,
            peer.port(),
            Arc::clone(&client_id),
            Arc::clone(&owner),
            delivery,
            permit,
            self.shared.config().outbox,
            gap_field,
            self.now(),
            Rc::clone(&self.ready),
        );
        conn.details = details;
        let conn = Rc::new(conn);
        self.conns.borrow_mut().insert(key, Rc::clone(&conn));
        self.write_counters.borrow_mut().opened += 1;
        self.inbox().add_load();
        if let Some(old) = self
            .shared
            .claim_client_id(&owner, &client_id, self.index, key)
        {
            self.shared
                .close_remote(old.shard, old.key, CloseReason::Replaced);
        }
        info!(client = %client_id, owner = %owner, %peer, shard = self.index, "connection accepted");
        tokio::task::spawn_local(conn::open(Rc::clone(self), conn, session, read_buf));
        Ok(key)
    }

    /// Forgets a closed connection. Its subscriptions are already gone.
    pub(super) fn detach(&self, conn: &Conn, reason: &CloseReason) {
        if self.conns.borrow_mut().remove(conn.key).is_none() {
            return;
        }
        self.inbox().remove_load();
        self.shared
            .release_client_id(&conn.owner, &conn.client_id, self.index, conn.key);
        let state = conn.state.borrow();
        self.closed_by_format.borrow_mut()[conn.delivery.format.index()].add(&state.mailbox.counts);
        self.disconnects.borrow_mut().count(reason);
        info!(
            client = %conn.client_id,
            peer = %conn.peer(),
            shard = self.index,
            reason = %reason,
            sent = state.mailbox.counts.sent,
            conflated = state.mailbox.counts.conflated,
            dropped = state.mailbox.counts.dropped_total(),
            "connection closed"
        );
    }

    pub(super) fn request_close(&self, key: ConnKey, reason: CloseReason) {
        if let Some(conn) = self.conns.borrow().get(key) {
            conn.request_close(reason);
        }
    }

    pub(super) fn close_all(&self, reason: CloseReason) {
        for conn in self.conns.borrow().iter() {
            conn.request_close(reason.clone());
        }
    }

    /// Step `step` of `steps` of a paced drain: closes this step's share
    /// of the connections not already closing (see [`drain::to_close`]), so
    /// that they go evenly over the drain and the last step closes the rest.
    pub(super) fn shed(&self, step: u32, steps: u32) {
        let conns = self.conns.borrow();
        let open: Vec<_> = conns.iter().filter(|c| !c.is_closing()).collect();
        let start = *self.drain_start.get_or_init(|| open.len());
        let count = drain::to_close(start, open.len(), step, steps);
        for conn in open.into_iter().take(count) {
            conn.request_close(CloseReason::Draining);
        }
    }

    // ---- periodic work -------------------------------------------------------

    /// Starts a tick: prunes and expires topics when due, and returns the
    /// sweep that [`ShardState::sweep_slice`] walks over the connections.
    pub(super) fn begin_tick(&self) -> TickSweep {
        self.refresh_clock();
        let now = self.now();
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        if ticks.is_multiple_of(SWEEP_EVERY_TICKS) {
            self.sweep_topics(now);
        }
        TickSweep {
            started: now,
            wall: SystemTime::now(),
            ticks,
            heartbeats: vec![Beat::Due; self.shared.formats().len()],
            next: 0,
        }
    }

    /// Runs the tick's checks (module docs) on the connections in the next
    /// [`TICK_SLICE`] slots of the slab; `false` once the sweep has passed
    /// the last.
    ///
    /// The tick loop yields between slices ([`TickSweep::may_yield`]), so
    /// deliveries are not held behind a sweep of every connection: with
    /// 19,500 of them one pass took 2.5 ms, four times a second, and set the
    /// many-connection tail.
    pub(super) fn sweep_slice(&self, sweep: &mut TickSweep) -> bool {
        self.refresh_clock();
        let now = self.now();
        let (wall, ticks) = (sweep.wall, sweep.ticks);
        let heartbeats = &mut sweep.heartbeats;
        // Each connection's heartbeat comes once per interval of its format,
        // on the tick its slot falls on (`beat::due`): a tick writes one in
        // `phases` of the connections, never all at once. Each format's frame
        // is encoded at most once per tick.
        let formats = self.shared.formats();
        let phases = self.heartbeat_phases.as_slice();
        let mut queued = false;
        let conns = self.conns.borrow();
        let slots = sweep.next..sweep.next + TICK_SLICE;
        sweep.next = slots.end;
        let more = sweep.next < conns.slots();
        // Nothing below adds or removes connections (closing happens in each
        // connection's closing task), so the slab can stay borrowed.
        for conn in conns.in_slots(slots) {
            let (silent, due, wake) = {
                let mut state = conn.state.borrow_mut();
                // A closing connection has queued its close frame: nothing may
                // follow it, and its timeout has already been dealt with.
                if state.closing.is_some() {
                    continue;
                }
                // A queue grown by a burst is given back once idle; here, a
                // few times a second, not after every write.
                if !state.dirty {
                    state.mailbox.outbox.shrink_if_idle();
                }
                let due = state
                    .deadline
                    .as_deref()
                    .filter(|(at, _)| *at <= now)
                    .map(|(_, reason)| reason.clone());
                // A session's wake-up: `on_wake` is called when it is notified.
                let wake = state.wake_at.is_some_and(|at| at <= now);
                if wake {
                    state.wake_at = None;
                    state.woken = true;
                }
                (now.saturating_duration_since(state.last_seen), due, wake)
            };
            if let Some(reason) = due {
                info!(client = %conn.client_id, peer = %conn.peer(), reason = %reason, "connection deadline");
                conn.request_close(reason);
                continue;
            }
            if silent > conn.delivery.liveness.timeout {
                info!(
                    client = %conn.client_id,
                    peer = %conn.peer(),
                    silent_ms = silent.as_millis() as u64,
                    "heartbeat timeout"
                );
                conn.request_close(CloseReason::HeartbeatTimeout);
                continue;
            }
            if wake {
                conn.notify();
            }
            self.resume_overdue(conn, now);
            let format = conn.delivery.format;
            if !beat::due(conn.key.index, ticks, phases[format.index()]) {
                continue;
            }
            let slot = &mut heartbeats[format.index()];
            if *slot == Beat::Due {
                *slot = Beat::Encoded(formats.get(format).heartbeat(wall));
            }
            if let Beat::Encoded(Some(frame)) = slot {
                conn.send_control(frame.clone());
                self.queue_flush(conn, now);
                queued = true;
            }
        }
        // The heartbeats go out through the dispatch loop's sliced flush, so
        // a tick never writes thousands of sockets in one turn.
        if queued {
            self.inbox().wake.notify_one();
        }
        more
    }

    /// Drops retired topics from this shard's cache and gives back the room
    /// of feeds grown by a burst whose shards have caught up; shard 0 also
    /// expires idle topics, shares out the history budget and empties the
    /// ring slots of messages the topics' windows let go of, engine-wide
    /// (one sweeper is enough, and shard 0 runs the acceptor anyway).
    fn sweep_topics(&self, now: Instant) {
        if self.index == 0 {
            self.shared.cool_unwanted(now);
            self.shared.topics().expire_idle(now);
            self.shared.topics().rebalance();
            self.shared.topics().tidy(self.shared.fanout().inboxes);
        }
        self.topic_cache.borrow_mut().retain(|_, t| !t.is_retired());
        self.settle_feeds();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_sweep_lets_other_work_run_only_within_half_a_tick() {
        let started = Instant::now();
        let sweep = TickSweep {
            started,
            wall: SystemTime::now(),
            ticks: 1,
            heartbeats: Vec::new(),
            next: 0,
        };
        assert!(sweep.may_yield(started));
        assert!(sweep.may_yield(started + TICK / 2 - Duration::from_millis(1)));
        assert!(!sweep.may_yield(started + TICK / 2));
        assert!(!sweep.may_yield(started + 4 * TICK));
    }
}
