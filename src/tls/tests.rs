//! The TLS configuration against certificates made with the `openssl` command line (the
//! commands `docs/security.md` shows): what loads, what is refused, and the identity.

use super::*;
use crate::config::parse_fingerprint;

/// Runs `openssl` with `args` in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let output = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (`NAME-ca.pem`) and a leaf signed by it (`NAME.pem`, `NAME.key`) with `san`.
fn make_pki(dir: &Path, name: &str, san: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
            &format!("/CN={name} CA"),
            "-keyout",
            &format!("{name}-ca.key"),
            "-out",
            &format!("{name}-ca.pem"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName={san}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{name}-ca.pem"),
            "-CAkey",
            &format!("{name}-ca.key"),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn section(dir: &Path, name: &str) -> TlsSection {
    TlsSection {
        cert: Some(dir.join(format!("{name}.pem"))),
        key: Some(dir.join(format!("{name}.key"))),
        client_ca: Some(dir.join(format!("{name}-ca.pem"))),
        ..TlsSection::default()
    }
}

#[test]
fn a_matching_pair_loads_and_a_foreign_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path(), "server", "DNS:localhost,IP:127.0.0.1");
    make_pki(dir.path(), "other", "DNS:other.example.test");
    check(&section(dir.path(), "server")).unwrap();

    let mut mismatched = section(dir.path(), "server");
    mismatched.key = Some(dir.path().join("other.key"));
    let error = check(&mismatched).unwrap_err().to_string();
    assert!(error.contains("does not belong to tls.cert"), "{error}");

    let mut missing = section(dir.path(), "server");
    missing.cert = Some(dir.path().join("nope.pem"));
    let error = check(&missing).unwrap_err().to_string();
    assert!(error.contains("cannot read tls.cert"), "{error}");

    let mut garbage = section(dir.path(), "server");
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    garbage.client_ca = Some(dir.path().join("garbage.pem"));
    let error = check(&garbage).unwrap_err().to_string();
    assert!(error.contains("tls.client-ca"), "{error}");
}

#[test]
fn identities_follow_the_client_auth_mode() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(
        dir.path(),
        "client",
        "DNS:client1.dc1.example.test,DNS:alias.example.test",
    );
    let pem = std::fs::read(dir.path().join("client.pem")).unwrap();
    let cert = CertificateDer::from_pem_slice(&pem).unwrap();
    let fingerprint = fingerprint(&cert);
    assert_eq!(parse_fingerprint(&fingerprint).unwrap(), fingerprint);
    assert_eq!(fingerprint.len(), "sha-256:".len() + 32 * 3 - 1);

    let mut section = TlsSection {
        client_auth: ClientAuth::Ca,
        ..TlsSection::default()
    };
    let identity = |section: &TlsSection| verify::Policy::new(section).identity(Some(&cert));
    assert_eq!(
        identity(&section).as_deref(),
        Some("client1.dc1.example.test")
    );
    section.client_auth = ClientAuth::CaName;
    section.permitted_peers = vec!["alias.example.test".into()];
    assert_eq!(identity(&section).as_deref(), Some("alias.example.test"));
    section.permitted_peers = vec!["*.dc1.example.test".into()];
    assert_eq!(
        identity(&section).as_deref(),
        Some("client1.dc1.example.test")
    );
    section.client_auth = ClientAuth::Fingerprint;
    assert_eq!(identity(&section).as_deref(), Some(fingerprint.as_str()));
    section.client_auth = ClientAuth::None;
    assert_eq!(identity(&section), None);
}
