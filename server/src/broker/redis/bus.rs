//! The Redis broker's own thread: one current-thread runtime, one task,
//! one session's connections at a time (commands, and pub/sub: `link.rs`).
//!
//! Owned by the broker thread; reaches the shards only through the
//! engine's bus entry points (`Engine::ingest`, `catch_up`, `settle`).
//!
//! One task does everything in turn, so its steps need no locks and keep
//! their order:
//! 1. **Connect** (both connections, the scripts loaded), retrying with a
//!    backoff up to 2 s. While Redis is unreachable `/health` says
//!    degraded, publishes are refused (503), and a topic asked for is
//!    settled at once: its subscribers start from what this server has,
//!    and catch up when Redis is back.
//! 2. **Catch up** every topic followed, after subscribing to its channel:
//!    what was published before the subscription is in the history the
//!    catch-up reads; what comes after arrives on the channel (and what is
//!    both is dropped as a duplicate by the engine).
//! 3. **Serve**, whichever comes first:
//!    - a message on a channel: read, then handed to the engine; a gap
//!      (the bus lost messages, or this server was disconnected) is
//!      repaired from the history by a catch-up, or delivered as a
//!      visible jump where the history no longer reaches;
//!    - a follow or unfollow from the engine: (un)subscribe, catch up;
//!    - publishes: every queued one (up to [`BATCH`]) in one pipeline of
//!      script calls, each publisher answered with its seq or the error;
//!    - a ping every second, so a Redis that stopped answering is noticed
//!      within `timeout_ms`.
//! 4. On any connection error: degraded, every queued publish refused
//!    (none is left waiting for a bus that may not come back), back to 1.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::RedisError;
use shardcast_engine::{Engine, Epoch, Ingested, Numbered, Topic};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::keys::{Scripts, TopicKeys};
use super::link::{self, Commands, Feed, Pushed};
use super::{envelope, BusHealth, Control, Job, Retention};
use crate::broker::Quiet;
use crate::config::{redacted, RedisConfig};

/// Longest wait between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The broker thread's state.
pub(super) struct Worker {
    pub(super) config: RedisConfig,
    pub(super) retention: Retention,
    pub(super) health: Arc<BusHealth>,
    pub(super) engine: Engine,
    /// Messages from the bus that could not be read.
    pub(super) unreadable: Quiet,
}

/// The connections of one session with Redis.
struct Session {
    commands: Commands,
    feed: Feed,
}

/// Topics followed, by channel.
type Followed = HashMap<String, Arc<Topic>>;

/// A topic's state as the load script returns it: epoch (hex), last seq,
/// history entries, snapshot entries.
type Loaded = (String, u64, Vec<Vec<u8>>, Vec<Vec<u8>>);

impl Worker {
    /// Serves until the engine stops (module docs).
    pub(super) async fn serve(
        self,
        mut jobs: mpsc::Receiver<Job>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let url = redacted(&self.config.bus.url);
        let scripts = Scripts::new();
        let mut followed = Followed::new();
        let mut backoff = Duration::from_millis(100);
        let mut sessions = 0u64;
        let mut failing = false;
        loop {
            match self.connect(&scripts).await {
                Ok(session) => {
                    if sessions == 0 {
                        info!(url, node = %self.config.bus.node_id, "connected to Redis");
                    } else {
                        BusHealth::add(&self.health.reconnects, 1);
                        info!(
                            url,
                            "connection to Redis regained; catching up followed channels"
                        );
                    }
                    sessions += 1;
                    failing = false;
                    backoff = Duration::from_millis(100);
                    self.health.connected.store(true, Ordering::Relaxed);
                    let lost = self
                        .session(session, &scripts, &mut jobs, &mut control, &mut followed)
                        .await;
                    self.health.connected.store(false, Ordering::Relaxed);
                    warn!(url, error = %lost, "connection to Redis lost; publishes are refused until it is back");
                }
                Err(e) => {
                    if !failing {
                        warn!(url, error = %e, "cannot reach Redis; retrying (health is degraded, publishes are refused)");
                        failing = true;
                    }
                }
            }
            self.refuse_queued(&mut jobs);
            let retry = tokio::time::sleep(backoff);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    () = &mut retry => break,
                    request = control.recv() => match request {
                        Some(request) => self.offline(request, &mut followed),
                        None => return,
                    },
                    Some(job) = jobs.recv() => {
                        self.health.queued.fetch_sub(1, Ordering::Relaxed);
                        self.refuse(job, &self.unreachable());
                    }
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(&self, scripts: &Scripts) -> Result<Session, RedisError> {
        let (mut commands, feed) = link::open(&self.config).await?;
        // In a cluster, loaded on every primary.
        scripts.publish.load_async(&mut commands).await?;
        scripts.load.load_async(&mut commands).await?;
        Ok(Session { commands, feed })
    }

    /// Steps 2 and 3 of the module docs; returns why the session ended.
    async fn session(
        &self,
        mut session: Session,
        scripts: &Scripts,
        jobs: &mut mpsc::Receiver<Job>,
        control: &mut mpsc::UnboundedReceiver<Control>,
        followed: &mut Followed,
    ) -> RedisError {
        let topics: Vec<(String, Arc<Topic>)> = followed
            .iter()
            .map(|(c, t)| (c.clone(), Arc::clone(t)))
            .collect();
        for (channel, topic) in topics {
            if let Err(e) = session.feed.subscribe(&channel).await {
                return e;
            }
            if let Err(e) = self.catch_up(&mut session.commands, scripts, &topic).await {
                return e;
            }
        }
        let mut ping = tokio::time::interval(Duration::from_secs(1));
        loop {
            let step = tokio::select! {
                biased;
                pushed = session.feed.next() => match pushed {
                    Some(Pushed::Message(message)) => self.receive(&mut session, scripts, followed, &message).await,
                    Some(Pushed::Dropped(channel)) => self.dropped(&mut session, scripts, followed, &channel).await,
                    None => Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()),
                },
                request = control.recv() => match request {
                    Some(request) => self.control(&mut session, scripts, followed, request).await,
                    None => return std::io::Error::other("the engine stopped").into(),
                },
                Some(job) = jobs.recv() => self.publish(&mut session.commands, scripts, jobs, job).await,
                _ = ping.tick() => redis::cmd("PING").query_async::<()>(&mut session.commands).await,
            };
            if let Err(e) = step {
                return e;
            }
        }
    }

    /// A channel the cluster stopped sending (its slot moved): followed
    /// again, and caught up with what it missed meanwhile.
    async fn dropped(
        &self,
        session: &mut Session,
        scripts: &Scripts,
        followed: &Followed,
        channel: &str,
    ) -> Result<(), RedisError> {
        let Some(topic) = followed.get(channel) else {
            return Ok(()); // unfollowed here
        };
        warn!(topic = %topic.name(), "Redis Cluster dropped a channel's subscription (its slot moved); following it again");
        session.feed.subscribe(channel).await?;
        self.catch_up(&mut session.commands, scripts, topic).await?;
        Ok(())
    }

    /// A message on a channel, into the engine (step 3).
    async fn receive(
        &self,
        session: &mut Session,
        scripts: &Scripts,
        followed: &Followed,
        message: &redis::Msg,
    ) -> Result<(), RedisError> {
        let Some(topic) = followed.get(message.get_channel_name()) else {
            return Ok(());
        };
        let envelope = match envelope::parse(message.get_payload_bytes()) {
            Ok(envelope) => envelope,
            Err(e) => {
                BusHealth::add(&self.health.malformed, 1);
                if let Some(held) = self.unreadable.admit() {
                    warn!(topic = %topic.name(), error = %e, more = held, "dropped a malformed message from the bus");
                }
                return Ok(());
            }
        };
        BusHealth::add(&self.health.received, 1);
        match self.engine.ingest(topic, envelope.message) {
            Ok(Ingested::Gap {
                expected,
                new_epoch,
            }) => {
                BusHealth::add(&self.health.gaps_detected, 1);
                let skipped = self.catch_up(&mut session.commands, scripts, topic).await?;
                if skipped == 0 {
                    BusHealth::add(&self.health.gaps_repaired, 1);
                    info!(topic = %topic.name(), expected, "gap on the bus repaired from its history");
                } else {
                    warn!(topic = %topic.name(), expected, new_epoch, skipped, "gap on the bus beyond its history: subscribers see the sequence jump");
                }
                Ok(())
            }
            Ok(_) | Err(_) => Ok(()),
        }
    }

    async fn control(
        &self,
        session: &mut Session,
        scripts: &Scripts,
        followed: &mut Followed,
        request: Control,
    ) -> Result<(), RedisError> {
        match request {
            Control::Follow(topic) => {
                let channel = self.keys(&topic).channel;
                followed.insert(channel.clone(), Arc::clone(&topic));
                self.health
                    .followed
                    .store(followed.len(), Ordering::Relaxed);
                session.feed.subscribe(&channel).await?;
                self.catch_up(&mut session.commands, scripts, &topic)
                    .await?;
                Ok(())
            }
            // Wanted again since (its follow may have come first): kept.
            Control::Unfollow(topic) if topic.is_followed() => Ok(()),
            Control::Unfollow(topic) => match self.forget(followed, &topic) {
                Some(channel) => session.feed.unsubscribe(&channel).await,
                None => Ok(()),
            },
        }
    }

    /// Forgets `topic` (not a newer topic of the same name); returns its
    /// channel if it was followed.
    fn forget(&self, followed: &mut Followed, topic: &Arc<Topic>) -> Option<String> {
        let channel = self.keys(topic).channel;
        let ours = followed
            .get(&channel)
            .is_some_and(|t| Arc::ptr_eq(t, topic));
        let forgotten = ours.then(|| followed.remove(&channel)).flatten();
        self.health
            .followed
            .store(followed.len(), Ordering::Relaxed);
        forgotten.map(|_| channel)
    }

    /// Follow requests while Redis is unreachable: remembered for the next
    /// session, their waiting subscribers let go at once (step 1).
    fn offline(&self, request: Control, followed: &mut Followed) {
        match request {
            Control::Follow(topic) => {
                followed.insert(self.keys(&topic).channel, Arc::clone(&topic));
                self.engine.settle(&topic);
            }
            Control::Unfollow(topic) => {
                if !topic.is_followed() {
                    self.forget(followed, &topic);
                }
            }
        }
        self.health
            .followed
            .store(followed.len(), Ordering::Relaxed);
    }

    /// Reads a topic's state from Redis and catches the engine up with it;
    /// returns how many missed messages Redis no longer held (see
    /// `Engine::catch_up`). An error that is not the connection's (Redis
    /// refusing the script) lets the topic's subscribers go on with what
    /// is here; a connection error ends the session.
    async fn catch_up(
        &self,
        commands: &mut Commands,
        scripts: &Scripts,
        topic: &Arc<Topic>,
    ) -> Result<u64, RedisError> {
        let keys = self.keys(topic);
        let candidate = format!("{}", Epoch::fresh());
        let loaded: Result<Loaded, RedisError> = scripts
            .load
            .key(&keys.meta)
            .key(&keys.history)
            .key(&keys.snapshot)
            .arg(candidate)
            .arg(self.config.history_ttl.as_secs())
            .invoke_async(commands)
            .await;
        let (epoch, last, history, snapshot) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                self.engine.settle(topic);
                if connection_lost(&e) {
                    // The next session catches it up again.
                    return Err(e);
                }
                warn!(topic = %topic.name(), error = %e, "Redis refused a catch-up; subscribers go on with what this server has");
                return Ok(0);
            }
        };
        let Ok(epoch) = u64::from_str_radix(&epoch, 16) else {
            BusHealth::add(&self.health.malformed, 1);
            self.engine.settle(topic);
            return Ok(0);
        };
        let mut messages: Vec<Numbered> = Vec::with_capacity(history.len() + snapshot.len());
        for raw in history.iter().chain(&snapshot) {
            match envelope::parse(raw) {
                Ok(envelope) => messages.push(envelope.message),
                Err(_) => BusHealth::add(&self.health.malformed, 1),
            }
        }
        Ok(self
            .engine
            .catch_up(topic, Epoch::from_u64(epoch), last, messages))
    }

    pub(super) fn keys(&self, topic: &Topic) -> TopicKeys {
        TopicKeys::new(&self.config.bus.prefix, topic.name())
    }
}

/// Whether `e` means the session with Redis is over: the connection is
/// gone or silent, or Redis forgot the scripts (a restart, `SCRIPT FLUSH`),
/// which the next session loads again.
pub(super) fn connection_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
