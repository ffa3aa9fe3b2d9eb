//! The way into a shard from other threads: [`ShardInbox`], one per shard,
//! with its queue of topics that have news and its command queue.
//!
//! Shared by all threads; lock-free except for the channel internals of
//! `crossbeam-channel`. Publishers write messages into their topic's feed
//! (`topic/feed.rs`) and queue the feed here when the shard does not have
//! it queued yet, so the queue holds each feed at most once and needs no
//! bound of its own; everything else that is not a delivery is a
//! [`ShardCommand`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::{oneshot, Notify};

use super::accept::ConnectionHandler;
use crate::gate::PeerPermit;
use crate::sansio::close::CloseReason;
use crate::sansio::ids::ConnKey;
use crate::stats::{ClientInfo, ShardStats};
use crate::topic::Feed;

/// A test's reading of a feed ([`ShardInbox::drain`]).
#[cfg(test)]
type TestReading = crate::ring::Reading<Arc<crate::sansio::message::Message>>;

/// Work for a shard that is not a message delivery. Cold path.
pub(crate) enum ShardCommand {
    /// Start accepting on `listener`, handing connections to the least-loaded shard.
    Listen {
        listener: std::net::TcpListener,
        handler: Arc<dyn ConnectionHandler>,
    },
    /// Serve a connection accepted by another shard.
    Serve {
        stream: std::net::TcpStream,
        peer: SocketAddr,
        permit: PeerPermit,
        handler: Arc<dyn ConnectionHandler>,
    },
    /// Close one connection.
    Close { conn: ConnKey, reason: CloseReason },
    /// Hand a held command back to its session: the topics it waited for
    /// are caught up (`park.rs`).
    Resume { conn: ConnKey },
    /// Report figures.
    Stats(oneshot::Sender<ShardStats>),
    /// Report connected clients.
    Clients(oneshot::Sender<Vec<ClientInfo>>),
    /// Report the clients furthest behind.
    Slowest(oneshot::Sender<Vec<ClientInfo>>),
    /// Step `step` of `steps` of a paced drain: close this step's share of
    /// the shard's connections with [`CloseReason::Draining`].
    Shed { step: u32, steps: u32 },
    /// Close every connection and stop.
    Shutdown,
}

/// The way into a shard from any thread. Shared by all threads; lock-free
/// except for the channel internals of `crossbeam-channel`.
///
/// Aligned to 128 bytes so that two shards' inboxes never share a cache
/// line (or an adjacent-line prefetch pair).
#[repr(align(128))]
pub(crate) struct ShardInbox {
    /// Feeds with messages the shard has not read, each at most once.
    ready: Sender<Arc<Feed>>,
    pub(super) ready_rx: Receiver<Arc<Feed>>,
    control: Sender<ShardCommand>,
    pub(super) control_rx: Receiver<ShardCommand>,
    pub(super) wake: Notify,
    /// TCP connections being served plus WebSocket connections held;
    /// the acceptor sends each new connection to the shard with the fewest.
    load: AtomicUsize,
    /// Where [`ShardInbox::drain`] has read each feed to (tests only).
    #[cfg(test)]
    read_to: parking_lot::Mutex<Vec<(Arc<Feed>, TestReading)>>,
}

impl ShardInbox {
    pub(crate) fn new() -> Self {
        let (ready, ready_rx) = crossbeam_channel::unbounded();
        let (control, control_rx) = crossbeam_channel::unbounded();
        Self {
            ready,
            ready_rx,
            control,
            control_rx,
            wake: Notify::new(),
            load: AtomicUsize::new(0),
            #[cfg(test)]
            read_to: parking_lot::Mutex::default(),
        }
    }

    /// Queues `feed`, which has messages the shard has not read, and wakes
    /// the shard. Called only by whoever raised the feed's flag for this
    /// shard (see `ring/wake.rs`), so a feed is queued at most once.
    #[inline]
    pub(crate) fn queue(&self, feed: Arc<Feed>) {
        // The receiver lives as long as the inbox, so sending cannot fail.
        let _ = self.ready.send(feed);
        self.wake.notify_one();
    }

    pub(crate) fn command(&self, cmd: ShardCommand) {
        // The receiver lives as long as the inbox, so sending cannot fail.
        let _ = self.control.send(cmd);
        self.wake.notify_one();
    }

    /// Test side of a shard's join: reads `join`'s feed from its join point
    /// in [`ShardInbox::drain`] when the join is the shard's first (a shard
    /// that reads the feed already keeps its place, as `shard/feeds.rs`
    /// does).
    #[cfg(test)]
    pub(crate) fn join(&self, join: &crate::topic::Join) {
        let mut read_to = self.read_to.lock();
        read_to.retain(|(f, _)| !(join.first && Arc::ptr_eq(f, &join.feed)));
        if !read_to.iter().any(|(f, _)| Arc::ptr_eq(f, &join.feed)) {
            read_to.push((Arc::clone(&join.feed), join.reading.clone()));
        }
    }

    /// Reads every feed queued here, as shard `shard` would, from where
    /// the last call left it (from its join point the first time); returns
    /// the messages in the order they were read.
    #[cfg(test)]
    pub(crate) fn drain(&self, shard: usize) -> Vec<Arc<crate::sansio::message::Message>> {
        let mut read_to = self.read_to.lock();
        let mut messages = Vec::new();
        while let Ok(feed) = self.ready_rx.try_recv() {
            let (_, reading) = read_to
                .iter_mut()
                .find(|(f, _)| Arc::ptr_eq(f, &feed))
                .expect("a queued feed was joined");
            let mut missed = 0;
            feed.read(
                shard,
                self,
                reading,
                usize::MAX,
                |_, msg| messages.push(msg),
                |run| missed += run.end - run.start,
            );
            assert_eq!(missed, 0, "a test read fell a lap behind");
        }
        messages
    }

    pub(crate) fn load(&self) -> usize {
        // Relaxed: a balancing hint; a stale value only skews one choice.
        self.load.load(Ordering::Relaxed)
    }

    pub(crate) fn add_load(&self) {
        self.load.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove_load(&self) {
        self.load.fetch_sub(1, Ordering::Relaxed);
    }
}
