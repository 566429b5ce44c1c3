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
//! The file is read once at start (`AckedMarkFile::open`) and replaced (write, then rename)
//! when the mark moves (`AckedMarkFile::keep_saved`, which follows `progress` and saves at
//! most once per `SAVE_INTERVAL`, and once more when it stops). It is not synced: a missing
//! or unreadable file is read as "never forwarded", and a stale one as less acknowledged
//! than there was, the cautious readings. A master's handshake still
//! replaces the mark the gate and retention use with that master's high-water mark, so a
//! master that lacks records another one acknowledged (the other side of a partition, say)
//! still gets them.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;

/// File name in the data directory (a plain file: the store only reads directories).
pub const FILE: &str = "forward.acked";
/// The file is replaced at most this often while the mark moves.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The mark saved in one data directory for one node id.
#[derive(Debug)]
pub struct AckedMarkFile {
    data_dir: PathBuf,
    origin: String,
    /// The mark last read or saved.
    saved: Option<u64>,
    /// The last save failed (a failure is logged once per run of failures).
    failing: bool,
}

impl AckedMarkFile {
    /// Reads the mark saved for `origin` in `data_dir`, if a readable one is there.
    pub fn open(data_dir: &Path, origin: &str) -> AckedMarkFile {
        AckedMarkFile {
            data_dir: data_dir.to_path_buf(),
            origin: origin.to_string(),
            saved: load(data_dir, origin),
            failing: false,
        }
    }

    /// What a master acknowledged receiving from this data directory before this start.
    pub fn saved(&self) -> Option<u64> {
        self.saved
    }

    /// Saves `Progress::sent_acked` whenever it moved, at most once per `SAVE_INTERVAL`,
    /// until `stop` fires or the progress is gone; then once more, so a clean shutdown keeps
    /// the latest mark.
    pub async fn keep_saved(
        mut self,
        mut progress: watch::Receiver<Progress>,
        stop: CancellationToken,
    ) {
        loop {
            let sent_acked = progress.borrow_and_update().sent_acked;
            self.save_if_moved(sent_acked);
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = progress.changed() => if changed.is_err() { break },
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(SAVE_INTERVAL) => {}
            }
        }
        let sent_acked = progress.borrow().sent_acked;
        self.save_if_moved(sent_acked);
    }

    fn save_if_moved(&mut self, acknowledged: u64) {
        if acknowledged == 0 || self.saved == Some(acknowledged) {
            return;
        }
        match save(&self.data_dir, &self.origin, acknowledged) {
            Ok(()) => {
                self.saved = Some(acknowledged);
                self.failing = false;
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(%error, file = FILE, "cannot save the acknowledged mark");
                }
                self.failing = true;
            }
        }
    }
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The mark saved for `origin`, if a readable one is there.
fn load(data_dir: &Path, origin: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path(data_dir)).ok()?;
    let (seq, saved_origin) = text.strip_suffix('\n')?.split_once(' ')?;
    (saved_origin == origin).then(|| seq.parse().ok()).flatten()
}

/// Replaces the saved mark: `SEQ ORIGIN\n` in a temporary file renamed over the old one.
fn save(data_dir: &Path, origin: &str, seq: u64) -> io::Result<()> {
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

    #[tokio::test]
    async fn the_file_follows_the_progress_and_keeps_the_last_mark_at_stop() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), "node a", 7).unwrap();
        let file = AckedMarkFile::open(dir.path(), "node a");
        assert_eq!(file.saved(), Some(7));
        let (tx, rx) = watch::channel(Progress {
            sent_acked: 7,
            ..Progress::default()
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(file.keep_saved(rx, stop.clone()));
        tx.send_modify(|progress| progress.sent_acked = 10);
        let saved = crate::testutil::wait_until(Duration::from_secs(5), || {
            load(dir.path(), "node a") == Some(10)
        })
        .await;
        assert!(saved, "never saved 10: {:?}", load(dir.path(), "node a"));
        // Within the save interval: only the stop saves it.
        tx.send_modify(|progress| progress.sent_acked = 12);
        stop.cancel();
        task.await.unwrap();
        assert_eq!(load(dir.path(), "node a"), Some(12));
    }
}
