//! `POST /upload`: journald's own upload protocol (what `systemd-journal-upload` speaks).
//!
//! The body (chunked, `Content-Type: application/vnd.fdo.journal`, sent after
//! `Expect: 100-continue`, which hyper answers when the body is first read) is decoded as it
//! arrives; each entry becomes a record with transport and parse `journal`, its export bytes
//! as raw, handed in batches to the node's ingest `pipeline` like every other input's (so a
//! closed spool gate holds the upload back, and the pipeline counts what it stored). The
//! answer is sent only after every entry of the body is durable, so the uploader's saved
//! cursor never moves past what Starling stored; 503 if the store refused or failed it. A
//! malformed body gets a 400 with the reason, an entry longer than
//! `api.upload-max-entry-bytes` a 413, and the connection is closed.
//!
//! Memory of one request, whatever the client sends: hyper's read buffer (256 KiB, which
//! bounds a body chunk however long the chunk says it is), one entry of at most
//! `max-message-bytes` in the decoder, one batch of [`BATCH_ENTRIES`] entries, at most
//! [`MAX_PENDING_BATCHES`] small tickets (older batches are awaited before more is read) and a
//! cursor memory of at most `api.upload-max-journals` journals.
//!
//! Retries: the uploader resends from its last saved cursor after a failure, so entries it
//! sent in a failed request may come again — also after Starling restarted or was killed
//! between storing them and answering. Each entry's `__CURSOR` names its journal (`s=`, the
//! journal's sequence-number id) and its sequence number in it (`i=`); an entry at or below
//! the highest sequence already stored for its journal is acknowledged without being stored
//! again. That memory ([`CursorMemory`]) keeps the newest sequence per journal for at most
//! `api.upload-max-journals` journals (the least recently used is forgotten first, counted
//! in `starling_journal_cursor_evictions_total` and logged), so network input cannot grow
//! it. It is persisted by the records themselves: a stored entry's raw export bytes keep its
//! `__CURSOR`, and at start-up [`UploadState::remember_stored`] rebuilds the memory from the
//! node's own journal records in the store (the store's reader, `StoreReader::read_shard`)
//! before any upload is served. No side file, so there is no window between storing
//! entries and remembering their cursors: whatever is durable is remembered after a restart.
//! A journal forgotten by eviction (or whose records retention deleted) is stored again if
//! its uploader resends it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::journal::{ExportDecoder, JournalEntry, JournalError};
use crate::pipeline::PipelineHandle;
use crate::record::{ParseStatus, Record, Transport};

/// Entries handed to the pipeline per batch.
const BATCH_ENTRIES: usize = 256;

/// Batches of one request submitted and not yet awaited; past it the oldest is awaited
/// before more of the body is read. The records themselves wait in the store's queue, which
/// has its own bound; this bounds the tickets an endless body would pile up (a ticket is a
/// few dozen bytes). As many as the pipeline's queue holds, so a long upload keeps the
/// store's group commits as full as before.
const MAX_PENDING_BATCHES: usize = 1024;

pub const CONTENT_TYPE: &str = "application/vnd.fdo.journal";

/// What one upload may cost (from `[api]` and `[syslog]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Bytes of one entry kept; the rest is cut and the record flagged truncated.
    pub max_entry_bytes: usize,
    /// The longest entry accepted on the wire; longer ones get a 413.
    pub max_entry_wire_bytes: u64,
    /// Journals whose newest cursor is remembered (least recently used forgotten first).
    pub max_journals: usize,
    /// The start-up scan reads the journal records received this long before the store's
    /// last write (`scan_store`).
    pub cursor_lookback: Duration,
}

/// The upload's own metrics (registered next to its code).
#[derive(Clone)]
pub struct UploadMetrics {
    cursor_evictions: Counter,
    cursors: Gauge,
}

impl UploadMetrics {
    pub fn register(registry: &mut Registry) -> UploadMetrics {
        let metrics = UploadMetrics {
            cursor_evictions: Counter::default(),
            cursors: Gauge::default(),
        };
        registry.register(
            "starling_journal_cursor_evictions",
            "Journals whose newest upload cursor was forgotten to keep the cursor memory \
             within api.upload-max-journals (a retry of theirs would be stored again)",
            metrics.cursor_evictions.clone(),
        );
        registry.register(
            "starling_journal_cursors",
            "Journals whose newest upload cursor is remembered",
            metrics.cursors.clone(),
        );
        metrics
    }

    fn evicted(&self, journal: &str) {
        let total = self.cursor_evictions.inc() + 1;
        // Logged at 1, 2, 4, 8, …: a flood of journal ids cannot flood the log.
        if total.is_power_of_two() {
            tracing::warn!(
                journal,
                total,
                "forgot the upload cursor of the least recently used journal \
                 (api.upload-max-journals reached)"
            );
        }
    }
}

/// The newest cursor sequence per journal, for at most `capacity` journals; the least
/// recently used (looked up or stored) is forgotten first.
#[derive(Debug)]
pub struct CursorMemory {
    capacity: usize,
    /// Journal → (highest sequence, last use).
    journals: HashMap<String, (u64, u64)>,
    /// (last use, journal), oldest first.
    by_use: BTreeSet<(u64, String)>,
    clock: u64,
}

impl CursorMemory {
    pub fn new(capacity: usize) -> CursorMemory {
        CursorMemory {
            capacity: capacity.max(1),
            journals: HashMap::new(),
            by_use: BTreeSet::new(),
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.journals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.journals.is_empty()
    }

    /// A use stamp later than every one so far (microseconds of the clock when it runs).
    fn now(&mut self) -> u64 {
        let wall = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
        self.clock = (self.clock + 1).max(wall);
        self.clock
    }

    fn touch(&mut self, journal: &str, used: u64) {
        if let Some((_, last)) = self.journals.get_mut(journal) {
            if used > *last {
                self.by_use.remove(&(*last, journal.to_string()));
                *last = used;
                self.by_use.insert((used, journal.to_string()));
            }
        }
    }

    /// True when `sequence` of `journal` is at or below the newest remembered (a retry);
    /// a remembered journal counts as used now.
    pub fn seen(&mut self, journal: &str, sequence: u64) -> bool {
        let Some(&(highest, _)) = self.journals.get(journal) else {
            return false;
        };
        let now = self.now();
        self.touch(journal, now);
        sequence <= highest
    }

    /// The highest sequence remembered for `journal`.
    pub fn highest(&self, journal: &str) -> Option<u64> {
        self.journals.get(journal).map(|(highest, _)| *highest)
    }

    /// Remembers `sequence` of `journal` (if above what is remembered), used now.
    pub fn remember(&mut self, journal: &str, sequence: u64, evicted: &mut dyn FnMut(&str)) {
        let now = self.now();
        self.remember_at(journal, sequence, now, evicted);
    }

    /// Remembers `sequence` of `journal` as used at `used` (a stamp in microseconds).
    fn remember_at(
        &mut self,
        journal: &str,
        sequence: u64,
        used: u64,
        evicted: &mut dyn FnMut(&str),
    ) {
        self.clock = self.clock.max(used);
        if let Some((highest, _)) = self.journals.get_mut(journal) {
            *highest = (*highest).max(sequence);
            self.touch(journal, used);
            return;
        }
        self.journals.insert(journal.to_string(), (sequence, used));
        self.by_use.insert((used, journal.to_string()));
        while self.journals.len() > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.journals.remove(&oldest);
            evicted(&oldest);
        }
    }

    /// Takes in every journal of `other`, in its order of use.
    fn merge(&mut self, other: CursorMemory, evicted: &mut dyn FnMut(&str)) {
        let CursorMemory {
            mut journals,
            by_use,
            ..
        } = other;
        for (_, journal) in by_use {
            if let Some((sequence, _)) = journals.remove(&journal) {
                self.remember(&journal, sequence, evicted);
            }
        }
    }
}

#[derive(Clone)]
pub struct UploadState {
    pub pipeline: PipelineHandle,
    pub origin: Arc<str>,
    limits: UploadLimits,
    /// Per journal (`s=` of `__CURSOR`): the highest sequence number stored.
    stored_cursors: Arc<Mutex<CursorMemory>>,
    /// False while the cursor memory is being rebuilt from the store: uploads wait.
    ready: watch::Receiver<bool>,
    /// Counts entries recognised as already stored (uploader retries).
    metrics: crate::telemetry::PipelineMetrics,
    upload_metrics: UploadMetrics,
    listener_metrics: Arc<crate::listener::metrics::ListenerMetrics>,
}

impl UploadState {
    pub fn new(
        pipeline: PipelineHandle,
        origin: String,
        limits: UploadLimits,
        listeners: &crate::listener::metrics::ListenerFamilies,
        metrics: crate::telemetry::PipelineMetrics,
        upload_metrics: UploadMetrics,
    ) -> Self {
        let listener_metrics = listeners.listener("journal:/upload", Transport::Journal);
        UploadState {
            pipeline,
            origin: Arc::from(origin),
            limits,
            stored_cursors: Arc::new(Mutex::new(CursorMemory::new(limits.max_journals))),
            ready: watch::channel(true).1,
            metrics,
            upload_metrics,
            listener_metrics,
        }
    }

    /// Rebuilds the cursor memory from this node's journal records in the store at
    /// `data_dir`, on a blocking thread; uploads wait until it is done. Call once, before
    /// serving, from inside the runtime. The scan stops early once every clone of this
    /// state is dropped (the API stopped), so it never holds up a shutdown.
    pub fn remember_stored(&mut self, data_dir: PathBuf) -> tokio::task::JoinHandle<()> {
        let (ready_tx, ready_rx) = watch::channel(false);
        // The task's clone keeps the old receiver: `ready_tx` is closed once the API's
        // clones are gone.
        let state = self.clone();
        self.ready = ready_rx;
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut rebuilt = CursorMemory::new(state.limits.max_journals);
            let mut evicted = |journal: &str| state.upload_metrics.evicted(journal);
            let mut wanted = || !ready_tx.is_closed();
            let scan = scan_store(
                &data_dir,
                &state.origin,
                state.limits.cursor_lookback,
                &mut rebuilt,
                &mut evicted,
                &mut wanted,
            );
            let num_journals = {
                let mut memory = state.stored_cursors.lock().expect("cursor map poisoned");
                memory.merge(rebuilt, &mut evicted);
                state.upload_metrics.cursors.set(memory.len() as i64);
                memory.len()
            };
            match scan {
                Ok(scan) => tracing::info!(
                    num_journals,
                    num_records = scan.num_records,
                    num_journal_records = scan.num_journal_records,
                    num_unreadable = scan.num_unreadable,
                    stopped = scan.stopped,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "journal upload cursors rebuilt from the store"
                ),
                Err(error) => tracing::error!(
                    %error,
                    num_journals,
                    "cannot read the store to rebuild the journal upload cursors: an \
                     uploader's retry of entries stored before this start may be stored twice"
                ),
            }
            ready_tx.send_replace(true);
        })
    }

    /// The number of journals whose cursor is remembered.
    pub fn num_remembered(&self) -> usize {
        self.stored_cursors
            .lock()
            .expect("cursor map poisoned")
            .len()
    }
}

/// What a start-up scan of the store read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreScan {
    pub num_records: u64,
    pub num_journal_records: u64,
    pub num_unreadable: u64,
    /// Stopped before the end (the node is stopping).
    pub stopped: bool,
    /// The start of the window read (receive time, microseconds); `None`: an empty store.
    pub since_micros: Option<i64>,
}

/// Remembers the cursor of every journal record of `origin` in the store at `dir` received
/// within `lookback` of the store's last write, each as used when it was received (so the
/// memory keeps the journals uploaded most recently). An uploader retries what it had in
/// flight when the node stopped, which is among the newest records however long the node
/// was down, so the look-back is counted from the newest segment file's modification time,
/// not from now; a journal quiet for longer than the look-back is not remembered (its next
/// entries are new). Reads one shard at a time, skipping segments older than the window by
/// their time index; damaged frames are counted and skipped. Stops early (with what it read)
/// once `wanted` says false; it is asked every 4,096 records.
pub fn scan_store(
    dir: &Path,
    origin: &str,
    lookback: Duration,
    memory: &mut CursorMemory,
    evicted: &mut dyn FnMut(&str),
    wanted: &mut dyn FnMut() -> bool,
) -> Result<StoreScan, crate::store::StoreError> {
    let reader = crate::store::StoreReader::open(dir)?;
    let mut scan = StoreScan::default();
    let shards = reader.shards();
    let last_write = shards
        .iter()
        .filter_map(|shard| newest_segment_mtime(&shard.dir))
        .max();
    let options = crate::store::ReadOptions {
        since_micros: last_write.map(|t| {
            let since = t.checked_sub(lookback).unwrap_or(std::time::UNIX_EPOCH);
            since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64)
        }),
        ..Default::default()
    };
    scan.since_micros = options.since_micros;
    for shard in shards {
        for item in reader.read_shard(&shard, &options) {
            if scan.num_records % 4096 == 0 && !wanted() {
                scan.stopped = true;
                return Ok(scan);
            }
            let Ok(stored) = item else {
                scan.num_unreadable += 1;
                continue;
            };
            scan.num_records += 1;
            let record = stored.record;
            if record.transport != Transport::Journal || &*record.origin != origin {
                continue;
            }
            scan.num_journal_records += 1;
            if let Some((journal, sequence)) = cursor_position(&record.raw) {
                let used = u64::try_from(record.received_at_micros).unwrap_or(0);
                memory.remember_at(&journal, sequence, used, evicted);
            }
        }
    }
    Ok(scan)
}

/// When the newest segment file in the shard directory `dir` was last written.
fn newest_segment_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "seg"))
        .filter_map(|entry| entry.metadata().ok()?.modified().ok())
        .max()
}

/// The `/upload` route, to merge into the API's router. The server must provide
/// `ConnectInfo<SocketAddr>` (the uploader's address is the shard key of entries without
/// `_HOSTNAME`).
pub fn router(state: UploadState) -> axum::Router {
    axum::Router::new()
        .route("/upload", axum::routing::post(upload))
        .with_state(state)
}

fn bad_request(reason: String) -> Response {
    tracing::warn!(%reason, "journal upload refused");
    (
        StatusCode::BAD_REQUEST,
        [(header::CONNECTION, "close")],
        format!("{reason}\n"),
    )
        .into_response()
}

fn refused(error: JournalError) -> Response {
    match error {
        JournalError::EntryTooLarge { .. } => {
            tracing::warn!(%error, "journal upload refused");
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                [(header::CONNECTION, "close")],
                format!("{error}\n"),
            )
                .into_response()
        }
        error => bad_request(error.to_string()),
    }
}

/// `(journal id, sequence number)` from an entry's `__CURSOR`, if it has one.
fn cursor_position(raw: &[u8]) -> Option<(String, u64)> {
    // `systemd-journal-upload` sends `__CURSOR` first: read it without listing every field.
    let cursor = match raw.strip_prefix(b"__CURSOR=") {
        Some(rest) => rest[..rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len())].to_vec(),
        None => {
            crate::journal::fields(raw)
                .into_iter()
                .find(|(name, _)| name == "__CURSOR")?
                .1
        }
    };
    let cursor = String::from_utf8(cursor).ok()?;
    let mut journal = None;
    let mut sequence = None;
    for part in cursor.split(';') {
        if let Some(id) = part.strip_prefix("s=") {
            journal = Some(id.to_string());
        } else if let Some(number) = part.strip_prefix("i=") {
            sequence = u64::from_str_radix(number, 16).ok();
        }
    }
    Some((journal?, sequence?))
}

pub async fn upload(
    State(state): State<UploadState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    if content_type.map(|value| value.split(';').next().unwrap_or("").trim()) != Some(CONTENT_TYPE)
    {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(header::CONNECTION, "close")],
            format!("content type must be {CONTENT_TYPE}\n"),
        )
            .into_response();
    }
    // Until the cursors stored before this start are known, a retry cannot be recognised.
    // An error means the rebuild task is gone; it set nothing then, go on without it.
    let _ = state.ready.clone().wait_for(|ready| *ready).await;
    let mut decoder = ExportDecoder::new(state.limits.max_entry_bytes)
        .with_max_entry_wire_bytes(state.limits.max_entry_wire_bytes);
    let mut buffer = BytesMut::new();
    let mut batch = Vec::new();
    let mut pending = VecDeque::new();
    let mut num_stored = 0;
    let mut num_entries = 0u64;
    // Highest cursor sequence per journal in this body; remembered once durable.
    let mut positions = CursorMemory::new(state.limits.max_journals);
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match stream.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(error)) => return bad_request(format!("cannot read the body: {error}")),
            None => break,
        };
        buffer.extend_from_slice(&chunk);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(entry)) => {
                    num_entries += 1;
                    batch.extend(state.record(entry, peer, &mut positions));
                    if batch.len() >= BATCH_ENTRIES {
                        let full = std::mem::take(&mut batch);
                        match state.pipeline.submit(Transport::Journal, full).await {
                            Ok(batch_stored) => pending.push_back(batch_stored),
                            Err(error) => return unavailable(error),
                        }
                        while pending.len() > MAX_PENDING_BATCHES {
                            let oldest = pending.pop_front().expect("more than zero");
                            match oldest.durable().await {
                                Ok(outcome) => num_stored += outcome.num_stored,
                                Err(error) => return unavailable(error),
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(error) => return refused(error),
            }
        }
    }
    match decoder.finish() {
        Ok(last) => {
            if let Some(entry) = last {
                num_entries += 1;
                batch.extend(state.record(entry, peer, &mut positions));
            }
        }
        Err(error) => return refused(error),
    }
    if !batch.is_empty() {
        match state.pipeline.submit(Transport::Journal, batch).await {
            Ok(batch_stored) => pending.push_back(batch_stored),
            Err(error) => return unavailable(error),
        }
    }
    for batch_stored in pending {
        match batch_stored.durable().await {
            Ok(outcome) => num_stored += outcome.num_stored,
            Err(error) => return unavailable(error),
        }
    }
    {
        let mut stored = state.stored_cursors.lock().expect("cursor map poisoned");
        stored.merge(positions, &mut |journal| {
            state.upload_metrics.evicted(journal)
        });
        state.upload_metrics.cursors.set(stored.len() as i64);
    }
    tracing::debug!(%peer, num_entries, num_stored, "journal upload stored");
    (StatusCode::ACCEPTED, "OK.\n").into_response()
}

fn unavailable(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "journal upload could not be stored");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONNECTION, "close")],
        format!("{error}\n"),
    )
        .into_response()
}

impl UploadState {
    /// The record of one entry, or `None` when the entry was stored before (a retry).
    fn record(
        &self,
        entry: JournalEntry,
        peer: SocketAddr,
        positions: &mut CursorMemory,
    ) -> Option<Record> {
        if let Some((journal, sequence)) = cursor_position(&entry.raw) {
            let mut stored = self.stored_cursors.lock().expect("cursor map poisoned");
            if stored.seen(&journal, sequence) {
                self.metrics.journal_duplicates(1);
                return None;
            }
            drop(stored);
            positions.remember(&journal, sequence, &mut |journal| {
                self.upload_metrics.evicted(journal)
            });
        }
        self.listener_metrics
            .messages_received(1, entry.raw.len() as u64);
        if entry.truncated {
            self.listener_metrics
                .message_truncated(Some(peer), self.limits.max_entry_bytes);
        }
        Some(Record {
            received_at_micros: chrono::Utc::now().timestamp_micros(),
            event_time: crate::journal::event_time(&entry.raw),
            origin: self.origin.clone(),
            origin_seq: 0,
            peer: Some(Arc::from(peer.to_string())),
            transport: Transport::Journal,
            parse: ParseStatus::Journal,
            truncated: entry.truncated,
            source: Arc::from(
                crate::journal::hostname(&entry.raw).unwrap_or_else(|| peer.ip().to_string()),
            ),
            raw: entry.raw,
            lost_from: None,
            tls_peer: None,
            file: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::watch;

    use super::*;
    use crate::forward::progress::Progress;
    use crate::listener::metrics::ListenerFamilies;
    use crate::pipeline::{Pipeline, PipelineStart, SpoolGate};
    use crate::store::{Store, StoreConfig};
    use crate::telemetry::PipelineMetrics;

    const ORIGIN: &str = "node-a";
    const TIMEOUT: Duration = Duration::from_secs(10);
    const LIMITS: UploadLimits = UploadLimits {
        max_entry_bytes: 65536,
        max_entry_wire_bytes: 1 << 30,
        max_journals: 16,
        cursor_lookback: Duration::from_secs(3600),
    };

    fn journal_record(journal: &str, sequence: u64, received_at_micros: i64) -> Record {
        Record {
            received_at_micros,
            event_time: None,
            origin: ORIGIN.into(),
            origin_seq: 0,
            peer: None,
            transport: Transport::Journal,
            parse: ParseStatus::Unparsed,
            truncated: false,
            source: journal.into(),
            raw: format!("__CURSOR=s={journal};i={sequence:x}\nMESSAGE=m\n").into(),
            lost_from: None,
            tls_peer: None,
            file: None,
        }
    }

    /// The start-up scan reads a window before the store's last write, skipping older
    /// segments, and however old that write is.
    #[test]
    fn the_start_up_scan_reads_only_the_look_back_before_the_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), ORIGIN, StoreConfig::default()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        let hour = 3_600_000_000i64;
        // A journal last uploaded 3 hours ago (its own shard, sealed), one just now.
        let t = store
            .handle()
            .blocking_append(vec![journal_record("quiet", 7, now - 3 * hour)])
            .unwrap();
        store.handle().commit_now().unwrap();
        t.wait_durable().unwrap();
        store.close().unwrap();
        let (store, _) = Store::open(dir.path(), ORIGIN, StoreConfig::default()).unwrap();
        let t = store
            .handle()
            .blocking_append(vec![journal_record("busy", 9, now)])
            .unwrap();
        store.handle().commit_now().unwrap();
        t.wait_durable().unwrap();
        store.close().unwrap();

        let scan = |lookback: Duration| {
            let mut memory = CursorMemory::new(16);
            let scan = scan_store(
                dir.path(),
                ORIGIN,
                lookback,
                &mut memory,
                &mut |_| {},
                &mut || true,
            )
            .unwrap();
            (scan, memory)
        };
        let (window, mut memory) = scan(Duration::from_secs(3600));
        assert_eq!(window.num_journal_records, 1, "{window:?}");
        assert!(memory.seen("busy", 9));
        assert!(!memory.seen("quiet", 7), "outside the look-back");
        let (whole, mut memory) = scan(Duration::from_secs(4 * 3600));
        assert_eq!(whole.num_journal_records, 2, "{whole:?}");
        assert!(memory.seen("quiet", 7));
    }

    fn body_of(journal: &str, sequences: std::ops::RangeInclusive<u64>) -> String {
        sequences
            .map(|i| {
                format!("__CURSOR=s={journal};i={i:x}\nMESSAGE={journal} {i}\n_HOSTNAME=h\n\n")
            })
            .collect()
    }

    /// A store, a pipeline and an upload state on `dir`, with the cursor memory rebuilt from
    /// the store; the test closes them with `close`.
    struct Harness {
        store: Store,
        pipeline: Pipeline,
        records_tx: Option<crate::pipeline::Intake>,
        state: UploadState,
        metrics: PipelineMetrics,
        registry: prometheus_client::registry::Registry,
    }

    impl Harness {
        async fn open(dir: &std::path::Path) -> Harness {
            let (store, _) = Store::open(dir, ORIGIN, StoreConfig::default()).unwrap();
            let (_progress_tx, progress_rx) = watch::channel(Progress::default());
            let mut registry = prometheus_client::registry::Registry::default();
            let metrics = PipelineMetrics::register(&mut registry);
            let listeners = ListenerFamilies::register(&mut registry, &metrics);
            let (pipeline, records_tx) = Pipeline::start(PipelineStart {
                store: store.handle(),
                origin: ORIGIN.to_string(),
                gate: Arc::new(SpoolGate::new(u64::MAX)),
                progress: progress_rx,
                metrics: metrics.clone(),
            });
            let upload_metrics = UploadMetrics::register(&mut registry);
            let mut state = UploadState::new(
                pipeline.handle(),
                ORIGIN.into(),
                LIMITS,
                &listeners,
                metrics.clone(),
                upload_metrics,
            );
            state.remember_stored(dir.to_path_buf());
            Harness {
                store,
                pipeline,
                records_tx: Some(records_tx),
                state,
                metrics,
                registry,
            }
        }

        async fn post(&self, body: String) -> StatusCode {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, CONTENT_TYPE.parse().unwrap());
            let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
            upload(
                State(self.state.clone()),
                ConnectInfo(peer),
                headers,
                Body::from(body),
            )
            .await
            .status()
        }

        fn rendered(&self) -> String {
            crate::telemetry::render(&self.registry, crate::telemetry::Format::Text)
        }

        async fn close(mut self) {
            drop(self.records_tx.take());
            self.pipeline.drain();
            self.pipeline
                .stop(tokio::time::Instant::now() + TIMEOUT)
                .await;
            self.store.close().unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_journal_ids_do_not_grow_the_cursor_memory_past_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::open(dir.path()).await;
        // 1,000 distinct journal ids, 50 per request (more than the cap in one body too).
        for request in 0..20 {
            let body: String = (0..50)
                .map(|j| body_of(&format!("spoofed-{request}-{j}"), 1..=1))
                .collect();
            assert_eq!(harness.post(body).await, StatusCode::ACCEPTED);
            assert!(harness.state.num_remembered() <= LIMITS.max_journals);
        }
        assert_eq!(harness.state.num_remembered(), LIMITS.max_journals);
        let rendered = harness.rendered();
        assert!(
            rendered.contains("starling_journal_cursor_evictions_total 984"),
            "{rendered}"
        );
        assert!(
            rendered.contains("starling_journal_cursors 16"),
            "{rendered}"
        );
        // The most recently used journals are the ones remembered.
        assert_eq!(
            harness.post(body_of("spoofed-19-49", 1..=1)).await,
            StatusCode::ACCEPTED
        );
        assert_eq!(harness.metrics.num_stored(Transport::Journal), 1000);
        harness.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_after_reopening_the_store_is_recognised_from_the_stored_records() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::open(dir.path()).await;
        assert_eq!(
            harness.post(body_of("j1", 1..=5)).await,
            StatusCode::ACCEPTED
        );
        assert_eq!(
            harness.post(body_of("j2", 1..=2)).await,
            StatusCode::ACCEPTED
        );
        harness.close().await;

        // A new process: nothing but the store.
        let harness = Harness::open(dir.path()).await;
        assert_eq!(
            harness.post(body_of("j1", 3..=7)).await,
            StatusCode::ACCEPTED
        );
        assert_eq!(
            harness.post(body_of("j2", 1..=2)).await,
            StatusCode::ACCEPTED
        );
        assert_eq!(
            harness.metrics.num_stored(Transport::Journal),
            2,
            "only j1 6 and 7"
        );
        let highest = {
            let memory = harness.state.stored_cursors.lock().unwrap();
            (memory.highest("j1"), memory.highest("j2"))
        };
        assert_eq!(highest, (Some(7), Some(2)));
        harness.close().await;
        assert_eq!(
            crate::store::StoreReader::open(dir.path())
                .unwrap()
                .read(&Default::default())
                .count(),
            9
        );
    }

    #[test]
    fn the_cursor_memory_forgets_the_least_recently_used_journal() {
        let mut memory = CursorMemory::new(2);
        let mut evicted = Vec::new();
        let mut note = |journal: &str| evicted.push(journal.to_string());
        memory.remember("a", 5, &mut note);
        memory.remember("b", 1, &mut note);
        assert!(memory.seen("a", 5), "a is used now, b is the oldest");
        memory.remember("c", 1, &mut note);
        memory.remember("a", 3, &mut note);
        assert_eq!(evicted, ["b"]);
        assert_eq!(memory.len(), 2);
        assert_eq!(
            memory.highest("a"),
            Some(5),
            "only the newest cursor is kept"
        );
        assert!(!memory.seen("b", 1));
        assert!(!memory.seen("a", 6));
    }

    async fn wait_until(what: &str, condition: impl FnMut() -> bool) {
        assert!(
            crate::testutil::wait_until(TIMEOUT, condition).await,
            "timed out waiting until {what}"
        );
    }

    /// A record of this node, as a listener makes it.
    fn spooled(i: usize) -> Record {
        Record {
            received_at_micros: 1_700_000_000_000_000,
            event_time: None,
            origin: Arc::from(ORIGIN),
            origin_seq: 0,
            peer: None,
            transport: Transport::Tcp,
            parse: ParseStatus::Unparsed,
            truncated: false,
            source: Arc::from("host1"),
            raw: bytes::Bytes::from(format!("<13>spooled {i}")),
            lost_from: None,
            tls_peer: None,
            file: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_waits_at_a_closed_spool_gate_and_is_stored_once_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), ORIGIN, StoreConfig::default()).unwrap();
        // Ten records no master has acknowledged: far over a one-byte spool bound.
        let backlog = (0..10).map(spooled).collect();
        let ticket = store.handle().append(backlog).await.unwrap();
        ticket.durable().await.unwrap();
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let gate = Arc::new(SpoolGate::new(1));
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = PipelineMetrics::register(&mut registry);
        let listeners = ListenerFamilies::register(&mut registry, &metrics);
        let (pipeline, records_tx) = Pipeline::start(PipelineStart {
            store: store.handle(),
            origin: ORIGIN.to_string(),
            gate: gate.clone(),
            progress: progress_rx,
            metrics: metrics.clone(),
        });
        wait_until("the gate closes", || gate.is_closed()).await;

        let state = UploadState::new(
            pipeline.handle(),
            ORIGIN.into(),
            LIMITS,
            &listeners,
            metrics.clone(),
            UploadMetrics::register(&mut registry),
        );
        let body: String = (1..=3)
            .map(|i| format!("__CURSOR=s=journal1;i={i:x}\nMESSAGE=entry {i}\n_HOSTNAME=h\n\n"))
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, CONTENT_TYPE.parse().unwrap());
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        let answer = tokio::spawn(upload(
            State(state),
            ConnectInfo(peer),
            headers,
            Body::from(body),
        ));
        wait_until("the upload waits at the gate", || gate.num_waiting() == 1).await;
        assert!(!answer.is_finished(), "answered through a closed gate");
        assert_eq!(
            store.handle().high_water_mark(ORIGIN),
            10,
            "nothing appended"
        );

        // A master acknowledges the backlog: the gate opens and the upload is stored.
        progress_tx.send_modify(|progress| progress.acked = 10);
        let response = tokio::time::timeout(TIMEOUT, answer)
            .await
            .expect("the upload still waits after the gate opened")
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(
            store.handle().high_water_mark(ORIGIN),
            13,
            "durable before the answer"
        );
        assert_eq!(metrics.num_stored(Transport::Journal), 3);

        drop(records_tx);
        pipeline.drain();
        pipeline.stop(tokio::time::Instant::now() + TIMEOUT).await;
        store.close().unwrap();
    }
}
