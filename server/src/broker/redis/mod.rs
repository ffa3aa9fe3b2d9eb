//! The Redis broker as shard threads see it: a bounded queue to the bus
//! thread (`bus.rs`, publishing in `publish.rs`, its connections to one
//! server or a Redis Cluster in `link.rs`, keys and scripts in `keys.rs`),
//! and the follow/unfollow requests of the engine.
//!
//! Shared by all threads. Nothing here waits on the network: a publish is
//! queued or refused at once —
//! - refused with [`PublishError::Unavailable`] while Redis is unreachable
//!   (nothing queued would be sent in time to be worth waiting for);
//! - refused with [`PublishError::Overloaded`] when `queue_size` messages
//!   already wait;
//! - otherwise answered by the bus thread once Redis has numbered it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use shardcast_engine::{
    Broker, Engine, EngineConfig, Fanout, PendingSeq, Publication, PublishError, Published,
    SeqReply, Topic,
};
use tokio::sync::mpsc;

mod bus;
mod keys;
mod link;
mod publish;

use super::{envelope, Bus, BusHealth, Control, Quiet};
use crate::config::{redacted, RedisConfig};

/// One message on its way to Redis.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) topic: Arc<str>,
    pub(super) body: Vec<u8>,
    pub(super) key: Option<Box<str>>,
    pub(super) keep: bool,
    pub(super) reply: SeqReply,
    pub(super) queued_at: Instant,
}

/// The history each topic keeps on the bus (the engine's, so a catch-up
/// fills a server's history exactly as its own publishes would).
#[derive(Clone, Copy, Debug)]
pub(super) struct Retention {
    pub(super) history: usize,
    pub(super) max_keys: usize,
}

/// The receiving ends, held until the bus thread starts.
struct Receivers {
    jobs: mpsc::Receiver<Job>,
    control: mpsc::UnboundedReceiver<Control>,
}

/// The Redis broker. Shared by all threads.
pub struct RedisBroker {
    config: RedisConfig,
    retention: Retention,
    jobs: mpsc::Sender<Job>,
    control: mpsc::UnboundedSender<Control>,
    receivers: Mutex<Option<Receivers>>,
    health: Arc<BusHealth>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("url", &redacted(&self.config.bus.url))
            .field("node_id", &self.config.bus.node_id)
            .finish()
    }
}

impl RedisBroker {
    /// A broker for `config`, keeping each topic's history as `engine` does.
    pub fn new(config: RedisConfig, engine: &EngineConfig) -> Self {
        let (jobs, jobs_rx) = mpsc::channel(config.bus.queue_size);
        let (control, control_rx) = mpsc::unbounded_channel();
        Self {
            retention: Retention {
                history: engine.history.capacity,
                max_keys: engine.history.max_keys,
            },
            config,
            jobs,
            control,
            receivers: Mutex::new(Some(Receivers {
                jobs: jobs_rx,
                control: control_rx,
            })),
            health: Arc::new(BusHealth::default()),
        }
    }

    fn unavailable(&self) -> PublishError {
        super::unreachable("Redis", &self.config.bus.url)
    }
}

impl Broker for RedisBroker {
    fn publish(
        &self,
        topic: &Arc<Topic>,
        publication: Publication,
        _local: &Fanout<'_>,
    ) -> Result<Published, PublishError> {
        if !self.health.is_connected() {
            BusHealth::add(&self.health.publish_errors, 1);
            return Err(self.unavailable());
        }
        let (reply, pending) = PendingSeq::new();
        let job = Job {
            topic: Arc::clone(topic.name()),
            body: envelope::body(&self.config.bus.node_id, &publication, SystemTime::now()),
            key: publication.key,
            keep: !publication.transient,
            reply,
            queued_at: Instant::now(),
        };
        // Counted before it is queued: the bus thread counts it out as soon
        // as it takes it, which may be before `try_send` returns.
        self.health.queued.fetch_add(1, Ordering::Relaxed);
        let sent = self.jobs.try_send(job);
        if sent.is_err() {
            self.health.queued.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => Ok(Published::Pending(pending)),
            Err(mpsc::error::TrySendError::Full(_)) => {
                BusHealth::add(&self.health.overloaded, 1);
                Err(PublishError::Overloaded {
                    queued: self.config.bus.queue_size,
                    retry_after: Duration::from_secs(1),
                })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.unavailable()),
        }
    }

    fn is_external(&self) -> bool {
        true
    }

    fn follow(&self, topic: &Arc<Topic>) {
        let _ = self.control.send(Control::Follow(Arc::clone(topic)));
    }

    fn unfollow(&self, topic: &Arc<Topic>) {
        let _ = self.control.send(Control::Unfollow(Arc::clone(topic)));
    }
}

impl Bus for RedisBroker {
    fn health(&self) -> &BusHealth {
        &self.health
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn node_id(&self) -> &str {
        &self.config.bus.node_id
    }

    fn start(&self, engine: Engine) {
        let Some(receivers) = self.receivers.lock().take() else {
            return;
        };
        tracing::info!(
            node = %self.config.bus.node_id,
            url = %redacted(&self.config.bus.url),
            cluster = !self.config.cluster.is_empty(),
            "broker: redis; this server's name on the bus is its node id"
        );
        let worker = bus::Worker {
            config: self.config.clone(),
            retention: self.retention,
            health: Arc::clone(&self.health),
            engine,
            unreadable: Quiet::every(Duration::from_secs(10)),
        };
        super::spawn_bus_thread(move || worker.serve(receivers.jobs, receivers.control));
    }
}
