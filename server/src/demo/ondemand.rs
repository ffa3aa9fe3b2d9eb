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
//! [`MAX_PER_PEER`] subscriptions holding feeds per client address. Bars
//! update at a pace set by their
//! resolution (a 1-minute bar every second, as a live bar does; daily and
//! longer every 5 s); quotes four times a second for fast symbols and once
//! a second for the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use shardcast_engine::{Engine, Publication, Topic};
use tracing::{debug, info};

use super::Rng;

/// How often the producer thread looks for due topics.
const PASS: Duration = Duration::from_millis(50);

/// Most topics produced at once: each costs the producer thread a little
/// per pass, and clients choose how many they ask for.
pub const MAX_PRODUCERS: usize = 1000;

/// Most subscriptions holding a feed per client address, so that one
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

/// How often fast quotes update; slow ones every fourth time.
const QUOTE_TICK: Duration = Duration::from_millis(250);

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

/// What makes a topic's next messages. Moved out of the table for the
/// work, so the table's lock is held only to take and put back.
struct Generator {
    feed: Feed,
    topic: Option<Arc<Topic>>,
    next_due: Instant,
    ticks: u64,
    /// Last price of each symbol (one for bars).
    prices: Vec<f64>,
    bar: Option<Bar>,
}

#[derive(Clone, Copy, Debug)]
struct Bar {
    start_ms: u64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: u64,
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
        let prices = match &feed {
            Feed::Bars { symbol, .. } => vec![base_price(symbol)],
            Feed::Quotes { symbols, fast } => {
                symbols.iter().chain(fast).map(|s| base_price(s)).collect()
            }
        };
        info!(topic, "on-demand producer started");
        table.active.insert(
            topic.into(),
            Active {
                refs: 1,
                last_own_seq: None,
                external: false,
                generator: Some(Generator {
                    feed,
                    topic: None,
                    next_due: Instant::now(),
                    ticks: 0,
                    prices,
                    bar: None,
                }),
            },
        );
        Ok(())
    }

    /// One subscriber of `topic` (from `peer`) fewer (step 3).
    pub fn release(&self, topic: &str, peer: IpAddr) {
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

/// A starting price for any symbol: stable per name, 20 to 500.
fn base_price(symbol: &str) -> f64 {
    let hash = symbol.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    20.0 + (hash % 48_000) as f64 / 100.0
}

/// How often a bar of `resolution` is updated.
fn bar_pace(resolution: &str) -> Duration {
    match resolution {
        "1" => Duration::from_secs(1),
        "5" => Duration::from_secs(2),
        "15" | "30" | "60" => Duration::from_secs(3),
        _ => Duration::from_secs(5),
    }
}

/// The start, in Unix milliseconds, of the bar of `resolution` holding `now_ms`.
fn bar_start(resolution: &str, now_ms: u64) -> u64 {
    const DAY: u64 = 86_400_000;
    let days = now_ms / DAY;
    match resolution {
        "D" => days * DAY,
        // 1970-01-01 was a Thursday: weeks start on Monday, 3 days later.
        "W" => {
            let monday = (days as i64 + 3).div_euclid(7) * 7 - 3;
            monday.max(0) as u64 * DAY
        }
        "M" => {
            let (year, month, _) = civil_from_days(days as i64);
            days_from_civil(year, month, 1) as u64 * DAY
        }
        minutes => {
            let period = minutes.parse::<u64>().unwrap_or(1) * 60_000;
            now_ms / period * period
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// (year, month, day) to days since 1970-01-01, proleptic Gregorian.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
            if let Ok(seq) = engine.publish_message(&topic, publication) {
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

/// Queues the next messages of `active` (work item `index`) into `out` and
/// sets its next due time.
fn produce(
    active: &mut Generator,
    index: usize,
    topic: &Arc<Topic>,
    rng: &mut Rng,
    now: Instant,
    out: &mut Vec<(usize, Arc<Topic>, Publication)>,
) {
    let time = now_ms();
    let mut step = |price: &mut f64| {
        *price = (*price * (1.0 + (rng.unit() - 0.5) * 0.004)).max(0.01);
        *price
    };
    match &active.feed {
        Feed::Bars { resolution, .. } => {
            let price = step(&mut active.prices[0]);
            let start_ms = bar_start(resolution, time);
            let bar = match active.bar {
                Some(bar) if bar.start_ms == start_ms => Bar {
                    high: bar.high.max(price),
                    low: bar.low.min(price),
                    close: price,
                    volume: bar.volume + 100 + (price as u64 % 900),
                    ..bar
                },
                _ => Bar {
                    start_ms,
                    open: price,
                    high: price,
                    low: price,
                    close: price,
                    volume: 100,
                },
            };
            active.bar = Some(bar);
            let json = format!(
                r#"{{"time":{},"open":{:.2},"high":{:.2},"low":{:.2},"close":{:.2},"volume":{}}}"#,
                bar.start_ms, bar.open, bar.high, bar.low, bar.close, bar.volume
            );
            let publication = Publication::new(None, Bytes::from(json)).transient();
            out.push((index, Arc::clone(topic), publication));
            active.next_due = now + bar_pace(resolution);
        }
        Feed::Quotes { symbols, fast } => {
            let slow_due = active.ticks.is_multiple_of(4);
            let quoted = symbols
                .iter()
                .map(|s| (s, slow_due))
                .chain(fast.iter().map(|s| (s, true)));
            for ((symbol, due), price) in quoted.zip(active.prices.iter_mut()) {
                if !due {
                    continue;
                }
                let last = step(price);
                let json = format!(
                    r#"{{"symbol":{},"bid":{:.2},"ask":{:.2},"last":{:.2},"time":{time}}}"#,
                    serde_json::Value::from(symbol.as_str()),
                    last * 0.9995,
                    last * 1.0005,
                    last
                );
                let key = Some(symbol.as_str().into());
                let publication = Publication::new(key, Bytes::from(json)).transient();
                out.push((index, Arc::clone(topic), publication));
            }
            active.ticks += 1;
            active.next_due = now + QUOTE_TICK;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_start_where_their_period_does() {
        // 2026-12-06T10:17:42.500Z, a Sunday.
        let now = 1_796_552_262_500;
        assert_eq!(bar_start("1", now), 1_796_552_220_000);
        assert_eq!(bar_start("5", now), 1_796_552_100_000);
        assert_eq!(bar_start("60", now), 1_796_551_200_000);
        assert_eq!(bar_start("D", now), 1_796_515_200_000); // 2026-12-06T00:00Z
        assert_eq!(bar_start("W", now), 1_795_996_800_000); // Monday 2026-11-30
        assert_eq!(bar_start("M", now), 1_796_083_200_000); // 2026-12-01
    }

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

    #[test]
    fn the_calendar_round_trips() {
        for days in [-800_000, -1, 0, 59, 10_957, 20_793, 1_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
