//! A shard's connections, by generation-checked key.
//!
//! Owned by one shard thread. A key names a slot and the slot's generation;
//! removing an entry bumps the generation, so a command that names a
//! connection which has since closed (its slot reused) finds nothing.

use std::ops::Range;

use crate::sansio::ids::ConnKey;

/// Entries by [`ConnKey`]. Owned by one shard thread.
pub(super) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    pub(super) len: usize,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// The key the next insertion will take.
    pub(super) fn vacant_key(&mut self) -> ConnKey {
        if let Some(&index) = self.free.last() {
            let slot = &self.slots[index as usize];
            ConnKey {
                index,
                generation: slot.generation,
            }
        } else {
            self.slots.push(Slot {
                generation: 0,
                value: None,
            });
            self.free.push((self.slots.len() - 1) as u32);
            ConnKey {
                index: (self.slots.len() - 1) as u32,
                generation: 0,
            }
        }
    }

    /// Fills the slot of `key`, which [`Slab::vacant_key`] just returned.
    pub(super) fn insert(&mut self, key: ConnKey, value: T) {
        let slot = &mut self.slots[key.index as usize];
        debug_assert!(slot.value.is_none() && slot.generation == key.generation);
        debug_assert_eq!(self.free.last(), Some(&key.index));
        self.free.pop();
        slot.value = Some(value);
        self.len += 1;
    }

    pub(super) fn get(&self, key: ConnKey) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        (slot.generation == key.generation)
            .then_some(slot.value.as_ref())
            .flatten()
    }

    pub(super) fn remove(&mut self, key: ConnKey) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.value.as_ref())
    }

    /// Slots, vacant or not: the end of every index a key may have now.
    pub(super) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The entries in the slots of `range` (clamped to [`Slab::slots`]), by index.
    pub(super) fn in_slots(&self, range: Range<usize>) -> impl Iterator<Item = &T> {
        let end = range.end.min(self.slots.len());
        let start = range.start.min(end);
        self.slots[start..end]
            .iter()
            .filter_map(|s| s.value.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(slab: &mut Slab<&'static str>, value: &'static str) -> ConnKey {
        let key = slab.vacant_key();
        slab.insert(key, value);
        key
    }

    #[test]
    fn a_reused_slot_never_answers_to_its_old_key() {
        let mut slab = Slab::default();
        let a = add(&mut slab, "a");
        let b = add(&mut slab, "b");
        assert_eq!(
            (slab.get(a), slab.get(b), slab.len),
            (Some(&"a"), Some(&"b"), 2)
        );
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None, "removed twice");
        // The next connection takes a's slot under a new generation.
        let c = add(&mut slab, "c");
        assert_eq!(c.index, a.index);
        assert_ne!(c.generation, a.generation);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None, "a stale key removes nothing");
        assert_eq!(slab.get(c), Some(&"c"));
        assert_eq!(slab.iter().copied().collect::<Vec<_>>(), vec!["c", "b"]);
        assert_eq!(slab.len, 2);
    }

    #[test]
    fn slices_of_slots_visit_each_entry_once_as_the_slab_changes() {
        let mut slab = Slab::default();
        let keys: Vec<ConnKey> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .map(|v| add(&mut slab, v))
            .collect();
        slab.remove(keys[1]);
        let first: Vec<_> = slab.in_slots(0..2).copied().collect();
        assert_eq!(first, ["a"], "a vacant slot yields nothing");
        // Between slices, one entry leaves and three arrive: f takes d's
        // slot, not yet passed; g takes b's, already passed (its turn comes
        // with the next sweep); h a new slot at the end.
        slab.remove(keys[3]);
        add(&mut slab, "f");
        add(&mut slab, "g");
        add(&mut slab, "h");
        assert_eq!(slab.slots(), 6);
        let rest: Vec<_> = slab
            .in_slots(2..4)
            .chain(slab.in_slots(4..99))
            .copied()
            .collect();
        assert_eq!(rest, ["c", "f", "e", "h"]);
        assert_eq!(slab.in_slots(99..100).count(), 0, "past the end");
    }

    #[test]
    fn asking_for_a_key_twice_without_inserting_gives_the_same_key() {
        let mut slab: Slab<u8> = Slab::default();
        let first = slab.vacant_key();
        assert_eq!(slab.vacant_key(), first);
        slab.insert(first, 1);
        assert_ne!(slab.vacant_key(), first);
    }
}
