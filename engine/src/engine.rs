//! The engine handle and the state all shards share.
//!
//! [`EngineShared`] is shared by all threads and read-mostly: configuration,
//! formats, the topic registry, the shard inboxes, and the client-id
//! registry (locked only when a connection opens or closes, never per
//! message). [`Engine`] is a cheap, cloneable, `Send` handle to it.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tracing::warn;

use crate::broker::{Broker, Fanout, PublishError};
use crate::close::CloseReason;
use crate::config::EngineConfig;
use crate::conn::ConnKey;
use crate::format::Formats;
use crate::shard::{self, ConnectionHandler, ShardCommand, ShardInbox};
use crate::stats::{ClientInfo, EngineStats};
use crate::topic::{Topic, TopicError, TopicRegistry, MAX_NAME_LEN};

/// Where a client id is connected.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientSlot {
    pub(crate) shard: usize,
    pub(crate) key: ConnKey,
}

/// State shared by all shards and publishers. Shared by all threads.
pub(crate) struct EngineShared {
    config: EngineConfig,
    formats: Formats,
    topics: TopicRegistry,
    inboxes: Box<[ShardInbox]>,
    broker: Arc<dyn Broker>,
    clients: Mutex<HashMap<Arc<str>, ClientSlot>>,
    connections: AtomicUsize,
    stop: watch::Sender<bool>,
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

    pub(crate) fn publish(
        &self,
        topic: &Arc<Topic>,
        key: Option<Box<str>>,
        data: Bytes,
    ) -> Result<u64, PublishError> {
        if let Some(key) = &key {
            if key.is_empty() || key.len() > MAX_NAME_LEN {
                return Err(PublishError::InvalidKey);
            }
        }
        let local = Fanout {
            inboxes: &self.inboxes,
        };
        self.broker.publish(topic, key, data, &local)
    }

    pub(crate) fn connection_opened(&self) {
        // Relaxed: a gauge for limits and reporting; no data is published through it.
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records `client_id` at (`shard`, `key`); returns the connection it replaces.
    pub(crate) fn claim_client_id(
        &self,
        client_id: &Arc<str>,
        shard: usize,
        key: ConnKey,
    ) -> Option<ClientSlot> {
        self.clients
            .lock()
            .insert(Arc::clone(client_id), ClientSlot { shard, key })
    }

    /// Forgets `client_id` if it still points at (`shard`, `key`).
    pub(crate) fn release_client_id(&self, client_id: &str, shard: usize, key: ConnKey) {
        let mut clients = self.clients.lock();
        if let Some(slot) = clients.get(client_id) {
            if slot.shard == shard && slot.key == key {
                clients.remove(client_id);
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
/// let seq = engine.publish(&topic, Some("AAPL".into()), Bytes::from_static(b"{\"px\":1}")).unwrap();
/// assert_eq!(seq, 1);
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
        formats: Formats,
        broker: Arc<dyn Broker>,
    ) -> io::Result<Self> {
        let shards = config.shards.get();
        let inboxes = (0..shards)
            .map(|_| ShardInbox::new(config.shard_inbox_capacity))
            .collect();
        let topics = TopicRegistry::new(
            config.channels.clone(),
            config.max_topics,
            shards,
            config.history_capacity,
            config.max_keys_per_topic,
        );
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
            clients: Mutex::default(),
            connections: AtomicUsize::new(0),
            stop: watch::channel(false).0,
            threads: Mutex::default(),
        });
        for index in 0..shards {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
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
                    shard::run(index, thread_shared, runtime);
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

    /// The topic named `name`, created on first use if the channel rules declare it.
    ///
    /// Takes the registry's read lock; keep the returned handle to publish
    /// repeatedly without it.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        self.shared.topics.resolve(name)
    }

    /// Every topic created so far.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.shared.topics.all()
    }

    /// Publishes through the broker; returns the message's sequence number.
    pub fn publish(
        &self,
        topic: &Arc<Topic>,
        key: Option<Box<str>>,
        data: Bytes,
    ) -> Result<u64, PublishError> {
        self.shared.publish(topic, key, data)
    }

    /// Delivers to this process's subscribers without going through the
    /// broker: the entry point for a broker's receiving side.
    pub fn fanout(&self, topic: &Topic, key: Option<Box<str>>, data: Bytes) -> u64 {
        Fanout {
            inboxes: &self.shared.inboxes,
        }
        .deliver(topic, key, data)
    }

    /// WebSocket connections currently attached.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Closes the connection of `client_id` for `reason`; `false` if no such client.
    pub fn disconnect(&self, client_id: &str, reason: CloseReason) -> bool {
        let slot = self.shared.clients.lock().get(client_id).copied();
        match slot {
            Some(slot) => {
                self.shared.close_remote(slot.shard, slot.key, reason);
                true
            }
            None => false,
        }
    }

    /// Figures from every shard, merged.
    pub async fn stats(&self) -> EngineStats {
        let shards = self.ask_every_shard(ShardCommand::Stats).await;
        let topics = self.shared.topics.all().iter().map(|t| t.stats()).collect();
        EngineStats::merge(shards, topics)
    }

    /// Every connected client, from every shard.
    pub async fn clients(&self) -> Vec<ClientInfo> {
        let lists = self.ask_every_shard(ShardCommand::Clients).await;
        lists.into_iter().flatten().collect()
    }

    /// Sends every shard the command `ask` builds and gathers the replies of
    /// those still running, in shard order. All shards work on it at once.
    async fn ask_every_shard<T>(&self, ask: fn(oneshot::Sender<T>) -> ShardCommand) -> Vec<T> {
        let replies: Vec<_> = self
            .shared
            .inboxes
            .iter()
            .map(|inbox| {
                let (tx, rx) = oneshot::channel();
                inbox.command(ask(tx));
                rx
            })
            .collect();
        let mut answers = Vec::with_capacity(replies.len());
        for reply in replies {
            if let Ok(answer) = reply.await {
                answers.push(answer);
            }
        }
        answers
    }

    /// Begins shutdown: stop accepting, close every connection with 1001
    /// after flushing what it has queued. Returns at once; see [`Engine::join`].
    pub fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        for inbox in self.shared.inboxes.iter() {
            inbox.command(ShardCommand::Shutdown);
        }
    }

    /// Waits for every shard thread to finish. Call from outside the shards.
    pub fn join(&self) {
        let threads = std::mem::take(&mut *self.shared.threads.lock());
        for thread in threads {
            if thread.join().is_err() {
                warn!("a shard thread panicked");
            }
        }
    }
}
