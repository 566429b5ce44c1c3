//! The file-operations seam: the few calls whose failure the store must survive (create a
//! shard directory, write its `shard.meta`, create a segment file, allocate, write a frame,
//! make a written range durable, sync a file, sync a directory). Production uses
//! `RealFileOps`; tests inject failures through their own implementation.
//!
//! Nothing here decides policy: callers treat any error as poisoning the segment.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub trait FileOps: Send + Sync + std::fmt::Debug {
    /// mkdir -p of a shard directory.
    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    /// Writes a small whole file (the `shard.meta` before its rename).
    fn write_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        std::fs::write(path, contents)
    }
    /// Creates a new segment file (fails if it exists), open for reading and writing.
    fn create_file(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
    }
    /// Reserves `len` bytes of real blocks (no sparse holes) for `file`, growing its size.
    fn allocate(&self, file: &File, len: u64) -> io::Result<()>;
    /// Makes `file[offset..offset + len]`, written with `pwrite`, durable (fdatasync; the range
    /// tells test implementations what became durable).
    fn sync_written(&self, file: &File, offset: u64, len: u64) -> io::Result<()>;
    /// pwrite of all of `buf` at `offset` (a frame's payload or header).
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }
    /// fdatasync.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// fsync of a directory, after creating, renaming or removing entries in it.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct RealFileOps;

impl FileOps for RealFileOps {
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        crate::store::sys::fallocate(file, len)
    }

    fn sync_written(&self, file: &File, _offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        file.sync_data()
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
