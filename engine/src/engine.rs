//! The engine handle and the state all shards share.
//!
//! [`EngineShared`] is shared by all threads and read-mostly: configuration,
//! formats, the topic registry, the shard inboxes, the connection [`Gate`],
//! and the client-id registry (locked only when a connection opens or
//! closes, never per message). [`Engine`] is a cheap, cloneable, `Send`
//! handle to it.
//!
//! Client ids are per principal (API key, token user): each principal has
//! its own ids, so no credential can take over — or squat on — another's.
//! A new connection of the same principal with the same id takes it over
//! (the old one is closed with 4409 `CLIENT_REPLACED`).

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::warn;

use crate::broker::{Broker, Fanout, PublishError, Published};
use crate::config::EngineConfig;
use crate::gate::Gate;
use crate::registry::{RegistryConfig, TopicRegistry};
use crate::sansio::close::CloseReason;
use crate::sansio::format::Formats;
use crate::sansio::ids::ConnKey;
use crate::sansio::message::Publication;
use crate::sansio::pattern::TopicError;
use crate::sansio::pattern::MAX_KEY_LEN;
use crate::sansio::publishing::PublishGate;
use crate::shard::{self, ConnectionHandler, ShardCommand, ShardInbox};
use crate::topic::Topic;

mod follow;
mod lifecycle;
mod report;

/// Where a client id of a principal is connected.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientSlot {
    pub(crate) shard: usize,
    pub(crate) key: ConnKey,
}

/// A client id within its principal's own ids: (owner, id).
type ClientName = (Arc<str>, Arc<str>);

/// State shared by all shards and publishers. Shared by all threads.
pub(crate) struct EngineShared {
    config: EngineConfig,
    formats: Formats,
    topics: TopicRegistry,
    inboxes: Box<[ShardInbox]>,
    broker: Arc<dyn Broker>,
    gate: Arc<Gate>,
    clients: Mutex<HashMap<ClientName, ClientSlot>>,
    stop: watch::Sender<bool>,
    /// Closed once shutdown begins, before any shard is told; counts the
    /// publishes in progress per shard so shutdown can wait for them.
    publishing: PublishGate,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl EngineShared {
    pub(crate) fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub(crate) fn formats(&self) -> &Formats {
        &self.formats
    }

    pub(crate) fn topics(&self) -> &TopicRegistry {
        &self.topics
    }

    pub(crate) fn inbox(&self, shard: usize) -> &ShardInbox {
        &self.inboxes[shard]
    }

    pub(crate) fn least_loaded_shard(&self) -> usize {
        (0..self.inboxes.len())
            .min_by_key(|&i| self.inboxes[i].load())
            .unwrap_or(0)
    }

    /// Publishes from `slot` (the publishing shard's index; any other
    /// thread passes `usize::MAX`).
    pub(crate) fn publish(
        &self,
        topic: &Arc<Topic>,
        publication: Publication,
        slot: usize,
    ) -> Result<Published, PublishError> {
        // Refused once shutdown began; otherwise shutdown waits for this
        // publish to have routed its message before any shard stops.
        let Some(_in_flight) = self.publishing.enter(slot) else {
            return Err(PublishError::ShuttingDown);
        };
        check_key(publication.key.as_deref())?;
        self.broker.publish(topic, publication, &self.fanout())
    }

    pub(crate) fn fanout(&self) -> Fanout<'_> {
        Fanout {
            inboxes: &self.inboxes,
            topics: &self.topics,
        }
    }

    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    pub(crate) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// Records `owner`'s `client_id` at (`shard`, `key`); returns the
    /// connection of the same owner and id it replaces.
    pub(crate) fn claim_client_id(
        &self,
        owner: &Arc<str>,
        client_id: &Arc<str>,
        shard: usize,
        key: ConnKey,
    ) -> Option<ClientSlot> {
        let name = (Arc::clone(owner), Arc::clone(client_id));
        self.clients.lock().insert(name, ClientSlot { shard, key })
    }

    /// Forgets `owner`'s `client_id` if it still points at (`shard`, `key`).
    pub(crate) fn release_client_id(
        &self,
        owner: &Arc<str>,
        client_id: &Arc<str>,
        shard: usize,
        key: ConnKey,
    ) {
        let mut clients = self.clients.lock();
        let name = (Arc::clone(owner), Arc::clone(client_id));
        if let Some(slot) = clients.get(&name) {
            if slot.shard == shard && slot.key == key {
                clients.remove(&name);
            }
        }
    }

    pub(crate) fn close_remote(&self, shard: usize, conn: ConnKey, reason: CloseReason) {
        self.inboxes[shard].command(ShardCommand::Close { conn, reason });
    }

    /// Resolves when shutdown begins.
    pub(crate) async fn stopping(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|&stopping| stopping).await;
    }
}

/// Refuses an empty key or one longer than [`MAX_KEY_LEN`] bytes.
pub(crate) fn check_key(key: Option<&str>) -> Result<(), PublishError> {
    match key {
        Some(key) if key.is_empty() || key.len() > MAX_KEY_LEN => Err(PublishError::InvalidKey),
        _ => Ok(()),
    }
}

/// A running engine. Shared by all threads; cheap to clone.
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use shardcast_engine::{Engine, EngineConfig, Formats, InProcess};
///
/// let mut config = EngineConfig::default();
/// config.pin_threads = false;
/// config.channels.declare("prices.*").unwrap();
/// let engine = Engine::start(config, Formats::default(), Arc::new(InProcess)).unwrap();
///
/// let topic = engine.topic("prices.AAPL").unwrap();
/// let published = engine.publish(&topic, Some("AAPL".into()), Bytes::from_static(b"{\"px\":1}"));
/// assert!(matches!(published, Ok(shardcast_engine::Published::Seq(1))));
/// assert!(engine.topic("orders").is_err()); // undeclared
///
/// engine.shutdown();
/// engine.join();
/// ```
#[derive(Clone)]
pub struct Engine {
    shared: Arc<EngineShared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("shards", &self.shared.inboxes.len())
            .field("formats", &self.shared.formats)
            .finish()
    }
}

impl Engine {
    pub(crate) fn from_shared(shared: Arc<EngineShared>) -> Self {
        Self { shared }
    }

    /// Starts the shard threads. Connections arrive once [`Engine::serve`] is called.
    pub fn start(
        config: EngineConfig,
        mut formats: Formats,
        broker: Arc<dyn Broker>,
    ) -> io::Result<Self> {
        formats.set_deflate_min_size(config.deflate_min_size);
        // Before any message: queued events count publish times from it.
        crate::sansio::outbox::clock_origin();
        let shards = config.shards.get();
        let inboxes = (0..shards).map(|_| ShardInbox::new()).collect();
        let topics = TopicRegistry::new(RegistryConfig {
            rules: config.channels.clone(),
            max_topics: config.max_topics,
            shards,
            history: config.history,
            max_history_bytes: config.max_history_bytes,
            idle_expiry: config.topic_idle_expiry,
            followed: broker.is_external(),
            ring_slots: (config.ring_slots, config.ring_max_slots),
        });
        let gate = Gate::new(config.gate);
        let cores = if config.pin_threads {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        if config.pin_threads && cores.is_empty() {
            warn!("core ids unavailable; shard threads will not be pinned");
        }
        let shared = Arc::new(EngineShared {
            config,
            formats,
            topics,
            inboxes,
            broker,
            gate,
            clients: Mutex::default(),
            stop: watch::channel(false).0,
            publishing: PublishGate::new(shards + 1),
            threads: Mutex::default(),
        });
        for index in 0..shards {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
            // The shard's own poll of its connections' sockets.
            let poll = mio::Poll::new()?;
            let registry = poll.registry().try_clone()?;
            let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
            let thread_shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core) {
                            warn!(shard = index, "could not pin shard thread");
                        }
                    }
                    shard::run(index, thread_shared, runtime, (poll, registry));
                })?;
            shared.threads.lock().push(handle);
        }
        Ok(Self { shared })
    }

    /// Accepts connections on `listener` (on shard 0) and hands each to the
    /// least-loaded shard, where `handler` serves it.
    pub fn serve(&self, listener: TcpListener, handler: Arc<dyn ConnectionHandler>) {
        self.shared.inboxes[0].command(ShardCommand::Listen { listener, handler });
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The registered wire formats.
    pub fn formats(&self) -> &Formats {
        &self.shared.formats
    }

    /// The topic named `name`, created on first use if the channel rules
    /// declare it (charged to no quota: for the embedding program's own
    /// publishers).
    ///
    /// Takes the registry's read lock; keep the returned handle to publish
    /// repeatedly without it. A topic with no subscribers and no retained
    /// state expires; publishing through a handle to it then goes to the
    /// live topic of the same name (see [`Fanout::deliver`]).
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        self.shared.topics.resolve(name, None)
    }

    /// The topic registry: every live topic, retired totals, the history budget.
    pub fn topics(&self) -> &TopicRegistry {
        &self.shared.topics
    }

    /// Connection admission: counts and limits.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.shared.gate
    }

    /// Publishes through the broker: its sequence number, now or once the
    /// bus has numbered it.
    pub fn publish(
        &self,
        topic: &Arc<Topic>,
        key: Option<Box<str>>,
        data: Bytes,
    ) -> Result<Published, PublishError> {
        self.publish_message(topic, Publication::new(key, data))
    }

    /// Publishes `publication` (its kind included) through the broker: its
    /// sequence number, now or once the bus has numbered it.
    pub fn publish_message(
        &self,
        topic: &Arc<Topic>,
        publication: Publication,
    ) -> Result<Published, PublishError> {
        self.shared.publish(topic, publication, usize::MAX)
    }

    /// WebSocket connections open or being opened (their slot reserved).
    pub fn connections(&self) -> usize {
        self.shared.gate.websockets()
    }

    /// Closes the connections with `client_id` for `reason` — of `owner`
    /// only, or of every principal with `None`; returns how many.
    pub fn disconnect(&self, client_id: &str, owner: Option<&str>, reason: CloseReason) -> usize {
        let slots: Vec<ClientSlot> = self
            .shared
            .clients
            .lock()
            .iter()
            .filter(|((o, id), _)| **id == *client_id && owner.is_none_or(|want| **o == *want))
            .map(|(_, slot)| *slot)
            .collect();
        for slot in &slots {
            self.shared
                .close_remote(slot.shard, slot.key, reason.clone());
        }
        slots.len()
    }
}
