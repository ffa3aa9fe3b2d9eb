//! The shard's own readiness events: one epoll for all its connections'
//! sockets, read by one task.
//!
//! A socket registered with tokio holds 256 bytes of readiness state (and
//! two wakers) for its whole life; a shard's connection needs neither, as
//! only its shard ever waits for its socket (the driver, or its closing
//! task), and the shard knows whom to wake by the connection's key. So
//! each shard keeps a `mio::Poll` of its own:
//! an attached connection's socket is registered there, edge-triggered,
//! with its [`ConnKey`] as the token (`transport.rs`). The poll's file
//! descriptor is itself registered with tokio (an `AsyncFd`), so the
//! shard's runtime wakes [`run`] when any of its sockets has news; it
//! takes the events, marks each connection's readiness, and wakes whoever
//! owns the connection in its phase:
//!
//! - driven (`driver.rs`): it goes on the driver's ready list;
//! - closing: the closing task, if it waits for the socket to take its
//!   close frame (`conn::close`), from the shard's `waiting` map;
//! - opening: nobody; its readiness is kept, and the driver looks at it
//!   when the opening ends.
//!
//! Everything here runs on the shard's thread, which alone reads and
//! clears a connection's readiness: an event the kernel queues after a
//! read found the socket empty is taken by a later turn of [`run`] on the
//! same thread, so no event is lost between a clear and a set.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use mio::{Events, Poll, Token};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::error;

use super::conn::Phase;
use super::ShardState;
use crate::sansio::close::CloseReason;
use crate::sansio::ids::ConnKey;

/// Events taken from the poll per call.
const EVENTS: usize = 1024;

// A token holds a whole key: stale events (of a socket whose connection
// left, its slot reused) never reach a newer connection.
const _: () = assert!(usize::BITS >= 64, "a connection's key is its poll token");

/// The token a connection's socket is registered under.
pub(super) fn token(key: ConnKey) -> Token {
    Token(((key.generation as usize) << 32) | key.index as usize)
}

/// The connection a token names.
fn key(token: Token) -> ConnKey {
    ConnKey {
        index: token.0 as u32,
        generation: (token.0 >> 32) as u32,
    }
}

/// Reads the shard's poll for the shard's whole life: marks each reported
/// socket's connection ready and wakes its owner (module docs).
pub(super) async fn run(shard: Rc<ShardState>, poll: Poll) {
    let mut poll = match watched(poll) {
        Ok(poll) => poll,
        Err(e) => {
            failed(&shard, &e);
            return;
        }
    };
    let mut events = Events::with_capacity(EVENTS);
    loop {
        let mut guard = match poll.readable_mut().await {
            Ok(guard) => guard,
            Err(e) => {
                failed(&shard, &e);
                return;
            }
        };
        loop {
            match guard
                .get_inner_mut()
                .poll(&mut events, Some(Duration::ZERO))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failed(&shard, &e);
                    return;
                }
            }
            let mut taken = 0;
            for event in &events {
                dispatch(&shard, event);
                taken += 1;
            }
            // Fewer than asked for: the poll had no more (edge-triggered,
            // each reported event leaves it). An event that comes after
            // this call makes the poll's descriptor ready again, which
            // tokio notes even if it comes before the clear below.
            if taken < EVENTS {
                guard.clear_ready();
                break;
            }
            // A full batch: others run before the next.
            tokio::task::yield_now().await;
        }
    }
}

/// The poll cannot be read (a bug, or the kernel out of memory): with
/// no events for its sockets, the shard refuses new connections and closes
/// the ones it has, so that their clients reconnect elsewhere.
#[cold]
fn failed(shard: &ShardState, e: &io::Error) {
    error!(shard = shard.index(), error = %e, "the shard's poll failed: closing its connections and taking no more");
    shard.polling.set(false);
    shard.close_all(CloseReason::InternalError);
}

/// The poll, registered with the shard's runtime.
#[allow(unsafe_code)] // tokio's registration of a descriptor it does not own.
fn watched(poll: Poll) -> io::Result<AsyncFd<Poll>> {
    // SAFETY: `AsyncFd` requires the descriptor to stay open, and the same,
    // for as long as it is registered. A `Poll` owns its epoll descriptor
    // from creation to drop and never replaces it, so `as_raw_fd` always
    // returns that one; it moves into the `AsyncFd` and is dropped with it
    // (after tokio deregisters it); the only use of `get_inner_mut` below
    // is `Poll::poll`, which keeps the descriptor.
    unsafe { AsyncFd::register_with_interest(poll, Interest::READABLE) }.map_err(|e| e.into())
}

/// Marks one event's connection ready and wakes its owner.
fn dispatch(shard: &ShardState, event: &mio::event::Event) {
    let key = key(event.token());
    let conns = shard.conns.borrow();
    let Some(conn) = conns.get(key) else {
        // The connection left; its socket is going or gone.
        return;
    };
    let failed = event.is_error();
    conn.transport.mark_ready(
        event.is_readable(),
        event.is_writable() || event.is_write_closed() || failed,
        event.is_read_closed() || failed,
    );
    match conn.phase.get() {
        Phase::Driven => conn.ready.push(key, &conn.queued),
        Phase::Closing => {
            let waiting = shard.waiting.borrow_mut().remove(&key);
            if let Some(waker) = waiting {
                waker.wake();
            }
        }
        // Its opening task hands it to the driver, which looks at the
        // socket first. (Driving never meets an event: `drive` does not
        // wait, so the poller cannot run during it.)
        Phase::Opening | Phase::Driving => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token names exactly one connection: a key comes back from its
    /// token with its generation, so an event of a connection that left
    /// never reaches the one that took its slot.
    #[test]
    fn a_token_names_one_connection_of_one_generation() {
        for (index, generation) in [(0, 0), (1, 7), (u32::MAX, 1), (5, u32::MAX)] {
            let k = ConnKey { index, generation };
            assert_eq!(key(token(k)), k);
        }
        let old = ConnKey {
            index: 3,
            generation: 1,
        };
        let new = ConnKey {
            index: 3,
            generation: 2,
        };
        assert_ne!(token(old), token(new));
    }
}
