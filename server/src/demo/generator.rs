//! What makes an on-demand feed's messages: a random walk per symbol,
//! bars on their period's boundaries, quotes with a spread.
//!
//! Owned by the producer thread while it works on a topic (moved out of the
//! shared table for that); no locks, no clocks but the ones passed in and
//! the wall clock for message times.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use shardcast_engine::{civil_from_days, Publication, Topic};

use super::ondemand::Feed;
use super::Rng;

/// How often fast quotes update; slow ones every fourth time.
const QUOTE_TICK: Duration = Duration::from_millis(250);

/// What makes a topic's next messages. Moved out of the table for the
/// work, so the table's lock is held only to take and put back.
pub(super) struct Generator {
    pub(super) feed: Feed,
    pub(super) topic: Option<Arc<Topic>>,
    pub(super) next_due: Instant,
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

impl Generator {
    /// A generator of `feed`, due at once, each symbol at its starting price.
    pub(super) fn new(feed: Feed) -> Self {
        let prices = match &feed {
            Feed::Bars { symbol, .. } => vec![base_price(symbol)],
            Feed::Quotes { symbols, fast } => {
                symbols.iter().chain(fast).map(|s| base_price(s)).collect()
            }
        };
        Self {
            feed,
            topic: None,
            next_due: Instant::now(),
            ticks: 0,
            prices,
            bar: None,
        }
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

/// Queues the next messages of `active` (work item `index`) into `out` and
/// sets its next due time.
pub(super) fn produce(
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
    fn the_calendar_round_trips() {
        for days in [-800_000, -1, 0, 59, 10_957, 20_793, 1_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
