//! The way into a shard from other threads: [`ShardInbox`], one per shard,
//! with its bounded delivery queue and its unbounded command queue.
//!
//! Shared by all threads; lock-free except for the channel internals of
//! `crossbeam-channel`. Publishers offer messages (never waiting: a full
//! queue is counted by the caller as `shard_overflow`); everything else
//! that is not a delivery is a [`ShardCommand`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::{oneshot, Notify};

use super::accept::ConnectionHandler;
use crate::gate::PeerPermit;
use crate::sansio::close::CloseReason;
use crate::sansio::ids::ConnKey;
use crate::sansio::message::Message;
use crate::stats::{ClientInfo, ShardStats};

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
    deliveries: Sender<Arc<Message>>,
    pub(super) deliveries_rx: Receiver<Arc<Message>>,
    control: Sender<ShardCommand>,
    pub(super) control_rx: Receiver<ShardCommand>,
    pub(super) wake: Notify,
    /// TCP connections being served plus WebSocket connections held;
    /// the acceptor sends each new connection to the shard with the fewest.
    load: AtomicUsize,
}

impl ShardInbox {
    pub(crate) fn new(capacity: usize) -> Self {
        let (deliveries, deliveries_rx) = crossbeam_channel::bounded(capacity);
        let (control, control_rx) = crossbeam_channel::unbounded();
        Self {
            deliveries,
            deliveries_rx,
            control,
            control_rx,
            wake: Notify::new(),
            load: AtomicUsize::new(0),
        }
    }

    /// Offers a message; `false` when the inbox is full (the caller counts
    /// the lost deliveries).
    #[inline]
    pub(crate) fn deliver(&self, msg: &Arc<Message>) -> bool {
        match self.deliveries.try_send(Arc::clone(msg)) {
            Ok(()) => {
                self.wake.notify_one();
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    pub(crate) fn command(&self, cmd: ShardCommand) {
        // The receiver lives as long as the inbox, so sending cannot fail.
        let _ = self.control.send(cmd);
        self.wake.notify_one();
    }

    /// Messages waiting.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.deliveries.len()
    }

    /// Takes every message waiting, in the order they arrived.
    #[cfg(all(test, not(shardcast_loom)))]
    pub(crate) fn drain(&self) -> Vec<Arc<Message>> {
        self.deliveries_rx.try_iter().collect()
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
