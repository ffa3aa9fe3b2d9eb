//! The NATS broker's own thread: the NATS client (which reconnects on its
//! own), one task per followed subject reading it, and the loop of
//! [`Worker::serve`], whichever comes first:
//! - a change in the connection: `/health` and the publish path learn it at
//!   once (the client's event callback); then every followed topic starts
//!   a new run when the connection is lost and again when it is back, so
//!   what the bus carried meanwhile is a visible new epoch, never a silent
//!   gap (a slow-consumer drop likewise, at most once a second);
//! - a follow: subscribe, then — once NATS confirms it, in a task of its
//!   own so one slow confirmation holds up nothing else — the topic's run
//!   starts and the subscribers waiting for it are let go; an unfollow:
//!   the reading task ends, which unsubscribes;
//! - a message to publish: numbered in this server's run for its topic
//!   (`order.rs`), its envelope written and handed to the client, at most
//!   `timeout_ms` waited for room.
//!
//! Each reading task checks every sender's numbers: after a skipped one
//! the topic starts a new run, a stale one is dropped.
//!
//! Owned by the broker thread; reaches the shards only through the engine
//! (`Engine::relay`, `catch_up`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Event;
use bytes::Bytes;
use futures_util::StreamExt;
use percent_encoding::{AsciiSet, CONTROLS};
use shardcast_engine::{Engine, Epoch, Publication, PublishError, Topic};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::order::{Arrival, Inbound, Outbound};
use super::{subject, Outgoing, Receivers};
use crate::broker::envelope::{self, Parts};
use crate::broker::{BusHealth, Control, Quiet};
use crate::config::{redacted, NatsConfig};

/// Bytes of a topic name written percent-encoded in its subject.
pub(super) const SUBJECT_ESCAPED: &AsciiSet =
    &CONTROLS.add(b' ').add(b'.').add(b'*').add(b'>').add(b'%');

/// Longest wait between two attempts to reach NATS.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Most new runs for slow-consumer drops: one a second.
const RESTART_EVERY: Duration = Duration::from_secs(1);

/// How often a warning that may come per message is logged, at most.
const QUIET: Duration = Duration::from_secs(10);

/// A topic not sent on for this long is forgotten by [`Outbound`] (checked
/// as often).
const SENT_IDLE: Duration = Duration::from_secs(600);

/// Topics followed, by subject.
type Followed = HashMap<String, Follower>;

/// One topic followed on NATS.
struct Follower {
    topic: Arc<Topic>,
    /// The task reading its subject; ending it unsubscribes.
    reader: JoinHandle<()>,
    /// Set when its first run starts (NATS confirmed the subscription):
    /// until then a new run of every topic passes it over, so its waiting
    /// subscribers are let go only once messages can reach them.
    started: Arc<AtomicBool>,
}

/// The bus thread's state.
pub(super) struct Worker {
    config: NatsConfig,
    health: Arc<BusHealth>,
    max_payload: Arc<AtomicUsize>,
    engine: Engine,
    /// Warnings that may come per message: publishes NATS did not take;
    /// messages received that could not be read or delivered, or that
    /// show the bus lost some (shared with the reading tasks); slow
    /// consumer drops.
    not_taken: Quiet,
    unreadable: Arc<Quiet>,
    slow: Quiet,
    /// This server's numbers per topic sent (`order.rs`).
    outbound: RefCell<Outbound>,
}

impl Worker {
    pub(super) fn new(
        config: NatsConfig,
        health: Arc<BusHealth>,
        max_payload: Arc<AtomicUsize>,
        engine: Engine,
    ) -> Self {
        Self {
            config,
            health,
            max_payload,
            engine,
            not_taken: Quiet::every(QUIET),
            unreadable: Arc::new(Quiet::every(QUIET)),
            slow: Quiet::every(QUIET),
            outbound: RefCell::default(),
        }
    }

    /// Serves until the engine stops (module docs).
    pub(super) async fn serve(self, receivers: Receivers) {
        let Receivers {
            mut jobs,
            mut control,
        } = receivers;
        let url = redacted(&self.config.bus.url);
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let health = Arc::clone(&self.health);
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
                // Publishes are refused from this instant, not from when
                // the loop below gets to the event.
                match event {
                    Event::Connected => health.connected.store(true, Ordering::Relaxed),
                    Event::Disconnected => health.connected.store(false, Ordering::Relaxed),
                    _ => {}
                }
                let events = events_tx.clone();
                async move {
                    let _ = events.send(event);
                }
            });
        let servers: Vec<&str> = self.config.bus.url.split(',').map(str::trim).collect();
        let client = match options.connect(servers).await {
            Ok(client) => client,
            Err(e) => {
                error!(url, error = %e, "the broker URL cannot be used; publishes will be refused");
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
        let mut restarted = None;
        let mut prune = tokio::time::interval(SENT_IDLE);
        loop {
            tokio::select! {
                _ = prune.tick() => self.outbound.borrow_mut().prune(Instant::now(), SENT_IDLE),
                Some(event) = events.recv() => {
                    self.event(event, &client, &url, &mut sessions, &mut restarted, &followed);
                }
                request = control.recv() => match request {
                    Some(request) => self.control(&client, request, &mut followed).await,
                    None => return,
                },
                Some(out) = jobs.recv() => self.send(&client, out).await,
            }
        }
    }

    /// A change in the connection to NATS (module docs).
    fn event(
        &self,
        event: Event,
        client: &async_nats::Client,
        url: &str,
        sessions: &mut u64,
        restarted: &mut Option<Instant>,
        followed: &Followed,
    ) {
        match event {
            Event::Connected => {
                let max = client.server_info().max_payload;
                self.max_payload.store(max, Ordering::Relaxed);
                if *sessions == 0 {
                    info!(url, node = %self.config.bus.node_id, "connected to NATS");
                } else {
                    BusHealth::add(&self.health.reconnects, 1);
                    info!(
                        url,
                        "connection to NATS regained; followed channels start a new run"
                    );
                }
                // Whatever the bus carried before this server was connected
                // is lost to it: counted as a gap when it was connected before.
                self.new_runs(followed, *sessions > 0);
                *sessions += 1;
            }
            Event::Disconnected => {
                warn!(
                    url,
                    "connection to NATS lost; publishes are refused until it is back"
                );
                self.new_runs(followed, false);
            }
            Event::SlowConsumer(_) => {
                // Which topic's messages the client dropped is not said:
                // every one restarts, at most once a second.
                if restarted.is_none_or(|at| at.elapsed() >= RESTART_EVERY) {
                    *restarted = Some(Instant::now());
                    self.new_runs(followed, true);
                }
                if let Some(held) = self.slow.admit() {
                    warn!(url, more = held, "messages from NATS were dropped (slow consumer); followed channels start a new run");
                }
            }
            other => info!(url, event = %other, "NATS"),
        }
    }

    /// Starts a new run of every followed topic; `lost` counts each as a
    /// gap on the bus.
    fn new_runs(&self, followed: &Followed, lost: bool) {
        for Follower { topic, started, .. } in followed.values() {
            if !started.load(Ordering::Relaxed) {
                continue;
            }
            if lost {
                BusHealth::add(&self.health.gaps_detected, 1);
            }
            self.engine.catch_up(topic, Epoch::fresh(), 0, Vec::new());
        }
    }

    /// A follow or unfollow from the engine (module docs).
    async fn control(
        &self,
        client: &async_nats::Client,
        request: Control,
        followed: &mut Followed,
    ) {
        match request {
            Control::Follow(topic) => {
                let subject = subject(&self.config.bus.prefix, topic.name());
                if let Some(old) = followed.remove(&subject) {
                    old.reader.abort();
                }
                let started = Arc::new(AtomicBool::new(false));
                match client.subscribe(subject.clone()).await {
                    Ok(subscriber) => {
                        let reader = tokio::spawn(read(
                            subscriber,
                            Arc::clone(&topic),
                            self.engine.clone(),
                            Arc::clone(&self.health),
                            Arc::clone(&self.unreadable),
                        ));
                        followed.insert(
                            subject,
                            Follower {
                                topic: Arc::clone(&topic),
                                reader,
                                started: Arc::clone(&started),
                            },
                        );
                    }
                    Err(e) => {
                        error!(topic = %topic.name(), error = %e, "cannot follow a channel on NATS; its subscribers get this server's messages only");
                    }
                }
                // Once NATS has the subscription, whatever any server
                // publishes reaches this one: the run starts then, and the
                // subscriber waiting for it misses nothing after its answer.
                // A request to a subject nobody serves is answered by the
                // server itself, after what came before it on the
                // connection: the subscription (a flush only writes it).
                let (client, engine) = (client.clone(), self.engine.clone());
                let (wait, connected) = (self.config.bus.timeout, self.health.is_connected());
                tokio::spawn(async move {
                    let nobody = client.new_inbox();
                    let answered = tokio::time::timeout(wait, client.request(nobody, Bytes::new()));
                    if connected && answered.await.is_err() {
                        warn!(topic = %topic.name(), "NATS did not confirm a subscription in time");
                    }
                    // Relaxed: set and read on this one thread.
                    started.store(true, Ordering::Relaxed);
                    engine.catch_up(&topic, Epoch::fresh(), 0, Vec::new());
                });
            }
            // Wanted again since (its follow may have come first): kept.
            Control::Unfollow(topic) if topic.is_followed() => {}
            Control::Unfollow(topic) => {
                let subject = subject(&self.config.bus.prefix, topic.name());
                if followed
                    .get(&subject)
                    .is_some_and(|f| Arc::ptr_eq(&f.topic, &topic))
                {
                    if let Some(gone) = followed.remove(&subject) {
                        // Dropping its subscriber unsubscribes.
                        gone.reader.abort();
                    }
                }
            }
        }
        self.health
            .followed
            .store(followed.len(), Ordering::Relaxed);
    }

    /// Hands one message to the client, its envelope written here.
    async fn send(&self, client: &async_nats::Client, out: Outgoing) {
        self.health.queued.fetch_sub(1, Ordering::Relaxed);
        // Numbered even if NATS then does not take it: receivers notice.
        let (run, seq) = self.outbound.borrow_mut().next(&out.topic, Instant::now());
        let payload = envelope::numbered(
            run,
            seq,
            &self.config.bus.node_id,
            &Parts {
                key: out.key.as_deref(),
                data: &out.data,
                kind: out.kind,
                transient: out.transient,
            },
            out.published_at,
        );
        let subject = subject(&self.config.bus.prefix, &out.topic);
        let sent = tokio::time::timeout(
            self.config.bus.timeout,
            client.publish(subject, payload.into()),
        )
        .await;
        let error = match sent {
            Ok(Ok(())) => {
                BusHealth::add(&self.health.published, 1);
                let waited = out.queued_at.elapsed().as_micros() as u64;
                let _ = self.health.publish_latency_us.lock().record(waited.max(1));
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no room in time".to_owned(),
        };
        BusHealth::add(&self.health.publish_errors, 1);
        if let Some(held) = self.not_taken.admit() {
            warn!(topic = %out.topic, error, more = held, "NATS did not take a message delivered here; other servers miss it");
        }
    }
}

/// Reads one followed subject: other servers' messages, delivered here.
async fn read(
    mut subscriber: async_nats::Subscriber,
    topic: Arc<Topic>,
    engine: Engine,
    health: Arc<BusHealth>,
    unreadable: Arc<Quiet>,
) {
    let mut inbound = Inbound::default();
    while let Some(message) = subscriber.next().await {
        let envelope = match envelope::parse(&message.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                BusHealth::add(&health.malformed, 1);
                if let Some(held) = unreadable.admit() {
                    warn!(topic = %topic.name(), error = %e, more = held, "dropped a malformed message from the bus");
                }
                continue;
            }
        };
        BusHealth::add(&health.received, 1);
        let numbered = envelope.message;
        match inbound.take(&envelope.origin, numbered.epoch, numbered.seq) {
            Arrival::Next => {}
            Arrival::Stale => continue,
            Arrival::AfterLoss(missed) => {
                // Its subscribers see a new run, then this message in it.
                BusHealth::add(&health.gaps_detected, 1);
                engine.catch_up(&topic, Epoch::fresh(), 0, Vec::new());
                if let Some(held) = unreadable.admit() {
                    warn!(topic = %topic.name(), origin = %envelope.origin, missed, more = held, "NATS lost messages; the channel starts a new run here");
                }
            }
        }
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
                if let Some(held) = unreadable.admit() {
                    warn!(topic = %topic.name(), error = %e, more = held, "a message from the bus could not be delivered here");
                }
            }
        }
    }
}
