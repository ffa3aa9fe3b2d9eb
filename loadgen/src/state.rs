//! What every task of a run shares (one thread; plain cells, no locks).

use std::cell::{Cell, RefCell};
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::freshness::Board;
use crate::refusal::Refusals;

/// Latency histogram: microseconds, 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds")
}

/// The `q` quantile of a latency histogram (µs) in ms; 0 when empty.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// What the subscribers on one node measured, with several `--urls`
/// (nodes.rs numbers the nodes). Part of [`Shared`].
pub struct NodeTally {
    /// Subscriber connections on the node whose subscription was acknowledged.
    pub subscribers: u64,
    /// Events delivered to them over the run.
    pub delivered: u64,
    /// Their latency in the measured window: reset when it opens, recorded
    /// beside `Shared::second_latency`, read whole when it closes.
    pub latency: Histogram<u64>,
}

impl NodeTally {
    pub fn new() -> Self {
        Self {
            subscribers: 0,
            delivered: 0,
            latency: new_histogram(),
        }
    }
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Opening the subscriber connections.
    Connecting,
    /// Publishing, not yet measuring (also between sweep rounds).
    WarmingUp,
    /// Inside the measured window.
    Measuring,
    /// The window is closed: draining and asking the server.
    Finishing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::WarmingUp => "warmup",
            Phase::Measuring => "measuring",
            Phase::Finishing => "finishing",
        }
    }
}

/// Shared by all tasks of one run. Owned by the loadgen's single thread.
pub struct Shared {
    /// Publish timestamps are nanoseconds since this instant.
    pub epoch: Instant,
    /// Record latency of messages published at or after this (ns since epoch); `u64::MAX` = not measuring.
    pub measure_from_ns: Cell<u64>,
    /// Latency of the measured window so far, up to its last whole second:
    /// the window folds `second_latency` into it every second (window.rs).
    pub latency: RefCell<Histogram<u64>>,
    /// Latency of the measured window's current second; each event records here.
    pub second_latency: RefCell<Histogram<u64>>,
    /// Where the run is, for the progress line.
    pub phase: Cell<Phase>,
    pub delivered: Cell<u64>,
    pub duplicates: Cell<u64>,
    pub reordered: Cell<u64>,
    /// Messages skipped according to sequence gaps.
    pub gaps: Cell<u64>,
    /// Gaps seen right after a reconnect (not covered by replay).
    pub reconnect_gaps: Cell<u64>,
    pub reconnects: Cell<u64>,
    pub replay_overlap: Cell<u64>,
    pub connect_attempts: Cell<u64>,
    pub connected: Cell<u64>,
    pub connect_failures: Cell<u64>,
    pub first_failure: RefCell<Option<String>>,
    /// Subscriber connections open now (upgraded, not yet closed).
    pub open: Cell<u64>,
    pub unexpected_closes: Cell<u64>,
    pub error_frames: Cell<u64>,
    /// Published per topic.
    pub published: RefCell<Vec<u64>>,
    /// Subscriptions per topic.
    pub subscribers: RefCell<Vec<u64>>,
    /// Received per topic (all subscribers).
    pub received: RefCell<Vec<u64>>,
    /// Events whose `skipped` was checked against the seq jump, and those
    /// where the two disagreed.
    pub skipped_checked: Cell<u64>,
    pub skipped_wrong: Cell<u64>,
    /// Messages the publishers were behind schedule and skipped (open loop).
    pub publish_lag: Cell<u64>,
    /// Error frames the server answered publishes with.
    pub publish_errors: Cell<u64>,
    /// What the server refused, and why.
    pub refusals: RefCell<Refusals>,
    /// Per node with several `--urls`, indexed as nodes.rs numbers them;
    /// empty with one url, and then nothing is recorded per node.
    pub nodes: RefCell<Vec<NodeTally>>,
    /// Scenario burst: who holds which value of every key.
    pub board: RefCell<Option<Board>>,
    /// Total publish rate, messages per second (the sweep changes it).
    pub rate: Cell<f64>,
    pub stop: watch::Sender<bool>,
}

impl Shared {
    pub fn new(topics: usize, rate: f64, prefix: &str) -> Self {
        Self {
            epoch: Instant::now(),
            measure_from_ns: Cell::new(u64::MAX),
            latency: RefCell::new(new_histogram()),
            second_latency: RefCell::new(new_histogram()),
            phase: Cell::new(Phase::Connecting),
            delivered: Cell::new(0),
            duplicates: Cell::new(0),
            reordered: Cell::new(0),
            gaps: Cell::new(0),
            reconnect_gaps: Cell::new(0),
            reconnects: Cell::new(0),
            replay_overlap: Cell::new(0),
            connect_attempts: Cell::new(0),
            connected: Cell::new(0),
            connect_failures: Cell::new(0),
            first_failure: RefCell::new(None),
            open: Cell::new(0),
            unexpected_closes: Cell::new(0),
            error_frames: Cell::new(0),
            published: RefCell::new(vec![0; topics]),
            subscribers: RefCell::new(vec![0; topics]),
            received: RefCell::new(vec![0; topics]),
            skipped_checked: Cell::new(0),
            skipped_wrong: Cell::new(0),
            publish_lag: Cell::new(0),
            publish_errors: Cell::new(0),
            refusals: RefCell::new(Refusals::new(prefix)),
            nodes: RefCell::new(Vec::new()),
            board: RefCell::new(None),
            rate: Cell::new(rate),
            stop: watch::channel(false).0,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn bump(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    pub fn fail(&self, why: String) {
        Self::bump(&self.connect_failures, 1);
        self.first_failure.borrow_mut().get_or_insert(why);
    }

    /// Counts an open subscriber connection until the guard is dropped.
    pub fn opened(&self) -> OpenGuard<'_> {
        Self::bump(&self.open, 1);
        OpenGuard(&self.open)
    }

    /// Resolves when the run is stopping.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|&stop| stop).await;
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Deliveries expected so far: published × subscribers, per topic.
    pub fn expected(&self) -> u64 {
        let published = self.published.borrow();
        let subscribers = self.subscribers.borrow();
        published
            .iter()
            .zip(subscribers.iter())
            .map(|(p, s)| p * s)
            .sum()
    }
}

/// One open subscriber connection, counted in `Shared::open` while it lives.
pub struct OpenGuard<'a>(&'a Cell<u64>);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
