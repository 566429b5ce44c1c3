//! The file-operations seam: the few calls whose failure the store must survive (allocate,
//! flush a mapped range, sync a file, sync a directory). Production uses `RealFileOps`; tests
//! inject failures through their own implementation.
//!
//! Nothing here decides policy: callers treat any error as poisoning the segment.

use std::fs::File;
use std::io;
use std::path::Path;

use memmap2::MmapMut;

pub trait FileOps: Send + Sync + std::fmt::Debug {
    /// Reserves `len` bytes of real blocks (no sparse holes) for `file`, growing its size.
    fn allocate(&self, file: &File, len: u64) -> io::Result<()>;
    /// Makes `map[offset..offset + len]` (a map of `file`) durable (msync MS_SYNC).
    fn flush_map(&self, file: &File, map: &MmapMut, offset: usize, len: usize) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// fsync of a directory, after creating, renaming or removing entries in it.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct RealFileOps;

impl FileOps for RealFileOps {
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        super::mmap::fallocate(file, len)
    }

    fn flush_map(&self, _file: &File, map: &MmapMut, offset: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        map.flush_range(offset, len)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// True when `err` means the filesystem is out of space (or quota).
pub fn is_no_space(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
