//! The HTTP API's bounds against the real binary: a connection cap, a header timeout and a
//! request-body progress timeout, so a slow or half-open client costs one connection slot
//! for at most the timeout and the API answers again afterwards.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::sandbox::{http_get, wait_until, Node};

const CAP: usize = 4;
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
const BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// Scheduling slack on a loaded machine.
const SLACK: Duration = Duration::from_secs(5);

fn start_node() -> (Node, tempfile::TempDir) {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("starling.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nmax-connections = {CAP}\nheader-timeout = \"{}s\"\nbody-timeout = \"{}s\"\n",
            HEADER_TIMEOUT.as_secs(),
            BODY_TIMEOUT.as_secs()
        ),
    )
    .unwrap();
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    (node, config_dir)
}

/// True once the peer closed `stream` (EOF or reset); bytes it sent meanwhile go to `seen`.
fn is_closed(stream: &mut TcpStream, seen: &mut Vec<u8>) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(read) => seen.extend_from_slice(&buffer[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn half_sent_request(api: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(api).unwrap();
    // The request line and one header, never the blank line that ends the head.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .unwrap();
    stream
}

#[test]
fn half_sent_requests_hold_a_slot_for_at_most_the_header_timeout() {
    let (node, _config) = start_node();
    let api = node.api.unwrap();
    assert_eq!(http_get(api, "/healthz"), "ok");

    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..2 * CAP).map(|_| half_sent_request(api)).collect();

    // Beyond the cap a new client waits in the accept queue: no answer while the stalled
    // ones hold every slot (they hold them for the header timeout).
    let mut probe = TcpStream::connect(api).unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    probe.set_read_timeout(Some(HEADER_TIMEOUT / 2)).unwrap();
    let mut answer = Vec::new();
    let early = probe.read_to_end(&mut answer);
    assert!(
        opened.elapsed() < HEADER_TIMEOUT,
        "the probe took too long to be meaningful"
    );
    assert!(
        matches!(&early, Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "a client beyond the cap of {CAP} was served at once: {early:?} {:?}",
        String::from_utf8_lossy(&answer)
    );

    // Every stalled connection is closed: the first CAP after the header timeout, the
    // queued CAP after one more. None gets an answer to its half request beyond an error.
    let mut closed = vec![false; stalled.len()];
    let mut seen = vec![Vec::new(); stalled.len()];
    let all_closed = wait_until(2 * HEADER_TIMEOUT + SLACK, || {
        for (index, stream) in stalled.iter_mut().enumerate() {
            if !closed[index] {
                closed[index] = is_closed(stream, &mut seen[index]);
            }
        }
        closed.iter().all(|closed| *closed)
    });
    assert!(
        all_closed,
        "half-sent requests still open after {:?}: {closed:?}",
        opened.elapsed()
    );
    for bytes in &seen {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("200 OK"),
            "a half request was answered: {text}"
        );
    }

    // The queued probe is served once slots free up, and the API answers again.
    probe
        .set_read_timeout(Some(2 * HEADER_TIMEOUT + SLACK))
        .unwrap();
    probe.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    assert_eq!(http_get(api, "/healthz"), "ok");
}

#[test]
fn an_upload_body_that_stops_arriving_is_refused_after_the_body_timeout() {
    let (node, _config) = start_node();
    let api = node.api.unwrap();
    let mut upload = TcpStream::connect(api).unwrap();
    // One chunk that promises 0x100 bytes and sends 11 of them, then nothing.
    upload
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: test\r\n\
              Content-Type: application/vnd.fdo.journal\r\n\
              Transfer-Encoding: chunked\r\n\r\n\
              100\r\nMESSAGE=hi\n",
        )
        .unwrap();
    let sent = Instant::now();
    let mut seen = Vec::new();
    assert!(
        wait_until(BODY_TIMEOUT + SLACK, || is_closed(&mut upload, &mut seen)),
        "a stalled upload body still held its connection after {:?}",
        sent.elapsed()
    );
    assert!(
        sent.elapsed() >= BODY_TIMEOUT - Duration::from_millis(100),
        "closed before the body timeout: {:?}",
        sent.elapsed()
    );
    let answer = String::from_utf8_lossy(&seen);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("no request body data"), "{answer}");
    assert_eq!(http_get(api, "/healthz"), "ok");
}
