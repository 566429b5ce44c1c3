//! Frame format: the 80-byte frame header (magic, header CRC over every other header field,
//! lengths, nonce, sequence, time bounds, durable watermark) and its validation.
//!
//! This module owns byte layout and checks only: it does no I/O and never trusts a length
//! before checking it against `MAX_PAYLOAD_BYTES`.

/// Marks the start of every frame; readers resync on it after damage.
pub const FRAME_MAGIC: u32 = 0x5246_4c53; // "SLFR" little-endian
pub const FRAME_HEADER_BYTES: usize = 80;
/// Hard cap on one frame's payload, checked before any length is used. It holds the largest
/// record there can be: a message of the 16 MiB limit plus its own fields (origin and peer
/// names of up to 64 KiB each).
pub const MAX_PAYLOAD_BYTES: u32 = 17 * 1024 * 1024;
/// The writer closes a frame once its payload reaches this size.
pub const FRAME_TARGET_BYTES: usize = 1024 * 1024;
/// Frames start 8-byte aligned; payloads are zero-padded to 8 bytes.
pub const FRAME_ALIGN: usize = 8;

pub const KIND_DATA: u8 = 1;
pub const KIND_FOOTER: u8 = 2;

/// "No event time in this frame" bounds.
pub const NO_MIN_EVENT: i64 = i64::MAX;
pub const NO_MAX_EVENT: i64 = i64::MIN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u8,
    pub payload_len: u32,
    pub record_count: u32,
    pub payload_crc: u32,
    pub nonce: u64,
    pub first_seq: u64,
    pub min_recv: i64,
    pub max_recv: i64,
    pub min_event: i64,
    pub max_event: i64,
    /// File offset known to be durable (synced) when this frame was written.
    pub durable_watermark: u64,
}

/// Rounds `n` up to the frame alignment.
pub fn pad8(n: usize) -> usize {
    (n + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

impl FrameHeader {
    /// Bytes the whole frame takes on disk (header, payload, padding).
    pub fn frame_bytes(&self) -> u64 {
        (FRAME_HEADER_BYTES + pad8(self.payload_len as usize)) as u64
    }

    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut b = [0u8; FRAME_HEADER_BYTES];
        b[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        b[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        b[12] = self.kind;
        b[16..20].copy_from_slice(&self.record_count.to_le_bytes());
        b[20..24].copy_from_slice(&self.payload_crc.to_le_bytes());
        b[24..32].copy_from_slice(&self.nonce.to_le_bytes());
        b[32..40].copy_from_slice(&self.first_seq.to_le_bytes());
        b[40..48].copy_from_slice(&self.min_recv.to_le_bytes());
        b[48..56].copy_from_slice(&self.max_recv.to_le_bytes());
        b[56..64].copy_from_slice(&self.min_event.to_le_bytes());
        b[64..72].copy_from_slice(&self.max_event.to_le_bytes());
        b[72..80].copy_from_slice(&self.durable_watermark.to_le_bytes());
        let crc = crc32fast::hash(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Checks magic, header CRC, kind, the payload cap and the nonce. The payload CRC is
    /// checked separately by `check_payload`.
    pub fn decode(b: &[u8; FRAME_HEADER_BYTES], nonce: u64) -> Result<FrameHeader, String> {
        let header = FrameHeader::decode_any_nonce(b)?;
        if header.nonce != nonce {
            return Err(format!(
                "frame nonce {:#x} does not match segment nonce {nonce:#x}",
                header.nonce
            ));
        }
        Ok(header)
    }

    /// As `decode`, without the nonce check.
    pub fn decode_any_nonce(b: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, String> {
        let magic = u32_at(b, 0);
        if magic != FRAME_MAGIC {
            return Err(format!("bad frame magic {magic:#010x}"));
        }
        let stored_crc = u32_at(b, 4);
        let crc = crc32fast::hash(&b[8..]);
        if stored_crc != crc {
            return Err(format!(
                "frame header crc mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
            ));
        }
        let header = FrameHeader {
            payload_len: u32_at(b, 8),
            kind: b[12],
            record_count: u32_at(b, 16),
            payload_crc: u32_at(b, 20),
            nonce: u64_at(b, 24),
            first_seq: u64_at(b, 32),
            min_recv: u64_at(b, 40) as i64,
            max_recv: u64_at(b, 48) as i64,
            min_event: u64_at(b, 56) as i64,
            max_event: u64_at(b, 64) as i64,
            durable_watermark: u64_at(b, 72),
        };
        if header.kind != KIND_DATA && header.kind != KIND_FOOTER {
            return Err(format!("unknown frame kind {}", header.kind));
        }
        if header.payload_len > MAX_PAYLOAD_BYTES {
            return Err(format!(
                "frame payload length {} exceeds the cap of {MAX_PAYLOAD_BYTES}",
                header.payload_len
            ));
        }
        if b[13..16] != [0, 0, 0] {
            return Err("reserved frame header bytes are not zero".to_string());
        }
        Ok(header)
    }

    /// Checks the payload CRC and that the padding after it is zero. `padded` is the payload
    /// followed by its padding (`pad8(payload_len)` bytes).
    pub fn check_payload(&self, padded: &[u8]) -> Result<(), String> {
        let len = self.payload_len as usize;
        let crc = crc32fast::hash(&padded[..len]);
        if crc != self.payload_crc {
            return Err(format!(
                "frame payload crc mismatch (stored {:#010x}, computed {crc:#010x})",
                self.payload_crc
            ));
        }
        if padded[len..].iter().any(|&b| b != 0) {
            return Err("frame padding is not zero".to_string());
        }
        Ok(())
    }
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FrameHeader {
        FrameHeader {
            kind: KIND_DATA,
            payload_len: 13,
            record_count: 2,
            payload_crc: crc32fast::hash(b"hello, world!"),
            nonce: 77,
            first_seq: 5,
            min_recv: 1,
            max_recv: 2,
            min_event: NO_MIN_EVENT,
            max_event: NO_MAX_EVENT,
            durable_watermark: 64,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample();
        assert_eq!(FrameHeader::decode(&h.encode(), 77), Ok(h));
        assert!(FrameHeader::decode(&h.encode(), 78).is_err());
        assert_eq!(h.frame_bytes(), 80 + 16);
    }

    #[test]
    fn every_header_bit_flip_is_detected() {
        let bytes = sample().encode();
        for bit in 0..FRAME_HEADER_BYTES * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(FrameHeader::decode(&b, 77).is_err(), "bit {bit} undetected");
        }
    }

    #[test]
    fn garbage_lengths_are_refused_or_bounded() {
        for len in [0u32, 7, u32::MAX] {
            let mut h = sample();
            h.payload_len = len;
            let decoded = FrameHeader::decode(&h.encode(), 77);
            if len > MAX_PAYLOAD_BYTES {
                assert!(decoded.is_err());
            } else {
                let d = decoded.unwrap();
                let mut padded = vec![0u8; pad8(len as usize)];
                padded[..len.min(13) as usize]
                    .copy_from_slice(&b"hello, world!"[..len.min(13) as usize]);
                assert!(d.check_payload(&padded).is_err());
            }
        }
    }

    #[test]
    fn payload_checks_crc_and_padding() {
        let h = sample();
        let mut padded = b"hello, world!\0\0\0".to_vec();
        assert!(h.check_payload(&padded).is_ok());
        padded[15] = 1;
        assert!(h.check_payload(&padded).is_err());
        padded[15] = 0;
        padded[0] ^= 4;
        assert!(h.check_payload(&padded).is_err());
    }
}
