//! Connections without a task of their own: the shard's driver reads every
//! connection that has something to do.
//!
//! A connection spends its life waiting: for its socket to become readable
//! (frames to parse), writable (only after a write would have blocked),
//! or for *attention* (a close was requested, a wake-up is due, a held
//! command may go on). A task per connection would hold that wait in a
//! tokio task cell (384 bytes) for the connection's whole life; instead,
//! the shard keeps one [`ReadyList`] of the connections with something to
//! do, which the shard's poller (`poller.rs`, from its sockets' events)
//! and every notice ([`Conn::notify`]) add to, and one task per shard
//! (the driver) takes the keys and handles each connection ([`drive`])
//! until everything it waits for is waiting again. Only the opening (the
//! wait for its topics, `on_open`) and the closing sequence, which hold
//! timers and last a moment, run as tasks of their own (`conn::open`,
//! `conn::close`).
//!
//! A connection is on the list at most once (its `queued` flag); one
//! being handled (`Phase::Driving`) is not put on it by a notice, as its
//! handling looks at its state again before it lets go. The driver
//! handles at most [`SLICE`] connections before it yields, so deliveries,
//! the tick and other tasks run between slices; a connection with more to
//! read than one read's worth goes to the back of the list.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

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
/// driver's wake-up. Everything that puts a connection on it runs on the
/// shard's thread: the poller (`poller.rs`), a notice ([`Conn::notify`]),
/// the driver itself.
#[derive(Default)]
pub(super) struct ReadyList {
    keys: RefCell<Vec<ConnKey>>,
    wake: Notify,
}

impl ReadyList {
    /// Lists `key` unless `queued` says it is listed already, and wakes
    /// the driver. `queued` is the connection's own flag, cleared when the
    /// driver takes its key.
    pub(super) fn push(&self, key: ConnKey, queued: &Cell<bool>) {
        if !queued.replace(true) {
            self.keys.borrow_mut().push(key);
            self.wake.notify_one();
        }
    }
}

/// The shard's driver: polls the connections on the ready list, a slice
/// at a time, for the shard's whole life.
pub(super) async fn run(shard: Rc<ShardState>) {
    let ready = Rc::clone(&shard.ready);
    let mut keys = Vec::new();
    loop {
        std::mem::swap(&mut keys, &mut *ready.keys.borrow_mut());
        if keys.is_empty() {
            // A wake between the swap and here leaves a permit: no loss.
            ready.wake.notified().await;
            continue;
        }
        for (i, &key) in keys.iter().enumerate() {
            if i > 0 && i % SLICE == 0 {
                tokio::task::yield_now().await;
            }
            let conn = shard.conns.borrow().get(key).cloned();
            if let Some(conn) = conn {
                conn.queued.set(false);
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
            let waiting = shard.waiting.borrow_mut().remove(&conn.key);
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
    /// The socket takes writes again, or failed (which the write finds).
    Writable,
    /// The socket has bytes, an end or an error to read.
    Readable,
}

/// Handles everything `conn` has to do now, then leaves each thing it
/// waits for to wake it again; or starts its closing sequence.
fn drive(shard: &Rc<ShardState>, conn: &Rc<Conn>) {
    let Some(mut session) = conn.session.take() else {
        return;
    };
    conn.phase.set(Phase::Driving);
    match turns(shard, conn, &mut *session) {
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
) -> Option<CloseReason> {
    for _ in 0..TURNS {
        if let Some(reason) = conn.state.borrow().closing.as_deref() {
            return Some(reason.clone());
        }
        let blocked = conn.state.borrow().write_blocked;
        let parked = park::is_parked(conn);
        let ready = if conn.attention.replace(false) {
            Ready::Attention
        } else if blocked && conn.transport.writable() {
            Ready::Writable
        } else if !parked && conn.transport.readable() {
            Ready::Readable
        } else {
            // The shard's poller wakes it when its socket has news, and a
            // notice when anything else does.
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
            Ready::Writable => {
                conn.state.borrow_mut().write_blocked = false;
                shard.flush(conn);
            }
            Ready::Readable => {
                let more = match reader::read_ready(shard, conn, session) {
                    Ok(drained) => drained == reader::Drained::No,
                    Err(reason) => {
                        conn.request_close(reason);
                        false
                    }
                };
                shard.flush(conn);
                if more {
                    // Others first: to the back of the list.
                    shard.ready.push(conn.key, &conn.queued);
                    return None;
                }
            }
        }
    }
    // Still busy after its turns: to the back of the list.
    shard.ready.push(conn.key, &conn.queued);
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
    /// (its socket's events, a close request, a due wake-up), it is on
    /// the list once; once taken, the next wake puts it back.
    #[test]
    fn a_connection_is_on_the_ready_list_once_until_taken() {
        let ready = ReadyList::default();
        let (a, b) = (Cell::new(false), Cell::new(false));
        ready.push(key(1), &a);
        ready.push(key(1), &a);
        ready.push(key(2), &b);
        ready.push(key(1), &a);
        assert_eq!(*ready.keys.borrow(), vec![key(1), key(2)]);

        // The driver takes the list and lets go of `a`'s flag.
        let taken = std::mem::take(&mut *ready.keys.borrow_mut());
        assert_eq!(taken.len(), 2);
        a.set(false);
        ready.push(key(1), &a);
        ready.push(key(2), &b);
        assert_eq!(
            *ready.keys.borrow(),
            vec![key(1)],
            "b, taken but not yet polled, is not listed again"
        );
    }
}
