//! `POST /upload`: journald's own upload protocol (what `systemd-journal-upload` speaks).
//!
//! The body (chunked, `Content-Type: application/vnd.fdo.journal`, sent after
//! `Expect: 100-continue`, which hyper answers when the body is first read) is decoded as it
//! arrives; each entry becomes a record with transport and parse `journal`, its export bytes
//! as raw, handed in batches to the node's ingest `pipeline` like every other input's (so a
//! closed spool gate holds the upload back, and the pipeline counts what it stored). The
//! answer is sent only after every entry of the body is durable, so the uploader's saved
//! cursor never moves past what Starling stored; 503 if the store refused or failed it. A
//! malformed body gets a 400 with the reason and the connection is closed. This file does
//! not touch the store.
//!
//! Retries: the uploader resends from its last saved cursor after a failure, so entries it
//! sent in a failed request may come again. Each entry's `__CURSOR` names its journal
//! (`s=`) and its sequence number in it (`i=`); an entry at or below the highest sequence
//! already stored for its journal is acknowledged without being stored again. That memory
//! lives as long as the process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt as _;

use crate::journal::{ExportDecoder, JournalEntry};
use crate::pipeline::PipelineHandle;
use crate::record::{ParseStatus, Record, Transport};

/// Entries handed to the pipeline per batch.
const BATCH_ENTRIES: usize = 256;

pub const CONTENT_TYPE: &str = "application/vnd.fdo.journal";

#[derive(Clone)]
pub struct UploadState {
    pub pipeline: PipelineHandle,
    pub origin: Arc<str>,
    pub max_entry_bytes: usize,
    /// Per journal (`s=` of `__CURSOR`): the highest sequence number stored.
    stored_cursors: Arc<Mutex<HashMap<String, u64>>>,
    /// Counts entries recognised as already stored (uploader retries).
    metrics: crate::telemetry::PipelineMetrics,
    listener_metrics: Arc<crate::listener::metrics::ListenerMetrics>,
}

impl UploadState {
    pub fn new(
        pipeline: PipelineHandle,
        origin: String,
        max_entry_bytes: usize,
        listeners: &crate::listener::metrics::ListenerFamilies,
        metrics: crate::telemetry::PipelineMetrics,
    ) -> Self {
        let listener_metrics = listeners.listener("journal:/upload", Transport::Journal);
        UploadState {
            pipeline,
            origin: Arc::from(origin),
            max_entry_bytes,
            stored_cursors: Arc::default(),
            metrics,
            listener_metrics,
        }
    }
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

/// `(journal id, sequence number)` from an entry's `__CURSOR`, if it has one.
fn cursor_position(raw: &[u8]) -> Option<(String, u64)> {
    let (_, cursor) = crate::journal::fields(raw)
        .into_iter()
        .find(|(name, _)| name == "__CURSOR")?;
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
    let mut decoder = ExportDecoder::new(state.max_entry_bytes);
    let mut buffer = BytesMut::new();
    let mut batch = Vec::new();
    let mut stored = Vec::new();
    let mut num_entries = 0u64;
    // Highest cursor sequence per journal in this body; remembered once durable.
    let mut positions: HashMap<String, u64> = HashMap::new();
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
                            Ok(batch_stored) => stored.push(batch_stored),
                            Err(error) => return unavailable(error),
                        }
                    }
                }
                Ok(None) => break,
                Err(error) => return bad_request(error.to_string()),
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
        Err(error) => return bad_request(error.to_string()),
    }
    if !batch.is_empty() {
        match state.pipeline.submit(Transport::Journal, batch).await {
            Ok(batch_stored) => stored.push(batch_stored),
            Err(error) => return unavailable(error),
        }
    }
    let mut num_stored = 0;
    for batch_stored in stored {
        match batch_stored.durable().await {
            Ok(outcome) => num_stored += outcome.num_stored,
            Err(error) => return unavailable(error),
        }
    }
    {
        let mut stored = state.stored_cursors.lock().expect("cursor map poisoned");
        for (journal, sequence) in positions {
            let highest = stored.entry(journal).or_insert(0);
            *highest = (*highest).max(sequence);
        }
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
        positions: &mut HashMap<String, u64>,
    ) -> Option<Record> {
        if let Some((journal, sequence)) = cursor_position(&entry.raw) {
            let stored = self.stored_cursors.lock().expect("cursor map poisoned");
            if stored
                .get(&journal)
                .is_some_and(|highest| sequence <= *highest)
            {
                self.metrics.journal_duplicates(1);
                return None;
            }
            drop(stored);
            let highest = positions.entry(journal).or_insert(0);
            *highest = (*highest).max(sequence);
        }
        self.listener_metrics
            .messages_received(1, entry.raw.len() as u64);
        if entry.truncated {
            self.listener_metrics
                .message_truncated(Some(peer), self.max_entry_bytes);
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
            65536,
            &listeners,
            metrics.clone(),
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
