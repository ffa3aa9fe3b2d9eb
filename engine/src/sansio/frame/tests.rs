//! Unit tests of `frame.rs`.

use super::*;

fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[test]
fn server_frame_headers_use_the_shortest_length_form() {
    for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
        let frame = encode(OpCode::Text, &vec![b'x'; len]);
        assert_eq!(frame.len(), header_len + len, "payload {len}");
        assert_eq!(frame[0], 0x81);
    }
    let frame = encode(OpCode::Text, b"hi");
    assert_eq!(&frame[..], &[0x81, 2, b'h', b'i']);
}

#[test]
fn close_frame_carries_code_and_truncated_reason() {
    let frame = encode_close(4401, "VIOLATED_POLICY");
    assert_eq!(frame[0], 0x88);
    assert_eq!(frame[1] as usize, 2 + 15);
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 4401);
    let long = "é".repeat(100);
    let frame = encode_close(1000, &long);
    assert!(frame[1] <= 125);
    assert!(std::str::from_utf8(&frame[4..]).is_ok());
}

#[test]
fn parses_and_unmasks_frames_of_every_length_form() {
    for len in [0usize, 5, 125, 126, 1000, 70_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut wire = client_frame(true, 1, &payload, [1, 2, 3, 4]);
        let parsed = parse_client_frame(&mut wire, 1 << 20).unwrap().unwrap();
        assert_eq!(parsed.opcode, OpCode::Text);
        assert!(parsed.fin);
        assert_eq!(
            &wire[parsed.payload_start..parsed.payload_end],
            &payload[..]
        );
        assert_eq!(parsed.consumed(), wire.len());
    }
}

#[test]
fn partial_frames_ask_for_more_bytes() {
    let wire = client_frame(true, 1, &[7u8; 300], [9, 8, 7, 6]);
    for cut in 0..wire.len() {
        let mut part = wire[..cut].to_vec();
        assert_eq!(
            parse_client_frame(&mut part, 1024),
            Ok(None),
            "cut at {cut}"
        );
    }
}

#[test]
fn refuses_unmasked_reserved_and_oversized_frames() {
    let mut unmasked = vec![0x81, 0x02, b'h', b'i'];
    assert!(matches!(
        parse_client_frame(&mut unmasked, 1024),
        Err(FrameError::Protocol(_))
    ));
    let mut rsv = client_frame(true, 1, b"x", [0; 4]);
    rsv[0] |= 0x20;
    assert!(matches!(
        parse_client_frame(&mut rsv, 1024),
        Err(FrameError::Protocol(_))
    ));
    let mut big = client_frame(true, 2, &[0u8; 2000], [1; 4]);
    // Refused from the header alone, before the payload arrives.
    assert_eq!(
        parse_client_frame(&mut big[..8], 1024),
        Err(FrameError::TooBig {
            len: 2000,
            limit: 1024
        })
    );
    let mut fragmented_ping = client_frame(false, 9, b"", [0; 4]);
    assert!(parse_client_frame(&mut fragmented_ping, 1024).is_err());
    let mut bad_opcode = client_frame(true, 3, b"", [0; 4]);
    assert!(parse_client_frame(&mut bad_opcode, 1024).is_err());
}

#[test]
fn refuses_non_minimal_and_top_bit_lengths() {
    // 5 bytes announced in the 16-bit form.
    let mut wire = vec![0x81, 0x80 | 126, 0, 5, 0, 0, 0, 0];
    wire.extend_from_slice(b"hello");
    assert_eq!(
        parse_client_frame(&mut wire, 1024),
        Err(FrameError::Protocol("non-minimal length encoding"))
    );
    // 300 bytes announced in the 64-bit form.
    let mut wire = vec![0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 1, 44, 0, 0, 0, 0];
    assert_eq!(
        parse_client_frame(&mut wire, 1 << 20),
        Err(FrameError::Protocol("non-minimal length encoding"))
    );
    let mut wire = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        parse_client_frame(&mut wire, usize::MAX),
        Err(FrameError::Protocol("64-bit length with its top bit set"))
    );
    // The shortest forms still parse.
    let mut ok = client_frame(true, 1, &[b'x'; 126], [0; 4]);
    assert!(parse_client_frame(&mut ok, 1024).unwrap().is_some());
}

#[test]
fn close_payloads_are_checked_as_rfc_6455_says() {
    assert_eq!(parse_close_payload(b""), Ok(None));
    assert_eq!(
        parse_close_payload(&[0x03, 0xE8, b'b', b'y', b'e']),
        Ok(Some((1000, "bye")))
    );
    assert!(matches!(
        parse_close_payload(&[0x03]),
        Err(FrameError::Protocol(_))
    ));
    for code in [
        0u16,
        999,
        1004,
        1005,
        1006,
        1015,
        1016,
        2000,
        2999,
        5000,
        u16::MAX,
    ] {
        assert!(
            matches!(
                parse_close_payload(&code.to_be_bytes()),
                Err(FrameError::Protocol(_))
            ),
            "{code}"
        );
    }
    for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4000, 4999] {
        assert_eq!(
            parse_close_payload(&code.to_be_bytes()),
            Ok(Some((code, "")))
        );
    }
    assert_eq!(
        parse_close_payload(&[0x03, 0xE8, 0xFF, 0xFE]),
        Err(FrameError::InvalidUtf8)
    );
}

/// A fixed-seed xorshift generator: randomized tests that replay exactly.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn arbitrary_bytes_never_panic_and_frames_stay_in_bounds() {
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let valid = client_frame(true, 1, br#"{"action":"heartbeat"}"#, [3, 1, 4, 1]);
    for round in 0..200_000 {
        let mut buf: Vec<u8> = if round % 2 == 0 {
            // Pure noise of random length.
            let len = (xorshift(&mut seed) % 40) as usize;
            (0..len).map(|_| xorshift(&mut seed) as u8).collect()
        } else {
            // A valid frame with a few bytes flipped or cut.
            let mut b = valid.clone();
            for _ in 0..=(xorshift(&mut seed) % 3) {
                let at = (xorshift(&mut seed) as usize) % b.len();
                b[at] ^= xorshift(&mut seed) as u8;
            }
            b.truncate((xorshift(&mut seed) as usize) % (b.len() + 1));
            b
        };
        let len = buf.len();
        if let Ok(Some(frame)) = parse_client_frame(&mut buf, 1024) {
            assert!(frame.payload_start <= frame.payload_end && frame.payload_end <= len);
            assert!(frame.payload_end - frame.payload_start <= 1024);
        }
    }
}

#[test]
fn unmask_matches_bytewise_xor_at_every_length() {
    let mask = [0xA1, 0x22, 0x37, 0x4F];
    for len in 0..40 {
        let data: Vec<u8> = (0..len as u8).collect();
        let mut fast = data.clone();
        unmask(&mut fast, mask);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(fast, slow);
    }
}
