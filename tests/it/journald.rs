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
            [b"MESSAGE\n".as_slice(), &100u64.to_le_bytes(), b"short"].concat(),
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

/// An export body of `entries` of journal `journal` (cursor sequence numbers `first..=last`),
/// as `systemd-journal-upload` sends them: `__CURSOR` first.
fn cursor_body(journal: &str, first: u64, last: u64) -> Vec<u8> {
    let mut body = Vec::new();
    for i in first..=last {
        write!(
            body,
            "__CURSOR=s={journal};i={i:x};b=0123456789abcdef0123456789abcdef;m={i:x};t={i:x};x={i:x}\n\
             __REALTIME_TIMESTAMP={}\nMESSAGE={journal} entry {i}\n_HOSTNAME=retry-host\n\n",
            1_764_150_000_000_000u64 + i
        )
        .unwrap();
    }
    body
}

fn post_upload(node: &Node, body: &[u8]) -> (u16, String) {
    let response = ureq::post(&format!("http://{}/upload", node.api.unwrap()))
        .header("Content-Type", "application/vnd.fdo.journal")
        .config()
        .http_status_as_error(false)
        .build()
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().read_to_string().unwrap())
}

/// The messages of the node's journal records, sorted.
fn journal_messages(node: &Node) -> Vec<String> {
    let mut messages: Vec<String> = journal_records(node)
        .iter()
        .map(|record| record["message"].as_str().unwrap_or_default().to_string())
        .collect();
    messages.sort();
    messages
}

/// An uploader whose answer was lost (Starling stopped after storing, before or after
/// answering) resends from its saved cursor once Starling is back: the cursor memory is
/// rebuilt from the store, so after a clean stop and after kill -9 alike every entry is
/// stored exactly once. With the real `systemd-journal-upload` too, when it is installed
/// (a fresh state file makes it resend the whole journal).
#[test]
fn an_uploader_retry_after_a_restart_or_kill_is_stored_once() {
    let mut node = Node::start(&[]);
    let first = [
        cursor_body("journal-a", 1, 3),
        cursor_body("journal-b", 1, 2),
    ]
    .concat();
    assert_eq!(post_upload(&node, &first).0, 202);
    let expected = journal_messages(&node);
    assert_eq!(expected.len(), 5, "{expected:?}");

    // A clean stop, then the same request again.
    assert!(node.terminate(Duration::from_secs(20)).success());
    node.spawn();
    assert_eq!(post_upload(&node, &first).0, 202);
    assert_eq!(
        journal_messages(&node),
        expected,
        "stored twice after a restart"
    );

    // kill -9, then the same request again, and one that goes further.
    node.kill();
    node.spawn();
    assert_eq!(post_upload(&node, &first).0, 202);
    assert_eq!(
        journal_messages(&node),
        expected,
        "stored twice after kill -9"
    );
    assert_eq!(post_upload(&node, &cursor_body("journal-a", 2, 5)).0, 202);
    let messages = journal_messages(&node);
    assert_eq!(messages.len(), 7, "{messages:?}");
    assert!(messages.contains(&"journal-a entry 5".to_string()));
    // Since the last start: the 5 of the first request and journal-a 2 and 3.
    assert_eq!(node.metric("starling_journal_duplicates_total"), 7.0);

    // The real uploader: its entries, uploaded, then uploaded again from scratch after a
    // kill -9 (what a lost answer plus a lost state file look like to Starling).
    let test = "an_uploader_retry_after_a_restart_or_kill_is_stored_once";
    if !have_program(REMOTE, test) || !have_program(UPLOAD, test) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let journal = build_journal(work.path());
    upload(&node, &journal, &work.path().join("first.state"));
    assert!(wait_until(Duration::from_secs(10), || journal_records(
        &node
    )
    .len()
        == 9));
    node.kill();
    node.spawn();
    upload(&node, &journal, &work.path().join("second.state"));
    assert_eq!(journal_records(&node).len(), 9, "the real uploader's retry");
}

/// The `/upload` body's bounds: an entry that never ends (one chunk declared 1 GiB long,
/// one text field that never gets its newline) costs the node at most `max-message-bytes`
/// of memory and is refused with 413 once it passes `api.upload-max-entry-bytes`; a binary
/// field announcing more than that is refused at once, before its data.
#[test]
fn an_endless_upload_entry_gets_413_and_the_node_memory_stays_bounded() {
    use std::io::Read as _;
    const CAP: u64 = 32 << 20;
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("starling.toml");
    std::fs::write(&config, format!("[api]\nupload-max-entry-bytes = {CAP}\n")).unwrap();
    let node = Node::start(&["--config", config.to_str().unwrap()]);

    // A binary field announcing 1 TiB: refused before any of it.
    let huge = [
        b"MESSAGE\n".as_slice(),
        &(1u64 << 40).to_le_bytes(),
        b"tiny",
    ]
    .concat();
    let (status, text) = post_upload(&node, &huge);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than"), "{text}");

    // One chunk of 1 GiB, a text field without end, sent 1 MiB at a time.
    let rss_before = node.rss_bytes();
    let mut stream = std::net::TcpStream::connect(node.api.unwrap()).unwrap();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Type: application/vnd.fdo.journal\r\n\
              Transfer-Encoding: chunked\r\n\r\n40000000\r\nMESSAGE=",
        )
        .unwrap();
    let mut reader = stream.try_clone().unwrap();
    let answer = std::thread::spawn(move || {
        reader
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    });
    let piece = vec![b'x'; 1 << 20];
    let mut sent = 0u64;
    let mut rss_max = rss_before;
    // Four times the cap at most: the node must have answered long before.
    while sent < 4 * CAP && !answer.is_finished() {
        if stream.write_all(&piece).is_err() {
            break;
        }
        sent += piece.len() as u64;
        rss_max = rss_max.max(node.rss_bytes());
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let answer = answer.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "sent {sent} bytes; answer {answer:?}"
    );
    assert!(answer.contains("larger than"), "{answer}");
    assert!(sent >= CAP, "refused after {sent} bytes, before the cap");
    let growth = rss_max.saturating_sub(rss_before);
    eprintln!("endless entry: sent {sent} bytes, RSS {rss_before} -> max {rss_max} (+{growth})");
    assert!(
        growth < 16 << 20,
        "the node's memory grew by {growth} bytes for one request"
    );
    assert_eq!(post_upload(&node, &cursor_body("after", 1, 1)).0, 202);
    assert_eq!(
        journal_records(&node).len(),
        1,
        "nothing of the refused entries stored"
    );
}
