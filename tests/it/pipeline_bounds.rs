//! Issue #12, cases 5 and 6c, with the real binary: memory stays bounded in bytes during a
//! disk-full stall under TCP senders of 64 KiB messages (the pipeline's byte budget pushes
//! them back), and SIGTERM under a UDP flood stores or counts every datagram the kernel
//! accepted (`received = stored + counted drops`, exactly).

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sandbox::{
    count_records, have_root, mount_tmpfs, proc_memory, send_signal, skip_or_fail, wait_until, Node,
};

/// The line of `/proc/net/udp` of the socket bound to `addr` (127.0.0.1 only): its receive
/// queue in bytes and its drop count. `None` when no such socket is bound.
fn udp_socket_queue_and_drops(addr: SocketAddr) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{:04X}", addr.port());
    let mut found = None;
    for line in table.lines().skip(1) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.get(1) != Some(&local.as_str()) {
            continue;
        }
        let rx_queue = columns
            .get(4)?
            .split(':')
            .nth(1)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())?;
        let drops: u64 = columns.last()?.parse().ok()?;
        let (queue, total) = found.unwrap_or((0, 0));
        found = Some((queue + rx_queue, total + drops));
    }
    found
}

/// The process state letter of `/proc/PID/stat` (`T` once stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The first JSON log line whose message is `message`.
fn log_line(stderr: &str, message: &str) -> Option<Value> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == message)
}

fn field(line: &Value, key: &str) -> u64 {
    line[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no numeric {key} in {line}"))
}

/// SIGTERM with the UDP socket's buffer full of unread datagrams: the node is stopped
/// (SIGSTOP) while the flood is sent, so every datagram the kernel accepted is still unread
/// when SIGTERM arrives (it is delivered with SIGCONT). Each of the `N` datagrams is then
/// either dropped by the kernel (buffer full; the socket's drop counter, read by this test),
/// stored, or counted by Starling as dropped; the counts come from the node's last log line
/// of the listener (`udp listener stopped`), written as it exits.
///
/// Before the drain, the receive loop stopped at the next batch after SIGTERM and the rest
/// of the buffer was lost with the socket, counted nowhere (and the listener had no totals
/// line). As root the socket gets a 32 MiB buffer (SO_RCVBUFFORCE), tens of thousands of
/// datagrams; without root the kernel caps it at `net.core.rmem_max` and the test still runs.
#[test]
fn sigterm_under_a_udp_flood_stores_or_counts_every_datagram() {
    const N: u64 = 100_000;
    let mut node = Node::start(&[
        "--udp-sockets",
        "1",
        "--udp-recv-buffer-bytes",
        "33554432",
        "--log-format",
        "json",
    ]);
    let target = node.udp.expect("udp address");
    let pid = node.pid();
    send_signal(pid, libc::SIGSTOP);
    assert!(
        wait_until(Duration::from_secs(10), || process_state(pid) == Some('T')),
        "the node did not stop"
    );
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0u64;
    for i in 0..N {
        let message = format!("<13>1 2026-12-04T10:00:00Z flood app - - - datagram {i:06}");
        if sender.send_to(message.as_bytes(), target).is_ok() {
            sent += 1;
        }
    }
    let (queued_bytes, kernel_drops) =
        udp_socket_queue_and_drops(target).expect("the node's socket is in /proc/net/udp");
    assert!(queued_bytes > 0, "no datagram was left in flight");

    send_signal(pid, libc::SIGTERM);
    send_signal(pid, libc::SIGCONT);
    let status = node.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}; stderr: {}", node.stderr());

    let stderr = node.stderr();
    let totals = log_line(&stderr, "udp listener stopped")
        .unwrap_or_else(|| panic!("no totals line of the udp listener; stderr: {stderr}"));
    let stored = count_records(&node.data_dir) as u64;
    let received = field(&totals, "received");
    let counted_drops = field(&totals, "dropped_queue_full")
        + field(&totals, "dropped_pipeline_closed")
        + field(&totals, "dropped_shutdown_unread");
    let report = format!(
        "sent {sent}, kernel drops {kernel_drops}, {queued_bytes} bytes queued at SIGTERM, \
         stored {stored}, totals {totals}"
    );
    assert_eq!(
        field(&totals, "kernel_drops"),
        kernel_drops,
        "the node's kernel drop count: {report}"
    );
    assert_eq!(
        received + field(&totals, "dropped_shutdown_unread"),
        sent - kernel_drops,
        "every datagram the kernel accepted was read or counted unread: {report}"
    );
    assert_eq!(
        stored + counted_drops,
        sent - kernel_drops,
        "received = stored + counted drops: {report}"
    );
    assert!(stored > 0, "{report}");
    let _ = writeln!(std::io::stderr().lock(), "udp sigterm flood: {report}");
}

const MIB: u64 = 1024 * 1024;
/// The target.
const RSS_LIMIT: u64 = 512 * MIB;
/// Message size of the senders (`max-message-bytes` is 64 KiB: stored whole).
const MESSAGE_BYTES: usize = 64 * 1024;
const NUM_SENDERS: usize = 4;

/// One octet-counted frame of exactly `MESSAGE_BYTES` of message.
fn frame(sender: usize, i: u64) -> Vec<u8> {
    let head = format!("<13>1 2026-12-04T10:00:00Z sender{sender} app - - - s{sender}-{i:08} ");
    let mut message = head.into_bytes();
    message.resize(MESSAGE_BYTES, b'x');
    let mut frame = format!("{} ", message.len()).into_bytes();
    frame.extend_from_slice(&message);
    frame
}

/// A disk-full stall while 4 TCP senders push 64 KiB messages: the node's memory stays under
/// 512 MiB (VmHWM, the peak, read from /proc) because the pipeline holds at most
/// `pipeline-max-bytes` (256 MiB by default) and pushes the senders back; once space is
/// freed, every message the senders wrote is stored.
///
/// The stall lasts `STARLING_STALL_SECS` seconds (10 by default, so the suite stays short;
/// `bench/disk_full_rss.sh` runs it for the 60 s). The data directory is a 1 GiB
/// tmpfs mounted by the test (root only), filled up to 32 MiB before the node starts; the
/// filler is removed after the stall. Before the budget, the pipeline's 1,024 batches and the
/// store queue's 1,024 batches of up to 1,024 records each took whatever the senders sent.
#[test]
fn disk_full_stall_with_64k_tcp_messages_keeps_rss_under_512_mib() {
    const TEST: &str = "disk_full_stall_with_64k_tcp_messages_keeps_rss_under_512_mib";
    if !have_root(TEST) {
        return;
    }
    let stall = Duration::from_secs(
        std::env::var("STARLING_STALL_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .unwrap_or(10),
    );
    let mut node = Node::start(&["--max-message-bytes", "65536", "--udp-sockets", "1"]);
    node.terminate(Duration::from_secs(20));
    std::fs::remove_dir_all(&node.data_dir).unwrap();
    std::fs::create_dir(&node.data_dir).unwrap();
    let _mount = match mount_tmpfs(&node.data_dir, "1g") {
        Ok(mount) => mount,
        Err(reason) => {
            skip_or_fail(TEST, &reason);
            return;
        }
    };
    let filler = node.data_dir.join("filler");
    {
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; MIB as usize];
        for _ in 0..(1024 - 32) {
            file.write_all(&chunk).unwrap();
        }
    }
    node.spawn();
    let pid = node.pid();
    let tcp = node.tcp.expect("tcp address");

    let stop = Arc::new(AtomicBool::new(false));
    let written: Arc<Vec<AtomicU64>> =
        Arc::new((0..NUM_SENDERS).map(|_| AtomicU64::new(0)).collect());
    let senders: Vec<_> = (0..NUM_SENDERS)
        .map(|sender| {
            let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(tcp).expect("connect");
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    stream.write_all(&frame(sender, i)).expect("write a frame");
                    i += 1;
                    written[sender].store(i, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let total_written = || {
        written
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum::<u64>()
    };

    assert!(
        wait_until(Duration::from_secs(60), || node
            .metric("starling_store_disk_full")
            == 1.0),
        "the disk never filled; stderr: {}",
        node.stderr()
    );
    let stall_start = Instant::now();
    let mut max_rss = 0;
    let mut max_in_flight = 0.0f64;
    let mut written_before_end = 0;
    while stall_start.elapsed() < stall {
        let (rss, _) = proc_memory(pid);
        max_rss = max_rss.max(rss);
        max_in_flight = max_in_flight.max(node.metric("starling_pipeline_bytes_in_flight"));
        if stall.saturating_sub(stall_start.elapsed()) > Duration::from_secs(2) {
            written_before_end = total_written();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        node.metric("starling_store_disk_full"),
        1.0,
        "the disk stayed full for the whole stall"
    );
    let (_, peak) = proc_memory(pid);
    let written_at_end = total_written();
    let report = format!(
        "stall {stall:?}: VmHWM {} MiB, max VmRSS {} MiB, max bytes in flight {} MiB, \
         {written_at_end} messages written",
        peak / MIB,
        max_rss / MIB,
        max_in_flight as u64 / MIB
    );
    let _ = writeln!(std::io::stderr().lock(), "disk-full stall: {report}");
    assert!(peak < RSS_LIMIT, "peak RSS over 512 MiB: {report}");
    assert!(
        max_in_flight <= (256 * MIB) as f64,
        "more than pipeline-max-bytes in flight: {report}"
    );
    assert_eq!(
        written_before_end, written_at_end,
        "the senders were not pushed back in the stall's last 2 s: {report}"
    );

    std::fs::remove_file(&filler).unwrap();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().expect("a sender failed");
    }
    let total = total_written();
    assert!(
        wait_until(Duration::from_secs(120), || node
            .metric("starling_stored_messages_total{transport=\"tcp\"}")
            as u64
            >= total),
        "stored {} of {total} messages after space was freed; {report}",
        node.metric("starling_stored_messages_total{transport=\"tcp\"}")
    );
    node.terminate(Duration::from_secs(20));
    assert_eq!(count_records(&node.data_dir) as u64, total, "{report}");
}
