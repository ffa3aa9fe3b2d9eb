//! Freshness after a burst: how long after a burst's last publish each
//! subscriber holds the latest value of every key of every topic it
//! subscribes to.
//!
//! Sans-IO: the publisher and the subscribers tell the [`Board`] what they
//! did, with a timestamp (ns since the run's epoch), and the board does the
//! arithmetic, so the definition is unit-tested below on scripted sequences.
//!
//! The definition (docs/testing.md states it too):
//! 1. Key k of topic t carries a counter, 1, 2, 3… in publish order (`"c"`
//!    in the data). The publisher remembers, per topic and key, the counter
//!    of the last value it published.
//! 2. At the burst's last publish (time E, that message's publish stamp),
//!    each key's *target* is that counter; a key never published has none.
//! 3. A client *holds* a key once it has received a value of that key whose
//!    counter is at least the target: the target itself, or a later value
//!    that superseded it (conflation may replace the target in the client's
//!    outbox by a newer value, which is just as fresh). A topic's events
//!    arrive in publish order, so once held a key stays held.
//! 4. The client is fresh at F, the receipt that brings its last key up to
//!    its target (E when it already held them all); its freshness for the
//!    burst is F − E.
//! 5. A client not yet fresh when the next burst begins is *stale* for that
//!    burst: counted (the check wants 0), with no freshness figure.
//!
//! A value the server drops outright (not conflated) leaves its key behind
//! until the key's next publish supersedes it, so such drops show up here
//! as slow freshness, or as stale pairs when the key is not published again
//! before the next burst.
//!
//! Owned by the loadgen's single thread (behind a `RefCell` in `Shared`).

use hdrhistogram::Histogram;

use crate::state::new_histogram;

/// Every client's keys and the freshness figures. Owned by the loadgen thread.
pub struct Board {
    keys: usize,
    /// By client id; `None` until its subscription is acknowledged.
    clients: Vec<Option<ClientKeys>>,
    /// Freshness of each (client, burst) pair that became fresh, µs.
    pub fresh_us: Histogram<u64>,
    /// (client, burst) pairs that never became fresh before the next burst.
    pub stale: u64,
    /// Bursts counted (ended while measuring).
    pub bursts: u64,
}

/// One client's view: the newest counter received per key of its topics.
struct ClientKeys {
    topics: Vec<usize>,
    /// `topics.len() × keys` counters, topic-major; 0 = nothing received.
    held: Vec<u64>,
    pending: Option<Pending>,
}

/// A burst this client is not yet fresh for.
struct Pending {
    ended_ns: u64,
    /// Same layout as `held`.
    target: Vec<u64>,
    /// Keys whose held counter is still below the target.
    behind: usize,
    counted: bool,
}

impl Board {
    /// A board for client ids `0..clients`, each topic with `keys` keys.
    pub fn new(clients: usize, keys: usize) -> Self {
        Self {
            keys: keys.max(1),
            clients: (0..clients).map(|_| None).collect(),
            fresh_us: new_histogram(),
            stale: 0,
            bursts: 0,
        }
    }

    /// Client `id` is subscribed to `topics` (its subscription was acknowledged).
    pub fn join(&mut self, id: usize, topics: &[usize]) {
        if let Some(slot) = self.clients.get_mut(id) {
            *slot = Some(ClientKeys {
                topics: topics.to_vec(),
                held: vec![0; topics.len() * self.keys],
                pending: None,
            });
        }
    }

    /// Client `id` received value `counter` of `key` of `topic` at `now_ns`.
    pub fn received(&mut self, id: usize, topic: usize, key: usize, counter: u64, now_ns: u64) {
        let keys = self.keys;
        let Some(Some(client)) = self.clients.get_mut(id) else {
            return;
        };
        let Some(index) = client.topics.iter().position(|&t| t == topic) else {
            return;
        };
        if key >= keys {
            return;
        }
        let slot = index * keys + key;
        let before = client.held[slot];
        if counter <= before {
            return;
        }
        client.held[slot] = counter;
        let Some(pending) = client.pending.as_mut() else {
            return;
        };
        let target = pending.target[slot];
        if before < target && counter >= target {
            pending.behind -= 1;
            if pending.behind == 0 {
                let pending = client.pending.take().expect("checked above");
                if pending.counted {
                    record(&mut self.fresh_us, now_ns.saturating_sub(pending.ended_ns));
                }
            }
        }
    }

    /// A burst begins: clients still behind on the previous one are stale.
    pub fn burst_started(&mut self) {
        for client in self.clients.iter_mut().flatten() {
            if let Some(pending) = client.pending.take() {
                if pending.counted {
                    self.stale += 1;
                }
            }
        }
    }

    /// A burst's last publish was stamped `ended_ns`; `last[t][k]` is the
    /// counter of the last value published for key k of topic t. `counted`:
    /// the burst belongs to the measured window.
    pub fn burst_ended(&mut self, ended_ns: u64, last: &[Vec<u64>], counted: bool) {
        // Never two bursts open at once: the publisher starts one first.
        self.burst_started();
        if counted {
            self.bursts += 1;
        }
        let keys = self.keys;
        for client in self.clients.iter_mut().flatten() {
            let mut target = vec![0; client.held.len()];
            for (i, &topic) in client.topics.iter().enumerate() {
                if let Some(values) = last.get(topic) {
                    let n = values.len().min(keys);
                    target[i * keys..i * keys + n].copy_from_slice(&values[..n]);
                }
            }
            let behind = target
                .iter()
                .zip(&client.held)
                .filter(|(t, h)| h < t)
                .count();
            if behind == 0 {
                if counted {
                    record(&mut self.fresh_us, 0);
                }
            } else {
                client.pending = Some(Pending {
                    ended_ns,
                    target,
                    behind,
                    counted,
                });
            }
        }
    }

    /// Counted (client, burst) pairs not yet settled, fresh or stale.
    pub fn unsettled(&self) -> usize {
        self.clients
            .iter()
            .flatten()
            .filter(|c| c.pending.as_ref().is_some_and(|p| p.counted))
            .count()
    }

    /// Counted (client, burst) pairs settled so far.
    pub fn pairs(&self) -> u64 {
        self.fresh_us.len() + self.stale
    }
}

/// Records a freshness in µs (the histogram's floor is 1 µs).
fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1000).max(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Two topics of two keys; client 0 reads topic 0, client 1 both.
    fn board() -> Board {
        let mut board = Board::new(3, 2);
        board.join(0, &[0]);
        board.join(1, &[0, 1]);
        board
    }

    /// The slowest freshness recorded, ms (to the histogram's 3 digits).
    fn max_ms(board: &Board) -> f64 {
        let h = &board.fresh_us;
        (h.lowest_equivalent(h.max()) as f64 / 1000.0 * 100.0).round() / 100.0
    }

    #[test]
    fn fresh_when_the_last_key_reaches_its_last_counter() {
        let mut b = board();
        // Burst: topic 0 keys 0,1 up to 3 and 2; topic 1 key 0 up to 5.
        b.burst_started();
        b.burst_ended(100 * MS, &[vec![3, 2], vec![5, 0]], true);
        b.received(0, 0, 0, 3, 101 * MS);
        assert_eq!(b.unsettled(), 2, "key 1 of topic 0 still behind");
        b.received(0, 0, 1, 1, 102 * MS);
        assert_eq!(b.unsettled(), 2, "an older value is not the latest");
        b.received(0, 0, 1, 2, 104 * MS);
        assert_eq!(b.unsettled(), 1);
        assert_eq!(b.fresh_us.len(), 1);
        assert_eq!(max_ms(&b), 4.0);
        // Client 1 also needs topic 1 key 0; topic 1 key 1 was never published.
        b.received(1, 0, 0, 3, 101 * MS);
        b.received(1, 0, 1, 2, 102 * MS);
        b.received(1, 1, 0, 5, 109 * MS);
        assert_eq!(b.unsettled(), 0);
        assert_eq!(max_ms(&b), 9.0);
        assert_eq!((b.pairs(), b.stale, b.bursts), (2, 0, 1));
    }

    #[test]
    fn a_newer_value_that_superseded_the_target_counts() {
        let mut b = board();
        b.burst_ended(100 * MS, &[vec![3, 2], vec![0, 0]], true);
        b.received(0, 0, 1, 2, 110 * MS);
        b.received(0, 0, 0, 2, 112 * MS);
        assert_eq!(b.fresh_us.len(), 0);
        // The target 3 was conflated away; the client gets 4, published after.
        b.received(0, 0, 0, 4, 130 * MS);
        assert_eq!(b.fresh_us.len(), 1);
        assert_eq!(max_ms(&b), 30.0, "fresh at the receipt of 4, not of 2");
    }

    #[test]
    fn values_held_before_the_burst_ended_count_and_give_zero() {
        let mut b = board();
        b.received(0, 0, 0, 3, 90 * MS);
        b.received(0, 0, 1, 2, 95 * MS);
        b.burst_ended(100 * MS, &[vec![3, 2], vec![7, 7]], true);
        assert_eq!(b.fresh_us.len(), 1, "client 0 fresh at once");
        assert!(b.fresh_us.max() <= 1);
        assert_eq!(b.unsettled(), 1, "client 1 lacks topic 1");
    }

    #[test]
    fn behind_at_the_next_burst_is_stale_and_gets_no_figure() {
        let mut b = board();
        b.burst_ended(100 * MS, &[vec![3, 2], vec![1, 1]], true);
        b.received(0, 0, 0, 3, 101 * MS);
        // Client 1 gets everything; client 0 never gets key 1.
        b.received(1, 0, 0, 3, 101 * MS);
        b.received(1, 0, 1, 2, 101 * MS);
        b.received(1, 1, 0, 1, 101 * MS);
        b.received(1, 1, 1, 1, 102 * MS);
        b.burst_started();
        assert_eq!((b.fresh_us.len(), b.stale, b.unsettled()), (1, 1, 0));
        // Late arrivals after the next burst began change nothing.
        b.received(0, 0, 1, 2, 3000 * MS);
        assert_eq!((b.fresh_us.len(), b.stale), (1, 1));
    }

    #[test]
    fn each_burst_has_its_own_targets() {
        let mut b = Board::new(1, 2);
        b.join(0, &[0]);
        b.burst_ended(100 * MS, &[vec![1, 1]], true);
        b.received(0, 0, 0, 1, 102 * MS);
        b.received(0, 0, 1, 1, 103 * MS);
        b.burst_started();
        b.burst_ended(2100 * MS, &[vec![9, 1]], true);
        // Key 1 is already at its target; key 0 must reach 9.
        b.received(0, 0, 0, 8, 2101 * MS);
        assert_eq!(b.fresh_us.len(), 1);
        b.received(0, 0, 0, 9, 2120 * MS);
        assert_eq!(b.fresh_us.len(), 2);
        assert_eq!(max_ms(&b), 20.0);
        assert_eq!((b.bursts, b.stale), (2, 0));
    }

    #[test]
    fn warm_up_bursts_and_unknown_clients_are_not_counted() {
        let mut b = board();
        b.burst_ended(100 * MS, &[vec![1, 1], vec![1, 1]], false);
        b.received(2, 0, 0, 1, 101 * MS); // never joined
        b.received(0, 0, 0, 1, 101 * MS);
        b.received(0, 0, 1, 1, 101 * MS);
        b.burst_started();
        assert_eq!((b.pairs(), b.bursts, b.unsettled()), (0, 0, 0));
    }
}
