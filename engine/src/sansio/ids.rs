//! Identities: of a topic ([`TopicId`]), of one run of its sequence
//! ([`Epoch`]), and of a connection within its shard ([`ConnKey`]).
//!
//! Plain values, shared freely. Each pairs a dense index with a generation
//! or a random part, so an id that outlives what it named never matches
//! whatever takes its place.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A topic's identity within its engine: a dense slot index and the slot's
/// generation, so that an id outlives its topic harmlessly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId {
    index: u32,
    generation: u32,
}

impl TopicId {
    /// The id of slot `index` in its `generation`.
    pub const fn new(index: u32, generation: u32) -> Self {
        Self { index, generation }
    }

    /// The slot index: dense, below the number of topics ever alive at once.
    #[inline]
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// The slot's generation.
    #[inline]
    pub fn generation(self) -> u32 {
        self.generation
    }
}

/// One run of a topic's sequence numbers. A topic gets a new epoch whenever
/// its sequence starts again from 1: each time it is created (in a new
/// process, or again after it expired). A position (epoch, seq) therefore
/// names one message for as long as anyone can ask about it; a client that
/// resumes with another epoch's position learns that its gap cannot be
/// filled, instead of silently missing messages.
///
/// Shown as 16 lowercase hexadecimal digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

impl Epoch {
    /// The epoch with this value (as shown, parsed).
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }

    /// Its value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// A new epoch, unlike any other of this process (a counter) and, with
    /// overwhelming probability, of any other process (a random key).
    pub fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Relaxed: uniqueness needs only the atomicity of the increment.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(n);
        Self(hasher.finish())
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Text that is not an epoch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an epoch is 16 hexadecimal digits")]
pub struct InvalidEpoch;

impl std::str::FromStr for Epoch {
    type Err = InvalidEpoch;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidEpoch);
        }
        u64::from_str_radix(text, 16)
            .map(Self)
            .map_err(|_| InvalidEpoch)
    }
}

/// Identifies a connection within its shard; stale keys never match a newer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_differ_and_round_trip_through_their_text() {
        let a = Epoch::fresh();
        let b = Epoch::fresh();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 16);
        assert_eq!(text.parse::<Epoch>(), Ok(a));
        assert_eq!(Epoch::from_u64(0xab).to_string(), "00000000000000ab");
        for bad in [
            "",
            "ab",
            "00000000000000zz",
            "-000000000000001",
            "00000000000000ab0",
        ] {
            assert_eq!(bad.parse::<Epoch>(), Err(InvalidEpoch), "{bad:?}");
        }
    }
}
