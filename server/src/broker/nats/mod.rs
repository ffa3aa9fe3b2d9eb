//! The NATS broker: core NATS carries each message to every server that
//! follows its topic, and each server numbers what it delivers.
//!
//! Core NATS keeps nothing and delivers at most once, so it cannot number
//! messages for all servers as Redis does. What that means for clients:
//! - a message published on one server reaches the subscribers of every
//!   server that follows its topic, exactly once while the bus is up; one
//!   the bus lost is noticed by the next from the same server
//!   (`order.rs`);
//! - each server numbers a topic's messages itself, in its own run (epoch),
//!   which begins when the server begins following the topic (its first
//!   local subscriber, after none for `follow_linger`) and again after
//!   every outage of the bus or message it lost; a resume from another server's run, or
//!   across an outage, is answered "not possible" by each protocol's
//!   normal resume path (a fresh start, never a silent gap);
//! - a topic's history and keyed snapshot on a server hold what that
//!   server delivered in its current run (a new run starts them empty).
//!
//! A publish is numbered and delivered here first and, in the same hold of
//! the topic's lock, queued for the bus thread (`bus.rs`), so other
//! servers receive a topic's messages in this server's order. It is
//! refused, not delivered, while NATS is unreachable, when the queue is
//! full, or when it is larger than the NATS server takes; a message the
//! bus then fails to take is counted.
//!
//! Subjects: `<prefix>.<topic>`, the topic name one token with `.`, `*`,
//! `>`, `%`, spaces, controls and non-ASCII bytes percent-encoded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use shardcast_engine::{
    Broker, Engine, Fanout, MessageKind, Publication, PublishError, Published, Topic,
};
use tokio::sync::mpsc;

use super::{Bus, BusHealth, Control};
use crate::config::{redacted, NatsConfig};

mod bus;
mod order;

/// Bytes a message's envelope adds to its data, at most (`envelope.rs`:
/// epoch, seq, a 64-byte node id, timestamp, kind, keep, a 128-byte key).
const ENVELOPE_MAX: usize = 320;

/// One message on its way to NATS: what the bus thread needs to write its
/// envelope, off the shard thread.
struct Outgoing {
    topic: Arc<str>,
    key: Option<Box<str>>,
    data: Bytes,
    kind: MessageKind,
    transient: bool,
    published_at: SystemTime,
    queued_at: Instant,
}

/// The receiving ends, held until the bus thread starts.
struct Receivers {
    jobs: mpsc::Receiver<Outgoing>,
    control: mpsc::UnboundedReceiver<Control>,
}

/// The NATS broker. Shared by all threads.
pub struct NatsBroker {
    config: NatsConfig,
    jobs: mpsc::Sender<Outgoing>,
    control: mpsc::UnboundedSender<Control>,
    receivers: Mutex<Option<Receivers>>,
    health: Arc<BusHealth>,
    /// The largest message the NATS server takes (0 until connected).
    max_payload: Arc<AtomicUsize>,
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("url", &redacted(&self.config.bus.url))
            .field("node_id", &self.config.bus.node_id)
            .finish()
    }
}

impl NatsBroker {
    /// A broker for `config`.
    pub fn new(config: NatsConfig) -> Self {
        let (jobs, jobs_rx) = mpsc::channel(config.bus.queue_size);
        let (control, control_rx) = mpsc::unbounded_channel();
        Self {
            config,
            jobs,
            control,
            receivers: Mutex::new(Some(Receivers {
                jobs: jobs_rx,
                control: control_rx,
            })),
            health: Arc::new(BusHealth::default()),
            max_payload: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn refuse(&self, error: PublishError) -> Result<Published, PublishError> {
        BusHealth::add(&self.health.publish_errors, 1);
        Err(error)
    }
}

/// `topic`'s subject under `prefix`.
pub fn subject(prefix: &str, topic: &str) -> String {
    format!(
        "{prefix}.{}",
        percent_encoding::utf8_percent_encode(topic, bus::SUBJECT_ESCAPED)
    )
}

impl Broker for NatsBroker {
    fn publish(
        &self,
        topic: &Arc<Topic>,
        publication: Publication,
        local: &Fanout<'_>,
    ) -> Result<Published, PublishError> {
        if !self.health.is_connected() {
            return self.refuse(super::unreachable("NATS", &self.config.bus.url));
        }
        let max = self.max_payload.load(Ordering::Relaxed);
        if max > 0 && publication.data.len() + ENVELOPE_MAX > max {
            return self.refuse(PublishError::TooLarge { max });
        }
        // Room on the bus first: a message delivered here is one the bus
        // will carry (unless NATS then fails to take it, which is counted).
        let permit = match self.jobs.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                BusHealth::add(&self.health.overloaded, 1);
                return Err(PublishError::Overloaded {
                    queued: self.config.bus.queue_size,
                    retry_after: Duration::from_secs(1),
                });
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                return self.refuse(super::unreachable("NATS", &self.config.bus.url))
            }
        };
        let (key, data) = (publication.key.clone(), publication.data.clone());
        let (kind, transient) = (publication.kind, publication.transient);
        let published_at = SystemTime::now();
        let (seq, ()) = local.deliver_then(topic, publication, |msg| {
            // Counted before it is sent: the bus thread counts it out as
            // soon as it takes it.
            self.health.queued.fetch_add(1, Ordering::Relaxed);
            permit.send(Outgoing {
                topic: Arc::clone(&msg.topic_name),
                key,
                data,
                kind,
                transient,
                published_at,
                queued_at: Instant::now(),
            });
        })?;
        Ok(Published::Seq(seq))
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

impl Bus for NatsBroker {
    fn health(&self) -> &BusHealth {
        &self.health
    }

    fn kind(&self) -> &'static str {
        "nats"
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
            "broker: nats; this server's name on the bus is its node id"
        );
        let worker = bus::Worker::new(
            self.config.clone(),
            Arc::clone(&self.health),
            Arc::clone(&self.max_payload),
            engine,
        );
        super::spawn_bus_thread(move || worker.serve(receivers));
    }
}
