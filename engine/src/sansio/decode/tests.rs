//! The decoder's tests: reassembly, violations, what is held, compression.

use super::*;

fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7, 1, 9, 3];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// What the decoder yields, as owned values.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<(u16, String)>),
}

fn feed_all(chunks: &[&[u8]], max: usize) -> Result<Vec<Seen>, FrameError> {
    let mut decoder = Decoder::default();
    let mut seen = Vec::new();
    for chunk in chunks {
        let mut chunk = chunk.to_vec();
        let _ = decoder.feed(&mut chunk, max, |inbound| {
            seen.push(match inbound {
                Inbound::Text(p) => Seen::Text(String::from_utf8(p.to_vec()).unwrap()),
                Inbound::Binary(p) => Seen::Binary(p.to_vec()),
                Inbound::Ping(p) => Seen::Ping(p.to_vec()),
                Inbound::Pong => Seen::Pong,
                Inbound::Close(c) => Seen::Close(c.map(|(code, r)| (code, r.to_owned()))),
            });
            ControlFlow::Continue(())
        })?;
    }
    Ok(seen)
}

#[test]
fn fragments_reassemble_around_interleaved_control_frames() {
    let wire = [
        client_frame(false, 1, b"hel"),
        client_frame(true, 9, b"p"),
        client_frame(false, 0, b"lo "),
        client_frame(true, 0, "wörld".as_bytes()),
    ]
    .concat();
    // Byte by byte and whole: the same messages.
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    for chunks in [bytes, vec![&wire[..]]] {
        assert_eq!(
            feed_all(&chunks, 1024).unwrap(),
            vec![Seen::Ping(b"p".to_vec()), Seen::Text("hello wörld".into())]
        );
    }
}

#[test]
fn violations_map_to_the_right_error() {
    let text = |b: &[u8]| client_frame(true, 1, b);
    assert_eq!(
        feed_all(&[&text(&[0xC3])], 64),
        Err(FrameError::InvalidUtf8)
    );
    let split_utf8 = [
        client_frame(false, 1, &[0xC3]),
        client_frame(true, 0, &[0xA9]),
    ]
    .concat();
    assert_eq!(
        feed_all(&[&split_utf8], 64).unwrap(),
        vec![Seen::Text("é".into())]
    );
    let reassembled_too_big = [
        client_frame(false, 2, &[0; 40]),
        client_frame(true, 0, &[0; 40]),
    ]
    .concat();
    assert!(matches!(
        feed_all(&[&reassembled_too_big], 64),
        Err(FrameError::TooBig { .. })
    ));
    let orphan = client_frame(true, 0, b"x");
    assert!(matches!(
        feed_all(&[&orphan], 64),
        Err(FrameError::Protocol(_))
    ));
    let nested = [client_frame(false, 1, b"a"), client_frame(true, 1, b"b")].concat();
    assert!(matches!(
        feed_all(&[&nested], 64),
        Err(FrameError::Protocol(_))
    ));
    let one_byte_close = client_frame(true, 8, &[3]);
    assert!(matches!(
        feed_all(&[&one_byte_close], 64),
        Err(FrameError::Protocol(_))
    ));
    assert_eq!(
        feed_all(&[&client_frame(true, 8, &[0x03, 0xE9, b'o', b'k'])], 64).unwrap(),
        vec![Seen::Close(Some((1001, "ok".into())))]
    );
    assert_eq!(
        feed_all(&[&client_frame(true, 10, b"")], 64).unwrap(),
        vec![Seen::Pong]
    );
    assert_eq!(
        feed_all(&[&client_frame(true, 2, b"\x00\x01")], 64).unwrap(),
        vec![Seen::Binary(vec![0, 1])]
    );
}

#[test]
fn nothing_is_held_once_a_frame_completes_and_nothing_is_read_after_a_break() {
    let mut decoder = Decoder::default();
    let wire = [client_frame(true, 1, b"one"), client_frame(true, 1, b"two")].concat();
    let mut first = wire[..4].to_vec();
    let flow = decoder.feed(&mut first, 64, |_| ControlFlow::Continue(()));
    assert_eq!(flow, Ok(ControlFlow::Continue(())));
    assert_eq!(decoder.buffered(), 4);
    let mut rest = wire[4..].to_vec();
    let mut texts = 0;
    let flow = decoder
        .feed(&mut rest, 64, |_| {
            texts += 1;
            ControlFlow::Break(())
        })
        .unwrap();
    assert!(flow.is_break());
    assert_eq!(texts, 1);
    assert_eq!(decoder.buffered(), 0);
    assert!(
        decoder.held.is_none(),
        "nothing is kept once nothing is left"
    );
}

fn compressed_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = client_frame(fin, opcode, payload);
    frame[0] |= frame::RSV1;
    frame
}

/// `text` as raw deflate without its `00 00 ff ff` tail.
fn deflated(text: &[u8]) -> Vec<u8> {
    let plain = frame::encode(OpCode::Text, text);
    let compressed = crate::sansio::deflate::Compressor::default()
        .compress_frame(&plain, 0)
        .expect("compressible");
    frame::split_server_frame(&compressed).unwrap().1.to_vec()
}

fn feed_deflate(chunks: &[&[u8]], max: usize) -> Result<Vec<Seen>, FrameError> {
    let mut decoder = Decoder::new(true);
    let mut seen = Vec::new();
    for chunk in chunks {
        let mut chunk = chunk.to_vec();
        let _ = decoder.feed(&mut chunk, max, |inbound| {
            if let Inbound::Text(p) = inbound {
                seen.push(Seen::Text(String::from_utf8(p.to_vec()).unwrap()));
            }
            ControlFlow::Continue(())
        })?;
    }
    Ok(seen)
}

#[test]
fn compressed_messages_inflate_whole_or_fragmented() {
    let text = "{\"subscribe\":[\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]}".repeat(20);
    let body = deflated(text.as_bytes());
    assert!(body.len() < text.len() / 4);
    let whole = compressed_frame(true, 1, &body);
    let (a, b) = body.split_at(body.len() / 2);
    let fragmented = [compressed_frame(false, 1, a), client_frame(true, 0, b)].concat();
    let plain = client_frame(true, 1, b"plain");
    for wire in [whole, fragmented] {
        let wire = [wire, plain.clone()].concat();
        let bytes: Vec<&[u8]> = wire.chunks(3).collect();
        assert_eq!(
            feed_deflate(&bytes, 4096).unwrap(),
            vec![Seen::Text(text.clone()), Seen::Text("plain".into())]
        );
    }
}

#[test]
fn rsv1_is_allowed_only_on_a_negotiated_message_start() {
    let body = deflated(b"hello hello hello");
    let protocol = |r: Result<Vec<Seen>, FrameError>| matches!(r, Err(FrameError::Protocol(_)));
    // Not negotiated.
    assert!(protocol(feed_all(&[&compressed_frame(true, 1, &body)], 64)));
    // On a continuation, a ping, a close.
    let on_continuation = [
        client_frame(false, 1, b"a"),
        compressed_frame(true, 0, b"b"),
    ]
    .concat();
    assert!(protocol(feed_deflate(&[&on_continuation], 64)));
    assert!(protocol(feed_deflate(
        &[&compressed_frame(true, 9, b"")],
        64
    )));
    assert!(protocol(feed_deflate(
        &[&compressed_frame(true, 8, b"")],
        64
    )));
    // Not deflate data.
    assert!(protocol(feed_deflate(
        &[&compressed_frame(true, 1, &[0xff; 9])],
        64
    )));
    assert_eq!(
        feed_deflate(&[&compressed_frame(true, 1, &body)], 64).unwrap(),
        vec![Seen::Text("hello hello hello".into())]
    );
}

#[test]
fn a_bomb_is_refused_at_the_message_limit() {
    let body = deflated(&vec![b'a'; 1 << 20]);
    assert!(body.len() < 2048, "{}", body.len());
    assert!(matches!(
        feed_deflate(&[&compressed_frame(true, 1, &body)], 64 << 10),
        Err(FrameError::TooBig { limit: 65536, .. })
    ));
    let invalid_utf8 = deflated(&[0xC3; 300]);
    assert_eq!(
        feed_deflate(&[&compressed_frame(true, 1, &invalid_utf8)], 1024),
        Err(FrameError::InvalidUtf8)
    );
}
