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
use crate::gate::PeerPermit;
use crate::handle::LocalShard;
use crate::local::ShardState;
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
/// WebSocket upgrade, and calls [`LocalShard::attach`] with the socket and
/// its `permit`. The permit counts the socket in the connection [`Gate`];
/// it must live as long as the socket (dropped with it, or moved into the
/// attachment).
///
/// [`Gate`]: crate::Gate
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Serves `stream` from `peer` on `shard`.
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: PeerPermit,
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
        permit: PeerPermit,
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
            permit,
            handler,
        } => match TcpStream::from_std(stream) {
            Ok(stream) => serve(LocalShard::new(state), stream, peer, permit, &handler),
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
    permit: PeerPermit,
    handler: &Arc<dyn ConnectionHandler>,
) {
    let inbox_owner = shard.clone();
    let fut = handler.serve(stream, peer, permit, shard);
    tokio::task::spawn_local(async move {
        fut.await;
        inbox_owner.state().inbox().remove_load();
    });
}

/// Accepts connections and spreads them over the shards by load.
///
/// Each socket is first counted in the [`Gate`]; one over a limit is closed
/// at once (after a best-effort `503`), so a flood of idle sockets degrades
/// into refusals, never into a process out of file descriptors. Should the
/// process run out anyway (`EMFILE`), a spare descriptor kept for the
/// purpose is given up to accept and close the waiting connection, so that
/// clients are refused promptly instead of hanging in the backlog.
///
/// [`Gate`]: crate::Gate
async fn accept_loop(
    shard: LocalShard,
    listener: TcpListener,
    handler: Arc<dyn ConnectionHandler>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(addr = %addr, shard = shard.index(), "accepting connections");
    }
    let shared = Arc::clone(shard.state().shared());
    let mut spare = std::fs::File::open("/dev/null").ok();
    let mut refusals = RefusalLog::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) if is_fd_exhaustion(&e) => {
                    refusals.note(Instant::now(), "out of file descriptors");
                    if spare.take().is_some() {
                        let waiting = tokio::time::timeout(Duration::from_millis(100), listener.accept());
                        if let Ok(Ok((stream, _))) = waiting.await {
                            shared.gate().note_out_of_files();
                            refuse(stream);
                        }
                        spare = std::fs::File::open("/dev/null").ok();
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = shared.stopping() => return,
        };
        let permit = match shared.gate().admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                refusals.note(Instant::now(), &refused.to_string());
                refuse(stream);
                continue;
            }
        };
        // Frames are written whole and coalesced by the shard; Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        let target = shared.least_loaded_shard();
        let inbox = shared.inbox(target);
        inbox.add_load();
        if target == shard.index() {
            serve(shard.clone(), stream, peer, permit, &handler);
            continue;
        }
        match stream.into_std() {
            Ok(stream) => inbox.command(ShardCommand::Serve {
                stream,
                peer,
                permit,
                handler: Arc::clone(&handler),
            }),
            Err(e) => {
                inbox.remove_load();
                warn!(%peer, error = %e, "cannot hand over a connection");
            }
        }
    }
}

fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE (24): this process; ENFILE (23): the whole system.
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// Closes a refused socket after offering a `503` without waiting for it.
fn refuse(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let _ = stream.try_write(BUSY);
}

/// Logs refused connections at most once a second, with how many.
#[derive(Default)]
struct RefusalLog {
    since: Option<Instant>,
    count: u64,
}

impl RefusalLog {
    fn note(&mut self, now: Instant, why: &str) {
        self.count += 1;
        if self
            .since
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            warn!(
                refused = self.count,
                last_reason = why,
                "connections refused"
            );
            self.since = Some(now);
            self.count = 0;
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
