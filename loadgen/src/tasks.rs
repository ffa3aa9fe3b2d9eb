//! Subscriber tasks, and what publishers share with them: the target and
//! the topic picker (publishers are `publish.rs` and `burst.rs`).
//!
//! Owned by the loadgen's single thread, like every task.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::event::{event_body, on_event, Subscription};
use crate::nodes::Nodes;
use crate::refusal::{Side, ERROR_FRAME};
use crate::state::Shared;
use crate::ws;

/// How a run reaches the server: its nodes (publishers to the first,
/// subscribers round-robin), key and channel prefix.
pub struct Target {
    pub nodes: Nodes,
    pub api_key: String,
    pub prefix: String,
}

const HEARTBEAT: &[u8] = br#"{"type":"heartbeat""#;
const ACK: &[u8] = br#"{"type":"ack""#;

/// One subscriber: connect, subscribe, read until stopped. With `reconnect`,
/// it drops its connection after a while and comes back with replay.
pub async fn subscriber(
    shared: Rc<Shared>,
    target: Rc<Target>,
    source: Option<IpAddr>,
    id: usize,
    topics: Vec<usize>,
    reconnect: Option<Duration>,
) {
    let names: Vec<String> = topics
        .iter()
        .map(|t| format!("{}{t}", target.prefix))
        .collect();
    let mut subs: Vec<Subscription> = topics.iter().map(|&t| Subscription::new(t)).collect();
    let mut first = true;
    loop {
        Shared::bump(&shared.connect_attempts, 1);
        let replay = if first { "false" } else { "true" };
        let path = format!(
            "/ws/telemetry?clientId=lg-{id}&channels={}&replay={replay}",
            names.join(",")
        );
        let server = target.nodes.subscriber(id);
        let mut conn = match ws::connect(server, source, &path, &target.api_key).await {
            Ok(conn) => conn,
            Err(e) => {
                shared.fail(e.to_string());
                return;
            }
        };
        let _open = shared.opened();
        // A first connection counts once its subscription is acknowledged:
        // only then does the server owe it every message published.
        let mut awaiting_ack = first;
        if !first {
            Shared::bump(&shared.reconnects, 1);
        }
        let rejoined = !first;
        first = false;
        let deadline = reconnect.map(|d| Instant::now() + jitter(d, id));
        let mut after_reconnect = vec![rejoined; subs.len()];
        for sub in &mut subs {
            sub.conn_seq = None;
        }
        let mut last_heartbeat: Option<Instant> = None;
        loop {
            let ready = tokio::select! {
                ready = conn.ready() => ready,
                () = shared.stopped() => return,
                () = sleep_until(deadline) => break,
            };
            match ready {
                Ok(true) => {}
                _ => {
                    if !shared.is_stopping() {
                        Shared::bump(&shared.unexpected_closes, 1);
                    }
                    return;
                }
            }
            let mut reply_heartbeat = false;
            while let Some(frame) = conn.next_frame() {
                match frame.opcode {
                    0x1 => {
                        let payload = frame.payload;
                        if let Some((skipped, rest)) = event_body(payload) {
                            let gaps = &mut after_reconnect;
                            on_event(&shared, &target, id, &mut subs, gaps, skipped, rest);
                        } else if payload.starts_with(HEARTBEAT) {
                            reply_heartbeat = true;
                        } else if awaiting_ack && payload.starts_with(ACK) {
                            awaiting_ack = false;
                            Shared::bump(&shared.connected, 1);
                            // Only what the server holds is owed to this client.
                            let accepted = shared.refusals.borrow_mut().on_ack(&names, payload);
                            let held: Vec<usize> = topics
                                .iter()
                                .zip(accepted)
                                .filter_map(|(&t, ok)| ok.then_some(t))
                                .collect();
                            if let Some(node) =
                                shared.nodes.borrow_mut().get_mut(target.nodes.node_of(id))
                            {
                                node.subscribers += 1;
                            }
                            let mut per_topic = shared.subscribers.borrow_mut();
                            for &t in &held {
                                per_topic[t] += 1;
                            }
                            if let Some(board) = shared.board.borrow_mut().as_mut() {
                                board.join(id, &held);
                            }
                        } else if payload.starts_with(ERROR_FRAME) {
                            Shared::bump(&shared.error_frames, 1);
                            let refusal = shared
                                .refusals
                                .borrow_mut()
                                .on_error(Side::Subscribe, payload);
                            if let Some(line) = refusal {
                                eprintln!("{line}");
                            }
                        }
                    }
                    0x8 => {
                        if !shared.is_stopping() {
                            Shared::bump(&shared.unexpected_closes, 1);
                        }
                        return;
                    }
                    _ => {}
                }
            }
            // Answer the server's ticks, not its answers to ours.
            let due = last_heartbeat.is_none_or(|at| at.elapsed() >= Duration::from_secs(5));
            if reply_heartbeat && due {
                last_heartbeat = Some(Instant::now());
                if conn.send_text(br#"{"action":"heartbeat"}"#).await.is_err() {
                    return;
                }
            }
        }
        // Reconnect: drop this connection and come back with replay.
        drop(conn);
    }
}

fn jitter(base: Duration, id: usize) -> Duration {
    base + Duration::from_millis((id as u64 * 7919) % (base.as_millis() as u64 + 1))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// How publishers choose topics: a wheel of topic groups, round-robin within each.
pub struct TopicPicker {
    wheel: Vec<usize>,
    groups: Vec<Vec<usize>>,
    next: Vec<usize>,
    turn: usize,
}

impl TopicPicker {
    /// `groups` of topics with integer `weights` (e.g. 5/3/2 for 50/30/20%).
    pub fn new(groups: Vec<Vec<usize>>, weights: &[usize], offset: usize) -> Self {
        let wheel = weights
            .iter()
            .enumerate()
            .flat_map(|(g, &w)| std::iter::repeat_n(g, w))
            .collect();
        let next = groups.iter().map(|g| offset % g.len().max(1)).collect();
        Self {
            wheel,
            groups,
            next,
            turn: offset,
        }
    }

    pub fn pick(&mut self) -> usize {
        let group = self.wheel[self.turn % self.wheel.len()];
        self.turn += 1;
        let list = &self.groups[group];
        let topic = list[self.next[group] % list.len()];
        self.next[group] += 1;
        topic
    }
}

/// Appends the decimal digits of `n` without allocating.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_written_in_place() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            let mut out = b"x".to_vec();
            push_u64(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn the_picker_follows_its_weights_and_rotates_within_groups() {
        let mut picker = TopicPicker::new(vec![vec![0, 1], vec![2], vec![3]], &[5, 3, 2], 0);
        let picks: Vec<usize> = (0..10).map(|_| picker.pick()).collect();
        assert_eq!(picks.iter().filter(|&&t| t <= 1).count(), 5);
        assert_eq!(picks.iter().filter(|&&t| t == 2).count(), 3);
        assert_eq!(picks.iter().filter(|&&t| t == 3).count(), 2);
        assert_eq!(&picks[..2], &[0, 1]);
    }
}
