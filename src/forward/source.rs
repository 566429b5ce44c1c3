//! Where the forwarder's records come from: the `SpoolSource` trait (records of this node's
//! origin in sequence order) and the dedicated thread that reads it, so spool file I/O never
//! runs on the async runtime.
//!
//! The forwarder sends `ReaderCommand`s (start a session: read from just after a sequence);
//! the thread answers with `SpoolBatch`es tagged with the session they belong to, through a
//! bounded channel (the forwarder's window is the backpressure). Batches of an older session
//! are skipped by the forwarder. This file does not talk to the network.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use crate::record::Record;

/// Size limits of one batch read from the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_records: usize,
    /// Encoded bytes (`protocol::encoded_record_len`); a single larger record still goes alone.
    pub max_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot read spool {what}: {reason}")]
    Read { what: String, reason: String },
}

/// Records of one origin, in sequence order, from a local durable spool.
pub trait SpoolSource: Send + 'static {
    /// The next `next_batch` starts right after sequence `after`. An `after` beyond what the
    /// spool ever numbered means the master holds this origin's sequences from another store
    /// (the node id was reused with a new data directory): the source numbers its own records
    /// past `after` instead of letting them pass for duplicates, and counts them in
    /// `take_renumbered`.
    fn seek(&mut self, after: u64) -> Result<(), SpoolError>;
    /// Records renumbered by `seek` since the last call.
    fn take_renumbered(&mut self) -> u64 {
        0
    }
    /// The next records in sequence order, consecutive, within `limits`; empty when nothing
    /// newer is durable yet. Never blocks for long. Sequences proven gone from the spool come
    /// as one gap marker (`Record::lost_from`), alone in its batch; they are never skipped
    /// silently.
    fn next_batch(&mut self, limits: BatchLimits) -> Result<Arc<Vec<Record>>, SpoolError>;
}

/// What the reader thread reports besides batches (the forwarder counts it).
pub trait ReaderEvents: Send + Sync + 'static {
    /// `SpoolSource::seek` renumbered `num_records` records.
    fn renumbered(&self, num_records: u64);
    /// Positioning or reading the spool failed.
    fn spool_error(&self);
}

/// Start reading for session `session_id` right after sequence `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderCommand {
    pub session_id: u64,
    pub after: u64,
}

#[derive(Debug)]
pub struct SpoolBatch {
    pub session_id: u64,
    pub records: Arc<Vec<Record>>,
}

/// The forwarder's end of the reader thread.
pub struct ReaderHandle {
    command_tx: Option<std_mpsc::Sender<ReaderCommand>>,
    batch_rx: mpsc::Receiver<SpoolBatch>,
    thread: Option<JoinHandle<()>>,
}

/// How long the reader waits before retrying after a spool error.
const ERROR_RETRY: Duration = Duration::from_millis(200);
/// A persisting spool error is logged at most this often.
const WARNING_EVERY: Duration = Duration::from_secs(30);

pub fn spawn_reader<S: SpoolSource, E: ReaderEvents>(
    source: S,
    limits: BatchLimits,
    capacity: usize,
    poll_interval: Duration,
    events: Arc<E>,
) -> std::io::Result<ReaderHandle> {
    let (command_tx, command_rx) = std_mpsc::channel();
    let (batch_tx, batch_rx) = mpsc::channel(capacity.max(1));
    let thread = std::thread::Builder::new()
        .name("forward-spool".to_string())
        .spawn(move || {
            read_loop(
                source,
                limits,
                poll_interval,
                command_rx,
                batch_tx,
                &*events,
            )
        })?;
    Ok(ReaderHandle {
        command_tx: Some(command_tx),
        batch_rx,
        thread: Some(thread),
    })
}

impl ReaderHandle {
    /// Restarts reading for a new session.
    pub fn seek(&self, command: ReaderCommand) {
        if let Some(command_tx) = &self.command_tx {
            let _ = command_tx.send(command);
        }
    }

    /// The next batch (of any session); `None` when the reader thread is gone.
    pub async fn next(&mut self) -> Option<SpoolBatch> {
        self.batch_rx.recv().await
    }

    /// Stops the thread and waits for it.
    pub async fn stop(mut self) {
        self.command_tx = None;
        self.batch_rx.close();
        while self.batch_rx.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn read_loop<S: SpoolSource>(
    mut source: S,
    limits: BatchLimits,
    poll_interval: Duration,
    command_rx: std_mpsc::Receiver<ReaderCommand>,
    batch_tx: mpsc::Sender<SpoolBatch>,
    events: &dyn ReaderEvents,
) {
    let mut session: Option<u64> = None;
    let mut pending: Option<ReaderCommand> = None;
    let mut last_warning: Option<Instant> = None;
    loop {
        let command = match pending.take() {
            Some(command) => Some(command),
            None if session.is_none() => match command_rx.recv() {
                Ok(command) => Some(command),
                Err(_) => return,
            },
            None => match command_rx.try_recv() {
                Ok(command) => Some(command),
                Err(std_mpsc::TryRecvError::Empty) => None,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            },
        };
        if let Some(mut command) = command {
            while let Ok(newer) = command_rx.try_recv() {
                command = newer;
            }
            let result = source.seek(command.after);
            events.renumbered(source.take_renumbered());
            match result {
                Ok(()) => session = Some(command.session_id),
                Err(error) => {
                    events.spool_error();
                    warn!(%error, "cannot position the spool");
                    session = None;
                    pending = Some(command);
                    std::thread::sleep(ERROR_RETRY);
                    continue;
                }
            }
        }
        let Some(session_id) = session else { continue };
        match source.next_batch(limits) {
            Ok(records) if records.is_empty() => match command_rx.recv_timeout(poll_interval) {
                Ok(command) => pending = Some(command),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            },
            Ok(records) => {
                if batch_tx
                    .blocking_send(SpoolBatch {
                        session_id,
                        records,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Err(error) => {
                events.spool_error();
                let now = Instant::now();
                if last_warning.is_none_or(|at| now.duration_since(at) >= WARNING_EVERY) {
                    warn!(%error, "cannot read the spool");
                    last_warning = Some(now);
                }
                std::thread::sleep(ERROR_RETRY);
            }
        }
    }
}
