//! Fuzz property for the forwarding protocol decoder: any bytes, fed to `ForwardCodec` whole
//! or in chunks, never panic, decode to the same messages however they are chunked, and every
//! decoded message survives an encode/decode round trip.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::forward::protocol::{ForwardCodec, Message};

/// Frame limit used by the check (small, so garbage lengths are exercised).
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Decodes `data` in `chunk_len`-byte pieces: the messages, and whether decoding failed.
fn decode_chunked(data: &[u8], chunk_len: usize) -> (Vec<Message>, bool) {
    let mut codec = ForwardCodec::new(MAX_FRAME_BYTES);
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for chunk in data.chunks(chunk_len.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(message)) => decoded.push(message),
                Ok(None) => break,
                Err(_) => return (decoded, true),
            }
        }
    }
    (decoded, false)
}

/// Panics only if a property fails.
pub fn check(data: &[u8]) {
    let whole = decode_chunked(data, data.len());
    let chunk_len = data.first().map_or(1, |first| usize::from(first % 13) + 1);
    assert_eq!(
        whole,
        decode_chunked(data, chunk_len),
        "chunking changed the decoding"
    );
    for message in whole.0 {
        let mut buf = BytesMut::new();
        ForwardCodec::new(MAX_FRAME_BYTES)
            .encode(message.clone(), &mut buf)
            .expect("a decoded message encodes");
        let again = ForwardCodec::new(MAX_FRAME_BYTES)
            .decode(&mut buf)
            .expect("re-decodes");
        assert_eq!(again, Some(message), "round trip changed the message");
        assert!(buf.is_empty(), "round trip left bytes behind");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The committed seeds hold the properties, and the well-formed ones decode completely.
    #[test]
    fn seeds_hold_the_properties() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/forward");
        let mut num_seeds = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            check(&data);
            let (messages, failed) = decode_chunked(&data, data.len());
            let garbage = path.ends_with("garbage-length");
            assert_eq!(failed, garbage, "{}", path.display());
            assert_eq!(messages.is_empty(), garbage, "{}", path.display());
            num_seeds += 1;
        }
        assert!(num_seeds >= 4, "seeds in {}", dir.display());
    }
}
