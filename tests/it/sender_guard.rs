//! End-to-end tests of a listener's allow list and per-source rate limit (issue 14 item 6),
//! against the real binary on loopback: senders bound to 127.0.0.1 or 127.0.0.2 (both reach
//! 127.0.0.1's listeners on Linux), listeners configured in the config file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::sandbox::{wait_until, Node};

const WAIT: Duration = Duration::from_secs(30);

fn line(tag: &str, host: &str, index: usize) -> String {
    format!("<134>1 2026-12-04T10:00:00.000Z {host} guard-test - - - {tag} {index:06}")
}

fn udp_from(source_ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{source_ip}:0")).unwrap()
}

fn tcp_from(source_ip: &str, to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source_ip}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

fn stored(node: &Node) -> f64 {
    node.metric("starling_stored_messages_total")
}

fn tags_stored(node: &Node) -> Vec<String> {
    let mut tags: Vec<String> = node
        .read_json(&[])
        .iter()
        .filter_map(|record| {
            let raw = crate::sandbox::raw_bytes(record);
            let text = String::from_utf8_lossy(&raw).to_string();
            let word = text.split(' ').rev().nth(1)?.to_string();
            Some(word)
        })
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

#[test]
fn allow_list_refuses_tcp_at_accept_and_udp_per_datagram() {
    let node = Node::start_with_config(
        r#"
[syslog]
udp = [{ address = "127.0.0.1:0", allow = ["127.0.0.2/32"] }]
tcp = [{ address = "127.0.0.1:0", allow = ["127.0.0.2"] }]
"#,
        &[],
    );
    let (udp, tcp) = (node.udp.unwrap(), node.tcp.unwrap());
    let outsider = udp_from("127.0.0.1");
    let insider = udp_from("127.0.0.2");
    for index in 0..5 {
        outsider
            .send_to(line("udp-out", "h", index).as_bytes(), udp)
            .unwrap();
        insider
            .send_to(line("udp-in", "h", index).as_bytes(), udp)
            .unwrap();
    }
    // TCP from outside the list: closed at once, before anything is read.
    let mut refused = tcp_from("127.0.0.1", tcp);
    let _ = refused.write_all(format!("{}\n", line("tcp-out", "h", 0)).as_bytes());
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = [0u8; 16];
    let closed = matches!(refused.read(&mut buffer), Ok(0) | Err(_));
    assert!(closed, "the refused connection was not closed");
    let mut allowed = tcp_from("127.0.0.2", tcp);
    for index in 0..5 {
        allowed
            .write_all(format!("{}\n", line("tcp-in", "h", index)).as_bytes())
            .unwrap();
    }
    drop(allowed);
    assert!(
        wait_until(WAIT, || stored(&node) == 10.0),
        "stored {}",
        stored(&node)
    );
    assert!(wait_until(WAIT, || node
        .metric("starling_senders_refused_total")
        == 6.0));
    assert_eq!(
        node.metric(&format!(
            "starling_senders_refused_total{{listener=\"udp:{udp}\",transport=\"udp\"}}"
        )),
        5.0
    );
    assert_eq!(
        node.metric(&format!(
            "starling_senders_refused_total{{listener=\"tcp:{tcp}\",transport=\"tcp\"}}"
        )),
        1.0
    );
    assert_eq!(tags_stored(&node), vec!["tcp-in", "udp-in"]);
}

#[test]
fn udp_flood_over_the_rate_limit_is_dropped_and_counted_exactly() {
    let node = Node::start_with_config(
        r#"
[syslog]
udp = [{ address = "127.0.0.1:0", rate-limit = { messages-per-second = 1, burst = 100 } }]
"#,
        &[],
    );
    let udp = node.udp.unwrap();
    let sender = udp_from("127.0.0.1");
    let other = udp_from("127.0.0.2");
    let started = Instant::now();
    for index in 0..1000 {
        sender
            .send_to(line("flood", "h", index).as_bytes(), udp)
            .unwrap();
    }
    let flood_seconds = started.elapsed().as_secs_f64();
    // Another address has its own bucket.
    for index in 0..10 {
        other
            .send_to(line("calm", "h", index).as_bytes(), udp)
            .unwrap();
    }
    let counted = || stored(&node) + node.metric("starling_rate_limited_messages_total") == 1010.0;
    assert!(
        wait_until(WAIT, counted),
        "stored {} limited {}",
        stored(&node),
        node.metric("starling_rate_limited_messages_total")
    );
    let seconds = started.elapsed().as_secs_f64();
    // The burst, plus at most the one token a second refilled meanwhile.
    let allowed_flood = stored(&node) - 10.0;
    assert!(
        allowed_flood >= 100.0 && allowed_flood <= 100.0 + seconds.ceil(),
        "{allowed_flood} of the flood stored in {seconds} s (sent in {flood_seconds} s)"
    );
    assert_eq!(node.metric("starling_udp_kernel_drops_total"), 0.0);
    assert_eq!(
        node.metric("starling_rate_limited_messages_total"),
        1000.0 - allowed_flood
    );
}

#[test]
fn rate_limited_tcp_sender_is_slowed_and_loses_nothing() {
    let node = Node::start_with_config(
        r#"
[syslog]
tcp = [{ address = "127.0.0.1:0", rate-limit = { messages-per-second = 500, burst = 100 } }]
"#,
        &[],
    );
    let tcp = node.tcp.unwrap();
    let started = Instant::now();
    let mut stream = tcp_from("127.0.0.1", tcp);
    let mut text = String::new();
    for index in 0..2000 {
        text.push_str(&line("paced", "h", index));
        text.push('\n');
    }
    stream.write_all(text.as_bytes()).unwrap();
    drop(stream);
    assert!(wait_until(Duration::from_secs(60), || stored(&node) == 2000.0));
    let elapsed = started.elapsed().as_secs_f64();
    // 100 at once, then 500 a second: at least (2000 − 100 − one read batch) / 500 s.
    assert!(elapsed >= 1.5, "2000 messages stored in {elapsed} s");
    assert!(node.metric("starling_rate_limit_waits_total") > 0.0);
    let records = node.read_json(&[]);
    assert_eq!(records.len(), 2000);
    assert_eq!(node.metric("starling_pipeline_dropped_messages_total"), 0.0);
}

#[test]
fn rate_limit_tracks_at_most_max_keys_sources_and_limits_the_rest_together() {
    let node = Node::start_with_config(
        r#"
[syslog]
udp = [{ address = "127.0.0.1:0", rate-limit = { messages-per-second = 1, burst = 5, by = "source", max-keys = 50 } }]
"#,
        &[],
    );
    let udp = node.udp.unwrap();
    let sender = udp_from("127.0.0.1");
    let started = Instant::now();
    // 50 sources empty their buckets (5 each: 5 s to refill, so none is forgotten while
    // the test runs), then 1,950 new source names arrive at the cap.
    let mut index = 0;
    for host in 0..50 {
        for _ in 0..5 {
            sender
                .send_to(
                    line("names", &format!("host-{host}"), index).as_bytes(),
                    udp,
                )
                .unwrap();
            index += 1;
        }
    }
    for host in 50..2000 {
        sender
            .send_to(
                line("names", &format!("host-{host}"), index).as_bytes(),
                udp,
            )
            .unwrap();
        index += 1;
    }
    let counted = || stored(&node) + node.metric("starling_rate_limited_messages_total") == 2200.0;
    assert!(wait_until(WAIT, counted));
    let elapsed = started.elapsed().as_secs_f64();
    assert!(elapsed < 4.0, "too slow to check the cap: {elapsed} s");
    assert_eq!(
        node.metric("starling_rate_limit_untracked_messages_total"),
        1950.0
    );
    // 250 from the tracked sources; the 1,950 others shared one bucket of 5 (plus its refill).
    let stored = stored(&node);
    assert!(
        (255.0..=255.0 + elapsed.ceil()).contains(&stored),
        "{stored}"
    );
}
