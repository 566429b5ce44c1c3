//! The server side of one connection's TLS handshake: under `tls.handshake-timeout`, with the
//! configuration in force when the connection was accepted; a refusal is logged (with the
//! client certificate's fingerprint when it sent one) and counted by reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::metrics::{RefusalReason, TlsMetrics};
use super::verify::Refusal;
use super::TlsServer;

/// A handshake that did not complete (already logged and counted).
#[derive(Debug)]
pub struct HandshakeRefused {
    pub reason: RefusalReason,
}

/// Accepts TLS on a listener's connections.
#[derive(Debug, Clone)]
pub struct TlsAcceptor {
    server: Arc<TlsServer>,
    metrics: TlsMetrics,
    timeout: Duration,
}

impl TlsAcceptor {
    pub fn new(server: Arc<TlsServer>, metrics: TlsMetrics) -> TlsAcceptor {
        let timeout = server.section().handshake_timeout;
        TlsAcceptor {
            server,
            metrics,
            timeout,
        }
    }

    /// Runs the handshake; on success returns the stream and the client's identity
    /// (`None` without client authentication). `None` as a whole when `cancel` fired first.
    pub async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        cancel: &CancellationToken,
    ) -> Option<Result<(TlsStream<TcpStream>, Option<Arc<str>>), HandshakeRefused>> {
        let built = self.server.current();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&built.config));
        let outcome = tokio::select! {
            () = cancel.cancelled() => return None,
            outcome = tokio::time::timeout(self.timeout, acceptor.accept(stream)) => outcome,
        };
        let (reason, detail) = match outcome {
            Ok(Ok(stream)) => {
                let (_, connection) = stream.get_ref();
                let identity = built.policy.identity(
                    connection
                        .peer_certificates()
                        .and_then(|certs| certs.first()),
                );
                self.metrics.handshake();
                tracing::debug!(%peer, identity = identity.as_deref(), "TLS handshake done");
                return Some(Ok((stream, identity)));
            }
            Ok(Err(error)) => classify(&error),
            Err(_elapsed) => (
                RefusalReason::handshake_timeout,
                format!("no complete handshake within {:?}", self.timeout),
            ),
        };
        self.metrics.refused(reason);
        tracing::info!(%peer, %reason, "TLS connection refused: {detail}");
        Some(Err(HandshakeRefused { reason }))
    }
}

/// The reason and a description of a failed handshake.
fn classify(error: &std::io::Error) -> (RefusalReason, String) {
    let Some(tls_error) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return (RefusalReason::closed, error.to_string());
    };
    let reason = match tls_error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            match other.0.downcast_ref::<Refusal>() {
                Some(refusal) => return (refusal.reason, refusal.to_string()),
                None => RefusalReason::bad_certificate,
            }
        }
        rustls::Error::InvalidCertificate(_) => RefusalReason::bad_certificate,
        rustls::Error::NoCertificatesPresented => RefusalReason::no_client_cert,
        rustls::Error::InvalidMessage(_) => RefusalReason::not_tls,
        rustls::Error::PeerIncompatible(_) => RefusalReason::incompatible,
        rustls::Error::AlertReceived(_) => RefusalReason::client_alert,
        _ => RefusalReason::protocol,
    };
    (reason, tls_error.to_string())
}
