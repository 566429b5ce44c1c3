//! Frame-by-frame scanning of one segment through positional reads (`pread`), shared by
//! recovery, readers, the follower, `verify` and the fuzz check.
//!
//! The scanner verifies every frame (magic, header CRC, nonce, sequence continuity, length
//! cap, payload CRC, zero padding) and never maps or modifies the file. After a bad frame it
//! resyncs on the next 8-byte-aligned frame magic whose header validates.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::frame::{pad8, FrameHeader, FRAME_HEADER_BYTES, FRAME_MAGIC, KIND_FOOTER};
use super::segment::{decode_trailer, Footer, SegmentHeader, SEGMENT_HEADER_BYTES, TRAILER_BYTES};

/// Positional reads from a segment's bytes (a file or, in tests, a slice).
pub trait ReadAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn size(&self) -> io::Result<u64>;
    /// The first offset >= `offset` that may hold data, skipping holes and unwritten extents,
    /// with the end of that data region; `None` when nothing follows.
    fn data_region(&self, offset: u64) -> io::Result<Option<(u64, u64)>> {
        let size = self.size()?;
        Ok((offset < size).then_some((offset, size)))
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn data_region(&self, offset: u64) -> io::Result<Option<(u64, u64)>> {
        (**self).data_region(offset)
    }
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn data_region(&self, offset: u64) -> io::Result<Option<(u64, u64)>> {
        crate::store::sys::data_region(self, offset, self.size()?)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= self.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

/// Reads as much of `buf` as the source holds at `offset`; returns the byte count.
pub fn read_full<R: ReadAt + ?Sized>(src: &R, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match src.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads and validates the segment header.
pub fn read_header<R: ReadAt + ?Sized>(src: &R) -> io::Result<Result<SegmentHeader, String>> {
    let mut b = [0u8; SEGMENT_HEADER_BYTES];
    let n = read_full(src, &mut b, 0)?;
    if n < SEGMENT_HEADER_BYTES {
        return Ok(Err(format!(
            "file too short for a segment header ({n} bytes)"
        )));
    }
    Ok(SegmentHeader::decode(&b))
}

/// Reads the footer through the trailer at the end of a sealed segment, without scanning.
pub fn read_footer<R: ReadAt + ?Sized>(src: &R, nonce: u64) -> io::Result<Option<(u64, Footer)>> {
    let size = src.size()?;
    let min = (SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + TRAILER_BYTES) as u64;
    if size < min {
        return Ok(None);
    }
    let mut t = [0u8; TRAILER_BYTES];
    if read_full(src, &mut t, size - TRAILER_BYTES as u64)? < TRAILER_BYTES {
        return Ok(None);
    }
    let Some(offset) = decode_trailer(&t) else {
        return Ok(None);
    };
    if offset < SEGMENT_HEADER_BYTES as u64
        || offset + (FRAME_HEADER_BYTES + TRAILER_BYTES) as u64 > size
    {
        return Ok(None);
    }
    let mut hb = [0u8; FRAME_HEADER_BYTES];
    read_full(src, &mut hb, offset)?;
    let Ok(header) = FrameHeader::decode(&hb, nonce) else {
        return Ok(None);
    };
    if header.kind != KIND_FOOTER || offset + header.frame_bytes() + TRAILER_BYTES as u64 != size {
        return Ok(None);
    }
    let mut payload = vec![0u8; pad8(header.payload_len as usize)];
    read_full(src, &mut payload, offset + FRAME_HEADER_BYTES as u64)?;
    if header.check_payload(&payload).is_err() {
        return Ok(None);
    }
    match Footer::decode(&payload[..header.payload_len as usize]) {
        Ok(f) if f.data_end == offset && f.next_seq == header.first_seq => Ok(Some((offset, f))),
        _ => Ok(None),
    }
}

/// One step of a scan: what `Scanner::next_step` found next in the segment.
#[derive(Debug)]
pub enum ScanStep {
    /// A verified data frame; `payload` excludes padding.
    Frame {
        offset: u64,
        header: FrameHeader,
        payload: Bytes,
    },
    /// The seal: no frames follow.
    Footer { offset: u64, footer: Footer },
    /// A damaged frame (or damaged bytes) at `offset`; the scan continues after it.
    /// `lost` is the sequence range known to be lost, when it is known.
    Corrupt {
        offset: u64,
        reason: String,
        lost: Option<(u64, u64)>,
    },
    /// No valid frame at or after `offset` (zeros, EOF, or a torn or in-flight write).
    End { offset: u64 },
}

pub struct Scanner<R: ReadAt> {
    src: R,
    nonce: u64,
    pos: u64,
    size: u64,
    expected_seq: u64,
    /// Look past an all-zero header for later frames (recovery, verify); readers treat zeros
    /// as the end.
    resync_zeros: bool,
    done: bool,
}

impl<R: ReadAt> Scanner<R> {
    pub fn new(src: R, header: &SegmentHeader, resync_zeros: bool) -> io::Result<Self> {
        let size = src.size()?;
        Ok(Scanner {
            src,
            nonce: header.nonce,
            pos: SEGMENT_HEADER_BYTES as u64,
            size,
            expected_seq: header.base_seq,
            resync_zeros,
            done: false,
        })
    }

    /// Continues a scan at a known frame boundary (followers, index seeks).
    pub fn seek(&mut self, pos: u64, expected_seq: u64) {
        self.pos = pos;
        self.expected_seq = expected_seq;
        self.done = false;
    }

    /// Re-reads the file size (a follower scanning a growing file).
    pub fn refresh_size(&mut self) -> io::Result<()> {
        self.size = self.src.size()?;
        Ok(())
    }

    pub fn source(&self) -> &R {
        &self.src
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn expected_seq(&self) -> u64 {
        self.expected_seq
    }

    pub fn next_step(&mut self) -> io::Result<Option<ScanStep>> {
        if self.done {
            return Ok(None);
        }
        let pos = self.pos;
        let mut hb = [0u8; FRAME_HEADER_BYTES];
        let n = if pos + FRAME_HEADER_BYTES as u64 <= self.size {
            read_full(&self.src, &mut hb, pos)?
        } else {
            0
        };
        if n < FRAME_HEADER_BYTES {
            self.done = true;
            return Ok(Some(ScanStep::End { offset: pos }));
        }
        let zero = hb.iter().all(|&b| b == 0);
        if zero && !self.resync_zeros {
            self.done = true;
            return Ok(Some(ScanStep::End { offset: pos }));
        }
        let header = match FrameHeader::decode(&hb, self.nonce) {
            Ok(h) if h.first_seq < self.expected_seq => Err(format!(
                "stale frame: starts at seq {} but seq {} is expected",
                h.first_seq, self.expected_seq
            )),
            Ok(h) if pos + h.frame_bytes() > self.size => Err(format!(
                "frame of {} bytes runs past the end of the file ({} bytes)",
                h.frame_bytes(),
                self.size
            )),
            other => other,
        };
        let header = match header {
            Ok(h) => h,
            Err(reason) => return self.resync(pos, reason, zero),
        };
        if header.first_seq > self.expected_seq {
            let lost = (self.expected_seq, header.first_seq - 1);
            self.expected_seq = header.first_seq;
            return Ok(Some(ScanStep::Corrupt {
                offset: pos,
                reason: format!("sequence gap: seqs {}..={} are missing", lost.0, lost.1),
                lost: Some(lost),
            }));
        }
        let mut payload = vec![0u8; pad8(header.payload_len as usize)];
        let got = read_full(&self.src, &mut payload, pos + FRAME_HEADER_BYTES as u64)?;
        let next = pos + header.frame_bytes();
        let checked = if got < payload.len() {
            Err("frame cut short by the end of the file".to_string())
        } else {
            header.check_payload(&payload)
        };
        if let Err(reason) = checked {
            self.pos = next;
            let first = self.expected_seq;
            let lost = (header.record_count > 0)
                .then(|| (first, first + u64::from(header.record_count) - 1));
            self.expected_seq = first + u64::from(header.record_count);
            if header.kind == KIND_FOOTER {
                self.done = true;
            }
            return Ok(Some(ScanStep::Corrupt {
                offset: pos,
                reason,
                lost,
            }));
        }
        payload.truncate(header.payload_len as usize);
        if header.kind == KIND_FOOTER {
            self.done = true;
            return Ok(Some(match Footer::decode(&payload) {
                Ok(footer) => ScanStep::Footer {
                    offset: pos,
                    footer,
                },
                Err(reason) => ScanStep::Corrupt {
                    offset: pos,
                    reason: format!("bad footer: {reason}"),
                    lost: None,
                },
            }));
        }
        self.pos = next;
        self.expected_seq += u64::from(header.record_count);
        Ok(Some(ScanStep::Frame {
            offset: pos,
            header,
            payload: Bytes::from(payload),
        }))
    }

    fn resync(&mut self, pos: u64, reason: String, zero: bool) -> io::Result<Option<ScanStep>> {
        match self.find_next_frame(pos + 8)? {
            Some((at, header)) => {
                self.pos = at;
                let lost = (header.first_seq > self.expected_seq)
                    .then(|| (self.expected_seq, header.first_seq - 1));
                self.expected_seq = header.first_seq;
                let reason = if zero {
                    "zeroed bytes before a later valid frame".to_string()
                } else {
                    reason
                };
                Ok(Some(ScanStep::Corrupt {
                    offset: pos,
                    reason,
                    lost,
                }))
            }
            None => {
                self.done = true;
                Ok(Some(ScanStep::End { offset: pos }))
            }
        }
    }

    /// The first 8-aligned offset >= `from` holding a valid frame header of this segment that
    /// continues the sequence (first_seq >= expected) and fits in the file.
    fn find_next_frame(&self, from: u64) -> io::Result<Option<(u64, FrameHeader)>> {
        const CHUNK: usize = 1 << 20;
        let mut buf = vec![0u8; CHUNK + FRAME_HEADER_BYTES];
        let mut at = from.next_multiple_of(8);
        while let Some((data, end)) = self.src.data_region(at)? {
            let mut cur = data.max(at).next_multiple_of(8);
            while cur + FRAME_HEADER_BYTES as u64 <= end.min(self.size) {
                let n = read_full(&self.src, &mut buf, cur)?;
                if n < FRAME_HEADER_BYTES {
                    break;
                }
                let mut i = 0;
                while i + FRAME_HEADER_BYTES <= n && i < CHUNK {
                    if buf[i..i + 4] == FRAME_MAGIC.to_le_bytes() {
                        let hb: &[u8; FRAME_HEADER_BYTES] = buf[i..i + FRAME_HEADER_BYTES]
                            .try_into()
                            .expect("header-sized slice");
                        if let Ok(h) = FrameHeader::decode(hb, self.nonce) {
                            let off = cur + i as u64;
                            if h.first_seq >= self.expected_seq
                                && off + h.frame_bytes() <= self.size
                            {
                                return Ok(Some((off, h)));
                            }
                        }
                    }
                    i += 8;
                }
                cur += i as u64;
            }
            if end <= at {
                break;
            }
            at = end.max(cur);
        }
        Ok(None)
    }
}
