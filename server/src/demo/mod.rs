//! The built-in simulated market, so a new user sees live data at once.
//!
//! One plain thread publishes through the engine like any publisher:
//! - `market-data`: a random walk for 20 symbols, each updated about twice a
//!   second, keyed by symbol (so replay gives the latest price of each),
//!   with the day's change, open, high and low;
//! - `positions`: a position update every second, keyed by position id
//!   (each position holds one symbol);
//! - `signals`: a trading signal every 2 seconds, keyed by symbol;
//! - `trades`: a trade execution every 1.5 seconds, keyed by symbol;
//! - `trader-status`: a trader's status every 3 seconds, keyed by trader id;
//! - `risk-alerts`: an alert every 7 seconds or so, unkeyed.
//!
//! Topic handles are resolved once; the thread takes no global lock per message.
//!
//! `ondemand.rs` adds feeds produced only while subscribed: bars and quotes
//! of any symbol, started by a protocol's first subscriber of a topic
//! ([`Producers`]).

mod generator;
mod ondemand;

pub use ondemand::{Feed, FeedRefused, Producers, MAX_PER_PEER, MAX_PRODUCERS};

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use shardcast_engine::{Engine, PublishError, Topic};
use tracing::{info, warn};

use crate::broker::Quiet;

const SYMBOLS: [(&str, &str, f64); 20] = [
    ("AAPL", "NASDAQ", 189.5),
    ("MSFT", "NASDAQ", 411.2),
    ("NVDA", "NASDAQ", 121.8),
    ("AMZN", "NASDAQ", 178.3),
    ("GOOGL", "NASDAQ", 164.9),
    ("META", "NASDAQ", 497.1),
    ("TSLA", "NASDAQ", 182.6),
    ("JPM", "NYSE", 198.4),
    ("GS", "NYSE", 455.0),
    ("BAC", "NYSE", 37.9),
    ("XOM", "NYSE", 117.2),
    ("KO", "NYSE", 61.3),
    ("BTCUSDT", "BINANCE", 67_250.0),
    ("ETHUSDT", "BINANCE", 3_480.0),
    ("SOLUSDT", "BINANCE", 152.4),
    ("EURUSD", "FX", 1.0842),
    ("GBPUSD", "FX", 1.2711),
    ("USDJPY", "FX", 154.32),
    ("US10Y", "BONDS", 98.41),
    ("DE10Y", "BONDS", 101.07),
];

const TRADERS: [(&str, &str, &str); 4] = [
    ("trader-1", "BINANCE", "momentum"),
    ("trader-2", "NASDAQ", "mean-reversion"),
    ("trader-3", "FX", "carry"),
    ("trader-4", "BONDS", "curve-steepener"),
];

/// A small, fast, non-cryptographic generator (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64);
        Self(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The running feed. Stops when dropped or on [`DemoFeed::stop`].
#[derive(Debug)]
pub struct DemoFeed {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DemoFeed {
    /// Starts publishing into `engine`.
    pub fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("demo-feed".into())
            .spawn(move || run(&engine, &flag))?;
        info!("demo market feed on: market-data, positions, trader-status, risk-alerts");
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the feed and waits for its thread.
    pub fn stop(&mut self) {
        // Relaxed: a lone flag; the join below is the synchronization.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DemoFeed {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Topics {
    market: Arc<Topic>,
    positions: Arc<Topic>,
    traders: Arc<Topic>,
    risk: Arc<Topic>,
    signals: Arc<Topic>,
    trades: Arc<Topic>,
}

fn run(engine: &Engine, stop: &AtomicBool) {
    let resolve = |name| engine.topic(name);
    let topics = match (
        resolve("market-data"),
        resolve("positions"),
        resolve("trader-status"),
        resolve("risk-alerts"),
        resolve("signals"),
        resolve("trades"),
    ) {
        (Ok(market), Ok(positions), Ok(traders), Ok(risk), Ok(signals), Ok(trades)) => Topics {
            market,
            positions,
            traders,
            risk,
            signals,
            trades,
        },
        _ => {
            warn!("demo feed: default channels unavailable; feed off");
            return;
        }
    };
    let mut rng = Rng::seeded();
    let mut prices: Vec<f64> = SYMBOLS.iter().map(|s| s.2).collect();
    let (mut highs, mut lows) = (prices.clone(), prices.clone());
    let started = Instant::now();
    let mut tick: u64 = 0;
    let mut alert_id: u64 = 0;
    let mut buf = String::with_capacity(256);
    // 50 ms ticks: each tick moves two symbols, so each moves about twice a second.
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..2 {
            let i = rng.below(SYMBOLS.len());
            let (symbol, exchange, _) = SYMBOLS[i];
            let step = (rng.unit() - 0.5) * 0.002;
            prices[i] *= 1.0 + step;
            let price = prices[i];
            highs[i] = highs[i].max(price);
            lows[i] = lows[i].min(price);
            let open = SYMBOLS[i].2;
            let spread = price * 0.0002;
            buf.clear();
            let _ = write!(
                buf,
                r#"{{"symbol":"{symbol}","exchange":"{exchange}","price":{price:.4},"bid":{:.4},"ask":{:.4},"volume":{},"change":{:.4},"change_pct":{:.2},"open":{open:.4},"high":{:.4},"low":{:.4}}}"#,
                price - spread / 2.0,
                price + spread / 2.0,
                100 + rng.below(10_000),
                price - open,
                (price - open) / open * 100.0,
                highs[i],
                lows[i]
            );
            publish(engine, &topics.market, symbol, &buf);
        }
        if tick.is_multiple_of(20) {
            let p = rng.below(8);
            let (trader, _, _) = TRADERS[p % TRADERS.len()];
            let s = p;
            let qty = (rng.below(20) as i64 - 10) * 100;
            let entry = SYMBOLS[s].2;
            let mark = prices[s];
            buf.clear();
            let _ = write!(
                buf,
                r#"{{"positionId":"P-{p}","trader":"{trader}","symbol":"{}","quantity":{qty},"entryPrice":{entry:.4},"markPrice":{mark:.4},"unrealizedPnl":{:.2},"trailingStop":{:.4}}}"#,
                SYMBOLS[s].0,
                (mark - entry) * qty as f64,
                mark * 0.97
            );
            publish(engine, &topics.positions, &format!("P-{p}"), &buf);
        }
        if tick % 40 == 10 {
            let s = rng.below(SYMBOLS.len());
            let side = ["BUY", "SELL"][rng.below(2)];
            buf.clear();
            let _ = write!(
                buf,
                r#"{{"signal_type":"{side}","symbol":"{}","price":{:.4},"quantity":{},"confidence":{:.2}}}"#,
                SYMBOLS[s].0,
                prices[s],
                10 * (1 + rng.below(10)),
                0.5 + rng.unit() / 2.0
            );
            publish(engine, &topics.signals, SYMBOLS[s].0, &buf);
        }
        if tick % 30 == 5 {
            let s = rng.below(SYMBOLS.len());
            let side = ["BUY", "SELL"][rng.below(2)];
            buf.clear();
            let _ = write!(
                buf,
                r#"{{"symbol":"{}","side":"{side}","quantity":{},"price":{:.4}}}"#,
                SYMBOLS[s].0,
                10 * (1 + rng.below(10)),
                prices[s]
            );
            publish(engine, &topics.trades, SYMBOLS[s].0, &buf);
        }
        if tick.is_multiple_of(60) {
            let (trader, exchange, strategy) = TRADERS[rng.below(TRADERS.len())];
            let status = ["RUNNING", "RUNNING", "RUNNING", "PAUSED"][rng.below(4)];
            buf.clear();
            let _ = write!(
                buf,
                r#"{{"traderId":"{trader}","status":"{status}","exchange":"{exchange}","strategy":"{strategy}","uptime":"PT{}S","tradesToday":{}}}"#,
                started.elapsed().as_secs(),
                rng.below(500)
            );
            publish(engine, &topics.traders, trader, &buf);
        }
        if tick % 140 == 70 {
            alert_id += 1;
            let (trader, _, _) = TRADERS[rng.below(TRADERS.len())];
            let (severity, rule, advice) = [
                ("WARNING", "MAX_DRAWDOWN", "reduce position size"),
                ("CRITICAL", "MARGIN_CALL", "close positions or add margin"),
                ("WARNING", "CONCENTRATION", "diversify exposure"),
            ][rng.below(3)];
            buf.clear();
            let _ = write!(
                buf,
                r#"{{"alertId":"A-{alert_id}","severity":"{severity}","trader":"{trader}","rule":"{rule}","message":"{rule} threshold crossed","recommendation":"{advice}"}}"#
            );
            if let Err(e) =
                engine.publish(&topics.risk, None, Bytes::copy_from_slice(buf.as_bytes()))
            {
                publish_failed(&e);
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn publish(engine: &Engine, topic: &Arc<Topic>, key: &str, json: &str) {
    if let Err(e) = engine.publish(
        topic,
        Some(key.into()),
        Bytes::copy_from_slice(json.as_bytes()),
    ) {
        publish_failed(&e);
    }
}

/// Logs a refused demo publish, at most once every 10 s with how many were
/// refused meanwhile: while a broker is unreachable every tick fails.
fn publish_failed(e: &PublishError) {
    static REFUSED: Quiet = Quiet::every(Duration::from_secs(10));
    if let Some(held) = REFUSED.admit() {
        warn!(error = %e, refused = held + 1, "demo publishes refused");
    }
}
