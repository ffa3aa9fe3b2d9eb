//! The NATS broker: core NATS carries each message to every server that
//! follows its topic, and each server numbers what it delivers.
//!
//! Core NATS keeps nothing and delivers at most once, so it cannot number
//! messages for all servers as Redis does. What that means for clients:
//! - a message published on one server reaches the subscribers of every
//!   server that follows its topic, exactly once while the bus is up;
//! - each server numbers a topic's messages itself, in its own run (epoch),
//!   which begins when the server begins following the topic (its first
//!   local subscriber, after none for `follow_linger`) and again after
//!   every outage of the bus; a resume from another server's run, or
//!   across an outage, is answered "not possible" by each protocol's
//!   normal resume path (a fresh start, never a silent gap);
//! - a topic's history and keyed snapshot on a server hold what that
//!   server delivered in its current run.
//!
//! A publish is numbered and delivered here first, then queued for the bus
//! thread (refused, not queued, while NATS is unreachable or the queue is
//! full; a message the bus then fails to take is counted). The bus thread
//! runs one current-thread runtime: the NATS client (which reconnects on
//! its own), one task per followed topic reading its subject, and the loop
//! of [`Worker::serve`].
//!
//! Subjects: `<prefix>.<topic>`, the topic name one token with `.`, `*`,
//! `>`, `%`, spaces, controls and non-ASCII bytes percent-encoded.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_nats::Event;
use futures_util::StreamExt;
use parking_lot::Mutex;
use percent_encoding::{AsciiSet, CONTROLS};
use shardcast_engine::{
    Broker, Engine, Epoch, Fanout, Publication, PublishError, Published, Topic,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{envelope, Bus, BusHealth, Control};
use crate::config::{redacted, NatsConfig};

/// Longest wait between two attempts to reach NATS.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Bytes of a topic name written percent-encoded in its subject.
const SUBJECT_ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'.').add(b'*').add(b'>').add(b'%');

/// One message on its way to NATS.
struct Outgoing {
    subject: String,
    payload: Vec<u8>,
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
        }
    }

    fn unavailable(&self) -> PublishError {
        super::unreachable("NATS", &self.config.bus.url)
    }
}

/// `topic`'s subject under `prefix`.
pub fn subject(prefix: &str, topic: &str) -> String {
    format!(
        "{prefix}.{}",
        percent_encoding::utf8_percent_encode(topic, SUBJECT_ESCAPED)
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
            BusHealth::add(&self.health.publish_errors, 1);
            return Err(self.unavailable());
        }
        // Room on the bus first: a message delivered here is one the bus
        // will carry (unless NATS fails to take it, which is counted).
        let permit = match self.jobs.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                BusHealth::add(&self.health.overloaded, 1);
                return Err(PublishError::Overloaded {
                    queued: self.config.bus.queue_size,
                    retry_after: Duration::from_secs(1),
                });
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Err(self.unavailable()),
        };
        let copy = Publication {
            key: publication.key.clone(),
            data: publication.data.clone(),
            kind: publication.kind,
            transient: publication.transient,
        };
        let seq = local.deliver(topic, publication)?;
        let payload = envelope::numbered(
            topic.epoch(),
            seq,
            &self.config.bus.node_id,
            &copy,
            SystemTime::now(),
        );
        self.health.queued.fetch_add(1, Ordering::Relaxed);
        permit.send(Outgoing {
            subject: subject(&self.config.bus.prefix, topic.name()),
            payload,
            queued_at: Instant::now(),
        });
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
        info!(
            node = %self.config.bus.node_id,
            url = %redacted(&self.config.bus.url),
            "broker: nats; this server's name on the bus is its node id"
        );
        let worker = Worker {
            config: self.config.clone(),
            health: Arc::clone(&self.health),
            engine,
        };
        let spawned = std::thread::Builder::new()
            .name("broker".into())
            .spawn(move || worker.run(receivers));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the broker thread");
        }
    }
}

/// The bus thread's state.
struct Worker {
    config: NatsConfig,
    health: Arc<BusHealth>,
    engine: Engine,
}

/// Topics followed, by subject, with the task reading each.
type Followed = HashMap<String, (Arc<Topic>, JoinHandle<()>)>;

impl Worker {
    fn run(self, receivers: Receivers) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the broker's runtime");
                return;
            }
        };
        runtime.block_on(self.serve(receivers));
    }

    /// Until the engine stops, whichever comes first: a change in the
    /// connection, a follow or unfollow, a message to publish.
    async fn serve(self, receivers: Receivers) {
        let Receivers {
            mut jobs,
            mut control,
        } = receivers;
        let url = redacted(&self.config.bus.url);
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let options = async_nats::ConnectOptions::new()
            .name(&self.config.bus.node_id)
            // This server's own messages are delivered here already.
            .no_echo()
            .connection_timeout(self.config.bus.timeout)
            .ping_interval(Duration::from_secs(1))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                let exponent = u32::try_from(attempts.min(8)).unwrap_or(8);
                (Duration::from_millis(50) * 2u32.pow(exponent)).min(MAX_BACKOFF)
            })
            .event_callback(move |event| {
                let events = events_tx.clone();
                async move {
                    let _ = events.send(event);
                }
            });
        let servers: Vec<&str> = self.config.bus.url.split(',').map(str::trim).collect();
        let client = match options.connect(servers).await {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(url, error = %e, "the broker URL cannot be used; publishes will be refused");
                // Subscribers are not left waiting for a bus that never comes.
                while let Some(request) = control.recv().await {
                    if let Control::Follow(topic) = request {
                        self.engine.settle(&topic);
                    }
                }
                return;
            }
        };
        let mut followed = Followed::new();
        let mut sessions = 0u64;
        loop {
            tokio::select! {
                Some(event) = events.recv() => self.event(event, &url, &mut sessions, &followed),
                request = control.recv() => match request {
                    Some(request) => self.control(&client, request, &mut followed).await,
                    None => return,
                },
                Some(out) = jobs.recv() => {
                    self.health.queued.fetch_sub(1, Ordering::Relaxed);
                    match client.publish(out.subject, out.payload.into()).await {
                        Ok(()) => {
                            BusHealth::add(&self.health.published, 1);
                            let waited = out.queued_at.elapsed().as_micros() as u64;
                            let _ = self.health.publish_latency_us.lock().record(waited.max(1));
                        }
                        Err(e) => {
                            BusHealth::add(&self.health.publish_errors, 1);
                            warn!(error = %e, "NATS did not take a message; other servers miss it");
                        }
                    }
                }
            }
        }
    }

    /// A change in the connection to NATS.
    fn event(&self, event: Event, url: &str, sessions: &mut u64, followed: &Followed) {
        match event {
            Event::Connected => {
                self.health.connected.store(true, Ordering::Relaxed);
                if *sessions == 0 {
                    info!(url, node = %self.config.bus.node_id, "connected to NATS");
                } else {
                    BusHealth::add(&self.health.reconnects, 1);
                    info!(
                        url,
                        "connection to NATS regained; followed channels start a new run"
                    );
                }
                *sessions += 1;
                // Whatever the bus carried while this server was not
                // connected (since it started, or during the outage) is
                // lost to it: subscribers of the channels followed
                // meanwhile see a new epoch, not a silent gap.
                self.new_runs(followed);
            }
            Event::Disconnected => {
                self.health.connected.store(false, Ordering::Relaxed);
                warn!(
                    url,
                    "connection to NATS lost; publishes are refused until it is back"
                );
            }
            Event::SlowConsumer(_) => {
                // The client dropped messages this server did not read in
                // time; which topic's is not said, so every one restarts.
                warn!(
                    url,
                    "messages from NATS were dropped (slow consumer); followed channels start a new run"
                );
                self.new_runs(followed);
            }
            other => warn!(url, event = %other, "NATS"),
        }
    }

    /// Starts a new run of every followed topic.
    fn new_runs(&self, followed: &Followed) {
        for (topic, _) in followed.values() {
            BusHealth::add(&self.health.gaps_detected, 1);
            self.engine.catch_up(topic, Epoch::fresh(), 0, Vec::new());
        }
    }

    async fn control(
        &self,
        client: &async_nats::Client,
        request: Control,
        followed: &mut Followed,
    ) {
        match request {
            Control::Follow(topic) => {
                let subject = subject(&self.config.bus.prefix, topic.name());
                if let Some((_, reader)) = followed.remove(&subject) {
                    reader.abort();
                }
                match client.subscribe(subject.clone()).await {
                    Ok(subscriber) => {
                        let reader = tokio::spawn(read(
                            subscriber,
                            Arc::clone(&topic),
                            self.engine.clone(),
                            Arc::clone(&self.health),
                        ));
                        followed.insert(subject, (Arc::clone(&topic), reader));
                        // Once NATS has the subscription, whatever any
                        // server publishes reaches this one: the subscriber
                        // waiting for it (`ConnCtx::prepare`) misses nothing
                        // published after its answer.
                        if self.health.is_connected() {
                            let flushed =
                                tokio::time::timeout(self.config.bus.timeout, client.flush()).await;
                            if !matches!(flushed, Ok(Ok(()))) {
                                warn!(topic = %topic.name(), "NATS did not confirm a subscription in time");
                            }
                        }
                    }
                    Err(e) => {
                        warn!(topic = %topic.name(), error = %e, "cannot follow a channel on NATS; its subscribers get this server's messages only");
                    }
                }
                // A run of its own on this server, starting now.
                self.engine.catch_up(&topic, Epoch::fresh(), 0, Vec::new());
            }
            Control::Unfollow(topic) => {
                let subject = subject(&self.config.bus.prefix, topic.name());
                let ours = followed
                    .get(&subject)
                    .is_some_and(|(t, _)| Arc::ptr_eq(t, &topic));
                if ours {
                    if let Some((_, reader)) = followed.remove(&subject) {
                        // Dropping its subscriber unsubscribes.
                        reader.abort();
                    }
                }
            }
        }
        self.health
            .followed
            .store(followed.len(), Ordering::Relaxed);
    }
}

/// Reads one followed subject: other servers' messages, delivered here.
async fn read(
    mut subscriber: async_nats::Subscriber,
    topic: Arc<Topic>,
    engine: Engine,
    health: Arc<BusHealth>,
) {
    while let Some(message) = subscriber.next().await {
        let envelope = match envelope::parse(&message.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                BusHealth::add(&health.malformed, 1);
                warn!(topic = %topic.name(), error = %e, "dropped a malformed message from the bus");
                continue;
            }
        };
        BusHealth::add(&health.received, 1);
        let numbered = envelope.message;
        let publication = Publication {
            key: numbered.key,
            data: numbered.data,
            kind: numbered.kind,
            transient: numbered.transient,
        };
        match engine.relay(&topic, publication) {
            Ok(_) => {}
            Err(PublishError::ShuttingDown) => return,
            Err(e) => {
                warn!(topic = %topic.name(), error = %e, "a message from the bus could not be delivered here");
            }
        }
    }
}
