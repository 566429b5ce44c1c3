//! `StoreConfig`: when segments roll, when idle ones are sealed and how many stay open, when
//! the writer commits, what retention deletes and how
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
    /// Seal (trim and close) an active segment that has had no append for this long
    /// (default 5 min), so a quiet source holds no file and no preallocated disk, and
    /// retention and `max-age` reach its records.
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub idle_shard_seal: Duration,
    /// At most this many active segments (open files) at once (default 1024); past it the
    /// least recently used ones are sealed.
    pub max_open_shards: usize,
    /// A source name longer than this (default 255 bytes) does not name its shard: the shard
    /// is named by its hashed form (`h-<prefix>-<hash>`, what `verify` and `read --source`
    /// show) and each record keeps the full name.
    pub source_name_max_bytes: usize,
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
            idle_shard_seal: Duration::from_secs(300),
            max_open_shards: 1024,
            source_name_max_bytes: 255,
            retention: RetentionConfig::default(),
            queue_capacity: 1024,
        }
    }
}
