//! The connections of one session with Redis, whichever its shape:
//! - **one server**: a multiplexed connection for commands and a pub/sub
//!   connection, channels joined with `SUBSCRIBE`;
//! - **a Redis Cluster** (`[broker] cluster`): one cluster connection over
//!   RESP3 that routes each command to the node owning its keys' slot, and
//!   sharded pub/sub (`SSUBSCRIBE`, `SPUBLISH` in the publish script), so a
//!   topic's messages travel only through the node that owns its slot.
//!   Every key and channel of a topic shares one hash tag (`keys.rs`), so
//!   its counter, history, snapshot and channel live on one node, and one
//!   script call touches one node.
//!
//! Owned by the broker thread; the bus loop (`bus.rs`) sees only
//! [`Commands`] and [`Feed`].

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, MultiplexedConnection, PubSubSink, PubSubStream};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, Msg, Pipeline, PushInfo, PushKind, RedisError, RedisFuture,
    RedisResult, Value,
};
use tokio::sync::mpsc;

use crate::config::RedisConfig;

/// Where commands go.
#[derive(Clone)]
pub(super) enum Commands {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Commands {
    /// Whether one pipeline may carry commands for different topics (a
    /// cluster refuses pipelines that span slots).
    pub(super) fn pipelines_span_topics(&self) -> bool {
        matches!(self, Self::Single(_))
    }
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Where messages on followed channels come from.
pub(super) enum Feed {
    Single {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    Cluster {
        connection: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    },
}

impl Feed {
    /// Joins `channel` (sharded in a cluster).
    pub(super) async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Single { sink, .. } => sink.subscribe(channel).await,
            Self::Cluster { connection, .. } => connection.ssubscribe(channel).await,
        }
    }

    /// Leaves `channel`.
    pub(super) async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Single { sink, .. } => sink.unsubscribe(channel).await,
            Self::Cluster { connection, .. } => connection.sunsubscribe(channel).await,
        }
    }

    /// The next message on a followed channel, or a channel the cluster
    /// dropped; `None` once the connection is gone. Other pushes
    /// (subscription confirmations) are passed over.
    pub(super) async fn next(&mut self) -> Option<Pushed> {
        match self {
            Self::Single { stream, .. } => stream.next().await.map(Pushed::Message),
            Self::Cluster { pushes, .. } => loop {
                let push = pushes.recv().await?;
                if push.kind == PushKind::SUnsubscribe {
                    if let Some(Value::BulkString(channel)) = push.data.first() {
                        return Some(Pushed::Dropped(String::from_utf8_lossy(channel).into()));
                    }
                } else if let Some(message) = Msg::from_push_info(push) {
                    return Some(Pushed::Message(message));
                }
            },
        }
    }
}

/// What the feed brings.
pub(super) enum Pushed {
    /// A message on a channel.
    Message(Msg),
    /// A channel no longer subscribed: unfollowed here, or dropped by the
    /// cluster (its slot moved to another node), which must be followed
    /// again.
    Dropped(String),
}

/// Opens a session's connections, each step bounded by `timeout_ms`.
pub(super) async fn open(config: &RedisConfig) -> Result<(Commands, Feed), RedisError> {
    let timeout = config.bus.timeout;
    let timed_out = || RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
    if config.cluster.is_empty() {
        let client = redis::Client::open(config.bus.url.as_str())?;
        let settings = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let commands = client
            .get_multiplexed_async_connection_with_config(&settings)
            .await?;
        let pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
            .await
            .map_err(|_| timed_out())??;
        let (sink, stream) = pubsub.split();
        return Ok((Commands::Single(commands), Feed::Single { sink, stream }));
    }
    // A new push channel per session: pushes of a lost session cannot
    // reach the next one.
    let (tx, pushes) = mpsc::unbounded_channel();
    let client = ClusterClientBuilder::new(config.cluster.clone())
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(tx)
        .connection_timeout(timeout)
        .response_timeout(timeout)
        // A node that stops answering ends the session (and its topics
        // are caught up again), rather than stalling it on retries.
        .retries(1)
        .build()?;
    let connection = tokio::time::timeout(timeout, client.get_async_connection())
        .await
        .map_err(|_| timed_out())??;
    Ok((
        Commands::Cluster(connection.clone()),
        Feed::Cluster { connection, pushes },
    ))
}
