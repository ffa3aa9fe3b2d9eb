//! The flush policy: how long a connection's new frames may wait so that
//! one `writev` carries several of them.
//!
//! Owned by one shard thread. Sans-IO: the shard feeds it CPU-time and
//! wall-time deltas; it answers with a coalescing delay.
//!
//! Why CPU time: on loopback one core makes about 200–250k socket writes per
//! second whatever their size, and most of each write's cost is the kernel's
//! TCP path (docs/benchmarks.md). Below saturation the cheapest latency is to
//! write at once: the delay stays 0. When the shard's thread uses more than
//! [`HIGH`] of its core, the delay grows; each connection then gets its
//! frames in fewer, larger writes, which costs fewer syscalls for the same
//! deliveries, and CPU falls. When CPU falls below `HIGH - BAND`, the delay halves
//! back toward 0. Between the two it holds, so the policy does not oscillate.

use std::time::Duration;

/// Default threshold: above this share of a core, coalesce more.
pub const HIGH: f64 = 0.70;
/// How far below the threshold CPU must fall before coalescing lessens.
pub const BAND: f64 = 0.20;
/// The longest a frame waits for company.
pub const MAX_DELAY: Duration = Duration::from_millis(12);
/// How often CPU use is sampled.
pub const WINDOW: Duration = Duration::from_millis(20);
/// The smallest step of the delay.
const STEP: Duration = Duration::from_micros(100);

/// The coalescing controller. Owned by one shard thread.
#[derive(Debug)]
pub struct FlushPacer {
    delay: Duration,
    high: f64,
}

impl Default for FlushPacer {
    fn default() -> Self {
        Self::new(HIGH)
    }
}

impl FlushPacer {
    /// A pacer that coalesces above `high` (share of a core; 1.0 or more: never).
    pub fn new(high: f64) -> Self {
        Self {
            delay: Duration::ZERO,
            high,
        }
    }

    /// The current coalescing delay.
    #[inline]
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Takes one window's figures: `cpu` time the shard thread ran during
    /// `wall` time. Returns the new delay.
    pub fn observe(&mut self, cpu: Duration, wall: Duration) -> Duration {
        if wall.is_zero() {
            return self.delay;
        }
        let load = cpu.as_secs_f64() / wall.as_secs_f64();
        // The wide band between LOW and HIGH keeps the delay where it is
        // once the shard is back under HIGH. A narrow band (0.58-0.72) with
        // gentler steps flipped coalescing on and off at 200k deliveries/s
        // and doubled p99 there (docs/benchmarks.md).
        if load > self.high {
            // Grow by an eighth (at least one step): fast from 0, gentle near the top.
            let grown = self.delay + (self.delay / 8).max(STEP);
            self.delay = grown.min(MAX_DELAY);
        } else if load < self.high - BAND {
            self.delay /= 2;
            if self.delay < STEP {
                self.delay = Duration::ZERO;
            }
        }
        self.delay
    }
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat`
/// (`None` where the file does not exist; the delay then stays 0).
pub fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(pacer: &mut FlushPacer, load: f64) -> Duration {
        pacer.observe(WINDOW.mul_f64(load), WINDOW)
    }

    #[test]
    fn no_delay_while_there_is_headroom() {
        let mut pacer = FlushPacer::default();
        for _ in 0..100 {
            assert_eq!(observe(&mut pacer, 0.68), Duration::ZERO);
        }
    }

    #[test]
    fn grows_under_saturation_up_to_the_cap_and_holds_in_the_band() {
        let mut pacer = FlushPacer::default();
        assert_eq!(observe(&mut pacer, 0.95), STEP);
        for _ in 0..1000 {
            observe(&mut pacer, 0.95);
        }
        assert_eq!(pacer.delay(), MAX_DELAY);
        // In the band between LOW and HIGH nothing changes.
        assert_eq!(observe(&mut pacer, 0.6), MAX_DELAY);
    }

    #[test]
    fn reaches_several_milliseconds_within_a_second_of_saturation() {
        let mut pacer = FlushPacer::default();
        for _ in 0..50 {
            observe(&mut pacer, 1.0);
        }
        assert!(
            pacer.delay() >= Duration::from_millis(5),
            "{:?}",
            pacer.delay()
        );
    }

    #[test]
    fn a_threshold_of_one_never_coalesces() {
        let mut pacer = FlushPacer::new(1.0);
        for _ in 0..100 {
            assert_eq!(observe(&mut pacer, 1.0), Duration::ZERO);
        }
    }

    #[test]
    fn halves_back_to_zero_when_load_falls() {
        let mut pacer = FlushPacer::default();
        for _ in 0..100 {
            observe(&mut pacer, 1.0);
        }
        let mut steps = 0;
        while observe(&mut pacer, 0.2) > Duration::ZERO {
            steps += 1;
        }
        // 12 ms to 0 by halving: a few windows of quiet.
        assert!(steps <= 8, "{steps}");
    }

    #[test]
    fn reads_this_threads_cpu_time() {
        let Some(before) = thread_cpu_time() else {
            return;
        };
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time().unwrap() > before);
    }
}
