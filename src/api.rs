//! The node's HTTP API: `GET /metrics` (OpenMetrics for clients that ask for it, else
//! Prometheus text), `GET /healthz` and `GET /v1/status` (the node's view of the cluster,
//! JSON), and for tests only `POST /debug/gossip-faults`.
//!
//! Owns the routes and how they render; the caller binds the listener and passes it in, and
//! cancellation stops the server gracefully. It reads state through [`ApiState`] only and
//! never touches the store or the sockets of the listeners itself.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use prometheus_client::registry::Registry;

use crate::cluster::status::Status;
use crate::cluster::GossipFaults;
use crate::telemetry::Format;

/// Produces the node's `/v1/status` answer at request time.
pub type StatusFn = Arc<dyn Fn() -> Status + Send + Sync>;

/// What the handlers can see. Add fields here (behind `Arc`s) for new endpoints.
#[derive(Clone)]
pub struct ApiState {
    /// The node's metrics, every family registered by its subsystem (read-only from here).
    pub registry: Arc<Registry>,
    /// The cluster view for `/v1/status` (404 without one).
    pub status: Option<StatusFn>,
}

impl ApiState {
    pub fn new(registry: Arc<Registry>) -> ApiState {
        ApiState {
            registry,
            status: None,
        }
    }

    pub fn with_status(mut self, produce: impl Fn() -> Status + Send + Sync + 'static) -> ApiState {
        self.status = Some(Arc::new(produce));
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

/// `POST /debug/gossip-faults` (body `isolate` or `heal`): lets tests partition a running
/// node through its gossip socket's fault seam. Only for nodes started with fault injection
/// (`STARLING_FAULT_INJECTION=1`); never in production.
pub fn fault_router(faults: GossipFaults) -> Router {
    tracing::warn!("fault injection enabled: POST /debug/gossip-faults can partition this node");
    let handler = move |body: String| {
        let faults = faults.clone();
        async move {
            match body.trim() {
                "isolate" => faults.isolate(),
                "heal" => faults.heal(),
                other => {
                    return (
                        axum::http::StatusCode::BAD_REQUEST,
                        format!("unknown fault {other:?}: use isolate or heal\n"),
                    )
                }
            }
            tracing::warn!(fault = body.trim(), "gossip fault injected");
            (axum::http::StatusCode::OK, "ok\n".to_string())
        }
    };
    Router::new().route("/debug/gossip-faults", axum::routing::post(handler))
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

async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        crate::telemetry::render(&state.registry, format),
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
    use crate::listener::metrics::ListenerFamilies;
    use crate::record::Transport;
    use crate::telemetry::PipelineMetrics;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A minimal HTTP/1.1 GET returning the status line and the body.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        let (head, body) = get_with(addr, path, "").await;
        (head.lines().next().unwrap().to_owned(), body)
    }

    /// A GET with extra header lines; returns the whole head and the body.
    async fn get_with(addr: std::net::SocketAddr, path: &str, headers: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn serves_metrics_and_health_until_cancelled() {
        let mut registry = Registry::default();
        let pipeline = PipelineMetrics::register(&mut registry);
        ListenerFamilies::register(&mut registry, &pipeline)
            .listener("tcp:test", Transport::Tcp)
            .messages_received(5, 500);
        pipeline.records_stored(Transport::Tcp, 9);
        let state = ApiState::new(Arc::new(registry)).with_status(|| {
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
        assert!(body.contains("starling_stored_messages_total{transport=\"tcp\"} 9"));
        assert!(body.contains("# TYPE starling_stored_messages_total counter"));
        assert!(!body.contains("# EOF"));

        // A Prometheus server asks for OpenMetrics and gets it.
        let (head, body) = get_with(
            addr,
            "/metrics",
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            ),
            "{head}"
        );
        assert!(body.contains("# TYPE starling_stored_messages counter"));
        assert!(body.contains("starling_stored_messages_total{transport=\"tcp\"} 9"));
        assert!(body.ends_with("# EOF\n"), "{body}");

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
