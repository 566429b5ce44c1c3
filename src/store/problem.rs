//! The typed reports shared by recovery and `verify`: a `Problem` names a file, an offset, the
//! sequence range affected when known, and why.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub offset: u64,
    /// Shard sequence numbers lost or unreadable, inclusive, when known.
    pub seqs: Option<(u64, u64)>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.file.display(),
            self.offset,
            self.reason
        )?;
        if let Some((a, b)) = self.seqs {
            write!(f, " (shard seqs {a}..={b})")?;
        }
        Ok(())
    }
}

/// A torn tail cut off by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub file: PathBuf,
    pub offset: u64,
    pub bytes_removed: u64,
}

/// What opening (or re-opening after a sync failure) found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub num_shards: usize,
    /// Records found in scanned tail segments.
    pub num_tail_records: u64,
    pub truncated: Vec<Truncation>,
    /// Never-started (all-zero or frameless) segments removed.
    pub removed: Vec<PathBuf>,
    /// Damage kept in place and skipped (synced data that went bad, unreadable files).
    pub problems: Vec<Problem>,
}

impl RecoveryReport {
    pub fn merge(&mut self, other: RecoveryReport) {
        self.num_shards += other.num_shards;
        self.num_tail_records += other.num_tail_records;
        self.truncated.extend(other.truncated);
        self.removed.extend(other.removed);
        self.problems.extend(other.problems);
    }

    /// Logs what recovery did: a summary, each torn tail truncated, and each damage kept in
    /// place (a warning that points at `starling verify`).
    pub fn log(&self) {
        tracing::info!(
            num_shards = self.num_shards,
            num_tail_records = self.num_tail_records,
            num_truncated = self.truncated.len(),
            num_removed = self.removed.len(),
            num_problems = self.problems.len(),
            "store recovered"
        );
        for truncation in &self.truncated {
            tracing::info!(?truncation, "torn tail truncated");
        }
        for problem in &self.problems {
            tracing::warn!(%problem, "damaged data kept in place and skipped; run `starling verify`");
        }
    }
}
