//! The node's HTTP API: `GET /metrics` (OpenMetrics for clients that ask for it, else
//! Prometheus text), `GET /healthz` and `GET /v1/status` (the node's view of the cluster,
//! JSON), and for tests only `POST /debug/gossip-faults`.
//!
//! Owns the routes and how they render; the caller binds the listener and passes it in, and
//! cancellation stops the server gracefully. It reads state through [`ApiState`] only and
//! never touches the store or the sockets of the listeners itself.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Request};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// What one client may cost the API: a connection slot, for a bounded time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Connections served at once; further ones wait in the kernel's accept queue (and are
    /// refused by the kernel once that is full).
    pub max_connections: usize,
    /// The longest a connection may take to send a request's head, and the longest it may
    /// sit idle between requests; then it is closed.
    pub header_timeout: Duration,
    /// The longest a handler reading a request body waits for the next piece of it; then
    /// the read fails and the connection is closed. A body that keeps arriving is never cut.
    pub body_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// hyper's read buffer, which bounds a request head and every body chunk held at once.
const MAX_BUF_BYTES: usize = 256 * 1024;

/// Serves the API on `listener` until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    limits: ApiLimits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(state), limits, cancel).await
}

/// Serves any router (the API's routes merged with others) until `cancel` fires, then lets
/// every open connection finish its request and returns.
///
/// `axum::serve` has no timer, so hyper's header timeout never fires and nothing bounds
/// the connections: this accept loop holds one semaphore permit per connection (accepting
/// only while one is free), serves each with hyper's HTTP/1 server with a header read
/// timeout, and wraps each request body in a progress timeout ([`IdleTimeoutBody`]).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ApiLimits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(%error, "the API cannot accept a connection");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                    continue;
                }
            },
        };
        let router = router.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, router, limits, cancel).await;
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: ApiLimits,
    cancel: CancellationToken,
) {
    let body_timeout = limits.body_timeout;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut router = router.clone();
        let (mut parts, body) = request.into_parts();
        // Handlers may extract the peer's address (`ConnectInfo<SocketAddr>`).
        parts.extensions.insert(ConnectInfo(peer));
        let body = Body::new(IdleTimeoutBody::new(body, body_timeout));
        tower_service::Service::call(&mut router, Request::from_parts(parts, body))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF_BYTES);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "API connection closed with an error");
    }
}

/// The request body as handlers see it: fails with "timed out" when the client sends
/// nothing for `timeout` while the handler waits for it. The clock runs only while a read
/// is waiting, so a handler that is slow to read (back-pressure) is never cut.
pub struct IdleTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            timeout,
            sleep: None,
        }
    }
}

/// The error of a request body that stopped arriving.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body data for {0:?}")]
pub struct BodyTimedOut(Duration);

impl<B> http_body::Body for IdleTimeoutBody<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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

    /// A body that sends `num_frames` one-byte frames, one every `every`, then stalls forever.
    struct Trickle {
        num_frames: usize,
        every: std::time::Duration,
        next: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl http_body::Body for Trickle {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            if self.num_frames == 0 {
                return Poll::Pending;
            }
            let every = self.every;
            let sleep = self
                .next
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
            std::task::ready!(sleep.as_mut().poll(cx));
            self.next = None;
            self.num_frames -= 1;
            Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
                b"x",
            )))))
        }
    }

    #[tokio::test]
    async fn the_body_timeout_is_a_progress_timeout() {
        use futures::StreamExt as _;
        let timeout = Duration::from_millis(200);
        // 20 frames 60 ms apart: 1.2 s in all, six times the timeout, never cut.
        let body = IdleTimeoutBody::new(
            Trickle {
                num_frames: 20,
                every: Duration::from_millis(60),
                next: None,
            },
            timeout,
        );
        let started = tokio::time::Instant::now();
        let mut stream = Body::new(body).into_data_stream();
        for _ in 0..20 {
            assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"x");
        }
        assert!(started.elapsed() >= Duration::from_millis(1200));
        // Then it stalls: the next read fails once the timeout has passed without data.
        let stalled = tokio::time::Instant::now();
        let error = stream.next().await.unwrap().unwrap_err();
        assert!(
            error.to_string().contains("no request body data"),
            "{error}"
        );
        let waited = stalled.elapsed();
        assert!(waited >= timeout && waited < timeout * 10, "{waited:?}");
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
        let server = tokio::spawn(serve(listener, state, ApiLimits::default(), cancel.clone()));

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
