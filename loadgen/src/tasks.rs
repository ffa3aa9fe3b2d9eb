//! Subscriber and publisher tasks.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::event::{event_body, on_event, Subscription};
use crate::refusal::Side;
use crate::state::Shared;
use crate::ws::{self, parse_u64};

/// How a run reaches the server.
pub struct Target {
    pub server: SocketAddr,
    pub api_key: String,
    pub prefix: String,
}

const HEARTBEAT: &[u8] = br#"{"type":"heartbeat""#;
const ERROR: &[u8] = br#"{"type":"error""#;
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
        let mut conn = match ws::connect(target.server, source, &path, &target.api_key).await {
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
                            let mut per_topic = shared.subscribers.borrow_mut();
                            for &t in &held {
                                per_topic[t] += 1;
                            }
                            if let Some(board) = shared.board.borrow_mut().as_mut() {
                                board.join(id, &held);
                            }
                        } else if payload.starts_with(ERROR) {
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

/// How a publisher sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via {
    WebSocket,
    Http,
}

/// One open-loop publisher sending `share` of the total rate, paced by the clock.
pub async fn publisher(
    shared: Rc<Shared>,
    target: Rc<Target>,
    via: Via,
    share: f64,
    payload: usize,
    mut picker: TopicPicker,
) {
    let pad = "x".repeat(payload.saturating_sub(28).max(1));
    let mut sink = match via {
        Via::WebSocket => match publish_connection(&shared, &target).await {
            Some(conn) => Sink::Ws(conn),
            None => return,
        },
        Via::Http => match TcpStream::connect(target.server).await {
            Ok(stream) => Sink::Http(stream, Vec::with_capacity(4096)),
            Err(e) => {
                eprintln!("publisher cannot connect: {e}");
                return;
            }
        },
    };
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut rate = shared.rate.get() * share;
    let mut since = Instant::now();
    let mut sent_since = 0u64;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut text = Vec::with_capacity(payload + 96);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            ready = replies(&mut sink) => {
                if !ready || !read_publish_replies(&shared, &mut sink) {
                    eprintln!("publisher lost its connection");
                    return;
                }
                continue;
            }
            () = shared.stopped() => return,
        }
        let now_rate = shared.rate.get() * share;
        if now_rate != rate {
            rate = now_rate;
            since = Instant::now();
            sent_since = 0;
        }
        let due = (rate * since.elapsed().as_secs_f64()) as u64;
        let mut count = due.saturating_sub(sent_since);
        // Never queue more than 50 ms of traffic at once: past that we are
        // behind, and the skipped messages are reported, not sent late.
        let cap = ((rate * 0.05) as u64).max(1);
        if count > cap {
            Shared::bump(&shared.publish_lag, count - cap);
            sent_since += count - cap;
            count = cap;
        }
        if count == 0 {
            continue;
        }
        out.clear();
        {
            let mut published = shared.published.borrow_mut();
            for _ in 0..count {
                let topic = picker.pick();
                text.clear();
                let t = shared.now_ns();
                text.extend_from_slice(b"{\"action\":\"publish\",\"channel\":\"");
                text.extend_from_slice(target.prefix.as_bytes());
                push_u64(&mut text, topic as u64);
                text.extend_from_slice(b"\",\"data\":{\"t\":");
                push_u64(&mut text, t);
                text.extend_from_slice(b",\"p\":\"");
                text.extend_from_slice(pad.as_bytes());
                text.extend_from_slice(b"\"}}");
                match &mut sink {
                    Sink::Ws(_) => ws::encode_text(&mut out, &text),
                    Sink::Http(..) => {
                        // {"channel":…,"data":…}: drop the action field.
                        let body = &text[20..];
                        let body = [b"{", body].concat();
                        out.extend_from_slice(
                        format!(
                            "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            target.api_key,
                            body.len()
                        )
                        .as_bytes(),
                    );
                        out.extend_from_slice(&body);
                    }
                }
                published[topic] += 1;
            }
        }
        sent_since += count;
        let ok = match &mut sink {
            Sink::Ws(conn) => conn.stream.write_all(&out).await.is_ok(),
            Sink::Http(stream, buf) => http_roundtrips(&shared, stream, buf, &out, count)
                .await
                .is_ok(),
        };
        if !ok {
            eprintln!("publisher lost its connection");
            return;
        }
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

enum Sink {
    Ws(ws::Conn),
    Http(TcpStream, Vec<u8>),
}

/// Connects a publisher to `/ws/publish`; a refused upgrade is a publish
/// refusal, told once and reported.
pub async fn publish_connection(shared: &Shared, target: &Target) -> Option<ws::Conn> {
    match ws::connect(target.server, None, "/ws/publish", &target.api_key).await {
        Ok(conn) => Some(conn),
        Err(e) => {
            let message = format!("publisher cannot connect: {e}");
            let told = shared
                .refusals
                .borrow_mut()
                .record(Side::Publish, "HANDSHAKE", &message);
            eprintln!("{}", told.unwrap_or(message));
            None
        }
    }
}

/// Counts a publish the server refused (an `error` frame or an HTTP error
/// body), telling the first of each code on stderr.
pub fn publish_refused(shared: &Shared, payload: &[u8]) {
    Shared::bump(&shared.publish_errors, 1);
    if let Some(line) = shared
        .refusals
        .borrow_mut()
        .on_error(Side::Publish, payload)
    {
        eprintln!("{line}");
    }
}

/// Resolves when a WebSocket publisher has frames to read (`false`: the
/// connection ended); never for HTTP, whose answers are read with each batch.
async fn replies(sink: &mut Sink) -> bool {
    match sink {
        Sink::Ws(conn) => matches!(conn.ready().await, Ok(true)),
        Sink::Http(..) => std::future::pending().await,
    }
}

/// Reads what the server sent a WebSocket publisher: refusals are counted,
/// heartbeats need no answer (the publisher is never idle). `false` on a close.
fn read_publish_replies(shared: &Shared, sink: &mut Sink) -> bool {
    let Sink::Ws(conn) = sink else {
        return true;
    };
    while let Some(frame) = conn.next_frame() {
        match frame.opcode {
            0x1 if frame.payload.starts_with(ERROR) => publish_refused(shared, frame.payload),
            0x8 => return false,
            _ => {}
        }
    }
    true
}

/// Writes `count` pipelined requests and reads `count` responses; error
/// answers are publish refusals.
async fn http_roundtrips(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    out: &[u8],
    count: u64,
) -> std::io::Result<()> {
    stream.write_all(out).await?;
    let mut done = 0;
    while done < count {
        // Parse complete responses from the front of the buffer.
        while let Some(end) = ws::find(buf, b"\r\n\r\n") {
            let head = &buf[..end];
            let len = ws::find(head, b"content-length: ")
                .and_then(|at| parse_u64(&head[at + 16..]))
                .unwrap_or(0) as usize;
            if buf.len() < end + 4 + len {
                break;
            }
            if !buf.starts_with(b"HTTP/1.1 2") {
                publish_refused(shared, &buf[end + 4..end + 4 + len]);
            }
            buf.drain(..end + 4 + len);
            done += 1;
        }
        if done < count && stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
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
