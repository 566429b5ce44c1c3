//! Hostile input against the real binary: every case keeps the node up with bounded memory,
//! stores the hostile message raw or counts it as a framing error, leaves a well-behaved
//! sender unaffected, and writes nothing outside the data directory.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sandbox::{assert_nothing_outside_data_dir, raw_bytes, wait_until, Node};

/// The bound this suite holds the node's resident memory to.
const RSS_BOUND_BYTES: u64 = 256 * 1024 * 1024;
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn hostile_frames_and_names_are_stored_raw_or_counted() {
    let mut node = Node::start(&["--max-message-bytes", "65536"]);
    let tcp = node.tcp.unwrap();
    let mut good = TcpStream::connect(tcp).unwrap();
    writeln!(good, "<14>1 - good-host app - - - good 0").unwrap();

    // A 64 KiB UDP datagram (the largest IPv4 UDP payload) arrives whole.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut datagram = b"<13>1 - udp-big app - - - ".to_vec();
    datagram.resize(65_507, b'u');
    udp.send_to(&datagram, node.udp.unwrap()).unwrap();

    let long_name = "h".repeat(4096);
    let mut hostile = TcpStream::connect(tcp).unwrap();
    // Octet count above the maximum: cut to the limit, flagged, the stream stays in sync.
    let mut oversize = b"<13>1 - over-max app - - - ".to_vec();
    oversize.resize(100_000, b'o');
    write!(hostile, "{} ", oversize.len()).unwrap();
    hostile.write_all(&oversize).unwrap();
    // Non-numeric and negative counts are not counts: those lines are stored as text.
    hostile
        .write_all(b"12a <13>1 - not-a-count app - - - after 12a\n")
        .unwrap();
    hostile
        .write_all(b"-5 <13>1 - negative app - - - after -5\n")
        .unwrap();
    // Control characters, host names with a slash, dots, 4 KiB, and case variants.
    hostile
        .write_all(b"<13>1 - ctl-host app - - - bell\x07 esc\x1b del\x7f\n")
        .unwrap();
    hostile.write_all(b"<13>1 - a/b app - - - slash\n").unwrap();
    hostile.write_all(b"<13>1 - .. app - - - dotdot\n").unwrap();
    hostile
        .write_all(format!("<13>1 - {long_name} app - - - long name\n").as_bytes())
        .unwrap();
    hostile
        .write_all(b"<13>1 - CaseHost app - - - upper\n")
        .unwrap();
    hostile
        .write_all(b"<13>1 - casehost app - - - lower\n")
        .unwrap();
    drop(hostile);

    // An octet count above 16 MiB can never be valid: that connection closes, counted.
    let mut absurd = TcpStream::connect(tcp).unwrap();
    absurd
        .write_all(b"99999999 <13>1 - x y - - - never stored\n")
        .unwrap();
    let mut buffer = [0u8; 16];
    absurd
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        absurd.read(&mut buffer).unwrap_or(0),
        0,
        "the node closes that connection"
    );

    writeln!(good, "<14>1 - good-host app - - - good 1").unwrap();
    drop(good);
    let expected = 2 + 1 + 9;
    assert!(
        wait_until(WAIT, || node.read_json(&[]).len() == expected),
        "{expected} records"
    );
    let records = node.read_json(&[]);
    let find = |needle: &[u8]| -> &Value {
        records
            .iter()
            .find(|record| raw_bytes(record).windows(needle.len()).any(|w| w == needle))
            .unwrap_or_else(|| panic!("no record with {:?}", String::from_utf8_lossy(needle)))
    };
    assert_eq!(raw_bytes(find(b"udp-big")), datagram);
    let over = find(b"over-max");
    assert_eq!(over["truncated"], true);
    assert_eq!(raw_bytes(over).len(), 65536);
    assert_eq!(
        raw_bytes(find(b"after 12a")),
        b"12a <13>1 - not-a-count app - - - after 12a"
    );
    assert_eq!(
        raw_bytes(find(b"after -5")),
        b"-5 <13>1 - negative app - - - after -5"
    );
    assert_eq!(
        raw_bytes(find(b"bell")),
        b"<13>1 - ctl-host app - - - bell\x07 esc\x1b del\x7f"
    );
    assert_eq!(find(b"slash")["source"], "a/b");
    assert_eq!(find(b"dotdot")["source"], "..");
    assert_eq!(find(b"long name")["source"], long_name.as_str());
    assert_eq!(find(b"upper")["source"], "CaseHost");
    assert_eq!(find(b"lower")["source"], "casehost");
    find(b"good 0");
    find(b"good 1");
    assert!(!records
        .iter()
        .any(|record| raw_bytes(record).ends_with(b"never stored")));
    assert!(node.metric("starling_framing_errors_total") >= 1.0);
    // Every shard has its own directory, strictly inside the data directory.
    let shard_dirs = std::fs::read_dir(&node.data_dir)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().is_dir())
        .count();
    assert!(shard_dirs >= 9, "{shard_dirs} shard directories");
    assert!(
        node.rss_bytes() < RSS_BOUND_BYTES,
        "rss {}",
        node.rss_bytes()
    );
    assert_nothing_outside_data_dir(&node);
    assert!(node.terminate(Duration::from_secs(10)).success());
}

#[test]
fn idle_connections_past_the_cap_and_a_slow_sender_do_not_hurt_a_good_sender() {
    let mut node = Node::start(&["--max-connections", "200"]);
    let tcp = node.tcp.unwrap();
    let mut good = TcpStream::connect(tcp).unwrap();
    writeln!(good, "<14>1 - good-host app - - - good first").unwrap();
    let mut slow = TcpStream::connect(tcp).unwrap();
    // 2,000 idle connections: 200 take the remaining slots, the rest are refused and closed.
    let idle: Vec<TcpStream> = (0..2_000)
        .filter_map(|_| TcpStream::connect(tcp).ok())
        .collect();
    assert!(
        idle.len() >= 1_000,
        "only {} connections opened",
        idle.len()
    );
    assert!(
        wait_until(WAIT, || node
            .metric("starling_tcp_connections_refused_total")
            >= 1000.0),
        "connections past the cap are refused and counted"
    );
    // A slow sender: one byte every 100 ms, while the good sender keeps sending.
    let slow_message = b"<13>1 - slow-host app - - - slow\n";
    let started = Instant::now();
    for (index, byte) in slow_message.iter().enumerate() {
        slow.write_all(&[*byte]).unwrap();
        writeln!(good, "<14>1 - good-host app - - - good {index}").unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() >= Duration::from_secs(3));
    drop(slow);
    writeln!(good, "<14>1 - good-host app - - - good last").unwrap();
    drop(good);
    let expected = 1 + slow_message.len() + 1 + 1;
    assert!(
        wait_until(WAIT, || node.read_json(&[]).len() == expected),
        "{expected} records"
    );
    let records = node.read_json(&[]);
    assert!(records.iter().any(|record| record["message"] == "slow"));
    assert_eq!(
        records
            .iter()
            .filter(|record| record["source"] == "good-host")
            .count(),
        expected - 1
    );
    assert!(node.is_running());
    assert!(
        node.rss_bytes() < RSS_BOUND_BYTES,
        "rss {}",
        node.rss_bytes()
    );
    drop(idle);
    assert_nothing_outside_data_dir(&node);
    assert!(node.terminate(Duration::from_secs(10)).success());
}
