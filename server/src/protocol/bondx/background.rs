//! Background mode of one BondX connection: the topics it follows without
//! their live streams, and the conflated state it is sent instead.
//!
//! Owned by the connection's session (its shard). In background mode the
//! connection holds no subscription; every `[bondx]
//! background_interval_seconds` its session is woken and sends, for each
//! followed topic whose position moved since the state last sent, one
//! `snapshot` with `meta.background: true`: the latest value of every key
//! (or the latest data), read under the topic's lock. A topic that expired
//! meanwhile has nothing to send until it exists again.

use std::sync::Arc;

use shardcast_engine::{validate_name, ConnCtx, Position, Replay, Replayed};
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
    /// `max_keys` keys each).
    pub fn send_changed(&mut self, ctx: &mut ConnCtx<'_>, max_keys: usize) {
        let meta = serde_json::json!({"background": true});
        for followed in &mut self.topics {
            let Some(topic) = ctx.engine().topics().get(&followed.topic) else {
                continue;
            };
            let (position, state) = topic.peek(Replay::State(max_keys));
            if followed.sent == Some(position) {
                continue;
            }
            // A state request always has an answer; an error would be a bug.
            let state = state.unwrap_or_else(|e| {
                debug!(error = %e, "state of a topic unavailable");
                Replayed::default()
            });
            let frame = envelope::snapshot(
                &followed.topic,
                position,
                &state.messages,
                Some(&meta),
                None,
            );
            if ctx.send_state(&topic, frame) {
                followed.sent = Some(position);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
