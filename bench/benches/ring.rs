//! Publishing into a topic: the fan-out ring (an atomic claim and one slot)
//! against a mutex over a sequence number and a bounded history, which is
//! what a topic's lock guards on publish, and against the ring as a feed
//! has it (`Elastic`: behind its own lock, ready to grow), and that ring as
//! the topic's history too (`window`: keeping its newest `HISTORY` numbers,
//! handing back the one that leaves). 1, 2 and 4 publisher threads, on
//! one topic and on a topic each. Each figure is the time per publish, all
//! threads together (so 4 threads at the same figure as 1 is no scaling).

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardcast_engine::ring::{Elastic, FanoutRing};

const HISTORY: usize = 1024;

/// What a topic's lock guards on publish: the sequence and the history.
struct Locked {
    state: Mutex<(u64, VecDeque<Arc<u64>>)>,
}

impl Locked {
    fn publish(&self) -> u64 {
        let mut state = self.state.lock().unwrap();
        state.0 += 1;
        let seq = state.0;
        if state.1.len() == HISTORY {
            state.1.pop_front();
        }
        state.1.push_back(Arc::new(seq));
        seq
    }
}

trait Publish: Send + Sync {
    fn publish_one(&self) -> u64;
}

impl Publish for Locked {
    fn publish_one(&self) -> u64 {
        self.publish()
    }
}

impl Publish for FanoutRing<Arc<u64>> {
    fn publish_one(&self) -> u64 {
        self.publish(Arc::new)
    }
}

/// A topic's feed as it is: the ring behind its own lock, which may grow
/// (here with no reader, so it never does: the cost of the check).
impl Publish for Elastic<Arc<u64>> {
    fn publish_one(&self) -> u64 {
        self.publish(std::iter::empty(), Arc::new, |_| {}).0
    }
}

/// `threads` threads publish `per_thread` messages each into `topics`
/// (shared when one, one each otherwise); the wall time of the slowest.
fn run<P: Publish>(topics: &[P], threads: usize, per_thread: u64) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let topic = &topics[t % topics.len()];
            let start = &start;
            scope.spawn(move || {
                start.wait();
                for _ in 0..per_thread {
                    black_box(topic.publish_one());
                }
            });
        }
        start.wait();
        let began = Instant::now();
        // The scope joins every thread before returning.
        began
    })
    .elapsed()
}

fn locked(n: usize) -> Vec<Locked> {
    (0..n)
        .map(|_| Locked {
            state: Mutex::new((0, VecDeque::with_capacity(HISTORY))),
        })
        .collect()
}

fn rings(n: usize) -> Vec<FanoutRing<Arc<u64>>> {
    (0..n).map(|_| FanoutRing::new(HISTORY)).collect()
}

fn elastics(n: usize) -> Vec<Elastic<Arc<u64>>> {
    (0..n).map(|_| Elastic::new(1, HISTORY, 1 << 16)).collect()
}

/// A feed that is its topic's history: the window of `HISTORY` numbers.
struct Windowed(Elastic<Arc<u64>>);

impl Publish for Windowed {
    fn publish_one(&self) -> u64 {
        let (seq, displaced) = self.0.publish(std::iter::empty(), Arc::new, |_| {});
        // What the history's byte account reads of the message leaving.
        black_box(displaced.left_window().map(|v| **v));
        seq
    }
}

fn windowed(n: usize) -> Vec<Windowed> {
    (0..n)
        .map(|_| Windowed(Elastic::new(1, HISTORY, 1 << 16).keeping(HISTORY as u64)))
        .collect()
}

/// One variant's figure for `threads` publishers over `topics` topics.
fn variant<P: Publish>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    threads: usize,
    topics: Vec<P>,
) {
    group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(threads as u64);
            run(&topics, threads, per_thread)
        })
    });
}

fn ring(c: &mut Criterion) {
    for (shape, shared) in [("one_topic", true), ("topic_each", false)] {
        let mut group = c.benchmark_group(format!("publish/{shape}"));
        for threads in [1usize, 2, 4] {
            let topics = if shared { 1 } else { threads };
            group.throughput(Throughput::Elements(1));
            variant(&mut group, "mutex", threads, locked(topics));
            variant(&mut group, "ring", threads, rings(topics));
            variant(&mut group, "elastic", threads, elastics(topics));
            variant(&mut group, "window", threads, windowed(topics));
        }
        group.finish();
    }
}

criterion_group!(benches, ring);
criterion_main!(benches);
