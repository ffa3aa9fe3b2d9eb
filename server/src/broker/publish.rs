//! The broker thread's publishing step: queued publishes to Redis in
//! pipelines of script calls, each publisher answered (step 3 of `bus.rs`),
//! and refusals when Redis cannot take them (step 4).
//!
//! Owned by the broker thread.

use std::sync::atomic::Ordering;

use redis::aio::MultiplexedConnection;
use redis::RedisError;
use shardcast_engine::{Epoch, PublishError};
use tokio::sync::mpsc;

use super::bus::{connection_lost, Worker};
use super::keys::{Scripts, TopicKeys};
use super::redis::Job;
use super::BusHealth;

/// Most publishes in one pipeline: enough to amortise a round trip at a
/// million messages a second, small enough that one batch's script time
/// (≈ 10 µs each) keeps receiving prompt.
const BATCH: usize = 256;

impl Worker {
    /// `first` and every publish queued behind it (up to [`BATCH`]) in one
    /// pipeline, each publisher answered.
    pub(super) async fn publish(
        &self,
        commands: &mut MultiplexedConnection,
        scripts: &Scripts,
        jobs: &mut mpsc::Receiver<Job>,
        first: Job,
    ) -> Result<(), RedisError> {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        self.health.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        let mut pipe = redis::pipe();
        let ttl = self.config.history_ttl.as_secs();
        for job in &batch {
            let keys = TopicKeys::new(&self.config.prefix, &job.topic);
            pipe.cmd("EVALSHA")
                .arg(scripts.publish.get_hash())
                .arg(3)
                .arg(&keys.meta)
                .arg(&keys.history)
                .arg(&keys.snapshot)
                .arg(&keys.channel)
                .arg(format!("{}", Epoch::fresh()))
                .arg(self.retention.history)
                .arg(self.retention.max_keys)
                .arg(ttl)
                .arg(&job.body)
                .arg(if job.keep { "1" } else { "0" })
                .arg(job.key.as_deref().unwrap_or(""));
        }
        match pipe.query_async::<Vec<(String, u64)>>(commands).await {
            Ok(numbers) => {
                BusHealth::add(&self.health.published, batch.len() as u64);
                let mut latency = self.health.publish_latency_us.lock();
                for (job, (_, seq)) in batch.into_iter().zip(numbers) {
                    let waited = job.queued_at.elapsed().as_micros() as u64;
                    let _ = latency.record(waited.max(1));
                    job.reply.send(Ok(seq));
                }
                Ok(())
            }
            Err(e) => {
                let error =
                    PublishError::Unavailable(format!("Redis refused the publish: {e}").into());
                for job in batch {
                    self.refuse(job, &error);
                }
                if connection_lost(&e) {
                    Err(e)
                } else {
                    Ok(())
                }
            }
        }
    }

    pub(super) fn refuse(&self, job: Job, error: &PublishError) {
        BusHealth::add(&self.health.publish_errors, 1);
        job.reply.send(Err(error.clone()));
    }

    /// Refuses every publish still queued (step 4).
    pub(super) fn refuse_queued(&self, jobs: &mut mpsc::Receiver<Job>) {
        let error = self.unreachable();
        while let Ok(job) = jobs.try_recv() {
            self.health.queued.fetch_sub(1, Ordering::Relaxed);
            self.refuse(job, &error);
        }
    }

    pub(super) fn unreachable(&self) -> PublishError {
        super::unreachable(&self.config.url)
    }
}
