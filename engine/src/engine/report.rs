//! What the engine reports: figures and clients, gathered from every shard
//! through its command inbox (each shard copies its own, so asking costs the
//! delivery path nothing).

use tokio::sync::oneshot;

use super::Engine;
use crate::shard::ShardCommand;
use crate::stats::{ClientInfo, EngineStats};

impl Engine {
    /// Figures from every shard, merged.
    pub async fn stats(&self) -> EngineStats {
        let shards = self.ask_every_shard(ShardCommand::Stats).await;
        let topics = self.shared.topics.all().iter().map(|t| t.stats()).collect();
        EngineStats::merge(shards, topics, self.shared.topics.retired())
    }

    /// Every connected client, from every shard.
    pub async fn clients(&self) -> Vec<ClientInfo> {
        let lists = self.ask_every_shard(ShardCommand::Clients).await;
        lists.into_iter().flatten().collect()
    }

    /// The clients furthest behind, at most [`SLOWEST`](crate::SLOWEST):
    /// the deepest outboxes first, then the most events not delivered
    /// (dropped; conflated ones do not count); clients with neither are left out. Each
    /// shard describes only its own few, so a dashboard can ask every
    /// second without copying the whole client list.
    pub async fn slowest_clients(&self) -> Vec<ClientInfo> {
        let mut all: Vec<ClientInfo> = self
            .ask_every_shard(ShardCommand::Slowest)
            .await
            .into_iter()
            .flatten()
            .collect();
        let rank = |c: &ClientInfo| (c.queue_depth, c.counts.dropped_total());
        all.sort_by_key(|c| std::cmp::Reverse(rank(c)));
        all.truncate(crate::SLOWEST);
        all
    }

    /// Sends every shard the command `ask` builds and gathers the replies of
    /// those still running, in shard order. All shards work on it at once.
    async fn ask_every_shard<T>(&self, ask: fn(oneshot::Sender<T>) -> ShardCommand) -> Vec<T> {
        let replies: Vec<_> = self
            .shared
            .inboxes
            .iter()
            .map(|inbox| {
                let (tx, rx) = oneshot::channel();
                inbox.command(ask(tx));
                rx
            })
            .collect();
        let mut answers = Vec::with_capacity(replies.len());
        for reply in replies {
            if let Ok(answer) = reply.await {
                answers.push(answer);
            }
        }
        answers
    }
}
