//! journald's own upload protocol, end to end: a journal file built by the real
//! `systemd-journal-remote` from export text (with a binary field and a multi-line message),
//! uploaded by the real `systemd-journal-upload` to a node's API address, read back with
//! `starling read`; a second upload with the saved state stores nothing twice.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::sandbox::{have_program, wait_until, Node};

const REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const UPLOAD: &str = "/lib/systemd/systemd-journal-upload";

fn binary_field(name: &str, value: &[u8]) -> Vec<u8> {
    let mut field = format!("{name}\n").into_bytes();
    field.extend_from_slice(&(value.len() as u64).to_le_bytes());
    field.extend_from_slice(value);
    field.push(b'\n');
    field
}

fn export_text() -> Vec<u8> {
    let boot = "_BOOT_ID=0123456789abcdef0123456789abcdef\n";
    let mut text = Vec::new();
    write!(
        text,
        "__REALTIME_TIMESTAMP=1764150000000000\n__MONOTONIC_TIMESTAMP=1000\n{boot}\
         MESSAGE=plain journal message\nPRIORITY=3\nSYSLOG_FACILITY=4\nSYSLOG_IDENTIFIER=sshd\n\
         _PID=4242\n_HOSTNAME=journal-host\nCUSTOM_FIELD=custom value\n\n"
    )
    .unwrap();
    write!(
        text,
        "__REALTIME_TIMESTAMP=1764150001000000\n__MONOTONIC_TIMESTAMP=2000\n{boot}"
    )
    .unwrap();
    text.extend(binary_field("MESSAGE", b"first line\nsecond line"));
    text.extend(binary_field("BLOB", b"\x00\x01binary\xff"));
    write!(
        text,
        "PRIORITY=6\nSYSLOG_IDENTIFIER=multi\n_HOSTNAME=journal-host\n\n"
    )
    .unwrap();
    text
}

fn build_journal(dir: &Path) -> std::path::PathBuf {
    let journal = dir.join("upload.journal");
    let mut child = Command::new(REMOTE)
        .arg(format!("--output={}", journal.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run systemd-journal-remote");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&export_text())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "systemd-journal-remote failed"
    );
    journal
}

fn upload(node: &Node, journal: &Path, state: &Path) {
    let status = Command::new("timeout")
        .arg("30")
        .arg(UPLOAD)
        .arg(format!("--file={}", journal.display()))
        .arg(format!("--url=http://{}", node.api.unwrap()))
        .arg(format!("--save-state={}", state.display()))
        .arg("--follow=no")
        .status()
        .expect("run systemd-journal-upload");
    assert!(status.success(), "systemd-journal-upload: {status}");
}

fn journal_records(node: &Node) -> Vec<Value> {
    node.read_json(&[])
        .into_iter()
        .filter(|record| record["transport"] == "journal")
        .collect()
}

#[test]
fn systemd_journal_upload_entries_arrive_with_their_fields_once() {
    let test = "systemd_journal_upload_entries_arrive_with_their_fields_once";
    if !have_program(REMOTE, test) || !have_program(UPLOAD, test) {
        return;
    }
    let node = Node::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let journal = build_journal(work.path());
    let state = work.path().join("upload.state");
    upload(&node, &journal, &state);
    assert!(wait_until(Duration::from_secs(10), || journal_records(
        &node
    )
    .len()
        == 2));
    let records = journal_records(&node);
    let plain = records
        .iter()
        .find(|r| r["message"] == "plain journal message")
        .unwrap();
    assert_eq!(plain["parse"], "journal");
    assert_eq!(plain["severity"], 3);
    assert_eq!(plain["facility"], 4);
    assert_eq!(plain["pri"], 35);
    assert_eq!(plain["app_name"], "sshd");
    assert_eq!(plain["procid"], "4242");
    assert_eq!(plain["hostname"], "journal-host");
    assert_eq!(plain["source"], "journal-host");
    let timestamp = chrono::DateTime::parse_from_rfc3339(plain["timestamp"].as_str().unwrap());
    assert_eq!(timestamp.unwrap().timestamp_micros(), 1_764_150_000_000_000);
    let params = &plain["structured_data"][0]["params"];
    assert_eq!(params["CUSTOM_FIELD"], "custom value", "{plain}");
    assert!(plain["raw"]
        .as_str()
        .unwrap()
        .contains("MESSAGE=plain journal message\n"));

    let multi = records.iter().find(|r| r["app_name"] == "multi").unwrap();
    assert_eq!(multi["message"], "first line\nsecond line");
    assert_eq!(multi["severity"], 6);
    assert_eq!(multi["facility"], 1, "journald's default facility is user");
    assert_eq!(
        multi["structured_data"][0]["params"]["BLOB"],
        "\u{0}\u{1}binary\u{fffd}"
    );
    assert!(
        multi["raw_base64"].is_string(),
        "the binary field is kept byte-exact"
    );

    // The uploader saved its cursor: uploading again sends nothing new, stores nothing twice.
    upload(&node, &journal, &state);
    assert_eq!(journal_records(&node).len(), 2);
    // Even without the saved state (a lost state file), entries are not stored twice.
    upload(&node, &journal, &work.path().join("fresh.state"));
    assert_eq!(journal_records(&node).len(), 2);
}

#[test]
fn malformed_journal_upload_gets_400_and_the_node_stays_up() {
    let mut node = Node::start(&[]);
    let api = node.api.unwrap();
    for (body, reason) in [
        (b"lower=case\n\n".to_vec(), "invalid field name"),
        (
            [b"MESSAGE\n".as_slice(), &u64::MAX.to_le_bytes(), b"short"].concat(),
            "ends inside",
        ),
    ] {
        let response = ureq::post(&format!("http://{api}/upload"))
            .header("Content-Type", "application/vnd.fdo.journal")
            .config()
            .http_status_as_error(false)
            .build()
            .send(&body[..])
            .unwrap();
        assert_eq!(response.status(), 400);
        let text = response.into_body().read_to_string().unwrap();
        assert!(text.contains(reason), "{text}");
    }
    assert!(node.is_running());
    assert!(journal_records(&node).is_empty());
}
