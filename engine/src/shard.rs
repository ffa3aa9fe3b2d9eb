//! Shard threads: one pinned thread per shard, each running a current-thread
//! tokio runtime that owns a slice of the connections for their whole life.
//!
//! A shard is reached from other threads only through its [`ShardInbox`]:
//! a bounded queue of messages to deliver and an unbounded queue of
//! [`ShardCommand`]s, with one `Notify` to wake the shard. Everything else a
//! shard owns (connections, subscriber lists, counters) is plain data in
//! [`ShardState`], touched only by its thread.
//!
//! The dispatch loop, one turn:
//! 1. wait until woken (a publisher or a command arrived);
//! 2. run every pending command;
//! 3. take up to [`DISPATCH_BATCH`] messages, pushing each message's shared
//!    frame into the outbox of every local subscriber;
//! 4. write every connection whose oldest unflushed frame has waited the
//!    flush delay, one vectored write per connection for all its frames;
//! 5. if messages remain, yield to the connection tasks and go to 2;
//!    otherwise sleep until woken or until the next connection is due.
//!
//! The flush delay comes from [`crate::pacer::FlushPacer`]: 0 while the
//! shard has CPU headroom (every message goes out in the turn it arrives),
//! growing only when the shard runs hot, so that each `writev` carries more
//! frames and the same deliveries cost fewer syscalls.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tracing::{debug, info, warn};

use crate::close::CloseReason;
use crate::conn::ConnKey;
use crate::delivery::Flush;
use crate::engine::EngineShared;
use crate::local::{LocalShard, ShardState};
use crate::message::Message;
use crate::stats::{ClientInfo, ShardStats};

/// Messages taken from the inbox per turn before the shard flushes and
/// yields, so connection tasks (reads, heartbeats) are never starved.
const DISPATCH_BATCH: usize = 1024;

/// How often a shard checks heartbeat timeouts and sends heartbeats.
const TICK: Duration = Duration::from_millis(250);

/// How long shutdown waits for connections to flush and close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves a freshly accepted TCP connection on the shard that will own it.
///
/// Called on that shard's thread; the returned future runs there as a local
/// task. The engine has no HTTP in it: the handler speaks HTTP, performs the
/// WebSocket upgrade, and calls [`LocalShard::attach`].
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Serves `stream` from `peer` on `shard`.
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shard: LocalShard,
    ) -> Pin<Box<dyn Future<Output = ()>>>;
}

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
        handler: Arc<dyn ConnectionHandler>,
    },
    /// Close one connection.
    Close { conn: ConnKey, reason: CloseReason },
    /// Report figures.
    Stats(oneshot::Sender<ShardStats>),
    /// Report connected clients.
    Clients(oneshot::Sender<Vec<ClientInfo>>),
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
    deliveries_rx: Receiver<Arc<Message>>,
    control: Sender<ShardCommand>,
    control_rx: Receiver<ShardCommand>,
    wake: Notify,
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

/// Runs shard `index` on the current thread until it is shut down.
pub(crate) fn run(index: usize, shared: Arc<EngineShared>, runtime: tokio::runtime::Runtime) {
    let local = tokio::task::LocalSet::new();
    let state = Rc::new(ShardState::new(index, shared));
    local.block_on(&runtime, async move {
        tokio::task::spawn_local(tick_loop(Rc::clone(&state)));
        dispatch_loop(&state).await;
        shutdown(&state).await;
    });
    debug!(shard = index, "shard stopped");
}

async fn dispatch_loop(state: &Rc<ShardState>) {
    let inbox = state.inbox();
    let mut next_flush = Flush::Idle;
    loop {
        match next_flush {
            Flush::Idle => inbox.wake.notified().await,
            Flush::At(at) => {
                tokio::select! {
                    () = inbox.wake.notified() => {}
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
            Flush::Backlog => tokio::task::yield_now().await,
        }
        loop {
            while let Ok(cmd) = inbox.control_rx.try_recv() {
                if !run_command(state, cmd) {
                    return;
                }
            }
            state.refresh_clock();
            let mut taken = 0;
            while taken < DISPATCH_BATCH {
                let Ok(msg) = inbox.deliveries_rx.try_recv() else {
                    break;
                };
                state.dispatch(&msg);
                taken += 1;
            }
            let now = Instant::now();
            next_flush = state.flush_due(now);
            state.pace(now);
            if taken < DISPATCH_BATCH || next_flush == Flush::Backlog {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Runs one command; `false` means stop.
fn run_command(state: &Rc<ShardState>, cmd: ShardCommand) -> bool {
    match cmd {
        ShardCommand::Listen { listener, handler } => {
            match listener
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(listener))
            {
                Ok(listener) => {
                    tokio::task::spawn_local(accept_loop(
                        LocalShard::new(state),
                        listener,
                        handler,
                    ));
                }
                Err(e) => warn!(error = %e, "cannot listen"),
            }
        }
        ShardCommand::Serve {
            stream,
            peer,
            handler,
        } => match TcpStream::from_std(stream) {
            Ok(stream) => serve(LocalShard::new(state), stream, peer, &handler),
            Err(e) => {
                state.inbox().remove_load();
                warn!(%peer, error = %e, "cannot register a handed-over connection");
            }
        },
        ShardCommand::Close { conn, reason } => state.request_close(conn, reason),
        ShardCommand::Stats(reply) => {
            let _ = reply.send(state.stats());
        }
        ShardCommand::Clients(reply) => {
            let _ = reply.send(state.clients());
        }
        ShardCommand::Shutdown => return false,
    }
    true
}

/// Serves `stream` here; the shard's load counts it until the handler returns.
fn serve(
    shard: LocalShard,
    stream: TcpStream,
    peer: SocketAddr,
    handler: &Arc<dyn ConnectionHandler>,
) {
    let inbox_owner = shard.clone();
    let fut = handler.serve(stream, peer, shard);
    tokio::task::spawn_local(async move {
        fut.await;
        inbox_owner.state().inbox().remove_load();
    });
}

/// Accepts connections and spreads them over the shards by load.
async fn accept_loop(
    shard: LocalShard,
    listener: TcpListener,
    handler: Arc<dyn ConnectionHandler>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, shard = shard.index(), "accepting connections");
    }
    let shared = Arc::clone(shard.state().shared());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and similar: back off, keep serving.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shared.stopping() => return,
        };
        // Frames are written whole and coalesced by the shard; Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        let target = shared.least_loaded_shard();
        let inbox = shared.inbox(target);
        inbox.add_load();
        if target == shard.index() {
            serve(shard.clone(), stream, peer, &handler);
            continue;
        }
        match stream.into_std() {
            Ok(stream) => inbox.command(ShardCommand::Serve {
                stream,
                peer,
                handler: Arc::clone(&handler),
            }),
            Err(e) => {
                inbox.remove_load();
                warn!(%peer, error = %e, "cannot hand over a connection");
            }
        }
    }
}

async fn tick_loop(state: Rc<ShardState>) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        state.tick();
    }
}

/// Shutdown, on this shard:
/// 1. every connection is asked to close with 1001 (its task queues the close
///    frame behind what it still has to send and flushes);
/// 2. the shard keeps running its tasks until all connections are gone or the
///    grace period ends, so queued frames reach clients that are reading;
/// 3. the runtime stops; whatever is left is dropped with the sockets.
async fn shutdown(state: &Rc<ShardState>) {
    state.close_all(CloseReason::ServerShutdown);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while state.connection_count() > 0 && Instant::now() < deadline {
        // Keep draining deliveries so close frames are not stuck behind them.
        state.refresh_clock();
        while let Ok(msg) = state.inbox().deliveries_rx.try_recv() {
            state.dispatch(&msg);
        }
        state.flush_dirty();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = state.connection_count();
    if left > 0 {
        warn!(
            shard = state.index(),
            left, "connections still open at the end of shutdown grace"
        );
    }
}
