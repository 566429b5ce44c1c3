//! Properties of the RFC 6587 decoder, for the `framing` fuzz target: any chunking of a
//! stream gives exactly the frames (and the error) it gives in one piece, the decoder never
//! buffers more than its bound, and every frame is non-empty and at most the maximum.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::framing::{FrameDecoder, FramingMode};

/// Frames (payload, truncated) of a stream delivered in `chunks`, then EOF, and whether it
/// ended in a framing error. Panics when the decoder buffers more than its bound.
pub fn decode_chunks(chunks: &[&[u8]], max_message_bytes: usize) -> (Vec<(Vec<u8>, bool)>, bool) {
    decode_chunks_in(chunks, max_message_bytes, FramingMode::Auto)
}

/// [`decode_chunks`] with the framings of `mode` only.
pub fn decode_chunks_in(
    chunks: &[&[u8]],
    max_message_bytes: usize,
    mode: FramingMode,
) -> (Vec<(Vec<u8>, bool)>, bool) {
    let mut decoder = FrameDecoder::with_mode(max_message_bytes, mode);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push((frame.payload.to_vec(), frame.truncated)),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
        assert!(
            buf.len() <= decoder.max_buffered_bytes(),
            "decoder keeps {} bytes buffered, bound is {}",
            buf.len(),
            decoder.max_buffered_bytes()
        );
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push((frame.payload.to_vec(), frame.truncated)),
            Ok(None) => return (frames, false),
            Err(_) => return (frames, true),
        }
    }
}

/// `data[0]` picks a small maximum message size (to reach truncation often) and, with its
/// top bit, non-transparent framing only; `data[1]` seeds the chunk sizes; the rest is the
/// stream.
pub fn check(data: &[u8]) {
    let [max_byte, seed, stream @ ..] = data else {
        return;
    };
    let max = 1 + usize::from(*max_byte % 64);
    let mode = if max_byte & 0x80 == 0 {
        FramingMode::Auto
    } else {
        FramingMode::NonTransparent
    };
    let whole = decode_chunks_in(&[stream], max, mode);
    if mode == FramingMode::NonTransparent {
        assert!(!whole.1, "non-transparent framing never fails");
    }
    for (payload, _) in &whole.0 {
        assert!(!payload.is_empty(), "empty frame");
        assert!(
            payload.len() <= max,
            "frame of {} bytes, max {max}",
            payload.len()
        );
    }
    let chunks = split(stream, *seed);
    assert_eq!(
        decode_chunks_in(&chunks, max, mode),
        whole,
        "chunked as {chunks:?}"
    );
    if stream.len() <= 256 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_chunks_in(&bytes, max, mode), whole, "byte by byte");
    }
}

/// Cuts `stream` into chunks of pseudo-random sizes (1 to 32 bytes) derived from `seed`.
fn split(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut chunks = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = 1 + (state % 32) as usize;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}
