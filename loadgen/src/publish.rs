//! Publisher tasks: open loop, paced by the clock, over `/ws/publish` or
//! HTTP; what the server answers (refusals only) is read and counted.
//!
//! Owned by the loadgen's single thread, like every task.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::net::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::refusal::{Side, ERROR_FRAME};
use crate::state::Shared;
use crate::tasks::{push_u64, Target, TopicPicker};
use crate::ws::{self, parse_u64};

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
    let pad = market_text(payload.saturating_sub(28).max(1));
    let mut sink = match via {
        Via::WebSocket => match publish_connection(&shared, &target).await {
            Some(conn) => Sink::Ws(conn),
            None => return,
        },
        Via::Http => match crate::net::connect(target.nodes.publisher(), None).await {
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

enum Sink {
    Ws(ws::Conn),
    Http(Stream, Vec<u8>),
}

/// Connects a publisher to `/ws/publish`; a refused upgrade is a publish
/// refusal, told once and reported.
pub async fn publish_connection(shared: &Shared, target: &Target) -> Option<ws::Conn> {
    // With several --urls, every publisher goes to the first (nodes.rs).
    let server = target.nodes.publisher();
    match ws::connect(server, None, "/ws/publish", &target.api_key).await {
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
            0x1 if frame.payload.starts_with(ERROR_FRAME) => publish_refused(shared, frame.payload),
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
    stream: &mut Stream,
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

/// `len` bytes of quote-like text ("AAPL 187.42 1200;MSFT …") with varied
/// digits: it compresses about as well as real market data does, where a run
/// of one letter would flatter permessage-deflate.
pub fn market_text(len: usize) -> String {
    const SYMBOLS: [&str; 8] = [
        "AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM",
    ];
    let mut out = String::with_capacity(len + 32);
    let mut state: u32 = 0x9E37_79B9;
    let mut i = 0;
    while out.len() < len {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let price = 100 + (state >> 8) % 400;
        let cents = (state >> 4) % 100;
        let size = 100 * (1 + (state >> 20) % 50);
        out.push_str(&format!(
            "{} {price}.{cents:02} {size};",
            SYMBOLS[i % SYMBOLS.len()]
        ));
        i += 1;
    }
    out.truncate(len);
    out
}
