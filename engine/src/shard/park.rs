//! Holding a client's command until the topics it names are caught up with
//! the bus, then handing it to the session again.
//!
//! Owned by one shard thread. Only with an external broker: in one process
//! every topic is always ready and nothing here runs.
//!
//! A topic numbered on the bus is not known here until it is followed and
//! caught up (`topic/follow.rs`); a subscriber that joined before then
//! would be answered from nothing (a resume refused that another server
//! could have served). So a protocol asks first ([`ConnCtx::prepare`]) and,
//! when a named topic is not ready, returns having done nothing. Then:
//! 1. the engine keeps the untouched copy of the command it made before
//!    the session saw it (the session may parse in place), and queues
//!    every later frame of the connection behind it, unread by the
//!    session, so commands keep their order;
//! 2. it stops reading the socket (what was queued is at most one read);
//! 3. the catch-up, or the broker giving up, wakes the connection through
//!    its shard's inbox ([`ShardCommand::Resume`](super::ShardCommand));
//!    so does [`PARK_LIMIT`] passing, whatever the broker does;
//! 4. the connection (polled by its shard's driver) hands the command to the session again, this
//!    time with [`ConnCtx::prepare`] answering yes (a command waits once)
//!    and [`ConnCtx::redelivered`] saying so (the engine counted it, and a
//!    protocol limiting commands admitted it, the first time), then the
//!    frames queued behind it, each of which may wait in turn;
//! 5. reading resumes.
//!
//! The copy of step 1 is made of every client message while the broker is
//! external, since the session may parse in place before it knows it must
//! wait: one allocation and copy per client message (commands, and the
//! frames of `/ws/publish`, whose publish then waits a round trip to the
//! bus anyway), never per delivery.
//!
//! [`ConnCtx::prepare`]: super::ConnCtx::prepare
//! [`ConnCtx::redelivered`]: super::ConnCtx::redelivered

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Conn, Session};
use super::{reader, ShardState};
use crate::sansio::close::CloseReason;
use crate::sansio::ids::ConnKey;
use crate::sansio::quota::TopicQuota;

/// The longest a command waits for a catch-up before it is handed to the
/// session with the topics as they are (the broker should have answered
/// long before: its own sync timeout is shorter).
pub(super) const PARK_LIMIT: Duration = Duration::from_secs(5);

/// Whether a frame is text or binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FrameType {
    Text,
    Binary,
}

/// A connection's held commands. Owned by its shard thread.
#[derive(Debug)]
pub(super) struct Parked {
    /// The waiting command first, then the frames that came after it.
    frames: VecDeque<(FrameType, Vec<u8>)>,
    since: Instant,
    /// Woken: hand the frames to the session at the connection's next poll.
    resumed: bool,
}

/// A shard's side of parking. Owned by one shard thread.
#[derive(Debug, Default)]
pub(super) struct Parking {
    /// Whether the engine's broker is external (else nothing here runs).
    pub(super) enabled: bool,
    /// The session just asked to wait ([`ConnCtx::prepare`] said no).
    request: Cell<bool>,
    /// The frame being handed to the session is a woken command.
    redelivering: Cell<bool>,
}

impl Parking {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }

    /// Whether the client message being handled is a held command handed
    /// over again (counted, and admitted by its protocol, the first time).
    pub(super) fn redelivering(&self) -> bool {
        self.redelivering.get()
    }

    /// Forgets the message being handled (its handling panicked).
    pub(super) fn reset(&self) {
        self.request.set(false);
        self.redelivering.set(false);
    }
}

impl ShardState {
    /// Whether every topic named is ready to subscribe to (see the module
    /// docs); if not, the command being handled will wait for them.
    pub(super) fn prepare<'n>(
        &self,
        conn: &Conn,
        names: impl IntoIterator<Item = &'n str>,
        quota: Option<&Arc<TopicQuota>>,
    ) -> bool {
        if !self.parking.enabled || self.parking.redelivering.get() {
            return true;
        }
        let waiter = (self.index, conn.key);
        let mut ready = true;
        for name in names {
            // A name that cannot be subscribed to is answered by the
            // subscribe itself.
            let Ok(topic) = self.topic(name, quota) else {
                continue;
            };
            if let Err(follow) = topic.want(waiter) {
                ready = false;
                if follow {
                    self.shared.follow(&topic);
                }
            }
        }
        if !ready {
            self.parking.request.set(true);
        }
        ready
    }

    /// Wakes a held connection (its topics are caught up).
    pub(super) fn resume(&self, key: ConnKey) {
        if let Some(conn) = self.conns.borrow().get(key) {
            if let Some(parked) = conn.state.borrow_mut().parked.as_mut() {
                parked.resumed = true;
            }
            conn.notify();
        }
    }

    /// Wakes the connections held past [`PARK_LIMIT`] (the tick).
    pub(super) fn resume_overdue(&self, conn: &Conn, now: Instant) {
        let mut state = conn.state.borrow_mut();
        if let Some(parked) = state.parked.as_mut() {
            if !parked.resumed && now.saturating_duration_since(parked.since) >= PARK_LIMIT {
                parked.resumed = true;
                drop(state);
                conn.notify();
            }
        }
    }
}

/// Waits, before `on_open`, for the topics the session will subscribe to
/// there (at most [`PARK_LIMIT`]).
pub(super) async fn await_open(shard: &Rc<ShardState>, conn: &Rc<Conn>, session: &dyn Session) {
    if !shard.parking.enabled {
        return;
    }
    let (names, quota) = session.topics_at_open();
    if names.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + PARK_LIMIT;
    while !shard.prepare(conn, names.iter().map(String::as_str), quota.as_ref()) {
        shard.parking.request.set(false);
        let timed_out = tokio::select! {
            () = attended(shard, conn) => false,
            () = tokio::time::sleep_until(deadline) => true,
        };
        if timed_out || conn.is_closing() {
            break;
        }
    }
    shard.waiting.borrow_mut().remove(&conn.key);
}

/// Ready once the connection was notified ([`Conn::notify`]), taking the
/// notice; the driver wakes it when it takes the connection's key from its
/// list.
fn attended<'a>(shard: &'a ShardState, conn: &'a Conn) -> impl Future<Output = ()> + 'a {
    super::conn::until(shard, conn.key, || conn.attention.replace(false))
}

/// Whether `conn` holds commands (and so must not be read).
pub(super) fn is_parked(conn: &Conn) -> bool {
    conn.state.borrow().parked.is_some()
}

/// Hands one client message to the session, or queues it behind a held
/// command; holds it if the session asks to wait.
pub(super) fn dispatch(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
    kind: FrameType,
    payload: &mut [u8],
) -> Result<(), CloseReason> {
    if !shard.parking.enabled {
        return reader::to_session(shard, conn, session, kind, payload);
    }
    if let Some(parked) = conn.state.borrow_mut().parked.as_mut() {
        parked.frames.push_back((kind, payload.to_vec()));
        return Ok(());
    }
    let pristine = payload.to_vec();
    let outcome = reader::to_session(shard, conn, session, kind, payload);
    if shard.parking.request.take() {
        conn.state.borrow_mut().parked = Some(Box::new(Parked {
            frames: VecDeque::from([(kind, pristine)]),
            since: shard.now(),
            resumed: false,
        }));
    }
    outcome
}

/// Hands a woken connection's held frames to its session (step 4).
pub(super) fn redeliver(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
) -> Result<(), CloseReason> {
    let Some(mut parked) = ({
        let mut state = conn.state.borrow_mut();
        match &state.parked {
            Some(parked) if parked.resumed => state.parked.take(),
            _ => None,
        }
    }) else {
        return Ok(());
    };
    let mut first = true;
    while let Some((kind, mut frame)) = parked.frames.pop_front() {
        if conn.is_closing() {
            return Ok(());
        }
        shard.parking.redelivering.set(first);
        let pristine = (!first).then(|| frame.clone());
        let outcome = reader::to_session(shard, conn, session, kind, &mut frame);
        shard.parking.redelivering.set(false);
        first = false;
        outcome?;
        if shard.parking.request.take() {
            if let Some(pristine) = pristine {
                parked.frames.push_front((kind, pristine));
            }
            parked.since = shard.now();
            parked.resumed = false;
            conn.state.borrow_mut().parked = Some(parked);
            return Ok(());
        }
    }
    Ok(())
}
