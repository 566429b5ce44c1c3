//! The sparse time index of a sealed segment (`<base>.tix`): derived data, written at seal,
//! validated whenever it is loaded and rebuilt from the segment when missing, short, stale or
//! corrupt. Entry = (key, first_seq, file_pos) where key is the largest receive time of every
//! frame before `file_pos`, so keys are monotone even when receive times are not.
//!
//! The index never decides what is valid data: readers still verify every frame they read.

use std::fs::File;
use std::io;
use std::path::Path;

use super::frame::{u32_at, u64_at, FrameHeader};
use super::scan::{ReadAt, ScanStep, Scanner};
use super::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};

const INDEX_MAGIC: &[u8; 8] = b"STRLTIX1";
const INDEX_HEADER_BYTES: usize = 32;
const ENTRY_BYTES: usize = 24;
const EVERY_BYTES: u64 = 64 * 1024;
const EVERY_MICROS: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub key: i64,
    pub first_seq: u64,
    pub file_pos: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseIndex {
    pub entries: Vec<IndexEntry>,
    cummax: i64,
    last_time: i64,
}

impl SparseIndex {
    pub fn new() -> SparseIndex {
        SparseIndex {
            entries: Vec::new(),
            cummax: i64::MIN,
            last_time: i64::MIN,
        }
    }

    /// Records a data frame at `pos`.
    pub fn on_frame(&mut self, pos: u64, header: &FrameHeader) {
        let due = match self.entries.last() {
            None => true,
            Some(last) => {
                pos - last.file_pos >= EVERY_BYTES
                    || header.min_recv.saturating_sub(self.last_time) >= EVERY_MICROS
            }
        };
        if due {
            self.entries.push(IndexEntry {
                key: self.cummax,
                first_seq: header.first_seq,
                file_pos: pos,
            });
            self.last_time = header.min_recv;
        }
        self.cummax = self.cummax.max(header.max_recv);
    }

    /// Whether the index says more than "start at the first frame" (it has two entries or
    /// more). A segment whose index does not gets no `.tix` file: a quiet source's small
    /// segment then costs one file, not two.
    pub fn worth_a_file(&self) -> bool {
        self.entries.len() > 1
    }

    /// Where to start reading for records received at or after `since`: (file_pos, first_seq).
    pub fn seek(&self, since: i64) -> Option<(u64, u64)> {
        let n = self.entries.partition_point(|e| e.key < since);
        (n > 0).then(|| (self.entries[n - 1].file_pos, self.entries[n - 1].first_seq))
    }

    pub fn encode(&self, nonce: u64, data_end: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + self.entries.len() * ENTRY_BYTES);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&nonce.to_le_bytes());
        out.extend_from_slice(&data_end.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for e in &self.entries {
            out.extend_from_slice(&e.key.to_le_bytes());
            out.extend_from_slice(&e.first_seq.to_le_bytes());
            out.extend_from_slice(&e.file_pos.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and validates an index file's bytes against its segment.
    pub fn decode(b: &[u8], nonce: u64, data_end: u64) -> Result<SparseIndex, String> {
        if b.len() < INDEX_HEADER_BYTES || &b[..8] != INDEX_MAGIC {
            return Err("bad index magic or short index".to_string());
        }
        let count = u32_at(b, 24) as usize;
        if b.len() != INDEX_HEADER_BYTES + count * ENTRY_BYTES {
            return Err(format!(
                "index size {} does not hold {count} entries",
                b.len()
            ));
        }
        let mut copy = b.to_vec();
        copy[28..32].fill(0);
        if crc32fast::hash(&copy) != u32_at(b, 28) {
            return Err("index crc mismatch".to_string());
        }
        if u64_at(b, 8) != nonce || u64_at(b, 16) != data_end {
            return Err("stale index: nonce or data end differ from the segment".to_string());
        }
        let mut index = SparseIndex::new();
        for i in 0..count {
            let at = INDEX_HEADER_BYTES + i * ENTRY_BYTES;
            let e = IndexEntry {
                key: u64_at(b, at) as i64,
                first_seq: u64_at(b, at + 8),
                file_pos: u64_at(b, at + 16),
            };
            let ok = match index.entries.last() {
                None => e.file_pos == SEGMENT_HEADER_BYTES as u64,
                Some(p) => e.key >= p.key && e.file_pos > p.file_pos && e.first_seq >= p.first_seq,
            };
            if !ok || e.file_pos >= data_end {
                return Err(format!("index entry {i} is out of order or out of range"));
            }
            index.entries.push(e);
        }
        if data_end > SEGMENT_HEADER_BYTES as u64 && index.entries.is_empty() {
            return Err("index is empty but the segment has frames".to_string());
        }
        Ok(index)
    }

    /// Builds the index by scanning a sealed segment's frames.
    pub fn rebuild<R: ReadAt + ?Sized>(src: &R, header: &SegmentHeader) -> io::Result<SparseIndex> {
        let mut index = SparseIndex::new();
        let mut scanner = Scanner::new(src, header, false)?;
        while let Some(item) = scanner.next_step()? {
            match item {
                ScanStep::Frame { offset, header, .. } => index.on_frame(offset, &header),
                ScanStep::Footer { .. } | ScanStep::End { .. } => break,
                ScanStep::Corrupt { .. } => {}
            }
        }
        Ok(index)
    }
}

/// Loads `tix` if valid; otherwise rebuilds it from `seg` and tries to write it back
/// (best effort: a read-only reader still gets a correct in-memory index). Returns the index
/// and whether it had to be rebuilt.
pub fn load_or_rebuild(
    seg: &File,
    header: &SegmentHeader,
    data_end: u64,
    tix: &Path,
) -> io::Result<(SparseIndex, bool)> {
    if let Ok(bytes) = std::fs::read(tix) {
        if let Ok(index) = SparseIndex::decode(&bytes, header.nonce, data_end) {
            return Ok((index, false));
        }
    }
    let index = SparseIndex::rebuild(seg, header)?;
    if index.worth_a_file() {
        let _ = write_index(tix, &index, header.nonce, data_end);
    }
    Ok((index, true))
}

/// Writes an index atomically (temp file + rename); the index is derived, so no sync.
pub fn write_index(tix: &Path, index: &SparseIndex, nonce: u64, data_end: u64) -> io::Result<()> {
    let tmp = tix.with_extension("tix.tmp");
    std::fs::write(&tmp, index.encode(nonce, data_end))?;
    std::fs::rename(&tmp, tix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::frame::{KIND_DATA, NO_MAX_EVENT, NO_MIN_EVENT};

    fn frame(first_seq: u64, min: i64, max: i64) -> FrameHeader {
        FrameHeader {
            kind: KIND_DATA,
            payload_len: 0,
            record_count: 1,
            payload_crc: 0,
            nonce: 1,
            first_seq,
            min_recv: min,
            max_recv: max,
            min_event: NO_MIN_EVENT,
            max_event: NO_MAX_EVENT,
            durable_watermark: 0,
        }
    }

    #[test]
    fn seek_is_conservative_and_validation_catches_damage() {
        let mut index = SparseIndex::new();
        let mut pos = 64;
        for i in 0..10u64 {
            index.on_frame(
                pos,
                &frame(i, i as i64 * 2_000_000, i as i64 * 2_000_000 + 5),
            );
            pos += 100_000;
        }
        assert_eq!(index.entries.len(), 10);
        assert_eq!(index.seek(i64::MIN + 1), Some((64, 0)));
        // Records >= 4_000_000 can only be in frames 2.. (frame 1 max is 2_000_005).
        assert_eq!(index.seek(4_000_000), Some((64 + 200_000, 2)));
        let bytes = index.encode(1, pos);
        assert_eq!(
            SparseIndex::decode(&bytes, 1, pos).unwrap().entries,
            index.entries
        );
        assert!(SparseIndex::decode(&bytes, 2, pos).is_err());
        assert!(SparseIndex::decode(&bytes[..bytes.len() - 1], 1, pos).is_err());
        assert!(SparseIndex::decode(&vec![0; bytes.len()], 1, pos).is_err());
        for i in 0..bytes.len() {
            let mut d = bytes.clone();
            d[i] ^= 0x10;
            assert!(SparseIndex::decode(&d, 1, pos).is_err(), "flip at {i}");
        }
    }
}
