//! The public faces of a shard: [`LocalShard`], the handle a connection
//! handler gets for the shard it runs on, and [`Attachment`], what it hands
//! over when a WebSocket upgrade is done.
//!
//! Owned by one shard thread (`!Send`); the handle only forwards to
//! [`ShardState`](super::ShardState), which `shard/mod.rs` owns.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::engine::Engine;
use crate::gate::{PeerPermit, Refused};
use crate::sansio::delivery::Delivery;
use crate::sansio::ids::ConnKey;
use crate::sansio::message::Publication;
use crate::sansio::quota::TopicQuota;
use crate::shard::conn::Session;
use crate::shard::ShardState;
use crate::{PublishError, Published};

/// Why a connection was not attached; its socket is closed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The connection gate refused it (the server is full).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The kernel refused to add its socket to the shard's poll (out of
    /// memory, or of epoll watches: `fs.epoll.max_user_watches`).
    #[error("cannot watch the socket: {0}")]
    Poll(#[from] std::io::Error),
}

/// An upgraded connection, ready to be attached to the shard it was
/// accepted on.
pub struct Attachment {
    /// The socket (plain or TLS), past the HTTP upgrade.
    pub transport: super::transport::Transport,
    /// Bytes the HTTP layer read past the upgrade request.
    pub read_buf: Bytes,
    /// The client's id; a live connection of the same owner with this id is
    /// closed with [`CloseReason::Replaced`](crate::CloseReason::Replaced).
    pub client_id: Arc<str>,
    /// The principal it authenticated as (an API key's name, a token's user).
    pub owner: Arc<str>,
    /// Its wire format, overflow policy and liveness.
    pub delivery: Delivery,
    /// What its messages mean.
    pub session: Box<dyn Session>,
    /// Its place in the connection gate, established as a WebSocket.
    pub permit: PeerPermit,
    /// What its protocol records about it for the client listing (a
    /// device type, a client version), as (name, value) pairs.
    pub details: Details,
}

/// A connection's (name, value) pairs shown in the client listing.
pub type Details = Box<[(&'static str, Box<str>)]>;

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("client_id", &self.client_id)
            .field("owner", &self.owner)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

/// A handle to the shard the current task runs on. Owned by one shard
/// thread (`!Send`); cheap to clone.
#[derive(Clone)]
pub struct LocalShard {
    state: Rc<ShardState>,
}

impl std::fmt::Debug for LocalShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalShard")
            .field("index", &self.state.index())
            .finish()
    }
}

impl LocalShard {
    pub(super) fn new(state: &Rc<ShardState>) -> Self {
        Self {
            state: Rc::clone(state),
        }
    }

    pub(super) fn state(&self) -> &Rc<ShardState> {
        &self.state
    }

    /// This shard's index.
    pub fn index(&self) -> usize {
        self.state.index()
    }

    /// The engine this shard belongs to.
    pub fn engine(&self) -> &Engine {
        self.state.engine()
    }

    /// Takes over an upgraded WebSocket connection: from now on its reads,
    /// outbox and writes run on this shard, driven by its session.
    ///
    /// The permit is established first if it was not (refused when the
    /// server is full; the socket is then dropped), then the socket is
    /// added to the shard's poll ([`AttachError::Poll`] if the kernel
    /// refuses, or the shard's poll has failed). A live connection of the
    /// same owner with the same client id is closed with
    /// [`CloseReason::Replaced`](crate::CloseReason::Replaced); client ids of other owners are theirs.
    pub fn attach(&self, attachment: Attachment) -> Result<ConnKey, AttachError> {
        self.state.attach(attachment)
    }

    /// Publishes through the engine's broker, resolving `topic` from this
    /// shard's cache (no global lock once the topic is known here); a topic
    /// that has to be created is charged to `quota`.
    pub fn publish(
        &self,
        topic: &str,
        publication: Publication,
        quota: Option<&Arc<TopicQuota>>,
    ) -> Result<Published, PublishError> {
        self.state.publish(topic, publication, quota)
    }
}
