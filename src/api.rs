//! The node's HTTP API: `GET /metrics` (Prometheus text), `GET /healthz` and `GET /v1/status`
//! (the node's view of the cluster, JSON).
//!
//! Owns the routes and how they render; the caller binds the listener and passes it in, and
//! cancellation stops the server gracefully. It reads state through [`ApiState`] only and
//! never touches the store or the sockets of the listeners itself.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::cluster::status::Status;
use crate::telemetry::{ExternalMetric, Metrics};

/// Produces metrics owned elsewhere (store stats, cluster state) at scrape time.
pub type ExternalMetricsFn = Arc<dyn Fn() -> Vec<ExternalMetric> + Send + Sync>;

/// Produces the node's `/v1/status` answer at request time.
pub type StatusFn = Arc<dyn Fn() -> Status + Send + Sync>;

/// What the handlers can see. Add fields here (behind `Arc`s) for new endpoints.
#[derive(Clone)]
pub struct ApiState {
    pub metrics: Arc<Metrics>,
    /// Extra samples appended to `/metrics`, e.g. `StoreHandle::stats()` mapped to
    /// [`ExternalMetric`]s.
    pub external_metrics: Option<ExternalMetricsFn>,
    /// The cluster view for `/v1/status` (404 without one).
    pub status: Option<StatusFn>,
}

impl ApiState {
    pub fn new(metrics: Arc<Metrics>) -> ApiState {
        ApiState {
            metrics,
            external_metrics: None,
            status: None,
        }
    }

    pub fn with_status(mut self, produce: impl Fn() -> Status + Send + Sync + 'static) -> ApiState {
        self.status = Some(Arc::new(produce));
        self
    }

    pub fn with_external_metrics(
        mut self,
        produce: impl Fn() -> Vec<ExternalMetric> + Send + Sync + 'static,
    ) -> ApiState {
        self.external_metrics = Some(Arc::new(produce));
        self
    }
}

/// The routes, for serving or for composing with more routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/v1/status", get(status))
        .with_state(state)
}

/// Serves the API on `listener` until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(state), cancel).await
}

/// Serves any router (the API's routes merged with others) until `cancel` fires.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    // Handlers may extract the peer's address (`ConnectInfo<SocketAddr>`).
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let extra = state
        .external_metrics
        .as_ref()
        .map(|produce| produce())
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&extra),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn status(State(state): State<ApiState>) -> axum::response::Response {
    match &state.status {
        Some(produce) => Json(produce()).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            "this node runs no cluster",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Transport;
    use crate::telemetry::MetricKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A minimal HTTP/1.1 GET returning the status line and the body.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn serves_metrics_and_health_until_cancelled() {
        let metrics = Metrics::new();
        metrics
            .listener("tcp:test", Transport::Tcp)
            .messages_received(5, 500);
        let state = ApiState::new(Arc::clone(&metrics))
            .with_external_metrics(|| {
                vec![ExternalMetric::new(
                    "starling_store_commits_total",
                    "Group commits.",
                    MetricKind::Counter,
                    9.0,
                )]
            })
            .with_status(|| {
                let view = crate::cluster::ClusterView {
                    self_id: "a".into(),
                    members: Vec::new(),
                    master: Some("a".into()),
                };
                Status::from_view(&view, 7)
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state, cancel.clone()));

        let (status, body) = get(addr, "/healthz").await;
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));

        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains(
            "starling_received_messages_total{listener=\"tcp:test\",transport=\"tcp\"} 5"
        ));
        assert!(body.contains("starling_store_commits_total 9"));

        let (status, body) = get(addr, "/v1/status").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let status: Status = serde_json::from_str(&body).unwrap();
        assert_eq!((status.role.as_str(), status.generation), ("master", 7));

        let (status, _) = get(addr, "/nope").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");

        cancel.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("server stops after cancel")
            .unwrap()
            .unwrap();
    }
}
