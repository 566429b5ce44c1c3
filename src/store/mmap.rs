//! The only place that creates memory maps. The writer maps a segment read-write only after
//! `fallocate` reserved every byte of it and after any recovery truncation, and never
//! truncates a file while its map exists; readers never map (they use `pread`), so a file
//! truncated or deleted by someone else can never raise SIGBUS in this process.

use std::fs::File;
use std::io;

use memmap2::{MmapMut, MmapOptions};

/// Maps the first `len` bytes of `file` read-write. The caller guarantees the file is at
/// least `len` bytes long with all blocks allocated, and that nothing truncates it while the
/// map lives (the writer holds the data directory lock).
pub fn map_segment(file: &File, len: usize) -> io::Result<MmapMut> {
    // SAFETY: the file is fully allocated to `len` bytes (fallocate, not set_len), so page
    // faults never need new blocks (no SIGBUS on ENOSPC); only the writer thread, which owns
    // this map, ever truncates segment files, and it drops the map first; the data directory
    // lock keeps other Starling writers out. Readers use pread and never shrink files.
    unsafe { MmapOptions::new().len(len).map_mut(file) }
}
