//! What one shard owns: its connections, its subscriber lists, its counters.
//!
//! Owned by one shard thread; nothing here is `Send`. Connections are held in
//! a generation-checked slab so a command naming a connection that has since
//! closed (and whose slot was reused) is ignored.
//!
//! Delivery of one message (see [`ShardState::dispatch`]):
//! 1. find the topic's local subscriber list; none means no work;
//! 2. take the message's frame for each wire format used (encoded once per
//!    message across all shards, then a refcount clone);
//! 3. per subscriber: skip messages from before it subscribed, apply its rate
//!    limit, offer the frame to its outbox, and remember it for the flush;
//!    a refusal is counted once per view (connection and topic) with its reason.
//!
//! No lock, allocation or serialization happens per subscriber.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tracing::{debug, info};

use crate::close::CloseReason;
use crate::conn::{self, Conn, ConnKey, Session};
use crate::engine::{Engine, EngineShared};
use crate::format::{FormatId, MAX_FORMATS};
use crate::message::Message;
use crate::outbox::{Admission, DropReason, EventMeta, MAX_IOVECS};
use crate::pacer::{self, FlushPacer};
use crate::shard::ShardInbox;
use crate::stats::{new_latency_histogram, ClientInfo, Counts, ShardStats};
use crate::topic::{SubscribeStart, Topic, TopicError, TopicId};
use crate::PublishError;

/// Size of the shard's read buffer, shared by all its connections: client
/// frames are parsed straight out of it, so an idle connection holds no
/// read buffer of its own.
const SCRATCH_LEN: usize = 64 * 1024;

/// Connections written per flush slice before the shard goes back to its
/// inbox and its connection tasks. A bound on how long one turn can keep the
/// shard from reading, not a tuning knob: slices of 128 raised CPU at 1M
/// deliveries/s from 68% to 93% (fewer frames per write) for 10% lower p99.
const FLUSH_SLICE: usize = 1024;

/// What the dispatch loop should do about flushing next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Nothing is waiting.
    Idle,
    /// The next connection is due then.
    At(Instant),
    /// Connections are due now beyond this slice.
    Backlog,
}

/// One subscription in a topic's local list.
struct Subscriber {
    conn: Rc<Conn>,
    /// Messages with this sequence number or lower predate the subscription.
    after_seq: u64,
}

#[derive(Default)]
struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    conn: Option<Rc<Conn>>,
}

impl Slab {
    fn vacant_key(&mut self) -> ConnKey {
        if let Some(index) = self.free.pop() {
            let slot = &self.slots[index as usize];
            ConnKey {
                index,
                generation: slot.generation,
            }
        } else {
            self.slots.push(Slot::default());
            ConnKey {
                index: (self.slots.len() - 1) as u32,
                generation: 0,
            }
        }
    }

    fn insert(&mut self, conn: Rc<Conn>) {
        let slot = &mut self.slots[conn.key.index as usize];
        debug_assert!(slot.conn.is_none() && slot.generation == conn.key.generation);
        slot.conn = Some(conn);
        self.len += 1;
    }

    fn get(&self, key: ConnKey) -> Option<&Rc<Conn>> {
        let slot = self.slots.get(key.index as usize)?;
        (slot.generation == key.generation)
            .then_some(slot.conn.as_ref())
            .flatten()
    }

    fn remove(&mut self, key: ConnKey) -> Option<Rc<Conn>> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let conn = slot.conn.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(conn)
    }

    fn iter(&self) -> impl Iterator<Item = &Rc<Conn>> {
        self.slots.iter().filter_map(|s| s.conn.as_ref())
    }
}

/// Write-side figures of a shard.
#[derive(Default)]
struct WriteCounters {
    writes: u64,
    bytes: u64,
    opened: u64,
}

/// Everything one shard owns. Owned by one shard thread.
pub(crate) struct ShardState {
    index: usize,
    shared: Arc<EngineShared>,
    engine: Engine,
    conns: RefCell<Slab>,
    subscribers: RefCell<HashMap<TopicId, Vec<Subscriber>>>,
    topic_counts: RefCell<Vec<Counts>>,
    write_counters: RefCell<WriteCounters>,
    latency_us: RefCell<Histogram<u64>>,
    /// Connections with unflushed events, in the order they got their first one.
    dirty: RefCell<VecDeque<(Instant, Rc<Conn>)>>,
    pacer: RefCell<FlushPacer>,
    /// Start of the pacer's current window: wall time and thread CPU time.
    pace_window: Cell<(Instant, Option<Duration>)>,
    scratch: RefCell<Vec<u8>>,
    topic_cache: RefCell<HashMap<Box<str>, Arc<Topic>>>,
    epoch: Instant,
    now: Cell<Instant>,
    next_heartbeat: Cell<Instant>,
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
            topic_counts: RefCell::default(),
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

    fn now_ns(&self) -> u64 {
        self.now.get().duration_since(self.epoch).as_nanos() as u64
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.conns.borrow().len
    }

    // ---- connections -------------------------------------------------------

    /// Registers a new WebSocket connection and starts its task.
    pub(crate) fn attach(
        self: &Rc<Self>,
        stream: tokio::net::TcpStream,
        read_buf: Bytes,
        client_id: Arc<str>,
        format: FormatId,
        session: Box<dyn Session>,
    ) -> ConnKey {
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let key = self.conns.borrow_mut().vacant_key();
        let conn = Rc::new(Conn::new(
            key,
            stream,
            peer,
            Arc::clone(&client_id),
            format,
            self.shared.config().outbox,
            self.now(),
        ));
        self.conns.borrow_mut().insert(Rc::clone(&conn));
        self.write_counters.borrow_mut().opened += 1;
        self.inbox().add_load();
        self.shared.connection_opened();
        if let Some(old) = self.shared.claim_client_id(&client_id, self.index, key) {
            self.shared
                .close_remote(old.shard, old.key, CloseReason::Replaced);
        }
        info!(client = %client_id, %peer, shard = self.index, "connection accepted");
        tokio::task::spawn_local(conn::run(Rc::clone(self), conn, session, read_buf));
        key
    }

    /// Forgets a closed connection. Its subscriptions are already gone.
    pub(crate) fn detach(&self, conn: &Conn, reason: &CloseReason) {
        if self.conns.borrow_mut().remove(conn.key).is_none() {
            return;
        }
        self.inbox().remove_load();
        self.shared.connection_closed();
        self.shared
            .release_client_id(&conn.client_id, self.index, conn.key);
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

    /// The topic named `name`, from this shard's cache when it has it.
    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.topic_cache.borrow().get(name) {
            return Ok(Arc::clone(topic));
        }
        let topic = self.shared.topics().resolve(name)?;
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
    ) -> Result<u64, PublishError> {
        let topic = self.topic(name)?;
        self.shared.publish(&topic, key, data)
    }

    pub(crate) fn subscribe(
        &self,
        conn: &Rc<Conn>,
        topic: &Arc<Topic>,
        replay_limit: Option<usize>,
    ) -> SubscribeStart {
        let start = topic.subscribe(self.index, replay_limit);
        self.subscribers
            .borrow_mut()
            .entry(topic.id())
            .or_default()
            .push(Subscriber {
                conn: Rc::clone(conn),
                after_seq: start.after_seq,
            });
        start
    }

    pub(crate) fn unsubscribe(&self, conn: &Conn, topic: &Topic) {
        let mut subscribers = self.subscribers.borrow_mut();
        if let Some(list) = subscribers.get_mut(&topic.id()) {
            if let Some(pos) = list.iter().position(|s| s.conn.key == conn.key) {
                list.swap_remove(pos);
                topic.unsubscribe(self.index);
            }
            if list.is_empty() {
                subscribers.remove(&topic.id());
            }
        }
    }

    // ---- delivery ------------------------------------------------------------

    /// Offers `msg` to every local subscriber of its topic.
    pub(crate) fn dispatch(&self, msg: &Arc<Message>) {
        let subscribers = self.subscribers.borrow();
        let Some(list) = subscribers.get(&msg.topic) else {
            return;
        };
        let formats = self.shared.formats();
        let limit = self.shared.config().rate_limit;
        let now_ns = self.now_ns();
        let meta = EventMeta {
            topic: msg.topic,
            accepted_at: msg.accepted_at,
            replay: false,
        };
        let mut frames: [Option<Bytes>; MAX_FORMATS] = Default::default();
        let mut topic_counts = self.topic_counts.borrow_mut();
        let topic_counts = counts_slot(&mut topic_counts, msg.topic);
        let mut dirty = self.dirty.borrow_mut();
        let now = self.now();
        for sub in list {
            if msg.seq <= sub.after_seq {
                continue;
            }
            let conn = &sub.conn;
            let frame = frames[conn.format.index()]
                .get_or_insert_with(|| msg.frame(conn.format, formats).clone());
            let mut state = conn.state.borrow_mut();
            match state.mailbox.offer(frame, meta, limit, now_ns) {
                Admission::Queued => {
                    if !state.dirty {
                        state.dirty = true;
                        dirty.push_back((now, Rc::clone(conn)));
                    }
                }
                Admission::Dropped(reason) => topic_counts.drop_one(reason),
                Admission::Disconnect => {
                    topic_counts.drop_one(DropReason::OutboxFull);
                    drop(state);
                    conn.request_close(CloseReason::SlowConsumer);
                }
            }
        }
    }

    /// Writes connections whose oldest unflushed event has waited the
    /// pacer's delay, at most [`FLUSH_SLICE`] of them; says what is next.
    ///
    /// The slice bounds a turn: flushing thousands of connections at once
    /// lets messages pile up meanwhile, and the next turn dirties them all at
    /// the same instant so they come due together again.
    pub(crate) fn flush_due(&self, now: Instant) -> Flush {
        let delay = self.pacer.borrow().delay();
        for _ in 0..FLUSH_SLICE {
            let entry = {
                let mut dirty = self.dirty.borrow_mut();
                match dirty.front() {
                    Some(&(since, _)) if since + delay > now => return Flush::At(since + delay),
                    Some(_) => dirty.pop_front(),
                    None => return Flush::Idle,
                }
            };
            if let Some((_, conn)) = entry {
                conn.state.borrow_mut().dirty = false;
                self.flush(&conn);
            }
        }
        match self.dirty.borrow().front() {
            Some(&(since, _)) if since + delay > now => Flush::At(since + delay),
            Some(_) => Flush::Backlog,
            None => Flush::Idle,
        }
    }

    /// Writes every connection with unflushed events, now.
    pub(crate) fn flush_dirty(&self) {
        let list = std::mem::take(&mut *self.dirty.borrow_mut());
        for (_, conn) in list {
            conn.state.borrow_mut().dirty = false;
            self.flush(&conn);
        }
    }

    /// Feeds the pacer once per window with this thread's CPU use.
    pub(crate) fn pace(&self, now: Instant) {
        let (since, cpu_then) = self.pace_window.get();
        let wall = now.saturating_duration_since(since);
        if wall < pacer::WINDOW {
            return;
        }
        let cpu_now = pacer::thread_cpu_time();
        if let (Some(then), Some(cpu)) = (cpu_then, cpu_now) {
            let before = self.pacer.borrow().delay();
            let after = self
                .pacer
                .borrow_mut()
                .observe(cpu.saturating_sub(then), wall);
            if before.is_zero() != after.is_zero() {
                debug!(
                    shard = self.index,
                    delay_us = after.as_micros() as u64,
                    "flush coalescing changed"
                );
            }
        }
        self.pace_window.set((now, cpu_now));
    }

    /// The pacer's current coalescing delay.
    pub(crate) fn flush_delay(&self) -> Duration {
        self.pacer.borrow().delay()
    }

    /// Writes as much of `conn`'s outbox as the socket takes now, many frames
    /// per `writev`. On `WouldBlock` the connection's task waits for
    /// writability and calls this again.
    pub(crate) fn flush(&self, conn: &Conn) {
        let mut state = conn.state.borrow_mut();
        if state.write_blocked || state.broken {
            return;
        }
        while !state.mailbox.outbox.is_empty() {
            let result = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = state.mailbox.outbox.io_slices(&mut slices);
                conn.stream.try_write_vectored(&slices[..n])
            };
            match result {
                Ok(0) => {
                    state.broken = true;
                    drop(state);
                    conn.request_close(CloseReason::ConnectionLost);
                    return;
                }
                Ok(written) => {
                    let now = Instant::now();
                    let mut counters = self.write_counters.borrow_mut();
                    counters.writes += 1;
                    counters.bytes += written as u64;
                    let mut latency = self.latency_us.borrow_mut();
                    let mut topic_counts = self.topic_counts.borrow_mut();
                    let mailbox = &mut state.mailbox;
                    let counts = &mut mailbox.counts;
                    mailbox.outbox.advance(written, |frame| {
                        let Some(meta) = frame.event else { return };
                        let slot = counts_slot(&mut topic_counts, meta.topic);
                        if meta.replay {
                            counts.replayed += 1;
                            slot.replayed += 1;
                        } else {
                            counts.sent += 1;
                            slot.sent += 1;
                            let micros = now.duration_since(meta.accepted_at).as_micros() as u64;
                            latency.saturating_record(micros.max(1));
                        }
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    state.write_blocked = true;
                    drop(state);
                    conn.attention.notify_one();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    info!(client = %conn.client_id, peer = %conn.peer, error = %e, "write failed");
                    state.broken = true;
                    drop(state);
                    conn.request_close(CloseReason::ConnectionLost);
                    return;
                }
            }
        }
        state.mailbox.outbox.shrink_if_idle();
        if state.closing.is_some() {
            drop(state);
            conn.attention.notify_one();
        }
    }

    /// Counts the events a closing connection will never send.
    pub(crate) fn count_undelivered(&self, conn: &Conn) {
        let mut state = conn.state.borrow_mut();
        let mailbox = &mut state.mailbox;
        let mut topic_counts = self.topic_counts.borrow_mut();
        for frame in mailbox.outbox.clear() {
            let Some(meta) = frame.event else { continue };
            if meta.replay {
                continue;
            }
            mailbox.counts.drop_one(DropReason::Closed);
            counts_slot(&mut topic_counts, meta.topic).drop_one(DropReason::Closed);
        }
    }

    // ---- periodic work -------------------------------------------------------

    /// Closes connections silent past the heartbeat timeout and, when due,
    /// sends each format's heartbeat (encoded once per shard) to every connection.
    pub(crate) fn tick(&self) {
        self.refresh_clock();
        let now = self.now();
        let config = self.shared.config();
        let heartbeat_due = now >= self.next_heartbeat.get();
        let mut heartbeats: [Option<Option<Bytes>>; MAX_FORMATS] = Default::default();
        if heartbeat_due {
            self.next_heartbeat.set(now + config.heartbeat_interval);
        }
        let wall = SystemTime::now();
        let conns: Vec<Rc<Conn>> = self.conns.borrow().iter().cloned().collect();
        for conn in conns {
            let silent = now.saturating_duration_since(conn.state.borrow().last_seen);
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
                self.flush(&conn);
            }
        }
    }

    // ---- reporting -----------------------------------------------------------

    pub(crate) fn stats(&self) -> ShardStats {
        let topics: Vec<(TopicId, Counts)> = self
            .topic_counts
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != Counts::default())
            .map(|(i, c)| (TopicId(i as u32), *c))
            .collect();
        let mut counts = Counts::default();
        for (_, c) in &topics {
            counts.add(c);
        }
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
                    peer: conn.peer,
                    shard: self.index,
                    format: format_name(conn.format),
                    channels: state.topics.iter().map(|t| Arc::clone(t.name())).collect(),
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

/// The counts slot for `topic`, growing the table on first use.
#[inline]
fn counts_slot(table: &mut Vec<Counts>, topic: TopicId) -> &mut Counts {
    let index = topic.0 as usize;
    if index >= table.len() {
        table.resize(index + 1, Counts::default());
    }
    &mut table[index]
}

/// A handle to the shard the current task runs on. Owned by one shard
/// thread (`!Send`); cheap to clone.
#[derive(Clone)]
pub struct LocalShard {
    state: Rc<ShardState>,
}

impl std::fmt::Debug for LocalShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalShard")
            .field("index", &self.state.index)
            .finish()
    }
}

impl LocalShard {
    pub(crate) fn new(state: &Rc<ShardState>) -> Self {
        Self {
            state: Rc::clone(state),
        }
    }

    pub(crate) fn state(&self) -> &Rc<ShardState> {
        &self.state
    }

    /// This shard's index.
    pub fn index(&self) -> usize {
        self.state.index
    }

    /// The engine this shard belongs to.
    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// Takes over an upgraded WebSocket connection: from now on its reads,
    /// outbox and writes run on this shard, driven by `session`.
    ///
    /// `read_buf` holds bytes the HTTP layer read past the upgrade request.
    /// A live connection with the same `client_id` is closed with
    /// [`CloseReason::Replaced`].
    pub fn attach(
        &self,
        stream: tokio::net::TcpStream,
        read_buf: Bytes,
        client_id: Arc<str>,
        format: FormatId,
        session: Box<dyn Session>,
    ) -> ConnKey {
        self.state
            .attach(stream, read_buf, client_id, format, session)
    }

    /// Publishes through the engine's broker, resolving `topic` from this
    /// shard's cache (no global lock once the topic is known here).
    pub fn publish(
        &self,
        topic: &str,
        key: Option<Box<str>>,
        data: Bytes,
    ) -> Result<u64, PublishError> {
        self.state.publish(topic, key, data)
    }
}
