//! TLS counters: handshakes completed and refused (by reason), per listener. No I/O.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Why a TLS connection was closed before it carried anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RefusalReason {
    /// The client certificate does not chain to `tls.client-ca`.
    unknown_ca,
    /// The client certificate is past its notAfter.
    expired,
    /// The client certificate is before its notBefore.
    not_yet_valid,
    /// The client certificate is revoked.
    revoked,
    /// Any other problem with the client certificate (encoding, signature, purpose).
    bad_certificate,
    /// `ca+name`: none of the certificate's names is permitted.
    name_not_permitted,
    /// `fingerprint`: the certificate's fingerprint is not listed.
    fingerprint_not_permitted,
    /// A client certificate is required and none was sent.
    no_client_cert,
    /// The bytes were not TLS (e.g. plaintext syslog sent to the TLS port).
    not_tls,
    /// No common protocol version or cipher suite (e.g. TLS 1.0).
    incompatible,
    /// The client refused the handshake (it sent an alert, e.g. it does not trust our
    /// certificate).
    client_alert,
    /// Any other TLS protocol error.
    protocol,
    /// The handshake did not finish within `tls.handshake-timeout`.
    handshake_timeout,
    /// The connection closed or failed during the handshake.
    closed,
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    listener: String,
    reason: RefusalReason,
}

/// The TLS families of one node.
#[derive(Debug, Clone, Default)]
pub struct TlsFamilies {
    handshakes: Family<ListenerLabel, Counter>,
    refused: Family<RefusalLabels, Counter>,
}

impl TlsFamilies {
    pub fn register(registry: &mut Registry) -> TlsFamilies {
        let families = TlsFamilies::default();
        registry.register(
            "starling_tls_handshakes",
            "TLS handshakes completed (client authenticated as tls.client-auth requires)",
            families.handshakes.clone(),
        );
        registry.register(
            "starling_tls_handshake_failures",
            "TLS connections closed before the handshake completed, by reason",
            families.refused.clone(),
        );
        families
    }

    /// The counters of one listener.
    pub fn listener(&self, name: &str) -> TlsMetrics {
        TlsMetrics {
            listener: name.to_owned(),
            handshakes: self
                .handshakes
                .get_or_create(&ListenerLabel {
                    listener: name.to_owned(),
                })
                .clone(),
            refused: self.refused.clone(),
        }
    }
}

/// One listener's TLS counters.
#[derive(Debug, Clone)]
pub struct TlsMetrics {
    listener: String,
    handshakes: Counter,
    refused: Family<RefusalLabels, Counter>,
}

impl TlsMetrics {
    pub fn handshake(&self) {
        self.handshakes.inc();
    }

    pub fn refused(&self, reason: RefusalReason) {
        self.refused
            .get_or_create(&RefusalLabels {
                listener: self.listener.clone(),
                reason,
            })
            .inc();
    }
}
