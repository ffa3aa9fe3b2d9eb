//! Scenario `burst`: one WebSocket publisher sending keyed messages at a
//! sustained rate with periodic bursts, telling the freshness board
//! (`freshness.rs`) when each burst begins and ends.
//!
//! 1. The schedule repeats every `every` seconds: the first `burst_for`
//!    seconds of each cycle at `rate × factor`, the rest at `rate`
//!    ([`Schedule::due`]); the publisher joins it half a cycle in, so the
//!    first burst begins `every / 2` seconds after it starts. Open loop,
//!    paced by the clock like the other publishers: messages more than
//!    50 ms late are skipped and reported.
//! 2. Topics take turns; within a topic, keys `k0…k{keys-1}` take turns, and
//!    each key's values carry a counter 1, 2, 3… (`"c"`). The publisher
//!    remembers each key's last counter.
//! 3. On each 1 ms tick: if the open burst's window has passed, publish what
//!    was due up to its end and tell the board it ended (stamp of its last
//!    publish, last counters); if a new cycle has begun, tell the board a
//!    burst started (which settles the previous one: clients still behind
//!    are stale); then publish what is due now.
//! 4. Publishes refused by the server come back as error frames; they are
//!    read and counted (refusal.rs), since a refused value would make its
//!    key look stale.
//!
//! Owned by the loadgen's single thread.

use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::publish::{publish_connection, publish_refused};
use crate::refusal::ERROR_FRAME;
use crate::state::Shared;
use crate::tasks::{push_u64, Target, TopicPicker};
use crate::ws;

/// When messages are due.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Sustained messages per second.
    pub rate: f64,
    /// Seconds from one burst's start to the next.
    pub every: f64,
    /// Seconds a burst lasts (less than `every`).
    pub burst_for: f64,
    /// Burst rate as a multiple of `rate`.
    pub factor: f64,
}

impl Schedule {
    /// Messages due in the first `t` seconds.
    pub fn due(&self, t: f64) -> u64 {
        let cycles = (t / self.every).floor();
        let phase = t - cycles * self.every;
        let bursting = cycles * self.burst_for + phase.min(self.burst_for);
        (self.rate * t + (self.factor - 1.0) * self.rate * bursting) as u64
    }

    /// The cycle `t` falls in.
    fn cycle(&self, t: f64) -> u64 {
        (t / self.every).floor() as u64
    }

    /// Why these settings cannot make a burst, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(self.every > 0.0 && self.burst_for > 0.0 && self.burst_for < self.every) {
            return Err("need 0 < --burst-for < --burst-every".into());
        }
        if !(self.factor >= 1.0 && self.rate > 0.0) {
            return Err("need --burst-factor >= 1 and --rate > 0".into());
        }
        Ok(())
    }
}

/// What one burst publisher sends.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub schedule: Schedule,
    pub topics: usize,
    pub keys: usize,
    /// Approximate size of each message's `data`, bytes.
    pub payload: usize,
}

/// Keyed values and the frames that carry them.
struct Keyed {
    /// `last[t][k]`: counter of the last value published for key k of topic t.
    last: Vec<Vec<u64>>,
    next_key: Vec<usize>,
    picker: TopicPicker,
    pad: String,
    /// Publish stamp (ns since the run's epoch) of the last message.
    last_stamp: u64,
    /// Messages sent so far, skipped ones included.
    sent: u64,
    /// Most messages sent at once: 50 ms of burst traffic (as the other
    /// publishers); more than that late are skipped and reported.
    cap: u64,
    out: Vec<u8>,
}

impl Keyed {
    /// Sends the messages due up to `due` in all, in one write.
    async fn publish_until(
        &mut self,
        shared: &Shared,
        prefix: &str,
        conn: &mut ws::Conn,
        due: u64,
    ) -> std::io::Result<()> {
        let mut count = due.saturating_sub(self.sent);
        if count > self.cap {
            Shared::bump(&shared.publish_lag, count - self.cap);
            self.sent += count - self.cap;
            count = self.cap;
        }
        if count == 0 {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.frames(shared, prefix, count, &mut out);
        self.sent += count;
        let written = conn.stream.write_all(&out).await;
        self.out = out;
        written
    }

    /// Appends `count` masked publish frames to `out`.
    fn frames(&mut self, shared: &Shared, prefix: &str, count: u64, out: &mut Vec<u8>) {
        let mut text = Vec::with_capacity(self.pad.len() + 128);
        let mut published = shared.published.borrow_mut();
        for _ in 0..count {
            let topic = self.picker.pick();
            let key = self.next_key[topic];
            self.next_key[topic] = (key + 1) % self.last[topic].len();
            self.last[topic][key] += 1;
            self.last_stamp = shared.now_ns();
            text.clear();
            text.extend_from_slice(b"{\"action\":\"publish\",\"channel\":\"");
            text.extend_from_slice(prefix.as_bytes());
            push_u64(&mut text, topic as u64);
            text.extend_from_slice(b"\",\"data\":{\"t\":");
            push_u64(&mut text, self.last_stamp);
            text.extend_from_slice(b",\"c\":");
            push_u64(&mut text, self.last[topic][key]);
            text.extend_from_slice(b",\"p\":\"");
            text.extend_from_slice(self.pad.as_bytes());
            text.extend_from_slice(b"\"},\"key\":\"k");
            push_u64(&mut text, key as u64);
            text.extend_from_slice(b"\"}");
            ws::encode_text(out, &text);
            published[topic] += 1;
        }
    }
}

/// The burst publisher (see the module doc).
pub async fn publisher(shared: Rc<Shared>, target: Rc<Target>, plan: Plan) {
    let Some(mut conn) = publish_connection(&shared, &target).await else {
        return;
    };
    let schedule = plan.schedule;
    let keys = plan.keys.max(1);
    let mut keyed = Keyed {
        last: vec![vec![0; keys]; plan.topics],
        next_key: vec![0; plan.topics],
        picker: TopicPicker::new(vec![(0..plan.topics).collect()], &[1], 0),
        pad: "x".repeat(plan.payload.saturating_sub(40).max(1)),
        last_stamp: 0,
        sent: 0,
        cap: ((schedule.rate * schedule.factor * 0.05) as u64).max(1),
        out: Vec::with_capacity(64 * 1024),
    };
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The schedule starts half a cycle in: the first burst begins half a
    // cycle after the publisher, so a measured window that opens a whole
    // number of cycles later (warm-up 2 s, bursts every 2 s) never races
    // the start of a burst, and the count of measured bursts is stable.
    let lead = Duration::from_secs_f64(schedule.every / 2.0);
    let start = Instant::now()
        .checked_sub(lead)
        .unwrap_or_else(Instant::now);
    keyed.sent = schedule.due(start.elapsed().as_secs_f64());
    let mut next_cycle = 1;
    // The burst under way: when its window ends, and whether it is measured.
    let mut open: Option<(f64, bool)> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            ready = conn.ready() => {
                if !matches!(ready, Ok(true)) {
                    eprintln!("publisher lost its connection");
                    return;
                }
                while let Some(frame) = conn.next_frame() {
                    if frame.opcode == 0x1 && frame.payload.starts_with(ERROR_FRAME) {
                        publish_refused(&shared, frame.payload);
                    }
                }
                continue;
            }
            () = shared.stopped() => return,
        }
        if shared.rate.get() == 0.0 {
            continue; // The run is draining.
        }
        let t = start.elapsed().as_secs_f64();
        // The open burst's window has passed: what was due up to its end
        // goes, then the board hears that it ended.
        if let Some((end_at, counted)) = open.filter(|&(end_at, _)| t >= end_at) {
            if keyed
                .publish_until(&shared, &target.prefix, &mut conn, schedule.due(end_at))
                .await
                .is_err()
            {
                eprintln!("publisher lost its connection");
                return;
            }
            if let Some(board) = shared.board.borrow_mut().as_mut() {
                board.burst_ended(keyed.last_stamp, &keyed.last, counted);
            }
            open = None;
        }
        // A new cycle: its burst begins before its first message.
        let cycle = schedule.cycle(t);
        if cycle >= next_cycle {
            if let Some(board) = shared.board.borrow_mut().as_mut() {
                board.burst_started();
            }
            let measuring = shared.measure_from_ns.get() != u64::MAX;
            open = Some((
                cycle as f64 * schedule.every + schedule.burst_for,
                measuring,
            ));
            next_cycle = cycle + 1;
        }
        if keyed
            .publish_until(&shared, &target.prefix, &mut conn, schedule.due(t))
            .await
            .is_err()
        {
            eprintln!("publisher lost its connection");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: Schedule = Schedule {
        rate: 1000.0,
        every: 2.0,
        burst_for: 0.2,
        factor: 10.0,
    };

    #[test]
    fn a_burst_sends_factor_times_the_rate_then_the_rate_resumes() {
        // 0.1 s into the first burst: 100 × 10.
        assert_eq!(PLAN.due(0.1), 1000);
        // End of the burst: 2000; then 1000/s for 1.8 s.
        assert_eq!(PLAN.due(0.2), 2000);
        assert_eq!(PLAN.due(1.0), 2800);
        // One whole cycle: 2 s × 1000 + 0.2 s × 9000.
        assert_eq!(PLAN.due(2.0), 3800);
        assert_eq!(PLAN.due(2.1), 4800);
        assert_eq!(PLAN.cycle(1.999), 0);
        assert_eq!(PLAN.cycle(2.0), 1);
    }

    #[test]
    fn settings_that_cannot_burst_are_refused() {
        assert!(PLAN.check().is_ok());
        let long = Schedule {
            burst_for: 2.0,
            ..PLAN
        };
        assert!(long.check().is_err());
        let slow = Schedule {
            factor: 0.5,
            ..PLAN
        };
        assert!(slow.check().is_err());
    }
}
