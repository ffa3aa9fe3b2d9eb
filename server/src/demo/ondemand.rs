//! On-demand simulated feeds: bars and quotes for any symbol, produced
//! only while someone is subscribed.
//!
//! Shared by all shards and run by one plain thread. The table is behind a
//! mutex taken when a subscription starts or ends, and twice per producer
//! pass only to move the due generators out and back: making, formatting
//! and publishing messages happen with no lock held, so a busy feed never
//! makes a shard wait.
//! Reference counting, in steps:
//! 1. a protocol's first subscriber of a topic calls [`Producers::acquire`]
//!    with the feed the topic names; the table records the topic with one
//!    reference, and the thread starts producing it on its next pass;
//! 2. further subscribers add references; no second producer starts;
//! 3. [`Producers::release`] (unsubscribe, or a disconnect) takes one
//!    away; at zero the topic leaves the table and the thread stops
//!    producing it.
//!
//! Simulated messages are transient (delivered, never kept), so a topic
//! only they fed expires once its last subscriber leaves, and stays charged
//! to the quota of whoever created it. A topic fed by outside publishers
//! never gets simulated messages mixed in: one that holds a kept message
//! when its feed would start, or gets a message from anyone else while it
//! runs (its sequence numbers are not the feed's own, one after the other),
//! is left to them: its feed stops, for as long as it is subscribed.
//!
//! Feeds are bounded: [`MAX_PRODUCERS`] topics at once, and
//! [`MAX_PER_PEER`] subscriptions holding feeds per client address. What
//! their messages are (bars paced by their resolution, quotes with fast and
//! slow symbols) is `generator.rs`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use shardcast_engine::{Engine, Publication, Published, Topic};
use tracing::{debug, info};

use super::generator::{produce, Generator};
use super::Rng;

/// How often the producer thread looks for due topics.
const PASS: Duration = Duration::from_millis(50);

/// Most topics produced at once: each costs the producer thread a little
/// per pass, and clients choose how many they ask for.
pub const MAX_PRODUCERS: usize = 1000;

/// Most subscriptions holding a feed per client address (IPv6: per /64,
/// as the connection limits count), so that one
/// client cannot take every feed.
pub const MAX_PER_PEER: usize = 64;

/// Why a feed was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedRefused {
    /// [`MAX_PRODUCERS`] topics are produced already.
    #[error("the simulated market produces at most {MAX_PRODUCERS} topics at once")]
    Full,
    /// The address holds [`MAX_PER_PEER`] subscriptions with feeds.
    #[error("at most {MAX_PER_PEER} simulated subscriptions per client address")]
    PeerLimit,
}

/// What a topic is produced from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feed {
    /// OHLC bars of `symbol` at `resolution` (1, 5, 15, 30, 60, D, W, M).
    Bars {
        /// The symbol.
        symbol: String,
        /// The resolution.
        resolution: String,
    },
    /// Quotes of `symbols` (slow) and `fast` symbols.
    Quotes {
        /// Quoted once a second.
        symbols: Vec<String>,
        /// Quoted four times a second.
        fast: Vec<String>,
    },
}

/// One produced topic.
struct Active {
    refs: usize,
    /// The seq of the feed's last message (`None`: none yet).
    last_own_seq: Option<u64>,
    /// Another publisher feeds the topic: the feed is stopped.
    external: bool,
    /// `None` while the producer thread works on it, outside the lock.
    generator: Option<Generator>,
}

#[derive(Default)]
struct Table {
    active: HashMap<Arc<str>, Active>,
    /// Subscriptions holding a feed, by client address.
    by_peer: HashMap<IpAddr, usize>,
}

/// The on-demand producers. Shared by all shards; stops when dropped.
pub struct Producers {
    table: Arc<Mutex<Table>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Producers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producers")
            .field("active", &self.table.lock().active.len())
            .finish()
    }
}

impl Producers {
    /// Starts the producer thread, publishing into `engine`.
    pub fn start(engine: Engine) -> std::io::Result<Self> {
        let table = Arc::new(Mutex::new(Table::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (Arc::clone(&table), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("demo-on-demand".into())
            .spawn(move || run(&engine, &t, &s))?;
        Ok(Self {
            table,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// One more subscriber of `topic` (from `peer`), produced from `feed`
    /// (steps 1–2); refused past [`MAX_PER_PEER`] or, for a new topic,
    /// [`MAX_PRODUCERS`].
    pub fn acquire(&self, topic: &str, feed: Feed, peer: IpAddr) -> Result<(), FeedRefused> {
        let peer = shardcast_engine::address_block(peer);
        let mut table = self.table.lock();
        let held = table.by_peer.get(&peer).copied().unwrap_or(0);
        if held >= MAX_PER_PEER {
            return Err(FeedRefused::PeerLimit);
        }
        if let Some(active) = table.active.get_mut(topic) {
            active.refs += 1;
            *table.by_peer.entry(peer).or_default() += 1;
            return Ok(());
        }
        if table.active.len() >= MAX_PRODUCERS {
            return Err(FeedRefused::Full);
        }
        *table.by_peer.entry(peer).or_default() += 1;
        info!(topic, "on-demand producer started");
        table.active.insert(
            topic.into(),
            Active {
                refs: 1,
                last_own_seq: None,
                external: false,
                generator: Some(Generator::new(feed)),
            },
        );
        Ok(())
    }

    /// One subscriber of `topic` (from `peer`) fewer (step 3).
    pub fn release(&self, topic: &str, peer: IpAddr) {
        let peer = shardcast_engine::address_block(peer);
        let mut table = self.table.lock();
        if !table.active.contains_key(topic) {
            debug_assert!(false, "release of {topic} without a reference");
            return;
        }
        if let Some(held) = table.by_peer.get_mut(&peer) {
            *held -= 1;
            if *held == 0 {
                table.by_peer.remove(&peer);
            }
        }
        let Some(active) = table.active.get_mut(topic) else {
            return;
        };
        active.refs -= 1;
        if active.refs == 0 {
            table.active.remove(topic);
            info!(topic, "on-demand producer stopped");
        }
    }

    /// The topics with a feed now, by name: subscriber count, and whether
    /// the feed runs (`false`: another publisher feeds the topic).
    pub fn active(&self) -> Vec<(String, usize, bool)> {
        let mut list: Vec<(String, usize, bool)> = self
            .table
            .lock()
            .active
            .iter()
            .map(|(topic, a)| (topic.to_string(), a.refs, !a.external))
            .collect();
        list.sort();
        list
    }

    /// Stops the thread and waits for it (once; later calls return at once).
    pub fn stop(&self) {
        // Relaxed: a lone flag; the join below is the synchronization.
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Producers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One topic's work in a pass, done outside the table's lock.
struct Work {
    name: Arc<str>,
    generator: Generator,
    last_own_seq: Option<u64>,
    external: bool,
    published: Vec<u64>,
}

fn run(engine: &Engine, table: &Mutex<Table>, stop: &AtomicBool) {
    let mut rng = Rng::seeded();
    let mut work: Vec<Work> = Vec::new();
    let mut out: Vec<(usize, Arc<Topic>, Publication)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(PASS);
        let now = Instant::now();
        // 1. Take the due generators out (under the lock: moves only).
        {
            let mut table = table.lock();
            for (name, active) in table.active.iter_mut() {
                let due = active.generator.as_ref().is_some_and(|g| now >= g.next_due);
                if active.external || !due {
                    continue;
                }
                if let Some(generator) = active.generator.take() {
                    work.push(Work {
                        name: Arc::clone(name),
                        generator,
                        last_own_seq: active.last_own_seq,
                        external: false,
                        published: Vec::new(),
                    });
                }
            }
        }
        // 2. Make and publish their messages, with no lock held.
        for (index, item) in work.iter_mut().enumerate() {
            let generator = &mut item.generator;
            let topic = match &generator.topic {
                Some(topic) => Arc::clone(topic),
                None => match engine.topic(&item.name) {
                    Ok(topic) => {
                        generator.topic = Some(Arc::clone(&topic));
                        topic
                    }
                    Err(e) => {
                        debug!(topic = %item.name, error = %e, "on-demand topic unavailable");
                        generator.next_due = now + Duration::from_secs(1);
                        continue;
                    }
                },
            };
            if fed_by_another(item.last_own_seq, &topic) {
                item.external = true;
                continue;
            }
            produce(generator, index, &topic, &mut rng, now, &mut out);
        }
        for (index, topic, publication) in out.drain(..) {
            // Through an external broker the number comes later: such a
            // feed is not checked for other publishers (see the module docs).
            if let Ok(Published::Seq(seq)) = engine.publish_message(&topic, publication) {
                work[index].published.push(seq);
            }
        }
        // 3. Put them back (unless the topic's last subscriber left, or it
        // came back as a new entry meanwhile), checking that the feed's
        // messages were the topic's, one after the other.
        let mut table = table.lock();
        for item in work.drain(..) {
            let Some(active) = table.active.get_mut(&item.name) else {
                continue;
            };
            if active.generator.is_some() {
                continue;
            }
            let mut external = item.external;
            let mut last = item.last_own_seq;
            for seq in item.published {
                external |= last.is_some_and(|last| seq != last + 1);
                last = Some(seq);
            }
            if external && !active.external {
                info!(topic = %item.name, "topic fed by another publisher: its simulated feed stops");
            }
            active.external |= external;
            active.last_own_seq = last;
            active.generator = Some(item.generator);
        }
    }
}

/// Whether someone else publishes into `topic`: it holds a kept message
/// before the feed's first (the feed's own are never kept), or its last seq
/// is not the feed's last.
fn fed_by_another(last_own_seq: Option<u64>, topic: &Topic) -> bool {
    match last_own_seq {
        None => {
            let stats = topic.stats();
            stats.history > 0 || stats.snapshot_keys > 0
        }
        Some(last) => topic.position().seq != last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_start_and_stop_a_topic_and_the_table_is_bounded() {
        let engine = Engine::start(
            shardcast_engine::EngineConfig {
                pin_threads: false,
                shards: std::num::NonZeroUsize::MIN,
                ..Default::default()
            },
            shardcast_engine::Formats::default(),
            Arc::new(shardcast_engine::InProcess),
        )
        .unwrap();
        let producers = Producers::start(engine.clone()).unwrap();
        let quotes = |n: usize| Feed::Quotes {
            symbols: vec![format!("S{n}")],
            fast: Vec::new(),
        };
        let ip = |n: usize| IpAddr::from([10, 0, (n / 256) as u8, (n % 256) as u8]);
        producers.acquire("q0", quotes(0), ip(0)).unwrap();
        producers.acquire("q0", quotes(0), ip(1)).unwrap();
        assert_eq!(producers.active(), [("q0".to_owned(), 2, true)]);
        producers.release("q0", ip(0));
        producers.release("q0", ip(1));
        assert!(producers.active().is_empty());
        // One address: MAX_PER_PEER subscriptions with feeds, then no more.
        for n in 0..MAX_PER_PEER {
            producers
                .acquire(&format!("p{n}"), quotes(n), ip(0))
                .unwrap();
        }
        assert_eq!(
            producers.acquire("p-more", quotes(0), ip(0)),
            Err(FeedRefused::PeerLimit)
        );
        for n in 0..MAX_PER_PEER {
            producers.release(&format!("p{n}"), ip(0));
        }
        // The hosts of one IPv6 /64 are one client: a host each does not
        // get around the limit.
        let v6 = |host: usize| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, host as u16]);
        for n in 0..MAX_PER_PEER {
            producers
                .acquire(&format!("p{n}"), quotes(n), v6(n + 1))
                .unwrap();
        }
        assert_eq!(
            producers.acquire("p-more", quotes(0), v6(999)),
            Err(FeedRefused::PeerLimit),
            "another host of the same /64"
        );
        for n in 0..MAX_PER_PEER {
            producers.release(&format!("p{n}"), v6(n + 1));
        }
        // In all: MAX_PRODUCERS topics.
        for n in 0..MAX_PRODUCERS {
            producers
                .acquire(&format!("q{n}"), quotes(n), ip(n))
                .unwrap();
        }
        assert_eq!(
            producers.acquire("one-more", quotes(0), ip(5000)),
            Err(FeedRefused::Full)
        );
        // A topic already produced still takes subscribers.
        producers.acquire("q7", quotes(7), ip(5000)).unwrap();
        producers.stop();
        engine.shutdown();
        engine.join();
    }
}
