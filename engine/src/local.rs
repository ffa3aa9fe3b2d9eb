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
use crate::conn::{self, Conn, ConnKey, Session};
use crate::engine::{Engine, EngineShared};
use crate::format::{FormatId, MAX_FORMATS};
use crate::pacer::{self, FlushPacer};
use crate::shard::ShardInbox;
use crate::slab::Slab;
use crate::stats::{new_latency_histogram, ClientInfo, Counts, ShardStats};
use crate::topic::{SubscribeStart, Topic, TopicError, TopicId};
use crate::PublishError;

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
    pub(crate) topic_counts: RefCell<Vec<Counts>>,
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

    pub(crate) fn now_ns(&self) -> u64 {
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
        // Nothing below adds or removes connections (closing happens in each
        // connection's own task), so the slab can stay borrowed.
        for conn in self.conns.borrow().iter() {
            let silent = {
                let state = conn.state.borrow();
                // A closing connection has queued its close frame: nothing may
                // follow it, and its timeout has already been dealt with.
                if state.closing.is_some() {
                    continue;
                }
                now.saturating_duration_since(state.last_seen)
            };
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
