//! The active (unsealed) segment of one shard on the writer side: creation (fallocate, header,
//! sync), appending records to the open frame's buffer, writing each closed frame with
//! `pwrite` (payload first, header last), `fdatasync` (the durability point) and sealing.
//!
//! Frames are written with `pwrite` into space `fallocate` reserved, not through a writable
//! memory map: writing back pages dirtied through a shared map write-protects every page again
//! (`folio_mkclean`), one TLB-shootdown IPI per 4 KiB page, which measured as a third of the
//! writer's CPU (a writable map would also turn ENOSPC into SIGBUS and report I/O errors
//! only through `msync`). Readers read the same page cache with `pread`.
//!
//! Owned by the writer thread only. Any error returned here poisons the segment: the caller
//! must cut it back to its last good end (`discard_unsynced`) and recover the shard from
//! what is on disk. After a failed `fdatasync` the page cache is not the disk (the kernel
//! may have marked the failed pages clean), so nothing written after the last good point is
//! ever read back as stored.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::fileops::{is_no_space, FileOps};
use super::seal::write_seal;
use crate::record::Record;
use crate::store::format::codec;
use crate::store::format::frame::{
    pad8, FrameHeader, FRAME_HEADER_BYTES, FRAME_TARGET_BYTES, KIND_DATA, NO_MAX_EVENT,
    NO_MIN_EVENT,
};
use crate::store::format::index::SparseIndex;
use crate::store::format::segment::{
    segment_file_name, Footer, SegmentHeader, SEGMENT_HEADER_BYTES,
};

struct OpenFrame {
    start: usize,
    len: usize,
    count: u32,
    first_seq: u64,
    min_recv: i64,
    max_recv: i64,
    min_event: i64,
    max_event: i64,
}

pub enum CreateError {
    NoSpace(io::Error),
    Io(io::Error),
}

/// What happened to one record.
pub enum Appended {
    /// Stored with this shard sequence.
    Stored(u64),
    /// The segment is full: seal it and start a new one.
    Full,
    /// Growing the allocation failed with ENOSPC: retry later (nothing was written).
    NoSpace(io::Error),
    /// Growing the allocation failed otherwise: the segment is poisoned.
    Failed(io::Error),
}

/// First allocation of a segment; later steps double up to `MAX_STEP`. Quiet shards thus
/// reserve little disk while a busy shard grows its segment in large steps.
const FIRST_STEP: usize = 1 << 20;
const MAX_STEP: usize = 16 << 20;
/// A frame buffer larger than this is released once its frame is written, so that shards that
/// saw one burst do not each keep a large buffer.
const KEEP_BUFFER_BYTES: usize = 64 << 10;

pub struct ActiveSegment {
    pub path: PathBuf,
    file: File,
    pub header: SegmentHeader,
    capacity: usize,
    /// Bytes reserved by fallocate (the file size); writes never go beyond it.
    allocated: usize,
    /// Payload of the open frame (encoded records), written out when the frame closes.
    buf: Vec<u8>,
    data_end: usize,
    synced_end: usize,
    /// `synced_end` at the writer's last good point (every shard synced: `mark_good`). A
    /// failure anywhere cuts the file back to it, so the shards on disk always hold a prefix
    /// of what was written, in write order.
    good_end: usize,
    pub opened_at: Instant,
    frame: Option<OpenFrame>,
    index: SparseIndex,
    footer: Footer,
}

impl ActiveSegment {
    /// Creates `<base_seq>.seg` with its first allocation step reserved by fallocate (at most
    /// `capacity`, the segment's size limit), writes and syncs its header. The directory
    /// entry is the caller's to sync (the writer syncs new entries once per group commit).
    pub fn create(
        dir: &Path,
        shard_id: u64,
        base_seq: u64,
        capacity: usize,
        now_micros: i64,
        ops: &dyn FileOps,
    ) -> Result<ActiveSegment, CreateError> {
        let path = dir.join(segment_file_name(base_seq));
        let io = CreateError::Io;
        let file = ops.create_file(&path).map_err(io)?;
        let allocated = FIRST_STEP.min(capacity);
        if let Err(e) = ops.allocate(&file, allocated as u64) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(if is_no_space(&e) {
                CreateError::NoSpace(e)
            } else {
                CreateError::Io(e)
            });
        }
        let header = SegmentHeader {
            shard_id,
            base_seq,
            nonce: rand::random(),
            created_micros: now_micros,
            preallocated: allocated as u64,
        };
        let setup = (|| {
            file.write_all_at(&header.encode(), 0)?;
            ops.sync_data(&file)
        })();
        match setup {
            Ok(()) => {}
            Err(e) => {
                drop(file);
                let _ = std::fs::remove_file(&path);
                return Err(CreateError::Io(e));
            }
        }
        Ok(ActiveSegment {
            path,
            file,
            header,
            capacity,
            allocated,
            buf: Vec::new(),
            data_end: SEGMENT_HEADER_BYTES,
            synced_end: SEGMENT_HEADER_BYTES,
            good_end: SEGMENT_HEADER_BYTES,
            opened_at: Instant::now(),
            frame: None,
            index: SparseIndex::new(),
            footer: Footer {
                next_seq: base_seq,
                min_recv: i64::MAX,
                max_recv: i64::MIN,
                min_event: NO_MIN_EVENT,
                max_event: NO_MAX_EVENT,
                ..Footer::default()
            },
        })
    }

    /// Smallest capacity that holds one record of `encoded_len` bytes.
    pub fn min_capacity(encoded_len: usize) -> usize {
        SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + pad8(encoded_len)
    }

    pub fn next_seq(&self) -> u64 {
        self.frame
            .as_ref()
            .map_or(self.footer.next_seq, |f| f.first_seq + u64::from(f.count))
    }

    pub fn is_empty(&self) -> bool {
        self.next_seq() == self.header.base_seq
    }

    /// The writer reached a good point (every shard's written data synced): what is synced
    /// now is what a later failure cuts back to.
    pub fn mark_good(&mut self) {
        self.good_end = self.synced_end;
    }

    /// After a failed write or sync (of this segment or any other): cuts the file back to the
    /// last good point and closes it. Bytes after it may exist only in the page cache (a
    /// failed `fdatasync` leaves them there, marked clean) and are never read as stored; the
    /// caller then recovers the shard from what is left. An error means the file could not
    /// be cut: the shard must not be trusted.
    pub fn discard_unsynced(self) -> io::Result<()> {
        self.file.set_len(self.good_end as u64)
    }

    /// Reserved bytes of the file.
    pub fn allocated(&self) -> u64 {
        self.allocated as u64
    }

    /// Appends one record (to the open frame; it reaches the file when the frame closes).
    pub fn append(&mut self, record: &Record, encoded_len: usize, ops: &dyn FileOps) -> Appended {
        if let Some(f) = &self.frame {
            if f.len + encoded_len > FRAME_TARGET_BYTES {
                if let Err(e) = self.close_frame(ops) {
                    return Appended::Failed(e);
                }
            }
        }
        let start = self.frame.as_ref().map_or(self.data_end, |f| f.start);
        let len = self.frame.as_ref().map_or(0, |f| f.len);
        let need = start + FRAME_HEADER_BYTES + pad8(len + encoded_len);
        if need > self.capacity {
            return match self.close_frame(ops) {
                Ok(()) => Appended::Full,
                Err(e) => Appended::Failed(e),
            };
        }
        if need > self.allocated {
            let grown = (self.allocated + self.allocated.min(MAX_STEP))
                .max(need)
                .min(self.capacity);
            if let Err(e) = ops.allocate(&self.file, grown as u64) {
                return if is_no_space(&e) {
                    Appended::NoSpace(e)
                } else {
                    Appended::Failed(e)
                };
            }
            self.allocated = grown;
        }
        let next_seq = self.next_seq();
        let frame = self.frame.get_or_insert(OpenFrame {
            start,
            len: 0,
            count: 0,
            first_seq: next_seq,
            min_recv: i64::MAX,
            max_recv: i64::MIN,
            min_event: NO_MIN_EVENT,
            max_event: NO_MAX_EVENT,
        });
        let at = self.buf.len();
        self.buf.resize(at + encoded_len, 0);
        codec::encode_into(record, &mut self.buf[at..]);
        frame.len += encoded_len;
        frame.count += 1;
        frame.min_recv = frame.min_recv.min(record.received_at_micros);
        frame.max_recv = frame.max_recv.max(record.received_at_micros);
        if let Some(ev) = record.event_time {
            frame.min_event = frame.min_event.min(ev.unix_micros);
            frame.max_event = frame.max_event.max(ev.unix_micros);
        }
        Appended::Stored(next_seq)
    }

    /// Finishes the open frame: writes its payload with the zero padding, then its header
    /// (written last, so a concurrent reader never sees a valid header before its payload).
    /// An error poisons the segment.
    pub fn close_frame(&mut self, ops: &dyn FileOps) -> io::Result<()> {
        let Some(f) = self.frame.take() else {
            return Ok(());
        };
        let payload_start = f.start + FRAME_HEADER_BYTES;
        let end = payload_start + pad8(f.len);
        debug_assert_eq!(self.buf.len(), f.len);
        let payload_crc = crc32fast::hash(&self.buf);
        self.buf.resize(pad8(f.len), 0);
        let written = ops.write_at(&self.file, &self.buf, payload_start as u64);
        self.buf.clear();
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        written?;
        let header = FrameHeader {
            kind: KIND_DATA,
            payload_len: f.len as u32,
            record_count: f.count,
            payload_crc,
            nonce: self.header.nonce,
            first_seq: f.first_seq,
            min_recv: f.min_recv,
            max_recv: f.max_recv,
            min_event: f.min_event,
            max_event: f.max_event,
            durable_watermark: self.synced_end as u64,
        };
        ops.write_at(&self.file, &header.encode(), f.start as u64)?;
        self.index.on_frame(f.start as u64, &header);
        let ft = &mut self.footer;
        ft.num_records += u64::from(f.count);
        ft.next_seq = f.first_seq + u64::from(f.count);
        ft.min_recv = ft.min_recv.min(f.min_recv);
        ft.max_recv = ft.max_recv.max(f.max_recv);
        ft.min_event = ft.min_event.min(f.min_event);
        ft.max_event = ft.max_event.max(f.max_event);
        self.data_end = end;
        Ok(())
    }

    /// Closes the open frame and makes everything written durable.
    pub fn sync(&mut self, ops: &dyn FileOps) -> io::Result<()> {
        self.close_frame(ops)?;
        if self.data_end > self.synced_end {
            ops.sync_written(
                &self.file,
                self.synced_end as u64,
                (self.data_end - self.synced_end) as u64,
            )?;
            self.synced_end = self.data_end;
        }
        Ok(())
    }

    /// Syncs, writes the footer (carrying the shard's cumulative `hwm`), trims
    /// the preallocation, syncs file and directory, writes the index. Returns the next seq.
    /// On failure the segment comes back, for the caller to `discard_unsynced`.
    pub fn seal(
        mut self,
        hwm: &HashMap<String, u64>,
        ops: &dyn FileOps,
    ) -> Result<u64, (io::Error, Box<ActiveSegment>)> {
        if let Err(e) = self.sync(ops) {
            return Err((e, Box::new(self)));
        }
        let mut footer = self.footer.clone();
        footer.data_end = self.data_end as u64;
        footer.hwm = hwm.clone();
        let dir = self.path.parent().unwrap_or(Path::new("."));
        match write_seal(&self.file, dir, &self.header, &footer, &self.index, ops) {
            Ok(()) => Ok(footer.next_seq),
            Err(e) => Err((e, Box::new(self))),
        }
    }
}
