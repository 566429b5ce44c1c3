//! Segment file format pieces other than frames: the 64-byte segment header, the footer
//! frame's payload (written at seal) and the 16-byte trailer that points at the footer, plus
//! segment file naming and listing a shard's segments.
//!
//! No I/O here but that listing (`read_dir`): callers read and write the bytes.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::frame::{u32_at, u64_at};

pub const SEGMENT_MAGIC: [u8; 8] = *b"STRLSEG\x01";
pub const FORMAT_VERSION: u16 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// CRC algorithm id stored in the header: 2 = CRC-32/ISO-HDLC (crc32fast).
pub const CRC_ALG_CRC32_ISO_HDLC: u8 = 2;
pub const TRAILER_BYTES: usize = 16;
pub const TRAILER_MAGIC: u32 = 0x5446_4c53; // "SLFT"
pub const SEGMENT_EXT: &str = "seg";
pub const INDEX_EXT: &str = "tix";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub shard_id: u64,
    pub base_seq: u64,
    pub nonce: u64,
    pub created_micros: i64,
    pub preallocated: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
        b[12] = CRC_ALG_CRC32_ISO_HDLC;
        b[16..24].copy_from_slice(&self.shard_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.base_seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.nonce.to_le_bytes());
        b[40..48].copy_from_slice(&self.created_micros.to_le_bytes());
        b[48..56].copy_from_slice(&self.preallocated.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; SEGMENT_HEADER_BYTES]) -> Result<SegmentHeader, String> {
        if b.iter().all(|&x| x == 0) {
            return Err("segment header is all zero".to_string());
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".to_string());
        }
        let crc = crc32fast::hash(&b[..60]);
        if u32_at(b, 60) != crc {
            return Err("segment header crc mismatch".to_string());
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported segment format version {version}"));
        }
        if b[12] != CRC_ALG_CRC32_ISO_HDLC {
            return Err(format!("unsupported crc algorithm id {}", b[12]));
        }
        Ok(SegmentHeader {
            shard_id: u64_at(b, 16),
            base_seq: u64_at(b, 24),
            nonce: u64_at(b, 32),
            created_micros: u64_at(b, 40) as i64,
            preallocated: u64_at(b, 48),
        })
    }
}

/// A range of damaged, synced data found by recovery and kept in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamagedRange {
    pub offset: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// What a seal records about its segment; `hwm` is cumulative for the whole shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footer {
    /// One past the last sequence in the segment (= next segment's base).
    pub next_seq: u64,
    pub num_records: u64,
    pub min_recv: i64,
    pub max_recv: i64,
    pub min_event: i64,
    pub max_event: i64,
    /// End of the last data frame = offset of the footer frame.
    pub data_end: u64,
    pub damaged: Vec<DamagedRange>,
    /// Per origin: the highest origin sequence stored in this shard up to this segment.
    pub hwm: HashMap<String, u64>,
}

const MAX_FOOTER_ENTRIES: usize = 1 << 20;

impl Footer {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.hwm.len() * 32);
        for v in [self.next_seq, self.num_records] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.min_recv, self.max_recv, self.min_event, self.max_event] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.data_end.to_le_bytes());
        out.extend_from_slice(&(self.damaged.len() as u32).to_le_bytes());
        for d in &self.damaged {
            for v in [d.offset, d.first_seq, d.last_seq] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        let mut origins: Vec<_> = self.hwm.iter().collect();
        origins.sort();
        out.extend_from_slice(&(origins.len() as u32).to_le_bytes());
        for (origin, seq) in origins {
            let name = &origin.as_bytes()[..origin.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(&seq.to_le_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Footer, String> {
        let mut r = Cursor { b, at: 0 };
        let mut f = Footer {
            next_seq: r.u64()?,
            num_records: r.u64()?,
            min_recv: r.u64()? as i64,
            max_recv: r.u64()? as i64,
            min_event: r.u64()? as i64,
            max_event: r.u64()? as i64,
            data_end: r.u64()?,
            ..Footer::default()
        };
        let n = r.u32()? as usize;
        if n > MAX_FOOTER_ENTRIES {
            return Err(format!("footer lists {n} damaged ranges"));
        }
        for _ in 0..n {
            f.damaged.push(DamagedRange {
                offset: r.u64()?,
                first_seq: r.u64()?,
                last_seq: r.u64()?,
            });
        }
        let n = r.u32()? as usize;
        if n > MAX_FOOTER_ENTRIES {
            return Err(format!("footer lists {n} origins"));
        }
        for _ in 0..n {
            let len = r.u16()? as usize;
            let name = r.take(len)?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| "origin in footer is not utf-8".to_string())?;
            let seq = r.u64()?;
            f.hwm.insert(name, seq);
        }
        if r.at != b.len() {
            return Err("footer has trailing bytes".to_string());
        }
        Ok(f)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.at + n > self.b.len() {
            return Err("footer is cut short".to_string());
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32_at(self.take(4)?, 0))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64_at(self.take(8)?, 0))
    }
}

pub fn encode_trailer(footer_offset: u64) -> [u8; TRAILER_BYTES] {
    let mut b = [0u8; TRAILER_BYTES];
    b[0..8].copy_from_slice(&footer_offset.to_le_bytes());
    b[8..12].copy_from_slice(&TRAILER_MAGIC.to_le_bytes());
    let crc = crc32fast::hash(&b[..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The footer frame offset a trailer points at, if the trailer is intact.
pub fn decode_trailer(b: &[u8; TRAILER_BYTES]) -> Option<u64> {
    if u32_at(b, 8) != TRAILER_MAGIC || u32_at(b, 12) != crc32fast::hash(&b[..12]) {
        return None;
    }
    Some(u64_at(b, 0))
}

pub fn segment_file_name(base_seq: u64) -> String {
    format!("{base_seq:020}.{SEGMENT_EXT}")
}

pub fn index_file_name(base_seq: u64) -> String {
    format!("{base_seq:020}.{INDEX_EXT}")
}

/// Parses `<20 digits>.seg`.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Sorted base sequences of the `*.seg` files in `dir`.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_footer_trailer_round_trip() {
        let h = SegmentHeader {
            shard_id: 1,
            base_seq: 42,
            nonce: 9,
            created_micros: -1,
            preallocated: 4096,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        assert!(SegmentHeader::decode(&[0; 64]).is_err());
        let mut f = Footer {
            next_seq: 7,
            data_end: 100,
            ..Footer::default()
        };
        f.hwm.insert("a".into(), 3);
        f.damaged.push(DamagedRange {
            offset: 64,
            first_seq: 1,
            last_seq: 2,
        });
        assert_eq!(Footer::decode(&f.encode()), Ok(f.clone()));
        let enc = f.encode();
        for cut in 0..enc.len() {
            assert!(Footer::decode(&enc[..cut]).is_err());
        }
        assert_eq!(decode_trailer(&encode_trailer(99)), Some(99));
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("42.seg"), None);
    }
}
