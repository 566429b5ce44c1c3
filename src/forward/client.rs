//! The forwarder: ships this node's records from its local spool to the current master and
//! keeps track of what the master acknowledged.
//!
//! It connects to the master named by the `ClusterView`, says `Hello`, and resumes right after
//! the high-water mark the master answers (whatever was sent before is not trusted). Batches
//! come from a `SpoolSource` read on a dedicated thread (the spool is files on disk) and are
//! pipelined within a bounded window; the handshake and each `Ack` move the acknowledged mark
//! in `progress::ForwardProgress`, which pushes it to its readers. On a master change, a refused batch, a
//! broken connection or a stalled one it reconnects, with a capped backoff. Sequences gone from the spool arrive as a gap marker from the source; the
//! forwarder sends it like any record (the master then stores it and moves its high-water mark
//! past the range), logs a warning and counts it. A record the protocol cannot carry
//! (`protocol::unsendable`: a field over its cap, or larger than a frame) is sent as a gap
//! marker for its sequence instead, with an error log and a count, so it never stalls the
//! origin; the master stores that marker like any other. It never deletes from the spool
//! (retention does) and does not choose the master.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::progress::ForwardProgress;
use super::protocol::{
    cut, unsendable, ForwardCodec, Message, BATCH_OVERHEAD_BYTES, DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
};
use super::source::{
    spawn_reader, BatchLimits, ReaderCommand, ReaderEvents, ReaderHandle, SpoolBatch, SpoolSource,
};
use crate::cluster::ClusterView;
use crate::record::Record;

#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    pub cluster_id: String,
    /// This node's id: the origin of the records it forwards.
    pub origin: String,
    pub max_batch_records: usize,
    pub max_batch_bytes: usize,
    /// Batches sent and not yet acknowledged.
    pub max_batches_in_flight: usize,
    /// How often the spool is polled for new records when it had none.
    pub poll_interval: Duration,
    pub connect_timeout: Duration,
    /// No acknowledgement for this long while batches are in flight: reconnect.
    pub ack_timeout: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub max_frame_bytes: usize,
    /// Also forward when this node is the master itself (when the spool is not the master's
    /// store). With one store per node, leave it false: the master's records are already there.
    pub forward_to_self: bool,
}

impl ForwarderConfig {
    pub fn new(cluster_id: impl Into<String>, origin: impl Into<String>) -> ForwarderConfig {
        ForwarderConfig {
            cluster_id: cluster_id.into(),
            origin: origin.into(),
            max_batch_records: 4096,
            max_batch_bytes: 1024 * 1024,
            max_batches_in_flight: 8,
            poll_interval: Duration::from_millis(5),
            connect_timeout: Duration::from_secs(3),
            ack_timeout: Duration::from_secs(30),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            forward_to_self: false,
        }
    }
}

/// Counters, shared with `/metrics` (the acknowledged mark is in `progress`).
#[derive(Debug, Default)]
pub struct ForwarderStats {
    pub records_acked: AtomicU64,
    pub batches_acked: AtomicU64,
    pub batches_sent: AtomicU64,
    pub sessions: AtomicU64,
    pub connect_failures: AtomicU64,
    pub not_master_answers: AtomicU64,
    pub batches_refused: AtomicU64,
    pub spool_errors: AtomicU64,
    /// Gap markers sent for ranges not sent before (a marker re-sent after a reconnect or to
    /// a new master is not counted again).
    pub gap_markers: AtomicU64,
    /// Sequences of this origin those gap markers declare lost.
    pub lost_seqs: AtomicU64,
    /// This node's records appended again under new sequences because the master already held
    /// their sequences from an earlier store with this node id (`SpoolSource::seek`).
    pub renumbered: AtomicU64,
    /// Records the protocol cannot carry, sent as a gap marker for their sequence instead
    /// (each counted once, however often it is sent again).
    pub unsendable: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl ReaderEvents for ForwarderStats {
    fn renumbered(&self, num_records: u64) {
        bump(&self.renumbered, num_records);
    }

    fn spool_error(&self) {
        bump(&self.spool_errors, 1);
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Protocol(#[from] super::protocol::ProtocolError),
    #[error("connection closed by the master")]
    Closed,
    #[error("not master; it names {0:?}")]
    NotMaster(Option<(String, SocketAddr)>),
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("batch {batch_id} refused: {reason}")]
    Refused { batch_id: u64, reason: String },
    #[error("unexpected {0} from the master")]
    Unexpected(String),
    #[error("no acknowledgement for {0:?}")]
    Stalled(Duration),
    #[error("spool has no seq {expected}, next is {got}")]
    SpoolGap { expected: u64, got: u64 },
    #[error("the spool reader stopped")]
    ReaderGone,
}

enum SessionEnd {
    Cancelled,
    MasterChanged,
    Failed {
        error: SessionError,
        handshake_done: bool,
    },
}

/// The master to forward to, from this node's view.
fn target_of(view: &ClusterView, config: &ForwarderConfig) -> Option<(String, SocketAddr)> {
    let master = view.master_member()?;
    if master.node_id == view.self_id && !config.forward_to_self {
        return None;
    }
    Some((master.node_id.clone(), master.forward_addr?))
}

/// Forwards records from `source` to the master until `cancel`. Fails only if the spool
/// reader thread cannot be started.
pub async fn run<S: SpoolSource>(
    source: S,
    mut view: watch::Receiver<ClusterView>,
    config: ForwarderConfig,
    stats: Arc<ForwarderStats>,
    progress: Arc<ForwardProgress>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let limits = BatchLimits {
        max_records: config.max_batch_records.max(1),
        max_bytes: config
            .max_batch_bytes
            .min(config.max_frame_bytes.saturating_sub(BATCH_OVERHEAD_BYTES)),
    };
    let mut reader = spawn_reader(
        source,
        limits,
        config.max_batches_in_flight.max(1),
        config.poll_interval,
        stats.clone(),
    )?;
    let context = Context {
        config: &config,
        stats: &stats,
        progress: &progress,
    };
    forward_loop(&mut reader, &mut view, context, &cancel).await;
    reader.stop().await;
    Ok(())
}

/// What every session shares.
#[derive(Clone, Copy)]
struct Context<'a> {
    config: &'a ForwarderConfig,
    stats: &'a ForwarderStats,
    progress: &'a ForwardProgress,
}

/// Runs sessions against the current master until `cancel` (or the view is gone).
async fn forward_loop(
    reader: &mut ReaderHandle,
    view: &mut watch::Receiver<ClusterView>,
    context: Context<'_>,
    cancel: &CancellationToken,
) {
    let Context {
        config,
        stats,
        progress,
    } = context;
    let mut session_id = 0u64;
    let mut backoff = config.retry_min;
    let mut counted = Counted::default();
    loop {
        let target = loop {
            if let Some(target) = target_of(&view.borrow_and_update(), config) {
                break target;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = view.changed() => if changed.is_err() { return },
            }
        };
        session_id += 1;
        let mut session = Session {
            config,
            stats,
            progress,
            reader,
            session_id,
            target: &target,
            counted: &mut counted,
        };
        match session.run(view, cancel).await {
            SessionEnd::Cancelled => return,
            SessionEnd::MasterChanged => {
                backoff = config.retry_min;
                continue;
            }
            SessionEnd::Failed {
                error,
                handshake_done,
            } => {
                if handshake_done {
                    backoff = config.retry_min;
                }
                match &error {
                    SessionError::Connect { .. } => bump(&stats.connect_failures, 1),
                    SessionError::NotMaster(_) => bump(&stats.not_master_answers, 1),
                    SessionError::Refused { .. } => bump(&stats.batches_refused, 1),
                    _ => {}
                }
                warn!(master = %target.0, addr = %target.1, %error, retry_in = ?backoff, "forwarding interrupted");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
            changed = target_changed(view, context, &target) => if !changed { return },
        }
        backoff = (backoff * 2).min(config.retry_max);
    }
}

/// Resolves with `true` once the forwarding target differs from `target`, `false` if the view
/// is gone.
async fn target_changed(
    view: &mut watch::Receiver<ClusterView>,
    context: Context<'_>,
    target: &(String, SocketAddr),
) -> bool {
    loop {
        if view.changed().await.is_err() {
            return false;
        }
        if target_of(&view.borrow_and_update(), context.config).as_ref() != Some(target) {
            return true;
        }
    }
}

/// What the forwarder has counted already, so a batch sent again is not counted twice.
#[derive(Debug, Default)]
struct Counted {
    /// Highest lost sequence already counted in `ForwarderStats::lost_seqs`.
    lost_upto: u64,
    /// Highest unsendable record's sequence already counted in `ForwarderStats::unsendable`.
    unsendable_upto: u64,
}

struct Session<'a> {
    config: &'a ForwarderConfig,
    stats: &'a ForwarderStats,
    progress: &'a ForwardProgress,
    reader: &'a mut ReaderHandle,
    session_id: u64,
    target: &'a (String, SocketAddr),
    counted: &'a mut Counted,
}

impl Session<'_> {
    async fn run(
        &mut self,
        view: &mut watch::Receiver<ClusterView>,
        cancel: &CancellationToken,
    ) -> SessionEnd {
        let connect = tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            framed = self.handshake() => framed,
        };
        let (mut framed, high_water_mark) = match connect {
            Ok(connected) => connected,
            Err(error) => {
                return SessionEnd::Failed {
                    error,
                    handshake_done: false,
                }
            }
        };
        framed.codec_mut().establish();
        bump(&self.stats.sessions, 1);
        self.progress.handshake(high_water_mark);
        info!(master = %self.target.0, high_water_mark, "forwarding to master");
        self.reader.seek(ReaderCommand {
            session_id: self.session_id,
            after: high_water_mark,
        });
        let mut in_flight: VecDeque<(u64, u64, usize)> = VecDeque::new();
        let mut next_seq = high_water_mark + 1;
        let mut batch_id = 0u64;
        let mut last_progress = Instant::now();
        let failed = |error| SessionEnd::Failed {
            error,
            handshake_done: true,
        };
        loop {
            let window_open = in_flight.len() < self.config.max_batches_in_flight.max(1);
            let stall_deadline = last_progress + self.config.ack_timeout;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return SessionEnd::Cancelled,
                changed = view.changed() => {
                    if changed.is_err() {
                        return SessionEnd::Cancelled;
                    }
                    if target_of(&view.borrow(), self.config).as_ref() != Some(self.target) {
                        debug!("master changed, reconnecting");
                        return SessionEnd::MasterChanged;
                    }
                }
                frame = framed.next() => match frame {
                    Some(Ok(Message::Ack { batch_id: acked, high_water_mark })) => {
                        match in_flight.pop_front() {
                            Some((expected, last_seq, num_records)) if expected == acked => {
                                self.progress.acknowledged(last_seq, high_water_mark);
                                bump(&self.stats.batches_acked, 1);
                                bump(&self.stats.records_acked, num_records as u64);
                                last_progress = Instant::now();
                            }
                            _ => return failed(SessionError::Unexpected(format!("ack of batch {acked}"))),
                        }
                    }
                    Some(Ok(Message::Refused { batch_id, reason })) => {
                        return failed(SessionError::Refused { batch_id, reason });
                    }
                    Some(Ok(Message::NotMaster { master })) => return failed(SessionError::NotMaster(master)),
                    Some(Ok(other)) => return failed(SessionError::Unexpected(format!("{other:?}"))),
                    Some(Err(error)) => return failed(error.into()),
                    None => return failed(SessionError::Closed),
                },
                batch = self.reader.next(), if window_open => {
                    let Some(SpoolBatch { session_id, records }) = batch else {
                        return failed(SessionError::ReaderGone);
                    };
                    if session_id != self.session_id || records.is_empty() {
                        continue;
                    }
                    let first = records[0].first_seq();
                    if first != next_seq {
                        // A source skipped sequences without a gap marker: the master would
                        // refuse the gap, so say what is missing and start over.
                        return failed(SessionError::SpoolGap { expected: next_seq, got: first });
                    }
                    for marker in records.iter().filter(|record| record.lost_from.is_some()) {
                        self.note_gap_marker(marker.first_seq(), marker.origin_seq);
                    }
                    let records = self.replace_unsendable(records);
                    let last_seq = records[records.len() - 1].origin_seq;
                    let num_records = records.len();
                    if in_flight.is_empty() {
                        last_progress = Instant::now();
                    }
                    batch_id += 1;
                    if let Err(error) = framed.send(Message::Batch { batch_id, records }).await {
                        return failed(error.into());
                    }
                    bump(&self.stats.batches_sent, 1);
                    in_flight.push_back((batch_id, last_seq, num_records));
                    next_seq = last_seq + 1;
                }
                _ = tokio::time::sleep_until(stall_deadline), if !in_flight.is_empty() => {
                    return failed(SessionError::Stalled(self.config.ack_timeout));
                }
            }
        }
    }

    /// A gap marker for `from..=to` is about to be sent: warn, and count what is new.
    fn note_gap_marker(&mut self, from: u64, to: u64) {
        warn!(
            origin = %self.config.origin,
            from,
            to,
            master = %self.target.0,
            "seqs lost from the spool before they were forwarded; sending a gap marker"
        );
        if to > self.counted.lost_upto {
            let first_new = from.max(self.counted.lost_upto + 1);
            bump(&self.stats.gap_markers, 1);
            bump(&self.stats.lost_seqs, to - first_new + 1);
            self.counted.lost_upto = to;
        }
    }

    /// `records` with every record the protocol cannot carry replaced by a gap marker for its
    /// sequences (logged, and counted once); the same batch when all can go.
    fn replace_unsendable(&mut self, records: Arc<Vec<Record>>) -> Arc<Vec<Record>> {
        let max_frame_bytes = self.config.max_frame_bytes;
        if records
            .iter()
            .all(|record| unsendable(record, max_frame_bytes).is_none())
        {
            return records;
        }
        let replaced = records
            .iter()
            .map(|record| match unsendable(record, max_frame_bytes) {
                None => record.clone(),
                Some(reason) => self.unsendable_marker(record, &reason),
            })
            .collect();
        Arc::new(replaced)
    }

    /// The gap marker sent in place of `record`, which cannot be sent because of `reason`.
    fn unsendable_marker(&mut self, record: &Record, reason: &str) -> Record {
        let (from, to) = (record.first_seq(), record.origin_seq);
        let source = cut(&record.source, 200);
        error!(
            origin = %self.config.origin,
            seq = to,
            source_prefix = %source,
            source_bytes = record.source.len(),
            raw_bytes = record.raw.len(),
            %reason,
            master = %self.target.0,
            "a record cannot be forwarded; sending a gap marker in its place"
        );
        if to > self.counted.unsendable_upto {
            bump(&self.stats.unsendable, 1);
            self.counted.unsendable_upto = to;
        }
        let text = format!(
            "starling: seq {to} of origin {} could not be forwarded ({reason}; source {source:?}, \
             {} bytes, {} raw bytes); it is kept only in the origin's own store",
            self.config.origin,
            record.source.len(),
            record.raw.len()
        );
        Record {
            raw: text.into(),
            ..Record::gap_marker(&record.origin, from, to, record.received_at_micros)
        }
    }

    async fn handshake(&self) -> Result<(Framed<TcpStream, ForwardCodec>, u64), SessionError> {
        let addr = self.target.1;
        let connect_error = |reason: String| SessionError::Connect { addr, reason };
        let stream = tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                connect_error(format!("timed out after {:?}", self.config.connect_timeout))
            })?
            .map_err(|error| connect_error(error.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, ForwardCodec::new(self.config.max_frame_bytes));
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            cluster_id: self.config.cluster_id.clone(),
            origin: self.config.origin.clone(),
        };
        framed.send(hello).await?;
        let answer = tokio::time::timeout(self.config.connect_timeout, framed.next())
            .await
            .map_err(|_| connect_error("no answer to hello".to_string()))?;
        match answer {
            Some(Ok(Message::HelloAck { high_water_mark })) => Ok((framed, high_water_mark)),
            Some(Ok(Message::NotMaster { master })) => Err(SessionError::NotMaster(master)),
            Some(Ok(Message::Rejected { reason })) => Err(SessionError::Rejected(reason)),
            Some(Ok(other)) => Err(SessionError::Unexpected(format!("{other:?}"))),
            Some(Err(error)) => Err(error.into()),
            None => Err(SessionError::Closed),
        }
    }
}
