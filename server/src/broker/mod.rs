//! The broker a server publishes through: in this process alone
//! ([`shardcast_engine::InProcess`]), or through a bus joining several
//! servers into one: Redis (`redis/`: one server or a Redis Cluster; Redis
//! numbers every message) or NATS (`nats.rs`: each server numbers what it
//! delivers). Both carry messages in the format of `envelope.rs`.
//!
//! [`Bus`] is what the rest of the server sees of an external broker: its
//! health for `/health`, its figures for stats and `/metrics`.

pub mod envelope;
mod nats;
mod redis;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use shardcast_engine::{Broker, Engine, InProcess, Topic};

use crate::config::BrokerConfig;
pub use nats::NatsBroker;
pub use redis::RedisBroker;

/// The broker to start the engine with and, for an external one, the
/// handle that connects it once the engine runs.
pub fn build(
    config: &BrokerConfig,
    engine: &shardcast_engine::EngineConfig,
) -> (Arc<dyn Broker>, Option<Arc<dyn Bus>>) {
    match config {
        BrokerConfig::Memory => (Arc::new(InProcess), None),
        BrokerConfig::Redis(redis) => {
            let broker = Arc::new(RedisBroker::new(redis.clone(), engine));
            (Arc::clone(&broker) as Arc<dyn Broker>, Some(broker))
        }
        BrokerConfig::Nats(nats) => {
            let broker = Arc::new(NatsBroker::new(nats.clone()));
            (Arc::clone(&broker) as Arc<dyn Broker>, Some(broker))
        }
    }
}

/// What the engine asks of a bus besides publishing.
#[derive(Debug)]
enum Control {
    Follow(Arc<Topic>),
    Unfollow(Arc<Topic>),
}

/// Runs `serve` on a thread of its own, named `broker`, in a current-thread
/// runtime: an external broker's connections, never a shard's.
fn spawn_bus_thread<F, Fut>(serve: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let spawned = std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(serve()),
                Err(e) => tracing::error!(error = %e, "cannot start the broker's runtime"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the broker thread");
    }
}

/// A warning that may come once per message, logged at most once per
/// interval with how many were held back meanwhile. Shared by a bus's
/// tasks.
#[derive(Debug)]
pub(crate) struct Quiet {
    every: Duration,
    /// When it was last logged, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Quiet {
    pub(crate) const fn every(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back)` when this one is to be logged; `None` to hold it.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let (last, held) = *state;
        if last.is_some_and(|at| now.duration_since(at) < self.every) {
            *state = (last, held + 1);
            return None;
        }
        *state = (Some(now), 0);
        Some(held)
    }
}

/// Why a publish is refused while the `bus` at `url` cannot be reached.
fn unreachable(bus: &str, url: &str) -> shardcast_engine::PublishError {
    shardcast_engine::PublishError::Unavailable(
        format!(
            "{bus} at {} is unreachable; the server reconnects on its own",
            crate::config::redacted(url)
        )
        .into(),
    )
}

/// An external broker as the server reports it.
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// The bus's figures now.
    fn health(&self) -> &BusHealth;
    /// The broker's kind, for `/health` and metrics (`redis`, `nats`).
    fn kind(&self) -> &'static str;
    /// This server's name on the bus.
    fn node_id(&self) -> &str;
    /// Starts the bus thread, delivering to `engine`.
    fn start(&self, engine: Engine);
}

/// An external broker's state and figures. Shared by the bus thread (which
/// writes them) and whoever reports them; every counter is `Relaxed`: each
/// is read on its own, for display.
#[derive(Debug)]
pub struct BusHealth {
    /// Connected to the bus now.
    pub connected: AtomicBool,
    /// Messages the bus accepted from this server.
    pub published: AtomicU64,
    /// Publishes refused because the bus could not take them.
    pub publish_errors: AtomicU64,
    /// Publishes refused because the queue to the bus was full.
    pub overloaded: AtomicU64,
    /// Messages received from the bus (for topics followed here).
    pub received: AtomicU64,
    /// Messages from the bus that could not be read.
    pub malformed: AtomicU64,
    /// Connections to the bus made again after one was lost.
    pub reconnects: AtomicU64,
    /// Gaps in a topic's sequence seen on the bus.
    pub gaps_detected: AtomicU64,
    /// Gaps filled from the bus's history.
    pub gaps_repaired: AtomicU64,
    /// Messages waiting for the bus.
    pub queued: AtomicUsize,
    /// Topics followed on the bus.
    pub followed: AtomicUsize,
    /// Time from a publish being queued to the bus accepting it, in µs.
    pub publish_latency_us: Mutex<Histogram<u64>>,
}

impl Default for BusHealth {
    fn default() -> Self {
        Self {
            connected: AtomicBool::new(false),
            published: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            received: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            gaps_detected: AtomicU64::new(0),
            gaps_repaired: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            followed: AtomicUsize::new(0),
            publish_latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds"),
            ),
        }
    }
}

impl BusHealth {
    /// Whether the bus is reachable now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
