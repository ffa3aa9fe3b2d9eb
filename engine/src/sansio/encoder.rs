//! A shard's encoding work: how many frames it encoded and compressed, by
//! format, and the compressor it reuses for permessage-deflate.
//!
//! Owned by one shard thread (beside its live-frame slots) and handed to
//! [`crate::Message::frame_counted`], which counts here only when its call
//! is the one that encodes or compresses — so the counts, summed over the
//! shards, are once per message, format and frame kind. Sans-IO.

use bytes::Bytes;

use crate::sansio::deflate::{Compressor, DeflateCounts};
use crate::sansio::format::FormatId;
use crate::sansio::frame::split_server_frame;

/// Counts and the compressor of one shard. Owned by one shard thread.
/// [`Encoder::default`] counts nothing (it has no room for any format).
#[derive(Debug, Default)]
pub struct Encoder {
    encodings: Vec<u64>,
    deflate: Vec<DeflateCounts>,
    compressor: Compressor,
}

impl Encoder {
    /// Counting for `formats` formats.
    pub fn new(formats: usize) -> Self {
        Self {
            encodings: vec![0; formats],
            deflate: vec![DeflateCounts::default(); formats],
            compressor: Compressor::default(),
        }
    }

    /// Messages encoded, by format index.
    pub fn encodings(&self) -> &[u64] {
        &self.encodings
    }

    /// Compressions performed and their bytes, by format index.
    pub fn deflate(&self) -> &[DeflateCounts] {
        &self.deflate
    }

    /// Counts one encoding in `format`.
    pub(crate) fn count_encoding(&mut self, format: FormatId) {
        if let Some(n) = self.encodings.get_mut(format.index()) {
            *n += 1;
        }
    }

    /// The frame to send compressed clients for `plain` in `format`: `plain`
    /// compressed, or `plain` itself when its payload is below `min_size`
    /// or does not shrink. A compression is counted when one is attempted.
    pub(crate) fn compress(&mut self, format: FormatId, plain: &Bytes, min_size: usize) -> Bytes {
        let Some((_, payload)) = split_server_frame(plain) else {
            return plain.clone();
        };
        let size = payload.len();
        if size < min_size {
            return plain.clone();
        }
        let frame = self.compressor.compress_frame(plain, min_size);
        if let Some(counts) = self.deflate.get_mut(format.index()) {
            counts.messages += 1;
            counts.bytes_in += size as u64;
            let out = frame
                .as_ref()
                .and_then(|f| split_server_frame(f))
                .map_or(size, |(_, body)| body.len());
            counts.bytes_out += out as u64;
        }
        frame.unwrap_or_else(|| plain.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::sansio::format::{Formats, FrameKind, WireFormat};
    use crate::sansio::frame::{encode, OpCode, RSV1};
    use crate::sansio::ids::{Epoch, TopicId};
    use crate::sansio::message::{Message, Stamp};

    /// Frames a message as its data, as text.
    struct Echo;

    impl WireFormat for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn encode_event(&self, msg: &Message, _: FrameKind) -> Bytes {
            encode(OpCode::Text, &msg.data)
        }
        fn heartbeat(&self, _: SystemTime) -> Option<Bytes> {
            None
        }
    }

    fn message(data: String) -> Message {
        let topic = TopicId::new(0, 0);
        let epoch = Epoch::from_u64(1);
        Message::new(topic, "t".into(), epoch, 1, None, data.into(), Stamp::now())
    }

    #[test]
    fn a_message_is_compressed_once_for_every_compressed_subscriber() {
        let mut formats = Formats::default();
        let id = formats.register(Arc::new(Echo)).unwrap();
        formats.set_deflate_min_size(256);
        let deflated = id.variant(FrameKind::Live).deflated_if(true);
        let mut encoders = [Encoder::new(1), Encoder::new(1)];
        let big = message(format!("{{\"pad\":\"{}\"}}", "xy".repeat(300)));
        let frames: Vec<Bytes> = (0..6)
            .map(|i| big.frame_counted(deflated, &formats, &mut encoders[i % 2]))
            .collect();
        assert!(frames.iter().all(|f| *f == frames[0]));
        assert_eq!(frames[0][0], 0x80 | RSV1 | 0x1);
        let plain = big.frame(id.variant(FrameKind::Live), &formats);
        assert_eq!(
            crate::sansio::deflate::plain_frame(&frames[0]).unwrap(),
            plain
        );
        // Once over both "shards", with its bytes; the plain frame once too.
        let sum = |f: fn(&Encoder) -> u64| encoders.iter().map(f).sum::<u64>();
        assert_eq!(sum(|e| e.deflate()[0].messages), 1);
        assert_eq!(sum(|e| e.encodings()[0]), 1);
        assert_eq!(sum(|e| e.deflate()[0].bytes_in), big.data.len() as u64);
        let out = sum(|e| e.deflate()[0].bytes_out);
        assert!(out > 0 && out < 100, "{out}");
        // Below the threshold: the plain frame, nothing compressed.
        let small = message("{\"n\":1}".into());
        let frame = small.frame_counted(deflated, &formats, &mut encoders[0]);
        assert_eq!(frame, small.frame(id.variant(FrameKind::Live), &formats));
        assert_eq!(encoders[0].deflate()[0].messages, 1);
    }
}
