//! Conflated channels (`price_updates`, `portfolio`): each interval's frame
//! is built once per shard for each distinct subscription and shared.
//!
//! Owned by one shard thread (a thread-local: a session runs on its
//! connection's shard). Every interval is a numbered tick counted from one
//! origin, so all the sessions of a shard wake in the same shard tick and
//! ask for the same tick number. A frame depends on the channel, the tick,
//! the position the subscriber was last sent (`since`) and its symbols;
//! subscribers that agree on all four get one `Bytes`. Sessions record the
//! position each tick examined even when it had nothing for them, so
//! subscribers of a channel converge on one `since` after one interval.
//! Entries of older ticks are dropped when a channel's tick advances.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use shardcast_engine::Position;

use super::frames::Symbols;
use super::message::Channel;

/// What one tick built for one subscription: the position it examined and
/// its frame (`None`: nothing to send).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The position of the topic's state it was built from.
    pub position: Position,
    /// The frame, if there was anything to send.
    pub frame: Option<Bytes>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    channel: Channel,
    tick: u64,
    since: Option<Position>,
    symbols: u64,
}

/// Frames of the current tick of each channel. Owned by one shard thread.
#[derive(Default)]
pub struct Conflation {
    ticks: HashMap<Channel, u64>,
    frames: HashMap<Key, Vec<(Symbols, Built)>>,
    /// Frames built since start (for tests and the debug log).
    pub built: u64,
}

impl Conflation {
    /// The frame of `channel` at `tick` for a subscriber last sent `since`
    /// and wanting `symbols`, made by `make` unless another subscriber of
    /// this shard already asked for the same.
    pub fn frame(
        &mut self,
        channel: Channel,
        tick: u64,
        since: Option<Position>,
        symbols: &Symbols,
        make: impl FnOnce() -> Built,
    ) -> Built {
        let current = self.ticks.entry(channel).or_insert(tick);
        if *current != tick {
            *current = tick;
            self.frames
                .retain(|key, _| key.channel != channel || key.tick == tick);
        }
        let mut hasher = DefaultHasher::new();
        symbols.hash(&mut hasher);
        let key = Key {
            channel,
            tick,
            since,
            symbols: hasher.finish(),
        };
        let bucket = self.frames.entry(key).or_default();
        if let Some((_, built)) = bucket.iter().find(|(s, _)| s == symbols) {
            return built.clone();
        }
        let built = make();
        self.built += 1;
        bucket.push((symbols.clone(), built.clone()));
        built
    }
}

thread_local! {
    /// This shard's conflated frames.
    pub static CONFLATION: RefCell<Conflation> = RefCell::default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_engine::Epoch;

    fn at(seq: u64) -> Position {
        Position {
            epoch: Epoch::from_u64(1),
            seq,
        }
    }

    #[test]
    fn one_frame_per_tick_since_and_symbol_set() {
        let mut cache = Conflation::default();
        let aapl = Symbols::Only(["AAPL".to_string()].into());
        let make = |seq| {
            move || Built {
                position: at(seq),
                frame: Some(Bytes::from(format!("state {seq}"))),
            }
        };
        let p = Channel::PriceUpdates;
        let first = cache.frame(p, 1, None, &Symbols::All, make(5));
        // Same tick, since and set: shared, whatever make would say now.
        assert_eq!(cache.frame(p, 1, None, &Symbols::All, make(6)), first);
        assert_eq!(cache.built, 1);
        // Another set, another since, another channel: built each.
        cache.frame(p, 1, None, &aapl, make(5));
        cache.frame(p, 1, Some(at(2)), &Symbols::All, make(5));
        cache.frame(Channel::Portfolio, 1, None, &Symbols::All, make(5));
        assert_eq!(cache.built, 4);
        // The next tick builds again and forgets the last one's frames of
        // that channel only.
        let next = cache.frame(p, 2, None, &Symbols::All, make(7));
        assert_eq!(next.position, at(7));
        assert_eq!(
            cache.frames.len(),
            2,
            "tick 2 of prices, tick 1 of the portfolio"
        );
    }
}
