//! When each connection gets its heartbeat: once per interval of its wire
//! format, the connections spread over the interval's ticks by their slot.
//!
//! A shard that wrote every connection's heartbeat in the same tick stalled
//! for the whole batch — with 19,500 connections, hundreds of milliseconds
//! of writes (and then as many replies to read) every interval, which every
//! delivery in between waited behind. Spread over the ticks, each tick
//! writes one in `phases` of them.

use std::time::Duration;

/// Ticks in one heartbeat interval (at least 1): each connection's
/// heartbeat is due on one of them.
pub fn phases(interval: Duration, tick: Duration) -> u32 {
    let n = interval.as_nanos() / tick.as_nanos().max(1);
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

/// Whether the connection in slab `slot` is due a heartbeat at tick number
/// `tick`, with `phases` ticks per interval: once every `phases` ticks.
pub fn due(slot: u32, tick: u32, phases: u32) -> bool {
    let phases = phases.max(1);
    slot % phases == tick % phases
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(250);

    #[test]
    fn an_interval_spans_its_ticks() {
        assert_eq!(phases(Duration::from_secs(15), TICK), 60);
        assert_eq!(phases(Duration::from_secs(1), TICK), 4);
        assert_eq!(phases(Duration::from_millis(100), TICK), 1);
        assert_eq!(phases(Duration::ZERO, TICK), 1);
        assert_eq!(phases(Duration::from_secs(u64::MAX), TICK), u32::MAX);
    }

    #[test]
    fn every_connection_beats_once_per_interval_and_no_tick_takes_them_all() {
        let phases = phases(Duration::from_secs(15), TICK);
        let slots = 19_500u32;
        let mut beats = vec![0u32; slots as usize];
        for tick in 1..=phases {
            let now: Vec<u32> = (0..slots).filter(|&s| due(s, tick, phases)).collect();
            assert!(
                now.len() <= slots.div_ceil(phases) as usize,
                "{}",
                now.len()
            );
            for s in now {
                beats[s as usize] += 1;
            }
        }
        assert!(beats.iter().all(|&n| n == 1));
        // One interval later, the same connection again.
        assert!(due(7, 7, phases) && due(7, 7 + phases, phases));
        assert!(due(0, 0, 0), "zero phases is one");
    }
}
