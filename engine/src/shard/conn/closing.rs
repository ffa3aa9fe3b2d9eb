//! The closing sequence of a connection (steps in the module docs of
//! `conn.rs`), a task of its own while it lasts, and the waits of the
//! tasks that own a connection while it opens or closes.

use std::future::Future;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use super::{Conn, ShardState};
use crate::sansio::close::CloseReason;
use crate::sansio::decode::Decoder;
use crate::sansio::frame;
use crate::sansio::ids::ConnKey;

/// How long a closing connection may take to flush its close frame.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// How long to wait for the peer's EOF after our close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The closing sequence (module docs), a task of its own while it lasts.
pub(in crate::shard) async fn close(shard: Rc<ShardState>, conn: Rc<Conn>, reason: CloseReason) {
    // 1. Leave every topic.
    let topics = std::mem::take(&mut conn.state.borrow_mut().topics);
    for held in &topics {
        shard.unsubscribe(&conn, held);
    }
    drop(topics);

    // 2. Close frame behind what is queued, flushed within a deadline.
    if reason.sends_close_frame() {
        {
            let mut state = conn.state.borrow_mut();
            state.decoder = Decoder::new(conn.delivery.deflate);
            // The reply to a client's close frame is already queued.
            if reason != CloseReason::ClientClosed {
                state
                    .mailbox
                    .outbox
                    .push_close(frame::encode_close(reason.code(), &reason.text()));
            }
        }
        let deadline = tokio::time::sleep(CLOSE_FLUSH);
        tokio::pin!(deadline);
        loop {
            conn.state.borrow_mut().write_blocked = false;
            shard.flush(&conn);
            let done = {
                let state = conn.state.borrow();
                (state.mailbox.outbox.is_empty() && !conn.transport.has_pending()) || state.broken
            };
            if done {
                break;
            }
            tokio::select! {
                biased;
                () = &mut deadline => break,
                () = writable(&shard, &conn) => {}
            }
        }
        shard.waiting.borrow_mut().remove(&conn.key);
    }

    // 3. and 4.
    shard.count_undelivered(&conn);
    shard.detach(&conn, &reason);

    // 5. Half-close and linger for the peer's EOF.
    let Ok(conn) = Rc::try_unwrap(conn) else {
        return;
    };
    if !reason.sends_close_frame() {
        return;
    }
    // Its waits are tokio's from here: the shard's poll has let it go.
    let mut transport = match conn.transport.detach(&shard.registry) {
        Ok(transport) => transport,
        Err(e) => {
            // Closed without the linger: the close frame may be lost.
            tracing::debug!(client = %conn.client_id, error = %e, "cannot linger for the peer's end");
            return;
        }
    };
    if transport.shutdown().await.is_ok() {
        let _ = tokio::time::timeout(CLOSE_LINGER, transport.drain_until_eof()).await;
    }
    // 6. The rest of `conn`, its permit with it, goes here.
}

/// Ready once a closing connection's socket may take writes (or has failed,
/// which the next write finds); the poller wakes it (`poller.rs`).
fn writable<'a>(shard: &'a ShardState, conn: &'a Conn) -> impl Future<Output = ()> + 'a {
    until(shard, conn.key, || conn.transport.writable())
}

/// Ready once `ready` says so, for the task that owns connection `key` in
/// its opening or closing phase: until then its waker waits in the shard's
/// `waiting` map, where the driver or the poller finds it.
pub(in crate::shard) fn until<'a>(
    shard: &'a ShardState,
    key: ConnKey,
    mut ready: impl FnMut() -> bool + 'a,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        if ready() {
            Poll::Ready(())
        } else {
            shard.waiting.borrow_mut().insert(key, cx.waker().clone());
            Poll::Pending
        }
    })
}
