//! Shard threads: one pinned thread per shard, each running a current-thread
//! tokio runtime that owns a slice of the connections for their whole life.
//!
//! A shard is reached from other threads only through its
//! [`ShardInbox`](super::ShardInbox): a queue of topic feeds with messages
//! it has not read (each at most once) and a queue of [`ShardCommand`]s,
//! with one `Notify` to wake the shard. Everything else a
//! shard owns (connections, subscriber lists, counters) is plain data in
//! [`ShardState`](super::ShardState), touched only by its thread.
//!
//! The dispatch loop, one turn:
//! 1. wait until woken (a publisher or a command arrived);
//! 2. run every pending command;
//! 3. read up to [`DISPATCH_BATCH`] messages from the queued feeds, each
//!    at this shard's cursor (`feeds.rs`), pushing each message's shared
//!    frame into the outbox of every local subscriber;
//! 4. write every connection whose oldest unflushed frame has waited the
//!    flush delay, one vectored write per connection for all its frames;
//! 5. if messages remain, yield to the connections' reads and go to 2;
//!    otherwise sleep until woken or until the next connection is due.
//!
//! The flush delay comes from [`crate::sansio::pacer::FlushPacer`]: 0 while the
//! shard has CPU headroom (every message goes out in the turn it arrives),
//! growing only when the shard runs hot, so that each `writev` carries more
//! frames and the same deliveries cost fewer syscalls.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::accept::{accept_loop, serve};
use super::delivery::Flush;
use super::handle::LocalShard;
use super::inbox::ShardCommand;
use super::ShardState;
use crate::engine::EngineShared;
use crate::sansio::close::CloseReason;

/// Messages read from feeds per turn before the shard flushes and
/// yields, so connections' reads and the tick are never starved.
const DISPATCH_BATCH: usize = 1024;

/// How often a shard checks heartbeat timeouts and sends heartbeats.
pub(super) const TICK: Duration = Duration::from_millis(250);

/// How long shutdown waits for connections to flush and close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs shard `index` on the current thread until it is shut down; its
/// connections' sockets are registered with `poll` through `registry`
/// (`poller.rs`).
pub(crate) fn run(
    index: usize,
    shared: Arc<EngineShared>,
    runtime: tokio::runtime::Runtime,
    (poll, registry): (mio::Poll, mio::Registry),
) {
    let local = tokio::task::LocalSet::new();
    let state = Rc::new(ShardState::new(index, shared, registry));
    local.block_on(&runtime, async move {
        tokio::task::spawn_local(tick_loop(Rc::clone(&state)));
        tokio::task::spawn_local(super::poller::run(Rc::clone(&state), poll));
        tokio::task::spawn_local(super::driver::run(Rc::clone(&state)));
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
            let taken = state.read_feeds(DISPATCH_BATCH);
            let now = Instant::now();
            let next_round = state.release_rounds(now);
            next_flush = state.flush_due(now).or_at(next_round);
            if next_round.is_some_and(|at| at <= now) {
                // More rounds are due: let the connections run first.
                next_flush = Flush::Backlog;
            }
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
        ShardCommand::Resume { conn } => state.resume(conn),
        ShardCommand::Shed { step, steps } => state.shed(step, steps),
        ShardCommand::Stats(reply) => {
            let _ = reply.send(state.stats());
        }
        ShardCommand::Clients(reply) => {
            let _ = reply.send(state.clients());
        }
        ShardCommand::Slowest(reply) => {
            let _ = reply.send(state.slowest());
        }
        ShardCommand::Shutdown => return false,
    }
    true
}

async fn tick_loop(state: Rc<ShardState>) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let mut sweep = state.begin_tick();
        while state.sweep_slice(&mut sweep) {
            // Deliveries and connections' reads run between slices.
            if sweep.may_yield(Instant::now()) {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Shutdown, on this shard (publishing has already stopped, engine-wide):
/// 1. every message accepted before is dispatched to its subscribers here,
///    so that it is queued ahead of their close frames;
/// 2. every connection is asked to close with 1001 (its closing queues the close
///    frame behind what it still has to send and flushes); a message that
///    still arrives (a publish that raced the stop) is counted as dropped
///    for `shutdown`;
/// 3. the shard keeps running its tasks until all connections are gone or the
///    grace period ends, so queued frames reach clients that are reading;
/// 4. the runtime stops; whatever is left is counted as dropped for
///    `shutdown` as each connection closes, or goes with the sockets.
async fn shutdown(state: &Rc<ShardState>) {
    state.refresh_clock();
    // What is queued now, and no more: publishing has stopped, and a
    // broker's receiving side that kept feeding could otherwise hold the
    // shard here.
    state.read_queued_feeds();
    state.close_all(CloseReason::ServerShutdown);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while state.connection_count() > 0 && Instant::now() < deadline {
        // Keep draining deliveries so close frames are not stuck behind them.
        state.refresh_clock();
        state.read_queued_feeds();
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
    // This shard reads no feed any more: it must not hold any ring's
    // growth back for the shards (or a bus) still running.
    state.leave_all_feeds();
}
