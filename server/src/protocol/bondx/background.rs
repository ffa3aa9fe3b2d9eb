//! Background mode of one BondX connection: the topics it follows without
//! their live streams, and the conflated state it is sent instead.
//!
//! Owned by the connection's session (its shard). In background mode the
//! connection holds no subscription; every `[bondx]
//! background_interval_seconds` its session is woken and sends, for each
//! followed topic whose position moved since the state last sent, one
//! `snapshot` with `meta.background: true`: the latest value of every key
//! (or the latest data), read under the topic's lock. A topic that expired
//! meanwhile has nothing to send until it exists again. Each state is
//! encoded once per shard, whatever the number of connections following it
//! there (`FrameCache`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardcast_engine::{validate_name, ConnCtx, Position, Replay, Replayed, Topic};
use tracing::debug;

use super::command::Code;
use super::envelope;

/// A topic followed in background mode: its name and the position of the
/// state last sent (`None`: send the next one whatever it is).
#[derive(Debug)]
struct Followed {
    topic: Arc<str>,
    sent: Option<Position>,
}

/// The topics a connection in background mode follows. Owned by its session.
#[derive(Debug, Default)]
pub struct Background {
    topics: Vec<Followed>,
}

impl Background {
    /// Following `topics` from now on, none of them sent yet.
    pub fn following(topics: Vec<Arc<str>>) -> Self {
        Self {
            topics: topics
                .into_iter()
                .map(|topic| Followed { topic, sent: None })
                .collect(),
        }
    }

    /// Follows `name` too (at most `limit` topics); its state goes out at
    /// the next wake-up.
    pub fn follow(&mut self, name: &str, limit: usize) -> Result<(), (Code, String)> {
        if self.topics.iter().any(|f| &*f.topic == name) {
            return Ok(());
        }
        if self.topics.len() >= limit {
            let message = format!("subscription limit of {limit} topics per connection reached");
            return Err((Code::LimitReached, message));
        }
        validate_name(name).map_err(|e| (Code::InvalidTopic, e.to_string()))?;
        self.topics.push(Followed {
            topic: name.into(),
            sent: None,
        });
        Ok(())
    }

    /// Stops following `name`; `false` if it was not followed.
    pub fn leave(&mut self, name: &str) -> bool {
        let before = self.topics.len();
        self.topics.retain(|f| &*f.topic != name);
        self.topics.len() < before
    }

    /// The topics followed, to subscribe to again when the mode ends.
    pub fn into_topics(self) -> Vec<Arc<str>> {
        self.topics.into_iter().map(|f| f.topic).collect()
    }

    /// Sends the state of every followed topic that changed (at most
    /// `max_keys` keys each). `interval` is the background interval: a
    /// shard's cached frame unused for two of them is dropped.
    pub fn send_changed(&mut self, ctx: &mut ConnCtx<'_>, max_keys: usize, interval: Duration) {
        let now = Instant::now();
        for followed in &mut self.topics {
            let Some(topic) = ctx.engine().topics().get(&followed.topic) else {
                continue;
            };
            // Watched, even while nothing changes: kept followed on a bus.
            topic.look();
            let now_at = topic.position();
            if followed.sent == Some(now_at) {
                continue;
            }
            let (position, frame) = FRAMES.with(|frames| {
                frames
                    .borrow_mut()
                    .frame(&followed.topic, now_at, now, || encode(&topic, max_keys))
            });
            if ctx.send_state(&topic, frame) {
                followed.sent = Some(position);
            }
        }
        FRAMES.with(|frames| frames.borrow_mut().sweep(now, 2 * interval));
    }
}

/// The background snapshot of `topic`'s state now, and its position.
fn encode(topic: &Topic, max_keys: usize) -> (Position, Bytes) {
    let (position, state) = topic.peek(Replay::State(max_keys));
    // A state request always has an answer; an error would be a bug.
    let state = state.unwrap_or_else(|e| {
        debug!(error = %e, "state of a topic unavailable");
        Replayed::default()
    });
    let meta = serde_json::json!({"background": true});
    let frame = envelope::snapshot(topic.name(), position, &state.messages, Some(&meta), None);
    (position, frame)
}

thread_local! {
    /// This shard's latest background snapshot of each topic (a session
    /// runs on its connection's shard thread, so this is per shard and
    /// needs no lock): every connection of the shard following a topic
    /// gets the same frame of the same state, encoded once.
    static FRAMES: RefCell<FrameCache> = RefCell::default();
}

/// Background snapshots by topic, each with the position it shows. Owned
/// by one shard thread.
#[derive(Default)]
struct FrameCache {
    frames: HashMap<Arc<str>, Cached>,
    swept: Option<Instant>,
}

struct Cached {
    position: Position,
    frame: Bytes,
    used: Instant,
}

impl FrameCache {
    /// The frame of `name` at `position`, made by `make` (which returns
    /// the position it shows, perhaps newer) unless cached.
    fn frame(
        &mut self,
        name: &Arc<str>,
        position: Position,
        now: Instant,
        make: impl FnOnce() -> (Position, Bytes),
    ) -> (Position, Bytes) {
        if let Some(cached) = self.frames.get_mut(name) {
            if cached.position == position {
                cached.used = now;
                return (position, cached.frame.clone());
            }
        }
        let (position, frame) = make();
        let cached = Cached {
            position,
            frame: frame.clone(),
            used: now,
        };
        self.frames.insert(Arc::clone(name), cached);
        (position, frame)
    }

    /// Drops frames unused for `keep`, sweeping at most once per `keep` (so
    /// a frame goes within twice that).
    fn sweep(&mut self, now: Instant, keep: Duration) {
        if self
            .swept
            .is_some_and(|at| now.saturating_duration_since(at) < keep)
        {
            return;
        }
        self.swept = Some(now);
        self.frames
            .retain(|_, cached| now.saturating_duration_since(cached.used) < keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_engine::Epoch;

    #[test]
    fn a_state_is_encoded_once_per_shard_and_forgotten_when_unused() {
        let mut cache = FrameCache::default();
        let name: Arc<str> = "prices.X".into();
        let at = |seq| Position {
            epoch: Epoch::from_u64(1),
            seq,
        };
        let start = Instant::now();
        let mut made = 0;
        let mut make = |seq: u64| {
            made += 1;
            (at(seq), Bytes::from(format!("state {seq}")))
        };
        for _ in 0..3 {
            let (position, frame) = cache.frame(&name, at(5), start, || make(5));
            assert_eq!((position, &frame[..]), (at(5), &b"state 5"[..]));
        }
        // A newer state is encoded again, once.
        cache.frame(&name, at(6), start, || make(6));
        cache.frame(&name, at(6), start, || make(6));
        assert_eq!(made, 2);
        // Sweeps run at most once per keep time; a frame unused for longer
        // goes at the next one.
        let keep = Duration::from_secs(60);
        cache.sweep(start + Duration::from_secs(30), keep);
        assert_eq!(cache.frames.len(), 1);
        cache.sweep(start + Duration::from_secs(61), keep);
        assert_eq!(cache.frames.len(), 1, "no sweep yet");
        cache.sweep(start + Duration::from_secs(91), keep);
        assert!(cache.frames.is_empty());
    }

    #[test]
    fn topics_are_followed_once_within_the_limit() {
        let mut background = Background::following(vec!["prices.A".into()]);
        assert!(background.follow("prices.A", 2).is_ok());
        assert!(background.follow("prices.B", 2).is_ok());
        assert_eq!(
            background.follow("prices.C", 2).unwrap_err().0,
            Code::LimitReached
        );
        assert!(background.leave("prices.A"));
        assert!(!background.leave("prices.A"));
        assert_eq!(
            background.follow("bad name", 2).unwrap_err().0,
            Code::InvalidTopic
        );
        let topics: Vec<String> = background
            .into_topics()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(topics, ["prices.B"]);
    }
}
