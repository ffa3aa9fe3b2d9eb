//! A shard's connections, by generation-checked key.
//!
//! Owned by one shard thread. A key names a slot and the slot's generation;
//! removing a connection bumps the generation, so a command that names a
//! connection which has since closed (its slot reused) finds nothing.

use std::rc::Rc;

use crate::sansio::ids::ConnKey;
use crate::shard::conn::Conn;

/// The connections of one shard. Owned by one shard thread.
#[derive(Default)]
pub(super) struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    pub(super) len: usize,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    conn: Option<Rc<Conn>>,
}

impl Slab {
    pub(super) fn vacant_key(&mut self) -> ConnKey {
        if let Some(index) = self.free.pop() {
            let slot = &self.slots[index as usize];
            ConnKey {
                index,
                generation: slot.generation,
            }
        } else {
            self.slots.push(Slot::default());
            ConnKey {
                index: (self.slots.len() - 1) as u32,
                generation: 0,
            }
        }
    }

    pub(super) fn insert(&mut self, conn: Rc<Conn>) {
        let slot = &mut self.slots[conn.key.index as usize];
        debug_assert!(slot.conn.is_none() && slot.generation == conn.key.generation);
        slot.conn = Some(conn);
        self.len += 1;
    }

    pub(super) fn get(&self, key: ConnKey) -> Option<&Rc<Conn>> {
        let slot = self.slots.get(key.index as usize)?;
        (slot.generation == key.generation)
            .then_some(slot.conn.as_ref())
            .flatten()
    }

    pub(super) fn remove(&mut self, key: ConnKey) -> Option<Rc<Conn>> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let conn = slot.conn.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(conn)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Rc<Conn>> {
        self.slots.iter().filter_map(|s| s.conn.as_ref())
    }
}
