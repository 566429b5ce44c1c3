//! Local files as an input (`[[input.file]]`, `--file GLOB`): every node tails the files its
//! globs match and hands their lines, as records of transport `file`, to the one `pipeline`,
//! exactly once across restarts, rotation and kill -9.
//!
//! Exactly once: each record carries its file's identity and the offset just past its line
//! (record flag 64), so a file's read position is durable in the same frame as the lines it
//! covers. The tailer reads a batch, submits it and waits until it is durable before it reads
//! on (a batch the store fails is submitted again as it was, so a failure neither skips nor
//! repeats a line); a full pipeline or spool makes the submit wait, which pauses reading
//! without moving any position. At start, `positions` recovers each file's position from the
//! newest durable file records in the node's own store (its spool), before anything is read.
//!
//! `tail` has the file logic (identity, rotation, truncation, lines); this module runs it on
//! its own thread, which blocks on file I/O and on the pipeline's answers.

pub mod metrics;
pub mod positions;
pub mod tail;

#[cfg(test)]
mod model_tests;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::FileInput;
use crate::pipeline::PipelineHandle;
use crate::record::Transport;

pub use metrics::FileMetrics;
pub use tail::{BatchLimits, FileStatus, TailInput, Tailer};

/// First wait before a batch the store failed is submitted again (doubling up to 5 s).
const RETRY_FIRST: Duration = Duration::from_millis(50);

/// What the file input needs to start.
pub struct FileStart {
    pub inputs: Vec<FileInput>,
    /// This node's id: the records' origin, and their source unless an input names one.
    pub node_id: String,
    pub data_dir: PathBuf,
    pub pipeline: PipelineHandle,
    pub metrics: FileMetrics,
}

/// The running file input.
pub struct FileInputs {
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    status: Arc<Mutex<Vec<FileStatus>>>,
}

impl FileInputs {
    /// Starts the tailing thread (none when no input is configured). It first recovers the
    /// positions from the store, then reads.
    pub fn start(start: FileStart) -> std::io::Result<FileInputs> {
        let cancel = CancellationToken::new();
        let status = Arc::new(Mutex::new(Vec::new()));
        if start.inputs.is_empty() {
            return Ok(FileInputs {
                cancel,
                thread: None,
                status,
            });
        }
        let runtime = tokio::runtime::Handle::current();
        let (thread_cancel, thread_status) = (cancel.clone(), status.clone());
        let thread = std::thread::Builder::new()
            .name("file-input".into())
            .spawn(move || run(start, runtime, thread_cancel, thread_status))?;
        Ok(FileInputs {
            cancel,
            thread: Some(thread),
            status,
        })
    }

    /// Each open file's path and position (for `/v1/status`).
    pub fn status(&self) -> Vec<FileStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A shared view of the status list, refreshed by the tailing thread.
    pub fn status_handle(&self) -> Arc<Mutex<Vec<FileStatus>>> {
        self.status.clone()
    }

    /// Stops reading: the batch in flight is stored (or given up at `deadline`), nothing
    /// more is read. Positions need no saving: they are in the stored records.
    pub async fn stop(mut self, deadline: tokio::time::Instant) {
        self.cancel.cancel();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let joined = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout_at(deadline, joined).await.is_err() {
            tracing::warn!("the file input did not stop in time");
        }
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn run(
    start: FileStart,
    runtime: tokio::runtime::Handle,
    cancel: CancellationToken,
    status: Arc<Mutex<Vec<FileStatus>>>,
) {
    let origin: Arc<str> = Arc::from(start.node_id.as_str());
    let inputs: Vec<TailInput> = start
        .inputs
        .iter()
        .map(|config| TailInput {
            source: Arc::from(config.source.as_deref().unwrap_or(&start.node_id)),
            config: config.clone(),
        })
        .collect();
    let poll = inputs
        .iter()
        .map(|i| i.config.poll_interval)
        .min()
        .unwrap_or(Duration::from_millis(250));
    let sources: HashSet<String> = inputs.iter().map(|i| i.source.to_string()).collect();
    // Positions first: nothing is read before every matched file's position is known.
    let probe = Tailer::new(
        inputs.clone(),
        origin.clone(),
        Default::default(),
        Default::default(),
        start.metrics.clone(),
    );
    let wanted: HashSet<_> = probe.matched().into_iter().map(|(_, _, key)| key).collect();
    let started = Instant::now();
    let recovered = positions::recover(&start.data_dir, &origin, &sources, &wanted, now_micros());
    let positions = match recovered {
        Ok(positions) => positions,
        Err(error) => {
            tracing::error!(
                %error,
                "cannot read the store to recover the tailed files' positions; not tailing"
            );
            return;
        }
    };
    tracing::info!(
        files = positions.by_key.len(),
        records_read = positions.records_read,
        unreadable = positions.unreadable,
        elapsed = ?started.elapsed(),
        "recovered the read positions of tailed files from the store"
    );
    let mut tailer = Tailer::new(
        inputs,
        origin,
        positions.by_key,
        positions.sources_seen,
        start.metrics.clone(),
    );
    tailer.set_newest_by_path(positions.newest_by_path);
    tailer.set_heads(positions.heads);
    tailer.discover(true);
    let mut last_discovery = Instant::now();
    let limits = BatchLimits::default();
    while !cancel.is_cancelled() {
        // The globs are expanded again every poll interval: a file created and rotated away
        // before any discovery saw it would never be read.
        if last_discovery.elapsed() >= poll {
            tailer.discover(false);
            last_discovery = Instant::now();
        }
        let batch = tailer.read_batch(limits);
        if let Ok(mut shared) = status.lock() {
            *shared = tailer.status();
        }
        if batch.is_empty() {
            runtime.block_on(async {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
            });
            continue;
        }
        if !store_batch(&start.pipeline, &runtime, &cancel, batch) {
            return;
        }
    }
}

/// Submits `batch` and waits until it is durable, submitting it again after a failure;
/// `false` if the node stops first (the batch is then not stored, and its lines are read
/// again at the next start).
fn store_batch(
    pipeline: &PipelineHandle,
    runtime: &tokio::runtime::Handle,
    cancel: &CancellationToken,
    batch: Vec<crate::record::Record>,
) -> bool {
    let mut wait = RETRY_FIRST;
    loop {
        let attempt = runtime.block_on(async {
            let stored = pipeline.submit(Transport::File, batch.clone()).await?;
            stored.durable().await
        });
        match attempt {
            Ok(_) => return true,
            Err(error) => {
                tracing::warn!(%error, records = batch.len(), ?wait, "storing tailed lines failed; trying again");
            }
        }
        let stopped = runtime.block_on(async {
            tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tokio::time::sleep(wait) => false,
            }
        });
        if stopped {
            return false;
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
