//! The ring's lock: std's (parking_lot's does integer-to-pointer casts
//! miri warns of), or loom's under loom, with poisoning ignored: a publish
//! whose `make` panics leaves the ring whole (its number void).

#[cfg(shardcast_loom)]
use loom::sync::{Mutex as Inner, MutexGuard};
#[cfg(not(shardcast_loom))]
use std::sync::{Mutex as Inner, MutexGuard};

pub(super) struct Mutex<T>(Inner<T>);

pub(super) type Guard<'a, T> = MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(super) fn new(value: T) -> Self {
        Self(Inner::new(value))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
