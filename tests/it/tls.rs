//! Syslog over TLS against real peers: `rsyslogd` with its `gtls` and `ossl` stream drivers in
//! `x509/name` mode, syslog-ng's `network(transport("tls"))`, and `openssl s_client` for each
//! refusal. Certificates are made with the `openssl` commands of `docs/security.md`, and the
//! peers' configurations are that page's snippets, with only names, paths and ports
//! substituted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::rsyslog::snippet;
use crate::sandbox::{have_program, send_signal, skip_or_fail, wait_until, Node};

const GUIDE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md"));
const WAIT: Duration = Duration::from_secs(20);

/// The collector's name in the certificates the tests make (it resolves to this machine).
const SERVER: &str = "localhost";

/// Runs a `sh` snippet of the guide in `dir` with `collector1.example.com` replaced by
/// `name` and `-days 397` by `days`.
fn run_snippet(dir: &Path, name: &str, cert_name: &str, days: &str, ca: &str) {
    let script = snippet(GUIDE, name)
        .replace("Example Syslog CA", ca)
        .replace("collector1.example.com", cert_name)
        .replace("-days 397", &format!("-days {days}"));
    let output = Command::new("sh")
        .arg("-ec")
        .arg(&script)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        output.status.success(),
        "snippet {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA named `ca` in `dir` (the guide's commands) with the collector's and senders'
/// certificates: `localhost` (the collector), `web1.example.com`, `db1.other.test` (not
/// permitted) and `expired.example.com` (expired yesterday).
fn make_pki(dir: &Path, ca: &str) {
    std::fs::create_dir_all(dir).unwrap();
    run_snippet(dir, "make-ca", "", "397", ca);
    for name in [SERVER, "web1.example.com", "db1.other.test"] {
        run_snippet(dir, "make-cert", name, "397", ca);
    }
    run_snippet(dir, "make-cert", "expired.example.com", "-1", ca);
}

/// A node with the guide's `[tls]` configuration (plus `extra` TOML lines in `[tls]`), its
/// files in `pki`; returns the node and its TLS address.
fn start_node(work: &Path, pki: &Path, extra: &str) -> (Node, SocketAddr) {
    let config = snippet(GUIDE, "starling-tls")
        .replace("/etc/starling/tls/", &format!("{}/", pki.display()))
        .replace("collector1.example.com", SERVER)
        .replace("0.0.0.0:6514", "127.0.0.1:0");
    let path = work.join("starling.toml");
    std::fs::write(&path, format!("{config}{extra}\n")).unwrap();
    let node = Node::start(&["--config", path.to_str().unwrap()]);
    let tls = node
        .stdout()
        .iter()
        .find_map(|line| {
            line.strip_prefix("starling: listening syslog-tls ")?
                .parse()
                .ok()
        })
        .expect("a syslog-tls line");
    (node, tls)
}

/// `starling_tls_handshake_failures_total` of `reason` (0 while the series is absent).
fn refusals(node: &Node, reason: &str) -> f64 {
    let label = format!("reason=\"{reason}\"");
    node.metrics()
        .lines()
        .filter(|line| line.starts_with("starling_tls_handshake_failures_total{"))
        .filter(|line| line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn with_app(records: &[Value], app: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|record| record["app_name"] == app)
        .cloned()
        .collect()
}

struct Rsyslogd {
    child: Child,
    socket: PathBuf,
}

impl Rsyslogd {
    fn start(work: &Path, forwarding: &str) -> Rsyslogd {
        let spool = work.join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let socket = work.join("log.sock");
        let config = work.join("rsyslog.conf");
        std::fs::write(
            &config,
            format!(
                "global(workDirectory=\"{spool}\")\n\
                 module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{socket}\")\n\
                 {forwarding}\n",
                spool = spool.display(),
                socket = socket.display(),
            ),
        )
        .unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&config)
            .arg("-i")
            .arg(work.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rsyslogd");
        assert!(wait_until(WAIT, || socket.exists()), "rsyslogd socket");
        Rsyslogd { child, socket }
    }

    fn log(&self, tag: &str, message: &str) {
        let status = Command::new("logger")
            .arg("-u")
            .arg(&self.socket)
            .args(["-t", tag, "-p", "user.err", message])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        send_signal(self.child.id(), libc::SIGTERM);
        if !wait_until(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten().is_some()
        }) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// rsyslog's forwarding snippet `name` with the test's paths, port and certificate.
fn rsyslog_forwarding(name: &str, pki: &Path, client_pki: &Path, port: u16) -> String {
    // x509/name checks the certificate against StreamDriverPermittedPeers, not the target:
    // connect to the address the node listens on (localhost may resolve to ::1 first).
    snippet(GUIDE, name)
        .replace("target=\"collector1.example.com\"", "target=\"127.0.0.1\"")
        .replace("collector1.example.com", SERVER)
        .replace("port=\"6514\"", &format!("port=\"{port}\""))
        .replace(
            "/etc/rsyslog.d/tls/ca.pem",
            &pki.join("ca.pem").display().to_string(),
        )
        .replace("/etc/rsyslog.d/tls/", &format!("{}/", client_pki.display()))
}

fn rsyslog_is_accepted(driver: &str, package: &str) {
    let test = format!("rsyslog_{driver}_x509_name");
    let module = format!("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_{driver}.so");
    if !have_program("rsyslogd", &test) || !have_program("logger", &test) {
        return;
    }
    if !Path::new(&module).exists() {
        skip_or_fail(
            &test,
            &format!("{package} is not installed (.ci/run installs it)"),
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    make_pki(&pki, "Example Syslog CA");
    let (node, tls) = start_node(work.path(), &pki, "");
    let forwarding = rsyslog_forwarding(&format!("rsyslog-{driver}"), &pki, &pki, tls.port());
    let rsyslogd = Rsyslogd::start(work.path(), &forwarding);
    let tag = format!("tls-{driver}");
    for message in ["first over tls", "second over tls", "third over tls"] {
        rsyslogd.log(&tag, message);
    }
    assert!(
        wait_until(WAIT, || with_app(&node.read_json(&[]), &tag).len() == 3),
        "3 messages over {driver}; records {:#?}\nstderr {}",
        node.read_json(&[]),
        node.stderr()
    );
    for record in with_app(&node.read_json(&[]), &tag) {
        assert_eq!(record["tls_peer"], "web1.example.com", "{record}");
        assert_eq!(record["transport"], "tcp");
        assert_eq!(
            record["parse"], "rfc5424",
            "octet-counted RFC 5424: {record}"
        );
    }
    // A message over plain TCP has no TLS identity.
    let mut tcp = TcpStream::connect(node.tcp.unwrap()).unwrap();
    tcp.write_all(b"<13>1 - plainhost plain - - - over tcp\n")
        .unwrap();
    drop(tcp);
    assert!(wait_until(WAIT, || with_app(&node.read_json(&[]), "plain")
        .len()
        == 1));
    assert_eq!(
        with_app(&node.read_json(&[]), "plain")[0]["tls_peer"],
        Value::Null
    );
    assert!(node.metric("starling_tls_handshakes_total") >= 1.0);
}

#[test]
fn rsyslog_gtls_x509_name_is_accepted() {
    rsyslog_is_accepted("gtls", "rsyslog-gnutls");
}

#[test]
fn rsyslog_ossl_x509_name_is_accepted() {
    rsyslog_is_accepted("ossl", "rsyslog-openssl");
}

/// rsyslog trusts the collector, but its own certificate comes from another CA: nothing is
/// stored and the refusal is counted as `unknown_ca`.
#[test]
fn rsyslog_with_a_certificate_from_another_ca_is_refused_and_counted() {
    let test = "rsyslog_with_a_certificate_from_another_ca_is_refused_and_counted";
    if !have_program("rsyslogd", test) || !have_program("logger", test) {
        return;
    }
    if !Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists() {
        skip_or_fail(
            test,
            "rsyslog-gnutls is not installed (.ci/run installs it)",
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    let rogue = work.path().join("rogue");
    make_pki(&pki, "Example Syslog CA");
    make_pki(&rogue, "Another CA");
    let (node, tls) = start_node(work.path(), &pki, "");
    let forwarding = rsyslog_forwarding("rsyslog-gtls", &pki, &rogue, tls.port());
    let rsyslogd = Rsyslogd::start(work.path(), &forwarding);
    rsyslogd.log("tls-rogue", "must not be stored");
    assert!(
        wait_until(WAIT, || refusals(&node, "unknown_ca") >= 1.0),
        "refusal counted; metrics:\n{}",
        node.metrics()
    );
    drop(rsyslogd);
    assert!(with_app(&node.read_json(&[]), "tls-rogue").is_empty());
    assert!(
        node.stderr().contains("reason=unknown_ca"),
        "logged with its reason: {}",
        node.stderr()
    );
}

/// The private syslog-ng (`.ci/run` unpacks its package into target/peers/syslog-ng, since it
/// conflicts with rsyslog).
fn syslog_ng_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/syslog-ng")
}

#[test]
fn syslog_ng_with_a_client_certificate_is_accepted() {
    let test = "syslog_ng_with_a_client_certificate_is_accepted";
    let root = syslog_ng_root();
    let binary = root.join("usr/sbin/syslog-ng");
    if !have_program(binary.to_str().unwrap(), test) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    make_pki(&pki, "Example Syslog CA");
    let (node, tls) = start_node(work.path(), &pki, "");
    let destination = snippet(GUIDE, "syslog-ng-tls")
        .replace("collector1.example.com", SERVER)
        .replace("port(6514)", &format!("port({})", tls.port()))
        .replace("/etc/syslog-ng/tls/", &format!("{}/", pki.display()));
    let fifo_input = work.path().join("input.log");
    std::fs::write(&fifo_input, "").unwrap();
    let config = work.path().join("syslog-ng.conf");
    std::fs::write(
        &config,
        format!(
            "@version: 3.38\n\
             options {{ keep-hostname(yes); }};\n\
             source s_file {{ file(\"{input}\" flags(no-parse) program-override(\"ngtls\")); }};\n\
             {destination}\n\
             log {{ source(s_file); destination(d_starling); }};\n",
            input = fifo_input.display(),
        ),
    )
    .unwrap();
    let lib = root.join("usr/lib/syslog-ng");
    let mut child = Command::new(&binary)
        .env("LD_LIBRARY_PATH", &lib)
        .arg("-F")
        .arg("--no-caps")
        .arg(format!("--module-path={}", lib.join("3.38").display()))
        .arg("-f")
        .arg(&config)
        .arg("-p")
        .arg(work.path().join("syslog-ng.pid"))
        .arg("-R")
        .arg(work.path().join("syslog-ng.persist"))
        .arg("-c")
        .arg(work.path().join("syslog-ng.ctl"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start syslog-ng");
    let mut input = std::fs::OpenOptions::new()
        .append(true)
        .open(&fifo_input)
        .unwrap();
    writeln!(input, "hello from syslog-ng one").unwrap();
    writeln!(input, "hello from syslog-ng two").unwrap();
    let arrived = wait_until(WAIT, || with_app(&node.read_json(&[]), "ngtls").len() == 2);
    send_signal(child.id(), libc::SIGTERM);
    let _ = child.wait();
    assert!(
        arrived,
        "2 messages from syslog-ng; records {:#?}\nstderr {}",
        node.read_json(&[]),
        node.stderr()
    );
    for record in with_app(&node.read_json(&[]), "ngtls") {
        assert_eq!(record["tls_peer"], "web1.example.com", "{record}");
    }
}

/// `openssl s_client` sending `message` with the client certificate `cert` (none if
/// `None`); returns once the client has exited.
fn s_client(pki: &Path, tls: SocketAddr, cert: Option<&str>, message: &str) {
    let mut command = Command::new("openssl");
    command
        .current_dir(pki)
        .args(["s_client", "-quiet", "-no_ign_eof", "-connect"])
        .arg(tls.to_string())
        .args(["-CAfile", "ca.pem", "-verify_return_error"]);
    if let Some(cert) = cert {
        command
            .arg("-cert")
            .arg(format!("{cert}.pem"))
            .arg("-key")
            .arg(format!("{cert}.key"));
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let exited = wait_until(WAIT, || child.try_wait().ok().flatten().is_some());
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
    assert!(exited, "s_client did not exit");
}

/// Each refusal of item 1 with `openssl s_client` (wrong CA, expired, no client certificate,
/// a name not permitted), plaintext to the TLS port and a handshake that never finishes —
/// and meanwhile a good sender keeps working. Each refusal costs one connection and is
/// counted by reason; nothing of a refused sender is stored.
#[test]
fn openssl_refusals_are_counted_and_never_block_other_senders() {
    let test = "openssl_refusals_are_counted_and_never_block_other_senders";
    if !have_program("openssl", test) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    let rogue = work.path().join("rogue");
    make_pki(&pki, "Example Syslog CA");
    make_pki(&rogue, "Another CA");
    std::fs::copy(rogue.join("web1.example.com.pem"), pki.join("rogue.pem")).unwrap();
    std::fs::copy(rogue.join("web1.example.com.key"), pki.join("rogue.key")).unwrap();
    let (node, tls) = start_node(work.path(), &pki, "handshake-timeout = \"1s\"");

    // A handshake that never finishes: connected, silent. It must not hold up anyone.
    let mut stalled = TcpStream::connect(tls).unwrap();
    s_client(
        &pki,
        tls,
        Some("web1.example.com"),
        "<13>1 - web1 good - - - while one stalls\n",
    );
    assert!(
        wait_until(WAIT, || with_app(&node.read_json(&[]), "good").len() == 1),
        "the good sender is stored while a handshake stalls; stderr {}",
        node.stderr()
    );
    assert_eq!(refusals(&node, "handshake_timeout"), 0.0);
    assert!(
        wait_until(WAIT, || refusals(&node, "handshake_timeout") == 1.0),
        "stalled handshake timed out; metrics:\n{}",
        node.metrics()
    );
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        stalled.read(&mut [0u8; 16]).unwrap(),
        0,
        "closed by the server"
    );

    let cases: [(Option<&str>, &str); 4] = [
        (Some("rogue"), "unknown_ca"),
        (Some("expired.example.com"), "expired"),
        (None, "no_client_cert"),
        (Some("db1.other.test"), "name_not_permitted"),
    ];
    for (cert, reason) in cases {
        s_client(
            &pki,
            tls,
            cert,
            &format!("<13>1 - bad {reason} - - - refused\n"),
        );
        assert!(
            wait_until(WAIT, || refusals(&node, reason) == 1.0),
            "{reason} counted; metrics:\n{}",
            node.metrics()
        );
        assert!(with_app(&node.read_json(&[]), reason).is_empty());
    }

    // Plaintext syslog sent to the TLS port.
    let mut plain = TcpStream::connect(tls).unwrap();
    plain
        .write_all(b"<13>1 - plainhost plaintext - - - not tls\n")
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        wait_until(WAIT, || refusals(&node, "not_tls") == 1.0),
        "plaintext counted; metrics:\n{}",
        node.metrics()
    );
    assert!(with_app(&node.read_json(&[]), "plaintext").is_empty());

    // And the good sender still works after all of it.
    s_client(
        &pki,
        tls,
        Some("web1.example.com"),
        "<13>1 - web1 good - - - after the refusals\n",
    );
    assert!(wait_until(WAIT, || with_app(&node.read_json(&[]), "good")
        .len()
        == 2));
    for record in with_app(&node.read_json(&[]), "good") {
        assert_eq!(record["tls_peer"], "web1.example.com");
    }
    assert!(node.metric("starling_tls_handshakes_total") >= 2.0);
}
