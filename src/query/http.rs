//! `GET /v1/logs`: a query over the node's own store, streamed as NDJSON (or raw lines) as
//! the scan finds records, ending with a `{"_meta": …}` line (cursor, counts, corrupt
//! frames). The scan runs on a blocking thread and hands chunks to the response through a
//! small channel: a slow client slows the scan, and a client that goes away stops it (the
//! scan checks the channel every few thousand records even when nothing matches).
//!
//! At most `max_scans` queries run at once; more get 429. Bad parameters get 400 with the
//! parameter and the reason.

use std::convert::Infallible;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, Semaphore};

use super::output::{self, Format};
use super::request::{parse_request, query_pairs};
use super::scan;
use crate::store::StoreReader;

/// The query endpoints' metrics.
#[derive(Debug, Clone, Default)]
pub struct QueryMetrics {
    /// Scans running now.
    pub active: Gauge<i64, AtomicI64>,
    /// Records read and tested by API scans.
    pub scanned: Counter<u64, AtomicU64>,
}

impl QueryMetrics {
    pub fn register(registry: &mut Registry) -> QueryMetrics {
        let metrics = QueryMetrics::default();
        registry.register(
            "starling_query_scans_active",
            "API queries (GET /v1/logs) scanning the store now",
            metrics.active.clone(),
        );
        registry.register(
            "starling_query_scanned_records",
            "Stored records read and tested against a filter by API queries",
            metrics.scanned.clone(),
        );
        metrics
    }
}

/// What the query routes need.
#[derive(Clone)]
pub struct LogsState {
    pub reader: StoreReader,
    pub metrics: QueryMetrics,
    scans: Arc<Semaphore>,
    window_max_bytes: usize,
}

/// Queries running at once by default.
pub const MAX_SCANS: usize = 8;

impl LogsState {
    pub fn new(reader: StoreReader, metrics: QueryMetrics) -> LogsState {
        LogsState {
            reader,
            metrics,
            scans: Arc::new(Semaphore::new(MAX_SCANS)),
            window_max_bytes: scan::WINDOW_MAX_BYTES,
        }
    }

    /// Bounds the memory one scan window holds (tests use a small one to exercise splits).
    pub fn with_window_max_bytes(mut self, bytes: usize) -> LogsState {
        self.window_max_bytes = bytes;
        self
    }
}

pub fn router(state: LogsState) -> Router {
    Router::new().route("/v1/logs", get(logs)).with_state(state)
}

fn bad_request(error: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("bad parameter {error}\n"),
    )
        .into_response()
}

/// A chunk is sent once it holds this much, or once the oldest line in it waited
/// `FLUSH_AFTER` (so the first result is not held back by a slow, selective scan).
const CHUNK_BYTES: usize = 64 * 1024;
const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// Counts a running scan in the gauge for as long as it lives (also if the scan panics).
struct Active<'a>(&'a Gauge<i64, AtomicI64>);

impl<'a> Active<'a> {
    fn new(gauge: &'a Gauge<i64, AtomicI64>) -> Active<'a> {
        gauge.inc();
        Active(gauge)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn logs(State(state): State<LogsState>, RawQuery(raw): RawQuery) -> Response {
    let request = match query_pairs(raw.as_deref())
        .and_then(|pairs| parse_request(&pairs, &[], chrono::Utc::now()))
    {
        Ok(request) => request,
        Err(error) => return bad_request(error),
    };
    let Ok(permit) = state.scans.clone().try_acquire_owned() else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_SCANS} queries are running; try again when one has finished\n"),
        )
            .into_response();
    };
    let mut query = request.query;
    query.window_max_bytes = state.window_max_bytes;
    let format = request.format;
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let metrics = state.metrics.clone();
    let reader = state.reader.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _active = Active::new(&metrics.active);
        let started = Instant::now();
        let mut chunk = Vec::with_capacity(CHUNK_BYTES);
        let mut oldest: Option<Instant> = None;
        let summary = scan::run(&reader, &query, &|| tx.is_closed(), &mut |hit| {
            output::write_hit(&mut chunk, hit, format);
            let now = Instant::now();
            let first = *oldest.get_or_insert(now);
            if chunk.len() >= CHUNK_BYTES || now - first >= FLUSH_AFTER {
                oldest = None;
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES));
                return tx.blocking_send(Bytes::from(full)).is_ok();
            }
            true
        });
        metrics.scanned.inc_by(summary.scanned);
        if !summary.cancelled {
            let elapsed = started.elapsed().as_millis() as u64;
            let meta = output::meta_value(&summary, elapsed, None);
            let _ = serde_json::to_writer(&mut chunk, &meta);
            chunk.push(b'\n');
            let _ = tx.blocking_send(Bytes::from(chunk));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    let content_type = match format {
        Format::Json => "application/x-ndjson",
        Format::Raw { .. } => "text/plain; charset=utf-8",
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response()
}
