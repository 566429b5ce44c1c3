//! Writing a seal: the footer frame, the trailer, trimming the file to its data, syncing the
//! file, and writing the derived time index (none for a segment it would not help, see
//! `SparseIndex::worth_a_file`). The shard directory is not synced: the index is a cache that
//! readers verify and rebuild, and the segment's own entry is durable before its seal (the
//! writer syncs new entries before it seals; recovery seals files it found on disk). This
//! keeps a seal at one `fdatasync`, which is what evicting idle or least recently used shards
//! costs per segment. Used by the writer when a segment rolls and by recovery when it closes
//! a scanned tail.
//!
//! Callers must have dropped any map of the file first: sealing shrinks the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::fileops::FileOps;
use crate::store::format::frame::{pad8, FrameHeader, FRAME_HEADER_BYTES, KIND_FOOTER};
use crate::store::format::index::{write_index, SparseIndex};
use crate::store::format::segment::{encode_trailer, index_file_name, Footer, SegmentHeader};

pub fn write_seal(
    file: &File,
    shard_dir: &Path,
    header: &SegmentHeader,
    footer: &Footer,
    index: &SparseIndex,
    ops: &dyn FileOps,
) -> io::Result<()> {
    let payload = footer.encode();
    let frame = FrameHeader {
        kind: KIND_FOOTER,
        payload_len: payload.len() as u32,
        record_count: 0,
        payload_crc: crc32fast::hash(&payload),
        nonce: header.nonce,
        first_seq: footer.next_seq,
        min_recv: footer.min_recv,
        max_recv: footer.max_recv,
        min_event: footer.min_event,
        max_event: footer.max_event,
        durable_watermark: footer.data_end,
    };
    let mut bytes = Vec::with_capacity(FRAME_HEADER_BYTES + pad8(payload.len()) + 16);
    bytes.extend_from_slice(&frame.encode());
    bytes.extend_from_slice(&payload);
    bytes.resize(FRAME_HEADER_BYTES + pad8(payload.len()), 0);
    bytes.extend_from_slice(&encode_trailer(footer.data_end));
    file.set_len(footer.data_end)?;
    file.write_all_at(&bytes, footer.data_end)?;
    ops.sync_data(file)?;
    if index.worth_a_file() {
        let _ = write_index(
            &shard_dir.join(index_file_name(header.base_seq)),
            index,
            header.nonce,
            footer.data_end,
        );
    }
    Ok(())
}
