//! The broker thread's publishing step: queued publishes to Redis in
//! pipelines of script calls, each publisher answered (step 3 of `bus.rs`),
//! and refusals when Redis cannot take them (step 4).
//!
//! Owned by the broker thread.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use futures_util::future::join_all;
use redis::{Pipeline, RedisError};
use shardcast_engine::{Epoch, PublishError};
use tokio::sync::mpsc;

use super::bus::{connection_lost, Worker};
use super::keys::{publish_command, Scripts, TopicKeys};
use super::link::Commands;
use super::{BusHealth, Job};

/// Most publishes in one batch: enough to amortise a round trip at a
/// million messages a second, small enough that one batch's script time
/// (≈ 10 µs each) keeps receiving prompt.
const BATCH: usize = 256;

impl Worker {
    /// `first` and every publish queued behind it (up to [`BATCH`]), each
    /// publisher answered. One pipeline on one server; in a Redis Cluster,
    /// one pipeline per topic (a pipeline cannot span slots), all sent at
    /// once. Either way a topic's publishes reach Redis in queue order.
    pub(super) async fn publish(
        &self,
        commands: &mut Commands,
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
        let groups = if commands.pipelines_span_topics() {
            vec![(0..batch.len()).collect()]
        } else {
            by_topic(&batch)
        };
        let command = publish_command(!commands.pipelines_span_topics());
        let pipes: Vec<Pipeline> = groups
            .iter()
            .map(|group| self.pipeline(scripts, command, group.iter().map(|&i| &batch[i])))
            .collect();
        let answers = join_all(pipes.iter().map(|pipe| {
            let mut commands = commands.clone();
            async move { pipe.query_async::<Vec<(String, u64)>>(&mut commands).await }
        }))
        .await;
        let mut jobs: Vec<Option<Job>> = batch.into_iter().map(Some).collect();
        let mut lost = None;
        for (group, answer) in groups.iter().zip(answers) {
            let mut group = group.iter().filter_map(|&i| jobs[i].take());
            match answer {
                Ok(numbers) => {
                    BusHealth::add(&self.health.published, numbers.len() as u64);
                    let mut latency = self.health.publish_latency_us.lock();
                    for (job, (_, seq)) in group.by_ref().zip(numbers) {
                        let waited = job.queued_at.elapsed().as_micros() as u64;
                        let _ = latency.record(waited.max(1));
                        job.reply.send(Ok(seq));
                    }
                }
                Err(e) => {
                    let error =
                        PublishError::Unavailable(format!("Redis refused the publish: {e}").into());
                    group.by_ref().for_each(|job| self.refuse(job, &error));
                    if connection_lost(&e) {
                        lost = Some(e);
                    }
                }
            }
            // A reply shorter than its pipeline (never expected): refused,
            // not left unanswered.
            let short = PublishError::Unavailable("Redis did not number the publish".into());
            group.for_each(|job| self.refuse(job, &short));
        }
        lost.map_or(Ok(()), Err)
    }

    /// One pipeline of publish script calls.
    fn pipeline<'a>(
        &self,
        scripts: &Scripts,
        command: &str,
        jobs: impl Iterator<Item = &'a Job>,
    ) -> Pipeline {
        let mut pipe = redis::pipe();
        let ttl = self.config.history_ttl.as_secs();
        for job in jobs {
            let keys = TopicKeys::new(&self.config.bus.prefix, &job.topic);
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
                .arg(job.key.as_deref().unwrap_or(""))
                .arg(command);
        }
        pipe
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
        super::super::unreachable("Redis", &self.config.bus.url)
    }
}

/// The indices of `batch` grouped by topic, each group in queue order.
fn by_topic(batch: &[Job]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, job) in batch.iter().enumerate() {
        let group = *index.entry(&job.topic).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[group].push(i);
    }
    groups
}
