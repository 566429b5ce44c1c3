//! `StoreConfig`: when segments roll, when the writer commits, what retention deletes and how
//! many batches the append queue holds. Data only, with the defaults.

use std::time::Duration;

use super::retention::RetentionConfig;

/// The store's configuration; also the `[store]` section of the config file (kebab-case
/// keys, unknown keys refused, the defaults below for absent ones), which `config` embeds as
/// it is. Ranges are checked by `config::Config::validate`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreConfig {
    /// Roll a segment once it holds this many bytes (default 128 MiB).
    pub segment_max_bytes: u64,
    /// Roll a segment when an append arrives and it is older than this (default 1 h).
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub segment_max_age: Duration,
    /// Longest a written record waits for its commit (default 10 ms).
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub commit_max_delay: Duration,
    /// Commit as soon as this many bytes are unsynced (default 4 MiB).
    pub commit_max_bytes: u64,
    /// `[store.retention]`.
    pub retention: RetentionConfig,
    /// Batches the append queue holds before appends wait (default 1024; not a config key).
    #[serde(skip)]
    pub queue_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            segment_max_bytes: 128 * 1024 * 1024,
            segment_max_age: Duration::from_secs(3600),
            commit_max_delay: Duration::from_millis(10),
            commit_max_bytes: 4 * 1024 * 1024,
            retention: RetentionConfig::default(),
            queue_capacity: 1024,
        }
    }
}
