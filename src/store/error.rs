//! The store's error types: `StoreError` for opening, appending and durability (cloneable, so
//! one failure can fail several tickets), `TryAppendError` for the non-waiting append, and
//! `ReadError` for readers.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::record::Record;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("data directory {} is locked by another writer", path.display())]
    Locked { path: PathBuf },
    #[error("gap for origin {origin}: stored up to seq {stored}, got seq {got}")]
    Gap {
        origin: String,
        stored: u64,
        got: u64,
    },
    #[error("gap marker of origin {origin} declares an impossible range {from}..={to}")]
    BadGapMarker { origin: String, from: u64, to: u64 },
    #[error("record of {bytes} bytes for source {source_name:?} exceeds the frame limit")]
    RecordTooLarge { source_name: String, bytes: usize },
    #[error("sync of {} failed, the segment was poisoned and recovered: {source}", path.display())]
    SyncFailed {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TryAppendError {
    /// The append queue is full; the records are handed back.
    #[error("store append queue is full")]
    Full(Vec<Record>),
    #[error("the store is closed")]
    Closed(Vec<Record>),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("corrupt frame in {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}
