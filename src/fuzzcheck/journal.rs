//! Fuzz property for the journal export-format decoder (`POST /upload` bodies): any bytes,
//! cut into any chunks, give the same entries (or the same error) as in one piece; no entry
//! is longer than the limit; decoding never panics; and mapping an entry to fields never
//! panics.

use bytes::BytesMut;

use crate::journal::{ExportDecoder, JournalEntry, JournalError};

/// Small enough that fuzzed inputs reach the truncation path.
const MAX_ENTRY_BYTES: usize = 256;

fn decode(chunks: &[&[u8]]) -> Result<Vec<JournalEntry>, JournalError> {
    let mut decoder = ExportDecoder::new(MAX_ENTRY_BYTES);
    let mut buffer = BytesMut::new();
    let mut entries = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        while let Some(entry) = decoder.decode(&mut buffer)? {
            entries.push(entry);
        }
    }
    entries.extend(decoder.finish()?);
    Ok(entries)
}

/// The first byte picks a chunk size (1..=64); the rest is the body.
pub fn check(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let whole = decode(&[body]);
    let chunk_size = usize::from(selector % 64) + 1;
    let pieces: Vec<&[u8]> = body.chunks(chunk_size).collect();
    let chunked = decode(&pieces);
    match (&whole, &chunked) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "chunking changed the entries"),
        // Error offsets may differ with chunking; the verdict may not.
        (Err(_), Err(_)) => {}
        _ => panic!("chunking changed the verdict: {whole:?} vs {chunked:?}"),
    }
    for entry in whole.iter().flatten() {
        assert!(entry.raw.len() <= MAX_ENTRY_BYTES, "entry over the limit");
        let _ = crate::journal::to_parsed(&entry.raw);
        let _ = crate::journal::event_time(&entry.raw);
        let _ = crate::journal::hostname(&entry.raw);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_hold_the_properties() {
        for sample in [
            &b"\x03A=1\nB=2\n\nC=3\n"[..],
            b"\x01MESSAGE\n\x05\x00\x00\x00\x00\x00\x00\x00hello\n\n",
            b"\x07lower=bad\n\n",
            b"\x02MESSAGE\n\xff\xff\xff\xff\xff\xff\xff\xffxyz",
            b"",
        ] {
            super::check(sample);
        }
    }
}
