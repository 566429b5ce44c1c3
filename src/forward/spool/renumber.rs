//! Renumbering: when the master already holds sequences of this node id beyond what the
//! store numbered, the spool appends a note over the unused sequences and appends again, as
//! new records numbered after them, the records that would otherwise be dropped at the master
//! as duplicates (`StoreSpool::seek`).
//!
//! The plan is written durably (`renumber.state` in the data directory) before the note, and
//! removed once every copy is durable, so a node stopped or killed half-way resumes at the next
//! start. What was copied is found in the store itself, not counted: a copy keeps its
//! original's receive time, source and bytes, so an original is copied only if no record
//! numbered after the master's mark has the same content yet (a multiset, so repeated
//! identical messages each get their copy).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;

use tracing::{error, warn};

use super::{now_micros, StoreSpool};
use crate::forward::source::SpoolError;
use crate::record::Record;
use crate::store::ReadOptions;

/// File name in the data directory (a plain file: the store only reads directories).
pub const STATE_FILE: &str = "renumber.state";
/// Records appended again per append while renumbering.
const CHUNK: usize = 4_096;

/// A renumbering: records of the origin numbered in `lower + 1..=after` are appended again
/// after `after`, the master's high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renumbering {
    after: u64,
    /// Records up to here are the master's already (the data directory forwarded them before
    /// it lost its newest records); 0 for a new data directory.
    lower: u64,
}

/// The unfinished renumbering of `origin` that a stopped process left in `dir`, if any.
pub fn load(dir: &Path, origin: &str) -> Option<Renumbering> {
    let text = match std::fs::read_to_string(dir.join(STATE_FILE)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            error!(%error, file = STATE_FILE, "cannot read an unfinished renumbering");
            return None;
        }
    };
    let parsed = text.strip_suffix('\n').and_then(|line| {
        let mut fields = line.splitn(3, ' ');
        let after = fields.next()?.parse().ok()?;
        let lower = fields.next()?.parse().ok()?;
        (fields.next()? == origin).then_some(Renumbering { after, lower })
    });
    if parsed.is_none() {
        error!(file = STATE_FILE, content = %text, "ignoring an unreadable renumbering plan, or one of another node id");
    }
    parsed
}

/// Writes the plan durably: a temporary file, synced, renamed over the old one, and the
/// directory synced.
fn save(dir: &Path, origin: &str, plan: Renumbering) -> std::io::Result<()> {
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "{} {} {origin}", plan.after, plan.lower)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// What identifies a copy with its original (the sequence aside).
fn content_key(record: &Record) -> (i64, usize, u64) {
    let mut hasher = DefaultHasher::new();
    record.source.hash(&mut hasher);
    record.raw.hash(&mut hasher);
    (record.received_at_micros, record.raw.len(), hasher.finish())
}

impl StoreSpool {
    fn spool_error(&self, what: &str, error: impl std::fmt::Display) -> SpoolError {
        SpoolError::Read {
            what: self.reader.dir().display().to_string(),
            reason: format!("{what} while renumbering: {error}"),
        }
    }

    fn append_durably(&self, records: Vec<Record>) -> Result<(), SpoolError> {
        self.handle
            .blocking_append(records)
            .and_then(|ticket| ticket.wait_durable())
            .map(|_| ())
            .map_err(|error| self.spool_error("cannot append", error))
    }

    /// The master holds this origin's seqs up to `after`, beyond anything this store has
    /// numbered: the node id was reused with a new data directory. This store's records of
    /// the origin numbered up to `after` share their sequences with other records at the
    /// master, which would drop them as duplicates. So a note (`Record::renumber_note`) takes
    /// up the unused seqs up to `after`, and every record of the origin numbered at or below
    /// `after` is appended again as a new record, which the store numbers after it and the
    /// forwarder then sends. A data directory that forwarded before (`with_forwarded_before`)
    /// lost its newest records instead: it gets a different note (`Record::skip_note`) and
    /// only the records it numbered since the node started are appended again.
    ///
    /// A failed append resumes at the next `seek`, a stopped process at its next start.
    pub(super) fn renumber_past(&mut self, after: u64) -> Result<(), SpoolError> {
        let durable = self.durable();
        let lower = self.forwarded_before.unwrap_or(0);
        if self.forwarded_before.is_some() {
            error!(
                origin = %self.origin,
                master_high_water_mark = after,
                local_high_water_mark = durable,
                held_at_start = lower,
                "the master holds sequences of this node id beyond what this data directory \
                 holds, though it forwarded to a master before: its newest records were lost \
                 (or it was restored from an older backup). Numbering continues after the \
                 master's; records accepted since the start are renumbered past it"
            );
        } else {
            error!(
                origin = %self.origin,
                master_high_water_mark = after,
                local_high_water_mark = durable,
                "the master already holds sequences of this node id that this data directory \
                 never assigned (node id reused with a new data directory?); renumbering this \
                 node's records past them so that none is dropped as a duplicate"
            );
        }
        let plan = Renumbering { after, lower };
        save(self.reader.dir(), &self.origin, plan)
            .map_err(|error| self.spool_error("cannot save the plan", error))?;
        self.renumbered_once = true;
        self.renumbering = Some(plan);
        self.continue_renumbering()
    }

    /// Carries out `renumbering`: the note if the numbering has not passed the master's mark
    /// yet, then a copy of every original that has none, then the plan is removed.
    pub(super) fn continue_renumbering(&mut self) -> Result<(), SpoolError> {
        let Some(Renumbering { after, lower }) = self.renumbering else {
            return Ok(());
        };
        let durable = self.durable();
        if durable < after {
            let note = if lower > 0 {
                Record::skip_note(&self.origin, durable + 1, after, now_micros())
            } else {
                Record::renumber_note(&self.origin, durable + 1, after, now_micros())
            };
            self.append_durably(vec![note])?;
        }
        // Copies made already (by this process before a failed append, or by a stopped one).
        let mut made: HashMap<(i64, usize, u64), u32> = HashMap::new();
        self.for_each_of_origin(|record| {
            if record.origin_seq > after {
                *made.entry(content_key(&record)).or_default() += 1;
            }
            Ok(())
        })?;
        let mut chunk = Vec::new();
        let mut copied = 0u64;
        self.for_each_of_origin(|record| {
            if record.origin_seq <= lower || record.origin_seq > after {
                return Ok(());
            }
            if let Some(count) = made.get_mut(&content_key(&record)).filter(|c| **c > 0) {
                *count -= 1;
                return Ok(());
            }
            chunk.push(Record {
                origin_seq: 0,
                ..record
            });
            if chunk.len() >= CHUNK {
                copied += chunk.len() as u64;
                return Err(std::mem::take(&mut chunk));
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            copied += chunk.len() as u64;
            self.append_copies(chunk)?;
        }
        if let Err(error) = std::fs::remove_file(self.reader.dir().join(STATE_FILE)) {
            // Harmless: the next start finds every copy made and copies nothing.
            warn!(%error, file = STATE_FILE, "cannot remove the finished renumbering plan");
        }
        self.renumbering = None;
        error!(
            origin = %self.origin,
            records = copied,
            "renumbered this node's records past the master's high-water mark"
        );
        Ok(())
    }

    fn append_copies(&mut self, chunk: Vec<Record>) -> Result<(), SpoolError> {
        let num = chunk.len() as u64;
        self.append_durably(chunk)?;
        self.num_renumbered += num;
        Ok(())
    }

    /// Calls `visit` with every readable record of this origin that is not a gap marker (the
    /// notes are gap markers), in the store's read order. A full chunk that `visit` returns as
    /// `Err` is appended before the read goes on.
    fn for_each_of_origin(
        &mut self,
        mut visit: impl FnMut(Record) -> Result<(), Vec<Record>>,
    ) -> Result<(), SpoolError> {
        let reader = self.reader.clone();
        for item in reader.read(&ReadOptions::default()) {
            let record = match item {
                Ok(stored) => stored.record,
                Err(error) => {
                    self.num_corrupt += 1;
                    warn!(%error, "skipping damaged spool frame while renumbering");
                    continue;
                }
            };
            if *record.origin != *self.origin || record.lost_from.is_some() {
                continue;
            }
            if let Err(chunk) = visit(record) {
                self.append_copies(chunk)?;
            }
        }
        Ok(())
    }
}
