//! The only file in the store with `unsafe`: thin libc wrappers the standard library lacks
//! (fallocate, SEEK_DATA/SEEK_HOLE, flock). Nothing in the store memory-maps files: the writer
//! uses `pwrite` into `fallocate`d space (see `write::active`), readers use `pread`, so a file
//! truncated or deleted by someone else can never raise SIGBUS in this process.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// fallocate(fd, 0, 0, len): reserves real blocks, growing the file to `len`.
pub fn fallocate(file: &File, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: fallocate only reads its integer arguments; the fd is owned by `file`.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) => {
                // Filesystems without fallocate: posix_fallocate writes zeros instead.
                // SAFETY: as above.
                let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
                return if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(rc))
                };
            }
            _ => return Err(err),
        }
    }
}

/// The data region at or after `offset` (skipping holes and unwritten extents) as
/// `(start, end)`, `None` if only holes follow. Falls back to `(offset, size)` where the
/// filesystem cannot tell.
pub fn data_region(file: &File, offset: u64, size: u64) -> io::Result<Option<(u64, u64)>> {
    if offset >= size {
        return Ok(None);
    }
    let Ok(off) = i64::try_from(offset) else {
        return Ok(None);
    };
    // SAFETY: lseek only reads its integer arguments; the fd is owned by `file`. The file
    // position it moves is never used (all reads are positional).
    let data = unsafe { libc::lseek(file.as_raw_fd(), off, libc::SEEK_DATA) };
    if data < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            Some(libc::EINVAL) => Ok(Some((offset, size))),
            _ => Err(err),
        };
    }
    // SAFETY: as above.
    let hole = unsafe { libc::lseek(file.as_raw_fd(), data, libc::SEEK_HOLE) };
    let end = if hole < 0 {
        size
    } else {
        (hole as u64).min(size)
    };
    Ok(Some((data as u64, end)))
}

/// flock(LOCK_EX | LOCK_NB): true if this process now holds the lock.
pub fn try_lock_exclusive(file: &File) -> bool {
    // SAFETY: flock only reads its integer arguments; the fd is owned by `file`.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}
