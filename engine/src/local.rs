//! What one shard owns: its connections, its subscriber lists, its counters.
//!
//! Owned by one shard thread; nothing here is `Send`. Connections are held in
//! a generation-checked slab so a command naming a connection that has since
//! closed (and whose slot was reused) is ignored.
//!
//! Delivery (messages into outboxes, outboxes onto sockets) is the other
//! `impl ShardState` block, in `delivery.rs`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tracing::info;

use crate::close::CloseReason;
use crate::conn::{self, Conn, ConnKey, Held};
use crate::engine::{Engine, EngineShared};
use crate::format::{FormatId, MAX_FORMATS};
use crate::gate::Refused;
use crate::handle::Attachment;
use crate::pacer::{self, FlushPacer};
use crate::quota::TopicQuota;
use crate::shard::ShardInbox;
use crate::slab::Slab;
use crate::stats::{new_latency_histogram, ClientInfo, ShardStats, Tally};
use crate::topic::{SubscribeStart, Topic, TopicError, TopicId};
use crate::PublishError;

/// Shard ticks (250 ms each) between sweeps for idle topics.
const SWEEP_EVERY_TICKS: u32 = 20;

/// Size of the shard's read buffer, shared by all its connections: client
/// frames are parsed straight out of it, so an idle connection holds no
/// read buffer of its own.
const SCRATCH_LEN: usize = 64 * 1024;

/// One subscription in a topic's local list.
pub(crate) struct Subscriber {
    pub(crate) conn: Rc<Conn>,
    /// Messages with this sequence number or lower predate the subscription.
    pub(crate) after_seq: u64,
}

/// Write-side figures of a shard.
#[derive(Default)]
pub(crate) struct WriteCounters {
    pub(crate) writes: u64,
    pub(crate) bytes: u64,
    pub(crate) opened: u64,
}

/// Everything one shard owns. Owned by one shard thread.
pub(crate) struct ShardState {
    index: usize,
    shared: Arc<EngineShared>,
    engine: Engine,
    conns: RefCell<Slab>,
    pub(crate) subscribers: RefCell<HashMap<TopicId, Vec<Subscriber>>>,
    pub(crate) tally: RefCell<Tally>,
    pub(crate) write_counters: RefCell<WriteCounters>,
    pub(crate) latency_us: RefCell<Histogram<u64>>,
    /// Connections with unflushed events, in the order they got their first one.
    pub(crate) dirty: RefCell<VecDeque<(Instant, Rc<Conn>)>>,
    pub(crate) pacer: RefCell<FlushPacer>,
    /// Start of the pacer's current window: wall time and thread CPU time.
    pub(crate) pace_window: Cell<(Instant, Option<Duration>)>,
    scratch: RefCell<Vec<u8>>,
    topic_cache: RefCell<HashMap<Box<str>, Arc<Topic>>>,
    epoch: Instant,
    now: Cell<Instant>,
    next_heartbeat: Cell<Instant>,
    ticks: Cell<u32>,
}

impl ShardState {
    pub(crate) fn new(index: usize, shared: Arc<EngineShared>) -> Self {
        let now = Instant::now();
        let engine = Engine::from_shared(Arc::clone(&shared));
        let heartbeat = shared.config().heartbeat_interval;
        let pacer = FlushPacer::new(shared.config().coalesce_above_cpu);
        Self {
            index,
            shared,
            engine,
            conns: RefCell::default(),
            subscribers: RefCell::default(),
            tally: RefCell::default(),
            write_counters: RefCell::default(),
            latency_us: RefCell::new(new_latency_histogram()),
            dirty: RefCell::default(),
            pacer: RefCell::new(pacer),
            pace_window: Cell::new((now, pacer::thread_cpu_time())),
            scratch: RefCell::new(vec![0; SCRATCH_LEN]),
            topic_cache: RefCell::default(),
            epoch: now,
            now: Cell::new(now),
            next_heartbeat: Cell::new(now + heartbeat),
            ticks: Cell::new(0),
        }
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn shared(&self) -> &Arc<EngineShared> {
        &self.shared
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn inbox(&self) -> &ShardInbox {
        self.shared.inbox(self.index)
    }

    pub(crate) fn scratch(&self) -> &RefCell<Vec<u8>> {
        &self.scratch
    }

    /// Re-reads the clock; the dispatch loop does this once per turn.
    pub(crate) fn refresh_clock(&self) {
        self.now.set(Instant::now());
    }

    /// Moves the clock to a reading taken by the caller.
    pub(crate) fn refresh_clock_to(&self, now: Instant) {
        self.now.set(now);
    }

    pub(crate) fn now(&self) -> Instant {
        self.now.get()
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.now.get().duration_since(self.epoch).as_nanos() as u64
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.conns.borrow().len
    }

    // ---- connections -------------------------------------------------------

    /// Registers a new WebSocket connection and starts its task.
    pub(crate) fn attach(self: &Rc<Self>, attachment: Attachment) -> Result<ConnKey, Refused> {
        let Attachment {
            stream,
            read_buf,
            client_id,
            owner,
            format,
            session,
            mut permit,
        } = attachment;
        permit.establish()?;
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let key = self.conns.borrow_mut().vacant_key();
        let conn = Rc::new(Conn::new(
            key,
            stream,
            peer,
            Arc::clone(&client_id),
            Arc::clone(&owner),
            format,
            permit,
            self.shared.config().outbox,
            self.now(),
        ));
        self.conns.borrow_mut().insert(Rc::clone(&conn));
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
        tokio::task::spawn_local(conn::run(Rc::clone(self), conn, session, read_buf));
        Ok(key)
    }

    /// Forgets a closed connection. Its subscriptions are already gone.
    pub(crate) fn detach(&self, conn: &Conn, reason: &CloseReason) {
        if self.conns.borrow_mut().remove(conn.key).is_none() {
            return;
        }
        self.inbox().remove_load();
        self.shared
            .release_client_id(&conn.owner, &conn.client_id, self.index, conn.key);
        let state = conn.state.borrow();
        info!(
            client = %conn.client_id,
            peer = %conn.peer,
            shard = self.index,
            reason = %reason,
            sent = state.mailbox.counts.sent,
            dropped = state.mailbox.counts.dropped_total(),
            "connection closed"
        );
    }

    pub(crate) fn request_close(&self, key: ConnKey, reason: CloseReason) {
        if let Some(conn) = self.conns.borrow().get(key) {
            conn.request_close(reason);
        }
    }

    pub(crate) fn close_all(&self, reason: CloseReason) {
        for conn in self.conns.borrow().iter() {
            conn.request_close(reason.clone());
        }
    }

    // ---- topics --------------------------------------------------------------

    /// The topic named `name`, from this shard's cache when it has it; a
    /// topic that has to be created is charged to `quota`.
    pub(crate) fn topic(
        &self,
        name: &str,
        quota: Option<&Arc<TopicQuota>>,
    ) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.topic_cache.borrow().get(name) {
            if !topic.is_retired() {
                return Ok(Arc::clone(topic));
            }
        }
        let topic = self.shared.topics().resolve(name, quota)?;
        self.topic_cache
            .borrow_mut()
            .insert(name.into(), Arc::clone(&topic));
        Ok(topic)
    }

    pub(crate) fn publish(
        &self,
        name: &str,
        key: Option<Box<str>>,
        data: Bytes,
        quota: Option<&Arc<TopicQuota>>,
    ) -> Result<u64, PublishError> {
        // Checked before the lookup: a refused publish creates no topic.
        crate::engine::check_key(key.as_deref())?;
        // A topic retired after this lookup is handled by the fan-out.
        let topic = self.topic(name, quota)?;
        self.shared.publish(&topic, key, data)
    }

    /// Subscribes `conn` to `name`; returns the topic, where it starts, and
    /// the connection's slot in this shard's subscriber list of the topic.
    pub(crate) fn subscribe(
        &self,
        conn: &Rc<Conn>,
        name: &str,
        replay_limit: Option<usize>,
        quota: Option<&Arc<TopicQuota>>,
    ) -> Result<(Arc<Topic>, SubscribeStart, usize), TopicError> {
        let mut topic = self.topic(name, quota)?;
        let start = loop {
            match topic.subscribe(self.index, replay_limit) {
                Ok(start) => break start,
                // Retired since the cache saw it: a fresh lookup finds the
                // live topic or creates one (never retired at once).
                Err(_) => topic = self.topic(name, quota)?,
            }
        };
        let mut subscribers = self.subscribers.borrow_mut();
        let list = subscribers.entry(topic.id()).or_default();
        list.push(Subscriber {
            conn: Rc::clone(conn),
            after_seq: start.after_seq,
        });
        let slot = list.len() - 1;
        Ok((topic, start, slot))
    }

    /// Removes `conn`'s subscription `held` from this shard's list: a swap
    /// with the last subscriber, whose own slot is then corrected.
    pub(crate) fn unsubscribe(&self, conn: &Conn, held: &Held) {
        let topic = &held.topic;
        let mut subscribers = self.subscribers.borrow_mut();
        let Some(list) = subscribers.get_mut(&topic.id()) else {
            return;
        };
        let slot = held.slot.get();
        let pos = if list.get(slot).is_some_and(|s| s.conn.key == conn.key) {
            Some(slot)
        } else {
            debug_assert!(false, "subscriber slot out of date");
            list.iter().position(|s| s.conn.key == conn.key)
        };
        if let Some(pos) = pos {
            list.swap_remove(pos);
            if let Some(moved) = list.get(pos) {
                let state = moved.conn.state.borrow();
                if let Some(h) = state.topics.iter().find(|h| h.topic.id() == topic.id()) {
                    h.slot.set(pos);
                }
            }
            topic.unsubscribe(self.index);
        }
        if list.is_empty() {
            subscribers.remove(&topic.id());
        }
    }

    // ---- periodic work -------------------------------------------------------

    /// Closes connections silent past the heartbeat timeout and, when due,
    /// sends each format's heartbeat (encoded once per shard) to every connection.
    pub(crate) fn tick(&self) {
        self.refresh_clock();
        let now = self.now();
        let config = self.shared.config();
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        if ticks.is_multiple_of(SWEEP_EVERY_TICKS) {
            self.sweep_topics(now);
        }
        let heartbeat_due = now >= self.next_heartbeat.get();
        let mut heartbeats: [Option<Option<Bytes>>; MAX_FORMATS] = Default::default();
        if heartbeat_due {
            self.next_heartbeat.set(now + config.heartbeat_interval);
        }
        let wall = SystemTime::now();
        // Nothing below adds or removes connections (closing happens in each
        // connection's own task), so the slab can stay borrowed.
        for conn in self.conns.borrow().iter() {
            let (silent, due) = {
                let state = conn.state.borrow();
                // A closing connection has queued its close frame: nothing may
                // follow it, and its timeout has already been dealt with.
                if state.closing.is_some() {
                    continue;
                }
                let due = state
                    .deadline
                    .as_ref()
                    .filter(|(at, _)| *at <= now)
                    .map(|(_, reason)| reason.clone());
                (now.saturating_duration_since(state.last_seen), due)
            };
            if let Some(reason) = due {
                info!(client = %conn.client_id, peer = %conn.peer, reason = %reason, "connection deadline");
                conn.request_close(reason);
                continue;
            }
            if silent > config.heartbeat_timeout {
                info!(
                    client = %conn.client_id,
                    peer = %conn.peer,
                    silent_ms = silent.as_millis() as u64,
                    "heartbeat timeout"
                );
                conn.request_close(CloseReason::HeartbeatTimeout);
                continue;
            }
            if !heartbeat_due {
                continue;
            }
            let frame = heartbeats[conn.format.index()]
                .get_or_insert_with(|| self.shared.formats().get(conn.format).heartbeat(wall));
            if let Some(frame) = frame {
                conn.send_control(frame.clone());
                self.flush(conn);
            }
        }
    }

    /// Drops retired topics from this shard's cache; shard 0 also expires
    /// idle topics and shares out the history budget engine-wide (one
    /// sweeper is enough, and shard 0 runs the acceptor anyway).
    fn sweep_topics(&self, now: Instant) {
        if self.index == 0 {
            self.shared.topics().expire_idle(now);
            self.shared.topics().rebalance();
        }
        self.topic_cache.borrow_mut().retain(|_, t| !t.is_retired());
    }

    // ---- reporting -----------------------------------------------------------

    pub(crate) fn stats(&self) -> ShardStats {
        let tally = self.tally.borrow();
        let topics: Vec<(TopicId, _)> = tally.per_topic();
        let counts = tally.totals();
        let writes = self.write_counters.borrow();
        let (mut queued_frames, mut max_queue_depth) = (0, 0);
        for conn in self.conns.borrow().iter() {
            let depth = conn.state.borrow().mailbox.outbox.len();
            queued_frames += depth;
            max_queue_depth = max_queue_depth.max(depth);
        }
        ShardStats {
            index: self.index,
            connections: self.connection_count(),
            connections_opened: writes.opened,
            counts,
            topics,
            writes: writes.writes,
            bytes_written: writes.bytes,
            flush_delay: self.flush_delay(),
            queued_frames,
            max_queue_depth,
            latency_us: self.latency_us.borrow().clone(),
        }
    }

    pub(crate) fn clients(&self) -> Vec<ClientInfo> {
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
                    format: format_name(conn.format),
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
