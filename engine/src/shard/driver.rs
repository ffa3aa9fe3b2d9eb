//! Connections without a task of their own: the shard's driver reads every
//! connection that has something to do.
//!
//! A connection spends its life waiting: for its socket to become readable
//! (frames to parse), writable (only after a write would have blocked),
//! or for *attention* (a close was requested, a wake-up is due, a held
//! command may go on). A task per connection would hold that wait in a
//! tokio task cell (384 bytes) for the connection's whole life; instead,
//! each connection has a [`ConnWake`], a waker that puts its key on the
//! shard's [`ReadyList`], and one task per shard (the driver) takes the
//! keys and polls each connection's readiness with that waker
//! ([`drive`]), so the registration tokio keeps for the socket wakes the
//! driver, naming the connection. Only the opening (the wait for its
//! topics, `on_open`) and the closing sequence, which hold timers and last
//! a moment, run as tasks of their own (`conn::open`, `conn::close`).
//!
//! A connection is on the list at most once ([`ConnWake`]'s `queued`); one
//! being polled (`Phase::Driving`) is not put on it by a notice, as its
//! poll looks at its state again before it lets go. The driver polls at
//! most [`SLICE`] connections before it yields, and yields sooner once
//! tokio's budget for one task poll is spent, so deliveries, the tick and
//! other tasks run between slices; a connection with more to read than
//! one read's worth goes to the back of the list.

use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::conn::{self, guarded, Conn, Phase, Session};
use super::{park, reader, ShardState};
use crate::sansio::close::CloseReason;
use crate::sansio::ids::ConnKey;

/// Connections the driver polls before it yields.
const SLICE: usize = 32;

/// Turns of one connection's loop in one poll before it goes to the back
/// of the list (each turn handles one thing: attention, a write, a read).
const TURNS: usize = 16;

/// The keys of the connections that have something to do, and the
/// driver's wake-up. Shared with the wakers tokio holds; touched in
/// practice only by the shard's thread (its runtime's I/O driver runs
/// there), so the lock is never contended.
#[derive(Default)]
pub(super) struct ReadyList {
    keys: Mutex<Vec<ConnKey>>,
    wake: Notify,
}

/// One connection's waker.
pub(super) struct ConnWake {
    key: ConnKey,
    /// On the ready list and not yet taken by the driver.
    queued: AtomicBool,
    ready: Arc<ReadyList>,
}

impl ConnWake {
    /// The waker of connection `key` of the shard whose list is `ready`.
    pub(super) fn new(key: ConnKey, ready: &Arc<ReadyList>) -> Arc<Self> {
        Arc::new(Self {
            key,
            queued: AtomicBool::new(false),
            ready: Arc::clone(ready),
        })
    }
}

impl Wake for ConnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // AcqRel: pairs with the driver's Release when it takes the key, so
        // a wake after the take queues the key again.
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.keys.lock().push(self.key);
            self.ready.wake.notify_one();
        }
    }
}

/// The shard's driver: polls the connections on the ready list, a slice
/// at a time, for the shard's whole life.
pub(super) async fn run(shard: Rc<ShardState>) {
    let ready = Arc::clone(&shard.ready);
    let mut keys = Vec::new();
    loop {
        std::mem::swap(&mut keys, &mut *ready.keys.lock());
        if keys.is_empty() {
            // A wake between the swap and here leaves a permit: no loss.
            ready.wake.notified().await;
            continue;
        }
        for (i, &key) in keys.iter().enumerate() {
            // Out of tokio's budget, every poll of a socket would say
            // "not ready" and queue its connection again for nothing.
            if i > 0 && (i % SLICE == 0 || !tokio::task::coop::has_budget_remaining()) {
                tokio::task::yield_now().await;
            }
            let conn = shard.conns.borrow().get(key).cloned();
            if let Some(conn) = conn {
                // Release: pairs with the wakers' AcqRel swap (see there).
                conn.wake.queued.store(false, Ordering::Release);
                poll_conn(&shard, &conn);
            }
        }
        keys.clear();
        tokio::task::yield_now().await;
    }
}

/// Polls one connection; a panic (a bug outside any session callback,
/// which `guarded` catches) closes that connection, not the driver.
fn poll_conn(shard: &Rc<ShardState>, conn: &Rc<Conn>) {
    match conn.phase.get() {
        Phase::Driven => {}
        Phase::Driving => {
            debug_assert!(false, "a connection is polled once at a time");
            return;
        }
        Phase::Opening => {
            // Notified while its opening task waits (`park::attended`).
            let waiting = shard.opening.borrow_mut().remove(&conn.key);
            if let Some(waker) = waiting {
                waker.wake();
            }
            return;
        }
        Phase::Closing => return,
    }
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| drive(shard, conn))) {
        conn::closed_by_panic(shard, conn, &*panic);
    }
}

/// What woke a connection, in the order it looks.
enum Ready {
    Attention,
    /// The socket takes writes again, or failed.
    Writable(std::io::Result<()>),
    /// The socket has bytes (or an error) to read.
    Readable(std::io::Result<()>),
}

/// Handles everything `conn` has to do now, then leaves each thing it
/// waits for registered with its waker; or starts its closing sequence.
fn drive(shard: &Rc<ShardState>, conn: &Rc<Conn>) {
    let Some(mut session) = conn.session.take() else {
        return;
    };
    let waker = Waker::from(Arc::clone(&conn.wake));
    let mut cx = Context::from_waker(&waker);
    conn.phase.set(Phase::Driving);
    match turns(shard, conn, &mut *session, &mut cx) {
        None => {
            conn.phase.set(Phase::Driven);
            conn.session.set(Some(session));
        }
        Some(reason) => {
            conn.phase.set(Phase::Closing);
            if reason != CloseReason::InternalError {
                let _ = guarded(conn, || session.on_close(&reason));
            }
            drop(session);
            tokio::task::spawn_local(conn::close(Rc::clone(shard), Rc::clone(conn), reason));
        }
    }
}

/// The connection's loop: one thing per turn until it waits for
/// everything, or must close (the reason).
fn turns(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
    cx: &mut Context<'_>,
) -> Option<CloseReason> {
    for _ in 0..TURNS {
        if let Some(reason) = conn.state.borrow().closing.as_deref() {
            return Some(reason.clone());
        }
        let blocked = conn.state.borrow().write_blocked;
        let parked = park::is_parked(conn);
        let ready = if conn.attention.replace(false) {
            Ready::Attention
        } else if let Some(Poll::Ready(ready)) = blocked.then(|| conn.transport.poll_writable(cx)) {
            Ready::Writable(ready)
        } else if let Some(Poll::Ready(ready)) = (!parked).then(|| conn.transport.poll_readable(cx))
        {
            Ready::Readable(ready)
        } else {
            // Everything it waits for is registered with its waker.
            return None;
        };
        match ready {
            Ready::Attention => {
                let woken = std::mem::take(&mut conn.state.borrow_mut().woken);
                if woken && conn.state.borrow().closing.is_none() {
                    let mut ctx = super::ConnCtx { shard, conn };
                    if guarded(conn, || session.on_wake(&mut ctx)).is_err() {
                        conn.request_close(CloseReason::InternalError);
                    }
                    shard.flush(conn);
                }
                if let Err(reason) = park::redeliver(shard, conn, session) {
                    conn.request_close(reason);
                }
                shard.flush(conn);
            }
            Ready::Writable(ready) => {
                if ready.is_err() {
                    return Some(CloseReason::ConnectionLost);
                }
                conn.state.borrow_mut().write_blocked = false;
                shard.flush(conn);
            }
            Ready::Readable(ready) => {
                let result = ready
                    .map_err(|_| CloseReason::ConnectionLost)
                    .and_then(|()| reader::read_ready(shard, conn, session));
                let more = match result {
                    Ok(drained) => drained == reader::Drained::No,
                    Err(reason) => {
                        conn.request_close(reason);
                        false
                    }
                };
                shard.flush(conn);
                if more {
                    // Others first: to the back of the list.
                    cx.waker().wake_by_ref();
                    return None;
                }
            }
        }
    }
    // Still busy after its turns: to the back of the list.
    cx.waker().wake_by_ref();
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u32) -> ConnKey {
        ConnKey {
            index,
            generation: 1,
        }
    }

    /// However often a connection is woken before the driver takes it
    /// (readiness, a close request, a flush that would block), it is on
    /// the list once; once taken, the next wake puts it back.
    #[test]
    fn a_connection_is_on_the_ready_list_once_until_taken() {
        let ready = Arc::<ReadyList>::default();
        let (a, b) = (ConnWake::new(key(1), &ready), ConnWake::new(key(2), &ready));
        let waker = Waker::from(Arc::clone(&a));
        waker.wake_by_ref();
        Waker::from(Arc::clone(&a)).wake();
        a.wake_by_ref();
        b.wake_by_ref();
        assert_eq!(*ready.keys.lock(), vec![key(1), key(2)]);

        // The driver takes the list and lets go of `a`'s flag.
        let taken = std::mem::take(&mut *ready.keys.lock());
        assert_eq!(taken.len(), 2);
        a.queued.store(false, Ordering::Release);
        waker.wake_by_ref();
        b.wake_by_ref();
        assert_eq!(
            *ready.keys.lock(),
            vec![key(1)],
            "b, taken but not yet polled, is not listed again"
        );
    }
}
