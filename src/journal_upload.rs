//! `POST /upload`: journald's own upload protocol (what `systemd-journal-upload` speaks).
//!
//! The body (chunked, `Content-Type: application/vnd.fdo.journal`, sent after
//! `Expect: 100-continue`, which hyper answers when the body is first read) is decoded as it
//! arrives; each entry becomes a record with transport and parse `journal`, its export bytes
//! as raw. The answer is sent only after every entry of the body is durable, so the
//! uploader's saved cursor never moves past what Starling stored. A malformed body gets a
//! 400 with the reason and the connection is closed.
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
use crate::record::{ParseStatus, Record, Transport};
use crate::store::StoreHandle;

/// Entries appended to the store per batch.
const BATCH_ENTRIES: usize = 256;

pub const CONTENT_TYPE: &str = "application/vnd.fdo.journal";

#[derive(Clone)]
pub struct UploadState {
    pub store: StoreHandle,
    pub origin: Arc<str>,
    pub max_entry_bytes: usize,
    /// Per journal (`s=` of `__CURSOR`): the highest sequence number stored.
    stored_cursors: Arc<Mutex<HashMap<String, u64>>>,
    /// Stored records and entries recognised as already stored (uploader retries).
    pub metrics: crate::telemetry::PipelineMetrics,
    listener_metrics: Arc<crate::listener::metrics::ListenerMetrics>,
}

impl UploadState {
    pub fn new(
        store: StoreHandle,
        origin: String,
        max_entry_bytes: usize,
        listeners: &crate::listener::metrics::ListenerFamilies,
        metrics: crate::telemetry::PipelineMetrics,
    ) -> Self {
        let listener_metrics = listeners.listener("journal:/upload", Transport::Journal);
        UploadState {
            store,
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
    let mut tickets = Vec::new();
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
                        match state.store.append(std::mem::take(&mut batch)).await {
                            Ok(ticket) => tickets.push(ticket),
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
        match state.store.append(batch).await {
            Ok(ticket) => tickets.push(ticket),
            Err(error) => return unavailable(error),
        }
    }
    let mut num_stored = 0;
    for ticket in tickets {
        match ticket.durable().await {
            Ok(outcome) => num_stored += outcome.num_stored,
            Err(error) => return unavailable(error),
        }
    }
    state
        .metrics
        .records_stored(Transport::Journal, num_stored as u64);
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
