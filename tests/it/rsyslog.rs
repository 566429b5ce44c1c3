//! Real `rsyslogd` forwarding to a real node, with each configuration snippet taken verbatim
//! from README.md and docs/rsyslog.md (only the port is substituted). `logger` writes to
//! rsyslog's own Unix socket; rsyslog forwards; `starling read` must show the right fields.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::sandbox::{have_program, send_signal, wait_until, Node};

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
const GUIDE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rsyslog.md"));

/// The fenced block that follows `<!-- snippet: NAME -->` in `document`.
pub fn snippet(document: &str, name: &str) -> String {
    let marker = format!("<!-- snippet: {name} -->");
    let after = &document[document
        .find(&marker)
        .unwrap_or_else(|| panic!("no snippet {name}"))..];
    let block = &after[after.find("```").expect("fence") + 3..];
    let block = &block[block.find('\n').unwrap() + 1..];
    block[..block.find("```").expect("closing fence")].to_string()
}

struct Rsyslogd {
    child: Child,
    socket: std::path::PathBuf,
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
            .arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(work.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rsyslogd");
        assert!(
            wait_until(Duration::from_secs(10), || socket.exists()),
            "rsyslogd socket"
        );
        Rsyslogd { child, socket }
    }

    fn log(&self, tag: &str, priority: &str, message: &str) {
        let status = Command::new("logger")
            .arg("-u")
            .arg(&self.socket)
            .args(["-t", tag, "-p", priority, message])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        send_signal(self.child.id(), libc::SIGTERM);
        let stopped = wait_until(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn ours(records: &[Value], tag: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|record| record["app_name"] == tag)
        .cloned()
        .collect()
}

fn with_port(snippet: &str, port: u16) -> String {
    assert!(snippet.contains("port=\"5514\""), "{snippet}");
    snippet.replace("port=\"5514\"", &format!("port=\"{port}\""))
}

fn check_snippet(document: &str, name: &str, transport: &str, expected_parse: &str) {
    if !have_program("rsyslogd", name) || !have_program("logger", name) {
        return;
    }
    let node = Node::start(&[]);
    let port = match transport {
        "udp" => node.udp.unwrap().port(),
        _ => node.tcp.unwrap().port(),
    };
    let work = tempfile::tempdir().unwrap();
    let rsyslogd = Rsyslogd::start(work.path(), &with_port(&snippet(document, name), port));
    let tag = format!("rs-{}", name.replace("rsyslog-", ""));
    let messages = [
        "first message via rsyslog",
        "second: with a colon",
        "third, last",
    ];
    for message in messages {
        rsyslogd.log(&tag, "user.err", message);
    }
    assert!(
        wait_until(Duration::from_secs(20), || ours(&node.read_json(&[]), &tag)
            .len()
            == 3),
        "{name}: 3 messages arrive; got {:#?}",
        node.read_json(&[])
    );
    drop(rsyslogd);
    let records = ours(&node.read_json(&[]), &tag);
    check_fields(name, &records, &messages, transport, expected_parse);
}

fn check_fields(
    name: &str,
    records: &[Value],
    messages: &[&str],
    transport: &str,
    expected_parse: &str,
) {
    assert_eq!(records.len(), messages.len(), "{name}: {records:#?}");
    for (record, message) in records.iter().zip(messages) {
        // RFC 5424 puts exactly one SP between STRUCTURED-DATA and MSG; rsyslog's
        // RSYSLOG_SyslogProtocol23Format adds its own before a message that starts with one
        // (the space after the tag), and that space belongs to MSG.
        let stored = record["message"].as_str().expect("message");
        assert_eq!(stored.trim_start(), *message, "{name}: {record}");
        assert_eq!(record["severity"], 3, "{name}: {record}");
        assert_eq!(record["facility"], 1, "{name}: {record}");
        assert_eq!(record["transport"], transport);
        assert_eq!(record["parse"], expected_parse, "{name}: {record}");
        let hostname = record["hostname"]
            .as_str()
            .expect("rsyslog sends its host name");
        assert!(!hostname.is_empty());
        assert_eq!(record["source"], hostname, "{name}: shard by hostname");
        assert!(record["timestamp"].is_string(), "{name}: {record}");
    }
}

#[test]
fn rsyslog_readme_snippet_udp() {
    check_snippet(README, "rsyslog-udp", "udp", "rfc3164");
}

#[test]
fn rsyslog_readme_snippet_tcp_traditional() {
    check_snippet(README, "rsyslog-tcp", "tcp", "rfc3164");
}

#[test]
fn rsyslog_readme_snippet_tcp_rfc5424_octet_counted() {
    check_snippet(README, "rsyslog-tcp-rfc5424", "tcp", "rfc5424");
}

#[test]
fn rsyslog_guide_snippets_udp_and_tcp() {
    check_snippet(GUIDE, "rsyslog-udp", "udp", "rfc3164");
    check_snippet(GUIDE, "rsyslog-tcp", "tcp", "rfc3164");
}

/// The guide's recommended setup: messages sent while Starling is down wait in rsyslog's
/// disk-assisted queue and arrive after Starling is back on the same port.
#[test]
fn rsyslog_guide_queued_snippet_survives_a_starling_restart() {
    let name = "rsyslog-tcp-rfc5424-queued";
    if !have_program("rsyslogd", name) || !have_program("logger", name) {
        return;
    }
    let mut node = Node::start(&[]);
    let port = node.tcp.unwrap().port();
    // Restarts must come back on the same TCP port.
    node.extra_args
        .extend(["--syslog-tcp".to_string(), format!("127.0.0.1:{port}")]);
    let work = tempfile::tempdir().unwrap();
    let rsyslogd = Rsyslogd::start(work.path(), &with_port(&snippet(GUIDE, name), port));
    let tag = "rs-queued";
    let messages = [
        "before the restart",
        "while starling is down 1",
        "while starling is down 2",
    ];
    rsyslogd.log(tag, "user.err", messages[0]);
    assert!(wait_until(Duration::from_secs(20), || ours(
        &node.read_json(&[]),
        tag
    )
    .len()
        == 1));
    assert!(node.terminate(Duration::from_secs(10)).success());
    rsyslogd.log(tag, "user.err", messages[1]);
    rsyslogd.log(tag, "user.err", messages[2]);
    node.spawn();
    assert_eq!(node.tcp.unwrap().port(), port);
    assert!(
        wait_until(Duration::from_secs(30), || ours(&node.read_json(&[]), tag)
            .len()
            == 3),
        "queued messages arrive after the restart; got {:#?}",
        ours(&node.read_json(&[]), tag)
    );
    drop(rsyslogd);
    check_fields(
        name,
        &ours(&node.read_json(&[]), tag),
        &messages,
        "tcp",
        "rfc5424",
    );
}
