//! The highest of this node's sequences that a master acknowledged receiving from this data
//! directory, kept there (`forward.acked`) across restarts. It serves two purposes:
//!
//! - Without it a restarted node counts its whole history as unforwarded until it reaches a
//!   master again: the spool gate would hold ingest back (the backlog estimate is far past
//!   `spool-max-bytes` on a node with a long history) and retention would keep every segment,
//!   for as long as no master is reachable.
//! - It tells a data directory that forwarded before from a new one under a reused node id
//!   (`StoreSpool::with_forwarded_before`): when the master holds more of the origin than the
//!   store, the first lost its newest records and the second must renumber its own.
//!
//! The file is read once at start and replaced (write, then rename) when the mark moves. It is
//! not synced: a missing or unreadable file is read as "never forwarded", and a stale one as
//! less acknowledged than there was, the cautious readings. A master's handshake still
//! replaces the mark the gate and retention use with that master's high-water mark, so a
//! master that lacks records another one acknowledged (the other side of a partition, say)
//! still gets them.

use std::io;
use std::path::{Path, PathBuf};

/// File name in the data directory (a plain file: the store only reads directories).
pub(super) const FILE: &str = "forward.acked";

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The mark saved for `origin`, if a readable one is there.
pub(super) fn load(data_dir: &Path, origin: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path(data_dir)).ok()?;
    let (seq, saved_origin) = text.strip_suffix('\n')?.split_once(' ')?;
    (saved_origin == origin).then(|| seq.parse().ok()).flatten()
}

/// Replaces the saved mark: `SEQ ORIGIN\n` in a temporary file renamed over the old one.
pub(super) fn save(data_dir: &Path, origin: &str, seq: u64) -> io::Result<()> {
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, format!("{seq} {origin}\n"))?;
    std::fs::rename(&tmp, path(data_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_mark_reads_back_only_for_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "node a"), None, "no file");
        save(dir.path(), "node a", 41).unwrap();
        save(dir.path(), "node a", 42).unwrap();
        assert_eq!(load(dir.path(), "node a"), Some(42));
        assert_eq!(load(dir.path(), "node"), None, "another node id");
        for garbage in ["", "42", "x node a\n", "42 node a"] {
            std::fs::write(dir.path().join(FILE), garbage).unwrap();
            assert_eq!(load(dir.path(), "node a"), None, "{garbage:?}");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE], "the temporary file is gone");
    }
}
