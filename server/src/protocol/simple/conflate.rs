//! Conflated channels (`price_updates`, `portfolio`): each interval's frame
//! is built once per shard for each distinct subscription and shared.
//!
//! Owned by one shard thread (a thread-local: a session runs on its
//! connection's shard). Every interval is a numbered tick counted from one
//! origin, so all the sessions of a shard wake in the same shard tick and
//! ask for the same tick number. The first to ask reads the feed topic's
//! state for the tick, with each message's symbol (once per tick); a frame
//! then depends on the position the subscriber was last sent (`since`) and
//! its symbols, and subscribers that agree on both get one `Bytes`.
//! Sessions record the position each tick examined even when it had nothing
//! for them, so subscribers of a channel converge on one `since` after one
//! interval. A tick keeps at most [`MAX_FRAMES_PER_TICK`] frames; past that
//! (as many distinct subscriptions on one shard) frames are built per
//! subscriber. A channel's entries go when its tick advances.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;

use bytes::Bytes;
use shardcast_engine::Position;

use super::frames::{Entry, Symbols};
use super::message::Channel;

/// Most distinct frames a shard keeps for one channel's tick: a bound on
/// the memory distinct subscriptions can hold, far above what a shard's
/// clients share in practice.
pub const MAX_FRAMES_PER_TICK: usize = 4096;

/// What one tick built for one subscription: the position it examined and
/// its frame (`None`: nothing to send).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The position of the topic's state it was built from.
    pub position: Position,
    /// The frame, if there was anything to send.
    pub frame: Option<Bytes>,
}

/// A feed's state as one tick read it: its position and its latest message
/// per key, each with its symbol.
pub type State = Rc<(Position, Vec<Entry>)>;

/// A digest of a symbol set, computed when the set changes.
pub fn digest(symbols: &Symbols) -> u64 {
    let mut hasher = DefaultHasher::new();
    symbols.hash(&mut hasher);
    hasher.finish()
}

/// Frames of one tick by the subscriber's `since` and symbol digest; a
/// bucket holds the sets that share a digest.
type Frames = HashMap<(Option<Position>, u64), Vec<(Symbols, Built)>>;

/// One channel's current tick.
struct Tick {
    number: u64,
    state: Option<State>,
    frames: Frames,
    kept: usize,
}

impl Tick {
    fn new(number: u64) -> Self {
        Self {
            number,
            state: None,
            frames: HashMap::new(),
            kept: 0,
        }
    }
}

/// Frames of the current tick of each channel. Owned by one shard thread.
#[derive(Default)]
pub struct Conflation {
    ticks: HashMap<Channel, Tick>,
    /// Frames built since start.
    pub built: u64,
}

impl Conflation {
    /// The frame of `channel` at `tick` for a subscriber last sent `since`
    /// and wanting `symbols` (whose [`digest`] is `hash`): `make` builds it
    /// from the tick's state (read by `read` once per tick) unless another
    /// subscriber of this shard asked for the same.
    pub fn frame(
        &mut self,
        (channel, tick): (Channel, u64),
        since: Option<Position>,
        (symbols, hash): (&Symbols, u64),
        read: impl FnOnce() -> State,
        make: impl FnOnce(&State) -> Option<Bytes>,
    ) -> Built {
        let current = Self::tick(&mut self.ticks, channel, tick);
        let state = Rc::clone(current.state.get_or_insert_with(read));
        let key = (since, hash);
        if let Some(bucket) = current.frames.get(&key) {
            if let Some((_, built)) = bucket.iter().find(|(s, _)| s == symbols) {
                return built.clone();
            }
        }
        let built = Built {
            position: state.0,
            frame: make(&state),
        };
        self.built += 1;
        if current.kept < MAX_FRAMES_PER_TICK {
            current.kept += 1;
            let bucket = current.frames.entry(key).or_default();
            bucket.push((symbols.clone(), built.clone()));
        }
        built
    }

    /// The state of `channel`'s feed, now at `position`, for a client that
    /// subscribed during `tick`: the tick's own when it is that recent,
    /// otherwise read by `read` and kept as the tick's (it is newer), so a
    /// burst of subscribers reads a feed once per change, not once each.
    pub fn current_state(
        &mut self,
        (channel, tick): (Channel, u64),
        position: Position,
        read: impl FnOnce() -> State,
    ) -> State {
        let current = Self::tick(&mut self.ticks, channel, tick);
        match &current.state {
            Some(state) if state.0 == position => Rc::clone(state),
            _ => {
                let state = read();
                current.state = Some(Rc::clone(&state));
                state
            }
        }
    }

    /// `channel`'s entry for `tick`, emptied if it held an older tick.
    fn tick(ticks: &mut HashMap<Channel, Tick>, channel: Channel, tick: u64) -> &mut Tick {
        let current = ticks.entry(channel).or_insert_with(|| Tick::new(tick));
        if current.number != tick {
            *current = Tick::new(tick);
        }
        current
    }
}

thread_local! {
    /// This shard's conflated frames.
    pub static CONFLATION: std::cell::RefCell<Conflation> = std::cell::RefCell::default();
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
    fn one_state_per_tick_and_one_frame_per_since_and_symbol_set() {
        let mut cache = Conflation::default();
        let all = (&Symbols::All, digest(&Symbols::All));
        let aapl_set = Symbols::Only(["AAPL".to_string()].into());
        let aapl = (&aapl_set, digest(&aapl_set));
        let reads = std::cell::Cell::new(0);
        let read = |seq| {
            reads.set(reads.get() + 1);
            Rc::new((at(seq), Vec::new()))
        };
        let make = |state: &State| Some(Bytes::from(format!("state {}", state.0.seq)));
        let p = (Channel::PriceUpdates, 1);
        let first = cache.frame(p, None, all, || read(5), make);
        assert_eq!(first.position, at(5));
        // Same tick, since and set: shared, and the state is not read again.
        assert_eq!(cache.frame(p, None, all, || read(6), make), first);
        // Another set or another since: built from the same state.
        assert_eq!(cache.frame(p, None, aapl, || read(6), make).position, at(5));
        cache.frame(p, Some(at(2)), all, || read(6), make);
        assert_eq!((cache.built, reads.get()), (3, 1));
        // Another channel, and the next tick, read their own state.
        cache.frame((Channel::Portfolio, 1), None, all, || read(7), make);
        let next = cache.frame((Channel::PriceUpdates, 2), None, all, || read(8), make);
        assert_eq!((next.position, reads.get()), (at(8), 3));
    }

    #[test]
    fn a_tick_keeps_a_bounded_number_of_frames() {
        let mut cache = Conflation::default();
        let p = (Channel::PriceUpdates, 1);
        let state = || Rc::new((at(1), Vec::new()));
        for i in 0..MAX_FRAMES_PER_TICK + 10 {
            let set = Symbols::Only([i.to_string()].into());
            cache.frame(p, None, (&set, digest(&set)), state, |_| None);
        }
        assert_eq!(
            cache.ticks[&Channel::PriceUpdates].kept,
            MAX_FRAMES_PER_TICK
        );
    }
}
