//! The file input's metrics, registered once per node next to the code that counts them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Why bytes of a tailed file were never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// The file was truncated (copytruncate, `> file`) before its tail was read, and no
    /// rotated copy held it.
    Truncate,
}

impl LostReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LostReason::Truncate => "truncate",
        }
    }
}

/// The file input's counters; clones count in the same families.
#[derive(Debug, Clone, Default)]
pub struct FileMetrics {
    pub files: Gauge,
    pub bytes_read: Counter,
    pub lines: Counter,
    pub lines_truncated: Counter,
    pub rotations: Counter,
    pub truncations: Counter,
    bytes_lost: Family<ReasonLabels, Counter>,
}

impl FileMetrics {
    pub fn register(registry: &mut Registry) -> FileMetrics {
        let metrics = FileMetrics::default();
        // Every reason is present from the start (0 until something is lost).
        metrics.lost(LostReason::Truncate, 0);
        registry.register(
            "starling_file_watched",
            "Files the file input has open (tailed, or rotated and still being drained)",
            metrics.files.clone(),
        );
        registry.register(
            "starling_file_read_bytes",
            "Bytes read from tailed files and stored as lines",
            metrics.bytes_read.clone(),
        );
        registry.register(
            "starling_file_lines",
            "Lines read from tailed files and stored",
            metrics.lines.clone(),
        );
        registry.register(
            "starling_file_lines_truncated",
            "Lines longer than max-line-bytes, stored cut and flagged truncated",
            metrics.lines_truncated.clone(),
        );
        registry.register(
            "starling_file_rotations",
            "Tailed files renamed away or deleted (drained to their end, then released)",
            metrics.rotations.clone(),
        );
        registry.register(
            "starling_file_truncations",
            "Tailed files found truncated or rewritten (read again from their start)",
            metrics.truncations.clone(),
        );
        registry.register(
            "starling_file_lost_bytes",
            "Bytes of tailed files that were never stored, by reason",
            metrics.bytes_lost.clone(),
        );
        metrics
    }

    pub fn lost(&self, reason: LostReason, bytes: u64) {
        self.bytes_lost
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc_by(bytes);
    }

    pub fn num_lost(&self, reason: LostReason) -> u64 {
        self.bytes_lost
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .get()
    }
}
