//! The file-operations seam: the few calls whose failure the store must survive (create a
//! shard directory, write its `shard.meta`, create a segment file, allocate, write a frame,
//! make a written range durable, sync a file, rename a file into place, sync a directory).
//! Production uses `RealFileOps`; tests inject failures through their own implementation or
//! through `FaultPlan`, which the binary also installs when `STARLING_STORE_FAULTS` is set
//! (end-to-end failure tests; never set it in production).
//!
//! Nothing here decides policy: callers treat any error as poisoning the segment.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// rename(2) of a file written beside its final name (`shard.meta`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
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

/// Set to a fault plan (see `FaultPlan::parse`) to make the store's file operations fail on
/// purpose: for end-to-end failure tests only.
pub const STORE_FAULTS_ENV: &str = "STARLING_STORE_FAULTS";

/// The kinds of call a `FaultPlan` can fail, by the names its text uses.
const FAULT_KINDS: [&str; 9] = [
    "mkdir", "meta", "create", "allocate", "write", "sync", "syncdata", "syncdir", "rename",
];

/// Real file operations, except that for each kind named in the plan, after `skip`
/// successful calls of that kind the next `count` calls fail with EIO (a failed range sync
/// also loses the range: see `sync_written`).
#[derive(Debug)]
pub struct FaultPlan {
    /// Per kind (index in `FAULT_KINDS`): (skip, count); count 0 fails nothing.
    plan: [(u64, u64); 9],
    calls: [AtomicU64; 9],
}

impl FaultPlan {
    /// Parses `kind:skip:count[,kind:skip:count...]`, e.g. `sync:3:1,rename:0:1`: the 4th
    /// range sync fails, and so does the first rename. Kinds: mkdir, meta (shard.meta
    /// write), create (segment), allocate, write (frame pwrite), sync (fdatasync of written
    /// frames), syncdata (fdatasync of a header, seal or shard.meta), syncdir, rename.
    pub fn parse(text: &str) -> Result<FaultPlan, String> {
        let mut plan = [(0, 0); 9];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let fields: Vec<&str> = part.split(':').collect();
            let [kind, skip, count] = fields[..] else {
                return Err(format!("fault {part:?}: expected kind:skip:count"));
            };
            let i = FAULT_KINDS
                .iter()
                .position(|k| *k == kind)
                .ok_or_else(|| format!("fault {part:?}: unknown kind {kind:?}"))?;
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|e| format!("fault {part:?}: {v:?}: {e}"))
            };
            plan[i] = (number(skip)?, number(count)?);
        }
        Ok(FaultPlan {
            plan,
            calls: Default::default(),
        })
    }

    /// The plan in `STARLING_STORE_FAULTS`, if set (an invalid plan is an error).
    pub fn from_env() -> Result<Option<FaultPlan>, String> {
        match std::env::var(STORE_FAULTS_ENV) {
            Ok(text) => FaultPlan::parse(&text).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn check(&self, kind: &str) -> io::Result<()> {
        let i = FAULT_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        let (skip, count) = self.plan[i];
        if count == 0 {
            return Ok(());
        }
        let n = self.calls[i].fetch_add(1, Ordering::SeqCst);
        if n >= skip && n - skip < count {
            tracing::warn!(
                kind,
                call = n + 1,
                "injected store fault (STARLING_STORE_FAULTS)"
            );
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

impl FileOps for FaultPlan {
    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        self.check("mkdir")?;
        RealFileOps.create_dir(dir)
    }
    fn write_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        self.check("meta")?;
        RealFileOps.write_file(path, contents)
    }
    fn create_file(&self, path: &Path) -> io::Result<File> {
        self.check("create")?;
        RealFileOps.create_file(path)
    }
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        self.check("allocate")?;
        RealFileOps.allocate(file, len)
    }
    /// An injected failure also zeroes the range: after a failed `fdatasync` those pages may
    /// never reach the disk (the kernel marks them clean), which a store that re-reads the
    /// page cache as truth would not notice with real files alone.
    fn sync_written(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        if let Err(e) = self.check("sync") {
            file.write_all_at(&vec![0; len as usize], offset)?;
            return Err(e);
        }
        RealFileOps.sync_written(file, offset, len)
    }
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check("write")?;
        RealFileOps.write_at(file, buf, offset)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.check("syncdata")?;
        RealFileOps.sync_data(file)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check("syncdir")?;
        RealFileOps.sync_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check("rename")?;
        RealFileOps.rename(from, to)
    }
}
