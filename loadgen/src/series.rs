//! The measured window second by second, for the plots of `--report` and
//! the `series` of the JSON report.
//!
//! 1. Each event's latency is recorded in `Shared::second_latency`: one
//!    record per event, as before there were plots. (With several `--urls`
//!    it is also recorded in its node's `NodeTally`, state.rs, which the
//!    window reads whole; the series is of all nodes together.)
//! 2. Once a second ([`Recorder::tick`]) and when the window closes, the
//!    second's histogram is folded into the window's (`Shared::latency`),
//!    read for the point's percentiles, appended to the HDR interval log
//!    (with `--report`), and reset. The window's histogram is therefore the
//!    sum of the logged ones, so the log's total count is the report's
//!    sample count.
//! 3. The counters (deliveries, sequence gaps, open connections) and the
//!    server's CPU time and memory (from /proc, with `--server-pid`, summed
//!    over several pids) are read at the same moments; a point holds their
//!    change over its interval.
//!
//! Cost: one snapshot a second, nothing per event beyond step 1.
//! Owned by the loadgen's single thread.

use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::report;
use crate::state::{quantile_ms, Shared};

/// One interval of the measured window (about a second; the last may be shorter).
#[derive(Clone, Debug)]
pub struct Point {
    /// Seconds from the window's opening to the interval's end.
    pub t: f64,
    pub seconds: f64,
    /// Latency samples in the interval.
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub deliveries_per_second: f64,
    /// Messages missing from sequences (client-side drops), per second.
    pub gaps_per_second: f64,
    /// Subscriber connections open at the interval's end.
    pub connections: u64,
    pub server_cpu_percent: Option<f64>,
    pub server_rss_kib: Option<u64>,
}

/// The interval log being written: text, and its serializer's buffers.
struct Hlog {
    text: Vec<u8>,
    serializer: V2DeflateSerializer,
}

/// Takes the window's per-second points. Owned by the loadgen's single thread.
pub struct Recorder {
    opened: Instant,
    last: Instant,
    delivered: u64,
    gaps: u64,
    server_cpu: Option<f64>,
    server_pids: Vec<u32>,
    points: Vec<Point>,
    hlog: Option<Hlog>,
}

/// What a closed window leaves: its points, and the interval log if asked for.
pub struct Series {
    pub points: Vec<Point>,
    pub hlog: Option<Vec<u8>>,
}

impl Recorder {
    /// Starts at the window's opening; `hlog`: write the interval log too.
    pub fn open(shared: &Shared, server_pids: &[u32], hlog: bool) -> Self {
        let now = Instant::now();
        let hlog = hlog.then(|| {
            let mut text = Vec::new();
            let mut serializer = V2DeflateSerializer::new();
            let wall = SystemTime::now();
            // Headers only: nothing can fail writing them into a Vec.
            let _ = IntervalLogWriterBuilder::new()
                .add_comment("shardcast-loadgen: latency from publish to receipt, in microseconds")
                .add_comment("one histogram per second of the measured window")
                .with_start_time(wall)
                .with_base_time(wall)
                .begin_log_with(&mut text, &mut serializer);
            Hlog { text, serializer }
        });
        Self {
            opened: now,
            last: now,
            delivered: shared.delivered.get(),
            gaps: gaps(shared),
            server_cpu: report::cpu_seconds_of(server_pids),
            server_pids: server_pids.to_vec(),
            points: Vec::new(),
            hlog,
        }
    }

    /// Ends the current interval: folds its latency into the window's and
    /// takes a point.
    pub fn tick(&mut self, shared: &Shared) {
        let now = Instant::now();
        let seconds = now.duration_since(self.last).as_secs_f64().max(1e-9);
        let mut second = shared.second_latency.borrow_mut();
        // Same bounds on both sides: adding cannot overflow their range.
        let _ = shared.latency.borrow_mut().add(&*second);
        if let Some(hlog) = self.hlog.as_mut() {
            let start = self.last.duration_since(self.opened);
            if let Err(e) = hlog.append(&second, start, now.duration_since(self.last)) {
                eprintln!("latency.hlog not written: {e}");
                self.hlog = None;
            }
        }
        let q = |q: f64| quantile_ms(&second, q);
        let delivered = shared.delivered.get();
        let gaps = gaps(shared);
        let cpu = report::cpu_seconds_of(&self.server_pids);
        self.points.push(Point {
            t: now.duration_since(self.opened).as_secs_f64(),
            seconds,
            samples: second.len(),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: second.max() as f64 / 1000.0,
            deliveries_per_second: (delivered - self.delivered) as f64 / seconds,
            gaps_per_second: (gaps - self.gaps) as f64 / seconds,
            connections: shared.open.get(),
            server_cpu_percent: cpu
                .zip(self.server_cpu)
                .map(|(end, start)| (end - start) / seconds * 100.0),
            server_rss_kib: report::rss_kib_of(&self.server_pids),
        });
        second.reset();
        self.last = now;
        self.delivered = delivered;
        self.gaps = gaps;
        self.server_cpu = cpu;
    }

    /// Ends the last interval and hands over the points and the log.
    pub fn close(mut self, shared: &Shared) -> Series {
        self.tick(shared);
        Series {
            points: self.points,
            hlog: self.hlog.map(|h| h.text),
        }
    }
}

impl Hlog {
    fn append(
        &mut self,
        h: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> Result<(), String> {
        // A builder without headers writes none: this only adds the interval.
        let mut log = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.text, &mut self.serializer)
            .map_err(|e| e.to_string())?;
        log.write_histogram(h, start, length, None)
            .map_err(|e| e.to_string())
    }
}

impl Series {
    /// The report's `series`: one array per figure, index = interval.
    pub fn to_json(&self) -> Value {
        let col = |f: &dyn Fn(&Point) -> Value| -> Value { self.points.iter().map(f).collect() };
        json!({
            "t": col(&|p| json!(round(p.t, 3))),
            "seconds": col(&|p| json!(round(p.seconds, 3))),
            "samples": col(&|p| json!(p.samples)),
            // A second without samples has no percentiles (null), not zeros.
            "p50_ms": col(&|p| json!((p.samples > 0).then_some(p.p50_ms))),
            "p99_ms": col(&|p| json!((p.samples > 0).then_some(p.p99_ms))),
            "p999_ms": col(&|p| json!((p.samples > 0).then_some(p.p999_ms))),
            "max_ms": col(&|p| json!((p.samples > 0).then_some(p.max_ms))),
            "deliveries_per_second": col(&|p| json!(round(p.deliveries_per_second, 1))),
            "gaps_per_second": col(&|p| json!(round(p.gaps_per_second, 1))),
            "connections": col(&|p| json!(p.connections)),
            "server_cpu_percent": col(&|p| json!(p.server_cpu_percent.map(|c| round(c, 1)))),
            "server_rss_kib": col(&|p| json!(p.server_rss_kib)),
        })
    }
}

/// Messages missing from sequences so far, reconnect gaps included.
pub fn gaps(shared: &Shared) -> u64 {
    shared.gaps.get() + shared.reconnect_gaps.get()
}

fn round(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    use super::*;

    #[test]
    fn the_log_holds_every_second_and_the_window_is_their_sum() {
        let shared = Shared::new(1, 0.0, "load.");
        let mut recorder = Recorder::open(&shared, &[], true);
        for micros in [100, 200, 300] {
            shared.second_latency.borrow_mut().record(micros).unwrap();
        }
        recorder.tick(&shared);
        shared.second_latency.borrow_mut().record(5000).unwrap();
        let series = recorder.close(&shared);
        assert_eq!(series.points.len(), 2);
        assert_eq!(series.points[0].samples, 3);
        assert_eq!(shared.latency.borrow().len(), 4);
        assert!(shared.second_latency.borrow().is_empty());
        let text = series.hlog.expect("asked for");
        let mut total = 0;
        let mut intervals = 0;
        for entry in IntervalLogIterator::new(&text) {
            if let LogEntry::Interval(interval) = entry.expect("parses") {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(interval.encoded_histogram())
                    .unwrap();
                let h: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
                total += h.len();
                intervals += 1;
            }
        }
        assert_eq!((intervals, total), (2, 4));
        let json = Series {
            points: series.points,
            hlog: None,
        }
        .to_json();
        assert_eq!(json["samples"], json!([3, 1]));
        assert_eq!(json["server_cpu_percent"], json!([null, null]));
    }
}
