//! The conflated channels of one `/ws` connection (`price_updates`,
//! `portfolio`): what it is sent at each interval boundary, and at once
//! when it subscribes. Owned by the connection's shard; the frames come
//! from the shard's cache (`conflate.rs`).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use shardcast_engine::{ConnCtx, Position, Replay, Topic};
use tracing::debug;

use super::SimpleSession;
use crate::protocol::simple::conflate::CONFLATION;
use crate::protocol::simple::frames::{annotate, portfolio_update, price_update, Entry};
use crate::protocol::simple::message::Channel;

impl SimpleSession {
    /// The state of `channel`'s feed now, read for one connection.
    fn read_state(
        &self,
        ctx: &ConnCtx<'_>,
        channel: Channel,
    ) -> Option<(Arc<Topic>, Position, Vec<Entry>)> {
        let topic = ctx.engine().topics().get(self.shared.feed(channel))?;
        let (position, state) = topic.peek(Replay::State(self.app.config.engine.history.max_keys));
        let state = annotate(state.map(|r| r.messages).unwrap_or_default());
        Some((topic, position, state))
    }

    /// Sends `channel`'s frame for this client: of `tick` (shared through
    /// the shard's cache), or of the state now (`None`: just subscribed).
    pub(super) fn send_conflated(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        channel: Channel,
        tick: Option<u64>,
    ) {
        let Some(followed) = self.channels.get(&channel) else {
            return;
        };
        if tick.is_some() && followed.tick == tick && followed.sent.is_some() {
            return;
        }
        let (since, symbols, hash) = (followed.sent, &followed.symbols, followed.hash);
        let now = SystemTime::now();
        // A tick's state may predate what a fresh subscribe just sent.
        let seen = |position: Position| {
            since.is_some_and(|s| s.epoch == position.epoch && s.seq >= position.seq)
        };
        let make = |state: &[Entry], position: Position| match channel {
            Channel::PriceUpdates => price_update(state, since, symbols, now),
            _ if seen(position) => None,
            _ => Some(portfolio_update(state, symbols, now)),
        };
        let Some(topic) = ctx.engine().topics().get(self.shared.feed(channel)) else {
            return;
        };
        let (position, frame) = match tick {
            Some(tick) => {
                let built = CONFLATION.with(|cache| {
                    let mut cache = cache.borrow_mut();
                    let before = cache.built;
                    let built =
                        cache.frame(
                            (channel, tick),
                            since,
                            (symbols, hash),
                            || {
                                let (_, position, state) = self
                                    .read_state(ctx, channel)
                                    .unwrap_or((Arc::clone(&topic), topic.position(), Vec::new()));
                                Rc::new((position, state))
                            },
                            |state| make(&state.1, state.0),
                        );
                    if cache.built > before {
                        self.shared.frames_built.fetch_add(1, Ordering::Relaxed);
                    }
                    built
                });
                (built.position, built.frame)
            }
            None => {
                let now_tick = self.shared.tick(channel, Instant::now());
                let state = CONFLATION.with(|cache| {
                    cache
                        .borrow_mut()
                        .current_state((channel, now_tick), topic.position(), || {
                            let (_, position, state) = self.read_state(ctx, channel).unwrap_or((
                                Arc::clone(&topic),
                                topic.position(),
                                Vec::new(),
                            ));
                            Rc::new((position, state))
                        })
                });
                (state.0, make(&state.1, state.0))
            }
        };
        let sent = match frame {
            Some(frame) => ctx.send_state(&topic, frame),
            None => true,
        };
        let Some(followed) = self.channels.get_mut(&channel) else {
            return;
        };
        // A fresh send serves the current tick: the next frame comes at the
        // channel's next boundary, not at whatever wakes the session first.
        followed.tick = Some(tick.unwrap_or_else(|| self.shared.tick(channel, Instant::now())));
        if sent && !seen(position) {
            followed.sent = Some(position);
        } else if !sent {
            // The outbox is full: the next tick sends what this one would
            // have, conflated with whatever came meanwhile.
            debug!(client = %ctx.client_id(), channel = channel.name(), "conflated frame deferred: outbox full");
        }
    }
}
