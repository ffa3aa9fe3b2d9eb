//! The flush policy: how long a connection's new frames may wait so that
//! one `writev` carries several of them.
//!
//! Owned by one shard thread. Sans-IO: the shard feeds it CPU-time and
//! wall-time deltas; it answers with a coalescing delay.
//!
//! Why CPU time: on loopback one core makes about 200–250k socket writes per
//! second whatever their size, and most of each write's cost is the kernel's
//! TCP path (docs/benchmarks.md). Below saturation the cheapest latency is to
//! write at once: the delay stays 0, and each turn of the shard writes what
//! that turn accumulated, so frames share a write only as load makes them
//! arrive together. When the shard's thread uses more than [`HIGH`] of its
//! core, the delay grows; each connection then gets its frames in fewer,
//! larger writes, which costs fewer syscalls for the same deliveries, and CPU
//! falls. Between `HIGH - BAND` and `HIGH` the delay shrinks slowly (by a
//! sixteenth a window), so it settles where the load needs it instead of
//! flipping on and off; below `HIGH - BAND` it halves back toward 0. It never
//! holds: a delay built during a burst (a wave of connections, a spike) is
//! gone within a second or two of the burst, instead of delaying every write
//! for as long as the load stays moderate.

use std::time::Duration;

/// Default threshold: above this share of a core, coalesce more.
pub const HIGH: f64 = 0.90;
/// How far below the threshold CPU must fall before coalescing lessens fast.
pub const BAND: f64 = 0.10;
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
        if load > self.high {
            // Grow by an eighth (at least one step): fast from 0, gentle near the top.
            let grown = self.delay + (self.delay / 8).max(STEP);
            self.delay = grown.min(MAX_DELAY);
        } else if load < self.high - BAND {
            self.delay /= 2;
            if self.delay < STEP {
                self.delay = Duration::ZERO;
            }
        } else {
            // In the band: shrink by half the rate it grows, so a delay the
            // load still needs is rebuilt within a window or two, and one it
            // no longer needs fades (12 ms to 0 in under 2 s).
            self.delay -= self.delay / 16;
            if self.delay < STEP / 2 {
                self.delay = Duration::ZERO;
            }
        }
        self.delay
    }
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat`
/// (`None` where the file does not exist; the delay then stays 0). Read into
/// a stack buffer: no allocation, once per [`WINDOW`].
pub fn thread_cpu_time() -> Option<Duration> {
    use std::io::Read;
    // "<ns on cpu> <ns waiting> <timeslices>\n": three u64s fit in 64 bytes.
    let mut buf = [0u8; 64];
    let mut file = std::fs::File::open("/proc/thread-self/schedstat").ok()?;
    let n = file.read(&mut buf).ok()?;
    let first = buf[..n].split(|b| b.is_ascii_whitespace()).next()?;
    let ns: u64 = std::str::from_utf8(first).ok()?.parse().ok()?;
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
            assert_eq!(observe(&mut pacer, 0.88), Duration::ZERO);
        }
    }

    #[test]
    fn grows_under_saturation_up_to_the_cap() {
        let mut pacer = FlushPacer::default();
        assert_eq!(observe(&mut pacer, 0.95), STEP);
        for _ in 0..1000 {
            observe(&mut pacer, 0.95);
        }
        assert_eq!(pacer.delay(), MAX_DELAY);
    }

    #[test]
    fn a_delay_built_by_a_burst_fades_at_moderate_load() {
        // A wave of connections runs the shard hot, then the load settles
        // just under the threshold: the delay must not stay.
        let mut pacer = FlushPacer::default();
        for _ in 0..100 {
            observe(&mut pacer, 1.0);
        }
        assert_eq!(pacer.delay(), MAX_DELAY);
        let shrunk = observe(&mut pacer, 0.85);
        assert!(shrunk < MAX_DELAY && shrunk > MAX_DELAY / 2, "{shrunk:?}");
        let two_seconds = (2000 / WINDOW.as_millis()) as usize;
        let mut left = shrunk;
        for _ in 0..two_seconds {
            left = observe(&mut pacer, 0.85);
        }
        assert_eq!(left, Duration::ZERO);
    }

    #[test]
    fn a_load_hovering_at_the_threshold_keeps_its_delay() {
        // Just above, just below, in turn: the delay the load needs is
        // kept (growth by an eighth outpaces the band's sixteenth), not
        // let go as if the load had fallen.
        let mut pacer = FlushPacer::default();
        for _ in 0..20 {
            observe(&mut pacer, 0.95);
        }
        let built = pacer.delay();
        for _ in 0..200 {
            observe(&mut pacer, 0.95);
            assert!(observe(&mut pacer, 0.85) >= built);
        }
        // Only the band: it fades, a sixteenth per window.
        let before = pacer.delay();
        let after = observe(&mut pacer, 0.85);
        assert_eq!(after, before - before / 16);
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
