//! Client-certificate policy: which certificates `tls.client-auth` accepts, the identity a
//! verified client is stored under, and the rustls verifier that applies both during the
//! handshake (so a refused client gets a TLS alert, not an open connection).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::metrics::RefusalReason;
use crate::config::{ClientAuth, TlsSection};

/// What a client certificate must satisfy, and how its identity is named.
#[derive(Debug)]
pub struct Policy {
    pub mode: ClientAuth,
    /// Lower-case permitted names; `*.x` matches one left label.
    names: Vec<String>,
    /// Normalised `sha-256:AB:…` fingerprints.
    fingerprints: Vec<String>,
}

/// A refused client certificate: why, and its fingerprint (for the log line).
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {detail} (client certificate {fingerprint})")]
pub struct Refusal {
    pub reason: RefusalReason,
    pub fingerprint: String,
    pub detail: String,
}

impl Policy {
    pub fn new(section: &TlsSection) -> Policy {
        Policy {
            mode: section.client_auth,
            names: section
                .permitted_peers
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
            fingerprints: section.fingerprints.clone(),
        }
    }

    /// The identity of a client whose certificate passed the handshake: the permitted name
    /// that matched (`ca+name`), the first DNS name or else the common name (`ca`), the
    /// fingerprint (`fingerprint`); `None` without client authentication.
    pub fn identity(&self, cert: Option<&CertificateDer<'_>>) -> Option<Arc<str>> {
        let cert = cert?;
        let identity = match self.mode {
            ClientAuth::None => return None,
            ClientAuth::Fingerprint => super::fingerprint(cert),
            ClientAuth::Ca => names(cert).into_iter().next()?,
            ClientAuth::CaName => self.matching_name(cert)?,
        };
        Some(Arc::from(identity))
    }

    /// The certificate's name that a permitted peer matches (DNS SANs; the CN only when the
    /// certificate has no DNS SAN).
    fn matching_name(&self, cert: &CertificateDer<'_>) -> Option<String> {
        names(cert)
            .into_iter()
            .find(|name| self.names.iter().any(|pattern| name_matches(pattern, name)))
    }

    /// Checks what the CA check does not: the name or the fingerprint.
    fn authorize(&self, cert: &CertificateDer<'_>) -> Result<(), Refusal> {
        match self.mode {
            ClientAuth::None | ClientAuth::Ca => Ok(()),
            ClientAuth::CaName => match self.matching_name(cert) {
                Some(_) => Ok(()),
                None => Err(Refusal {
                    reason: RefusalReason::name_not_permitted,
                    fingerprint: super::fingerprint(cert),
                    detail: format!(
                        "certificate names {:?} match no tls.permitted-peers",
                        names(cert)
                    ),
                }),
            },
            ClientAuth::Fingerprint => {
                let fingerprint = super::fingerprint(cert);
                if self.fingerprints.contains(&fingerprint) {
                    Ok(())
                } else {
                    Err(Refusal {
                        reason: RefusalReason::fingerprint_not_permitted,
                        fingerprint,
                        detail: "fingerprint not in tls.fingerprints".into(),
                    })
                }
            }
        }
    }
}

/// The DNS subject alternative names of a certificate, lower-case; its common name when it
/// has none (RFC 6125: the CN is a fallback only).
pub fn names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                found.push(dns.to_ascii_lowercase());
            }
        }
    }
    if found.is_empty() {
        if let Some(cn) = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            found.push(cn.to_ascii_lowercase());
        }
    }
    found
}

/// `pattern` (lower-case) matches `name` (lower-case): equal, or `*.rest` with `name` one
/// non-empty label followed by `.rest`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(rest) => name
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => pattern == name,
    }
}

/// The rustls verifier: the CA check (when the mode has one), then the policy.
#[derive(Debug)]
pub struct ClientVerifier {
    inner: Option<Arc<dyn ClientCertVerifier>>,
    policy: Arc<Policy>,
    provider: Arc<CryptoProvider>,
}

impl ClientVerifier {
    pub fn new(
        inner: Option<Arc<dyn ClientCertVerifier>>,
        policy: Arc<Policy>,
        provider: Arc<CryptoProvider>,
    ) -> ClientVerifier {
        ClientVerifier {
            inner,
            policy,
            provider,
        }
    }
}

fn refused(refusal: Refusal) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(refusal))))
}

/// The reason a CA check failed.
fn ca_reason(error: &rustls::Error) -> RefusalReason {
    match error {
        rustls::Error::InvalidCertificate(cert_error) => match cert_error {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                RefusalReason::expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                RefusalReason::not_yet_valid
            }
            CertificateError::UnknownIssuer => RefusalReason::unknown_ca,
            CertificateError::Revoked => RefusalReason::revoked,
            _ => RefusalReason::bad_certificate,
        },
        _ => RefusalReason::bad_certificate,
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match &self.inner {
            Some(inner) => inner.root_hint_subjects(),
            None => &[],
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(inner) = &self.inner {
            if let Err(error) = inner.verify_client_cert(end_entity, intermediates, now) {
                return Err(refused(Refusal {
                    reason: ca_reason(&error),
                    fingerprint: super::fingerprint(end_entity),
                    detail: error.to_string(),
                }));
            }
        }
        self.policy.authorize(end_entity).map_err(refused)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_left_label() {
        assert!(name_matches("*.dc1.example.com", "web1.dc1.example.com"));
        assert!(!name_matches("*.dc1.example.com", "a.web1.dc1.example.com"));
        assert!(!name_matches("*.dc1.example.com", "dc1.example.com"));
        assert!(!name_matches("*.dc1.example.com", ".dc1.example.com"));
        assert!(name_matches("client1.example.test", "client1.example.test"));
        assert!(!name_matches(
            "client1.example.test",
            "client2.example.test"
        ));
    }
}
