//! A shard: one pinned thread that owns a slice of the connections for
//! their whole life, and everything about them.
//!
//! Owned by one shard thread; nothing here is `Send` except the [`inbox`]
//! through which other threads reach it. [`ShardState`] is the shard's
//! plain data (connections, subscriber lists, counters); its fields, and
//! those of [`conn::Conn`], are private to this module, and its behaviour is
//! split by concern into child modules, each an `impl ShardState` block or a
//! task of the shard:
//!
//! | module | owns |
//! | --- | --- |
//! | `run` | the thread: dispatch loop, commands, tick loop, shutdown |
//! | `inbox` | [`ShardInbox`]: feeds with news and commands from other threads |
//! | `feeds` | this shard's cursor in each topic feed it reads |
//! | `accept` | the acceptor on shard 0, hand-off, [`ConnectionHandler`] |
//! | `lifecycle` | attach, detach, close requests, the periodic tick |
//! | `subscribe` | subscriber lists: join with replay, leave in O(1) |
//! | `delivery` | messages into outboxes, outboxes onto sockets |
//! | `report` | figures and client lists |
//! | `conn`, `reader`, `ctx` | a connection, its reads, its session's view |
//! | `driver` | the task that polls every connection with something to do |
//! | `poller` | the shard's own poll of its connections' sockets, and its task |
//! | `transport` | a connection's byte stream (TCP or TLS), and its readiness |
//! | `handle` | [`LocalShard`] and [`Attachment`], the public faces |
//! | `slab` | connections by generation-checked key |
//!
//! **The borrow rule.** Every field is a `RefCell` or `Cell` borrowed for
//! one step and released before anything that could re-enter: session
//! callbacks (`on_open`, `on_text`, `on_close`) run only from a
//! connection's opening task or from the driver polling that one
//! connection (`driver.rs`), never while the shard iterates its
//! connections or subscribers, so a callback may subscribe, publish, send
//! or close freely. The loops that do iterate (`dispatch`, `tick`,
//! `stats`) call no session code: they only queue frames and request
//! closes, which take effect when the driver next polls the connection.

mod accept;
mod conn;
mod ctx;
mod delivery;
mod driver;
mod feeds;
mod handle;
mod inbox;
mod lifecycle;
mod park;
mod poller;
mod reader;
mod report;
mod run;
mod slab;
mod subscribe;
mod throttled;
mod transport;

pub use accept::ConnectionHandler;
pub use conn::Session;
pub use ctx::{ConnCtx, SubscribeError, Subscribed};
pub use handle::{AttachError, Attachment, Details, LocalShard};
pub(crate) use inbox::{ShardCommand, ShardInbox};
pub(crate) use run::run;
pub use transport::{Transport, TLS_BUFFER_LIMIT};

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::broker::{PublishError, Published};
use crate::engine::{Engine, EngineShared};
use crate::sansio::beat;
use crate::sansio::census::Disconnects;
use crate::sansio::counts::Counts;
use crate::sansio::ids::{ConnKey, TopicId};
use crate::sansio::message::{MessageFilter, Publication};
use crate::sansio::pacer::{self, FlushPacer};
use crate::sansio::pattern::TopicError;
use crate::sansio::quota::TopicQuota;
use crate::sansio::throttle::Throttle;
use crate::stats::{new_latency_histogram, Tally};
use crate::topic::Topic;
use conn::Conn;
use delivery::LiveFrames;
use feeds::FeedReader;
use slab::Slab;

/// Shard ticks (250 ms each) between sweeps for idle topics.
const SWEEP_EVERY_TICKS: u32 = 20;

/// Size of the shard's read buffer, shared by all its connections: client
/// frames are parsed straight out of it, so an idle connection holds no
/// read buffer of its own.
const SCRATCH_LEN: usize = 64 * 1024;

/// One subscription in a topic's local list.
struct Subscriber {
    conn: Rc<Conn>,
    /// The first number of the topic's feed it receives: what the feed held
    /// before predates the subscription (see `feeds.rs`).
    joined: u64,
    /// What few subscriptions have: a filter, a maximum rate. Boxed to a
    /// thin pointer: every subscriber pays for the slot, few use it, and the
    /// list is scanned per message (24 bytes a subscriber, not 32).
    extra: Option<Box<Extra>>,
}

/// Throttled subscriptions' next rounds: (due, order) → whose. Weak: a
/// scheduled round never keeps a closed connection alive.
type Rounds = BTreeMap<(u64, u64), (Weak<Conn>, TopicId)>;

/// A subscription's filter and maximum rate, when it has either.
#[derive(Default)]
struct Extra {
    /// Which messages it receives; all without one.
    filter: Option<Rc<dyn MessageFilter>>,
    /// At most so many rounds of updates a second (`throttled.rs`).
    throttle: Option<RefCell<Throttle>>,
}

impl Extra {
    /// `Some` if it holds anything.
    fn boxed(self) -> Option<Box<Self>> {
        (self.filter.is_some() || self.throttle.is_some()).then(|| Box::new(self))
    }
}

impl Subscriber {
    /// Changes its filter or throttle with `f`; the box goes when neither
    /// is left.
    fn update_extra<R>(&mut self, f: impl FnOnce(&mut Extra) -> R) -> R {
        let mut extra = self.extra.take().map(|e| *e).unwrap_or_default();
        let out = f(&mut extra);
        self.extra = extra.boxed();
        out
    }
}

// Scanned once per message per subscriber: keep it at three words.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Subscriber>() == 24);

/// Write-side figures of a shard.
#[derive(Default)]
struct WriteCounters {
    writes: u64,
    bytes: u64,
    opened: u64,
}

/// Everything one shard owns. Owned by one shard thread.
struct ShardState {
    index: usize,
    shared: Arc<EngineShared>,
    engine: Engine,
    conns: RefCell<Slab<Rc<Conn>>>,
    subscribers: RefCell<HashMap<TopicId, Vec<Subscriber>>>,
    /// The feed of each topic with a local subscriber, and where this
    /// shard reads it (`feeds.rs`).
    feeds: RefCell<HashMap<TopicId, Rc<FeedReader>>>,
    /// When a shard fell a lap behind a feed was last logged.
    lap_logged: Cell<Option<Instant>>,
    tally: RefCell<Tally>,
    write_counters: RefCell<WriteCounters>,
    latency_us: RefCell<Histogram<u64>>,
    /// Connections with unflushed events, in the order they got their first one.
    dirty: RefCell<VecDeque<(Instant, Rc<Conn>)>>,
    /// Throttled subscriptions' next rounds, by due time (shard clock, ns)
    /// and order of scheduling.
    rounds: RefCell<Rounds>,
    /// Rounds scheduled so far: the second half of each `rounds` key.
    rounds_scheduled: Cell<u64>,
    /// Each format's frame of the message being dispatched.
    live_frames: RefCell<LiveFrames>,
    pacer: RefCell<FlushPacer>,
    /// Start of the pacer's current window: wall time and thread CPU time.
    pace_window: Cell<(Instant, Option<Duration>)>,
    scratch: RefCell<Vec<u8>>,
    topic_cache: RefCell<HashMap<Box<str>, Arc<Topic>>>,
    epoch: Instant,
    now: Cell<Instant>,
    /// Ticks per heartbeat interval, by format index (see `sansio::beat`).
    heartbeat_phases: Vec<u32>,
    ticks: Cell<u32>,
    /// Counts of connections that have closed, by format index.
    closed_by_format: RefCell<Vec<Counts>>,
    /// Connections open when a paced drain began (set at its first step).
    drain_start: std::cell::OnceCell<usize>,
    /// Connections closed, by reason and code.
    disconnects: RefCell<Disconnects>,
    /// Client messages handled and those answered with an error, by format index.
    client_messages: RefCell<Vec<ClientMessages>>,
    /// The client message being handled got an error reply
    /// ([`ConnCtx::send_error`]); cleared before each message.
    answered_error: Cell<bool>,
    /// Commands waiting for topics to catch up with the bus (`park.rs`).
    parking: park::Parking,
    /// Connections with something to do, for the driver (`driver.rs`).
    ready: Rc<driver::ReadyList>,
    /// The task that owns a connection in its opening or closing phase,
    /// waiting: while it opens, for the connection's attention
    /// (`park::attended`, woken by the driver); while it closes, for its
    /// socket to take writes (`conn::close`, woken by the poller).
    waiting: RefCell<HashMap<ConnKey, std::task::Waker>>,
    /// Where this shard's connections' sockets are registered (`poller.rs`).
    registry: mio::Registry,
    /// Whether the poller reads that poll; if it ever stops (it does not,
    /// short of a bug), the shard takes no more connections.
    polling: Cell<bool>,
}

/// One format's client messages on one shard.
#[derive(Clone, Copy, Debug, Default)]
struct ClientMessages {
    received: u64,
    answered_error: u64,
}

impl ShardState {
    fn new(index: usize, shared: Arc<EngineShared>, registry: mio::Registry) -> Self {
        let now = Instant::now();
        let engine = Engine::from_shared(Arc::clone(&shared));
        let heartbeat = shared.config().heartbeat_interval;
        let heartbeat_phases: Vec<u32> = shared
            .formats()
            .iter()
            .map(|(_, f)| beat::phases(f.heartbeat_interval().unwrap_or(heartbeat), run::TICK))
            .collect();
        let pacer = FlushPacer::new(shared.config().coalesce_above_cpu);
        let formats = shared.formats().len();
        let shared_external = shared.broker().is_external();
        Self {
            index,
            shared,
            engine,
            conns: RefCell::default(),
            subscribers: RefCell::default(),
            feeds: RefCell::default(),
            lap_logged: Cell::new(None),
            tally: RefCell::default(),
            write_counters: RefCell::default(),
            latency_us: RefCell::new(new_latency_histogram()),
            dirty: RefCell::default(),
            rounds: RefCell::default(),
            rounds_scheduled: Cell::new(0),
            live_frames: RefCell::new(LiveFrames::new(formats)),
            pacer: RefCell::new(pacer),
            pace_window: Cell::new((now, pacer::thread_cpu_time())),
            scratch: RefCell::new(vec![0; SCRATCH_LEN]),
            topic_cache: RefCell::default(),
            epoch: now,
            now: Cell::new(now),
            heartbeat_phases,
            ticks: Cell::new(0),
            closed_by_format: RefCell::new(vec![Counts::default(); formats]),
            drain_start: std::cell::OnceCell::new(),
            disconnects: RefCell::default(),
            client_messages: RefCell::new(vec![ClientMessages::default(); formats]),
            answered_error: Cell::new(false),
            parking: park::Parking::new(shared_external),
            ready: Rc::default(),
            waiting: RefCell::default(),
            registry,
            polling: Cell::new(true),
        }
    }

    fn index(&self) -> usize {
        self.index
    }

    fn shared(&self) -> &Arc<EngineShared> {
        &self.shared
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn inbox(&self) -> &ShardInbox {
        self.shared.inbox(self.index)
    }

    fn scratch(&self) -> &RefCell<Vec<u8>> {
        &self.scratch
    }

    /// Re-reads the clock; the dispatch loop does this once per turn.
    fn refresh_clock(&self) {
        self.now.set(Instant::now());
    }

    /// Moves the clock to a reading taken by the caller.
    fn refresh_clock_to(&self, now: Instant) {
        self.now.set(now);
    }

    fn now(&self) -> Instant {
        self.now.get()
    }

    fn now_ns(&self) -> u64 {
        self.now.get().duration_since(self.epoch).as_nanos() as u64
    }

    /// Clears what the handling of one client message sets on the shard
    /// for its duration, after a panic cut it short (`conn::closed_by_panic`).
    fn reset_after_panic(&self) {
        self.parking.reset();
        self.answered_error.set(false);
    }

    fn connection_count(&self) -> usize {
        self.conns.borrow().len
    }

    // ---- topics --------------------------------------------------------------

    /// The topic named `name`, from this shard's cache when it has it; a
    /// topic that has to be created is charged to `quota`.
    fn topic(&self, name: &str, quota: Option<&Arc<TopicQuota>>) -> Result<Arc<Topic>, TopicError> {
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

    fn publish(
        &self,
        name: &str,
        publication: Publication,
        quota: Option<&Arc<TopicQuota>>,
    ) -> Result<Published, PublishError> {
        // Checked before the lookup: a refused publish creates no topic.
        crate::engine::check_key(publication.key.as_deref())?;
        // A topic retired after this lookup is handled by the fan-out.
        let topic = self.topic(name, quota)?;
        self.shared.publish(&topic, publication, self.index)
    }
}
