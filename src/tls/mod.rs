//! TLS for Starling's surfaces: the server configuration built from `[tls]` (rustls with the
//! `ring` provider only, TLS 1.2 and 1.3), client-certificate policy (`tls.client-auth`), the
//! identity a verified client is stored under (`Record::tls_peer`), and the handshake of one
//! accepted connection with a timeout, its refusals counted by reason.
//!
//! The configuration in force is held behind a lock and taken once per accepted connection
//! ([`TlsServer::current`]), so a reload swaps it for new connections while connections
//! already open keep theirs.
//!
//! It reads the certificate and key files; it owns no socket and no accept loop (those are
//! `listener::tcp`'s).

mod handshake;
mod metrics;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;

use crate::config::{ClientAuth, TlsSection};

pub use handshake::{HandshakeRefused, TlsAcceptor};
pub use metrics::{RefusalReason, TlsFamilies, TlsMetrics};

/// Why `[tls]`'s files could not be turned into a server configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.{key} is not set")]
    Missing { key: &'static str },
    #[error("cannot read tls.{key} {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls.{key} {path}: {message}")]
    Content {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("tls.key {key} does not belong to tls.cert {cert}: {message}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Build(String),
}

/// The one crypto provider: `ring` (no second provider is compiled in). rustls 0.23.48
/// deprecated `ring::default_provider` to steer users to aws-lc-rs (post-quantum key
/// exchange); Starling keeps `ring` (no C toolchain, one provider), so the warning is allowed.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A built server configuration and the client policy it was built with.
#[derive(Debug)]
pub struct Built {
    pub config: Arc<ServerConfig>,
    pub policy: Arc<verify::Policy>,
    /// The leaf certificate's notAfter, seconds since the epoch.
    pub cert_not_after: i64,
}

/// The TLS configuration of a server, replaceable while it runs.
#[derive(Debug)]
pub struct TlsServer {
    section: TlsSection,
    current: RwLock<Arc<Built>>,
}

impl TlsServer {
    /// Loads `[tls]`'s files; fails if any does not load or the key does not match.
    pub fn load(section: &TlsSection) -> Result<TlsServer, TlsError> {
        let built = build(section)?;
        Ok(TlsServer {
            section: section.clone(),
            current: RwLock::new(Arc::new(built)),
        })
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<Built> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads the files again and swaps the result in; on failure the configuration in
    /// force stays and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let built = build(&self.section)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(built);
        Ok(())
    }

    pub fn section(&self) -> &TlsSection {
        &self.section
    }
}

/// Checks that `[tls]`'s files load and the key matches the certificate (`starling
/// validate`).
pub fn check(section: &TlsSection) -> Result<(), TlsError> {
    build(section).map(|_| ())
}

fn path<'a>(value: &'a Option<PathBuf>, key: &'static str) -> Result<&'a Path, TlsError> {
    value.as_deref().ok_or(TlsError::Missing { key })
}

fn read(path: &Path, key: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn content(path: &Path, key: &'static str, message: impl Into<String>) -> TlsError {
    TlsError::Content {
        key,
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Every certificate of a PEM file (at least one).
fn load_certs(path: &Path, key: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, key)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| content(path, key, format!("not a PEM certificate file: {error}")))?;
    if certs.is_empty() {
        return Err(content(path, key, "holds no PEM certificate"));
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert).map_err(|error| {
            content(path, key, format!("a certificate does not parse: {error}"))
        })?;
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "key")?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|error| content(path, "key", format!("no usable PEM private key: {error}")))
}

/// The leaf's notAfter (seconds since the epoch).
fn not_after(cert: &CertificateDer<'_>) -> i64 {
    x509_parser::parse_x509_certificate(cert)
        .map(|(_, parsed)| parsed.validity().not_after.timestamp())
        .unwrap_or(0)
}

fn build(section: &TlsSection) -> Result<Built, TlsError> {
    let cert_path = path(&section.cert, "cert")?;
    let key_path = path(&section.key, "key")?;
    let certs = load_certs(cert_path, "cert")?;
    let key = load_key(key_path)?;
    let cert_not_after = not_after(&certs[0]);
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsError::Build(error.to_string()))?;
    let policy = Arc::new(verify::Policy::new(section));
    let builder = match section.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let inner = match mode {
                ClientAuth::Ca | ClientAuth::CaName => {
                    let ca_path = path(&section.client_ca, "client-ca")?;
                    let mut roots = RootCertStore::empty();
                    for ca in load_certs(ca_path, "client-ca")? {
                        roots.add(ca).map_err(|error| {
                            content(ca_path, "client-ca", format!("not a usable CA: {error}"))
                        })?;
                    }
                    let verifier = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        Arc::clone(&provider),
                    )
                    .build()
                    .map_err(|error| TlsError::Build(error.to_string()))?;
                    Some(verifier)
                }
                _ => None,
            };
            builder.with_client_cert_verifier(Arc::new(verify::ClientVerifier::new(
                inner,
                Arc::clone(&policy),
                provider,
            )))
        }
    };
    let mut config =
        builder
            .with_single_cert(certs, key)
            .map_err(|error| TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
                message: error.to_string(),
            })?;
    // RFC 9662: no TLS 1.3 early data for syslog (rustls' default, kept explicit).
    config.max_early_data_size = 0;
    Ok(Built {
        config: Arc::new(config),
        policy,
        cert_not_after,
    })
}

/// `sha-256:AB:CD:…` of a DER certificate.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = sha2::Sha256::digest(cert);
    let hex: Vec<String> = digest.iter().map(|byte| format!("{byte:02X}")).collect();
    format!("sha-256:{}", hex.join(":"))
}

#[cfg(test)]
mod tests;
