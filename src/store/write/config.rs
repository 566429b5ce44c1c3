//! `StoreConfig`: when segments roll, when the writer commits, what retention deletes and how
//! many batches the append queue holds. Data only, with the defaults.

use std::time::Duration;

use super::retention::RetentionConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Roll a segment once it holds this many bytes (default 128 MiB).
    pub segment_max_bytes: u64,
    /// Roll a segment when an append arrives and it is older than this (default 1 h).
    pub segment_max_age: Duration,
    /// Longest a written record waits for its commit (default 10 ms).
    pub commit_max_delay: Duration,
    /// Commit as soon as this many bytes are unsynced (default 8 MiB).
    pub commit_max_bytes: u64,
    pub retention: RetentionConfig,
    /// Batches the append queue holds before appends wait (default 1024).
    pub queue_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            segment_max_bytes: 128 * 1024 * 1024,
            segment_max_age: Duration::from_secs(3600),
            commit_max_delay: Duration::from_millis(10),
            commit_max_bytes: 8 * 1024 * 1024,
            retention: RetentionConfig::default(),
            queue_capacity: 1024,
        }
    }
}
