//! TCP listener tests on 127.0.0.1:0 with a real channel consumer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::*;
use crate::listener::test_support::{context, raws, receive, TIMEOUT};
use crate::record::ParseStatus;
use crate::telemetry::DropReason;
use crate::testutil::wait_until;

struct Running {
    addr: SocketAddr,
    ctx: Arc<ListenerContext>,
    records_rx: tokio::sync::mpsc::Receiver<crate::pipeline::Batch>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(options: TcpOptions, capacity: usize) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ctx, records_rx) = context(Transport::Tcp, capacity);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(listener, Arc::clone(&ctx), options, cancel.clone()));
    Running {
        addr,
        ctx,
        records_rx,
        cancel,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("listener returns after cancel")
            .unwrap();
    }
}

/// Sends `bytes` on a new connection and closes it.
async fn send(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream.shutdown().await.unwrap();
}

/// Reads until the server closes the connection; panics if it does not within TIMEOUT.
async fn expect_closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("server did not close the connection"),
        }
    }
}

#[tokio::test]
async fn both_framings_and_mixed_on_one_connection() {
    let mut running = start(TcpOptions::default(), 16).await;
    let stream = b"<13>Nov 26 10:00:00 web1 app: lf framed\n\
        47 <34>1 2026-11-26T10:00:00Z db1 su - - - counted\
        <13>Nov 26 10:00:01 web2 app: crlf\r\n\
        <13>Nov 26 10:00:02 web3 app: nul\0\
        <13>Nov 26 10:00:03 web4 app: last at eof";
    send(running.addr, stream).await;
    let records = receive(&mut running.records_rx, 5).await;
    assert_eq!(
        raws(&records),
        [
            "<13>Nov 26 10:00:00 web1 app: lf framed",
            "<34>1 2026-11-26T10:00:00Z db1 su - - - counted",
            "<13>Nov 26 10:00:01 web2 app: crlf",
            "<13>Nov 26 10:00:02 web3 app: nul",
            "<13>Nov 26 10:00:03 web4 app: last at eof",
        ]
    );
    let sources: Vec<&str> = records.iter().map(|r| &*r.source).collect();
    assert_eq!(sources, ["web1", "db1", "web2", "web3", "web4"]);
    assert_eq!(records[1].parse, ParseStatus::Rfc5424);
    assert!(records.iter().all(|r| r.transport == Transport::Tcp
        && &*r.origin == "test-node"
        && r.peer
            .as_deref()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
        && !r.truncated));
    assert_eq!(running.ctx.metrics.num_received(), 5);
    running.stop().await;
}

#[tokio::test]
async fn oversize_messages_are_truncated_in_both_framings_and_the_stream_stays_in_sync() {
    let options = TcpOptions {
        max_message_bytes: 16,
        ..TcpOptions::default()
    };
    let mut running = start(options, 16).await;
    let mut stream = b"<13>a long line that is cut\n<13>next\n".to_vec();
    stream.extend_from_slice(b"31 <13>a counted frame that is cut<13>after\n");
    send(running.addr, &stream).await;
    let records = receive(&mut running.records_rx, 4).await;
    assert_eq!(
        raws(&records),
        [
            "<13>a long line ",
            "<13>next",
            "<13>a counted fr",
            "<13>after"
        ]
    );
    let truncated: Vec<bool> = records.iter().map(|r| r.truncated).collect();
    assert_eq!(truncated, [true, false, true, false]);
    assert_eq!(running.ctx.metrics.num_truncated(), 2);
    running.stop().await;
}

#[tokio::test]
async fn non_transparent_framing_takes_digit_led_lines_as_lines() {
    let options = TcpOptions {
        framing: FramingMode::NonTransparent,
        ..TcpOptions::default()
    };
    let mut running = start(options, 16).await;
    send(running.addr, b"12 workers started\n3 abc\n").await;
    let records = receive(&mut running.records_rx, 2).await;
    assert_eq!(raws(&records), ["12 workers started", "3 abc"]);
    running.stop().await;
}

#[tokio::test]
async fn a_one_mib_line_is_cut_to_the_default_maximum() {
    let mut running = start(TcpOptions::default(), 16).await;
    let mut stream = vec![b'x'; 1 << 20];
    stream.extend_from_slice(b"\n<13>fine\n");
    send(running.addr, &stream).await;
    let records = receive(&mut running.records_rx, 2).await;
    assert_eq!(records[0].raw.len(), DEFAULT_MAX_MESSAGE_BYTES);
    assert!(records[0].truncated);
    assert_eq!(records[0].parse, ParseStatus::Unparsed);
    assert_eq!(raws(&records[1..]), ["<13>fine"]);
    running.stop().await;
}

#[tokio::test]
async fn nul_bytes_and_invalid_utf8_are_stored_byte_exact() {
    let mut running = start(TcpOptions::default(), 16).await;
    let counted: &[u8] = b"<13>Nov 26 10:00:00 h app: a\0b\xff\xfe c";
    let mut stream = format!("{} ", counted.len()).into_bytes();
    stream.extend_from_slice(counted);
    stream.extend_from_slice(b"<13>Nov 26 10:00:01 h app: caf\xe9\n");
    send(running.addr, &stream).await;
    let records = receive(&mut running.records_rx, 2).await;
    assert_eq!(&records[0].raw[..], counted);
    assert_eq!(&records[1].raw[..], b"<13>Nov 26 10:00:01 h app: caf\xe9");
    assert!(records
        .iter()
        .all(|r| r.parse == ParseStatus::Rfc3164 && &*r.source == "h"));
    running.stop().await;
}

#[tokio::test]
async fn invalid_length_prefix_closes_only_that_connection() {
    let mut running = start(TcpOptions::default(), 16).await;
    let mut good = TcpStream::connect(running.addr).await.unwrap();
    good.write_all(b"<13>good 1\n").await.unwrap();
    receive(&mut running.records_rx, 1).await;

    let mut bad = TcpStream::connect(running.addr).await.unwrap();
    bad.write_all(b"<13>before\n12345678901234567890 <13>hostile\n<13>after\n")
        .await
        .unwrap();
    expect_closed_by_server(&mut bad).await;
    let records = receive(&mut running.records_rx, 1).await;
    assert_eq!(raws(&records), ["<13>before"]);
    assert_eq!(running.ctx.metrics.num_framing_errors(), 1);

    good.write_all(b"<13>good 2\n").await.unwrap();
    good.shutdown().await.unwrap();
    let records = receive(&mut running.records_rx, 1).await;
    assert_eq!(raws(&records), ["<13>good 2"]);
    running.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_counted() {
    let options = TcpOptions {
        max_connections: 2,
        ..TcpOptions::default()
    };
    let mut running = start(options, 16).await;
    let mut first = TcpStream::connect(running.addr).await.unwrap();
    let mut second = TcpStream::connect(running.addr).await.unwrap();
    first.write_all(b"<13>one\n").await.unwrap();
    second.write_all(b"<13>two\n").await.unwrap();
    receive(&mut running.records_rx, 2).await;

    let mut third = TcpStream::connect(running.addr).await.unwrap();
    expect_closed_by_server(&mut third).await;
    assert_eq!(running.ctx.metrics.num_connections_refused(), 1);

    // A freed slot is usable again.
    first.shutdown().await.unwrap();
    drop(first);
    let metrics = Arc::clone(&running.ctx.metrics);
    assert!(
        wait_until(TIMEOUT, || { metrics.num_connections_open() == 1 }).await,
        "timed out waiting until the first connection is closed"
    );
    send(running.addr, b"<13>four\n").await;
    let records = receive(&mut running.records_rx, 1).await;
    assert_eq!(raws(&records), ["<13>four"]);
    running.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let options = TcpOptions {
        idle_timeout: Duration::from_millis(200),
        ..TcpOptions::default()
    };
    let mut running = start(options, 16).await;
    let mut idle = TcpStream::connect(running.addr).await.unwrap();
    idle.write_all(b"<13>then silence\n").await.unwrap();
    receive(&mut running.records_rx, 1).await;
    expect_closed_by_server(&mut idle).await;
    assert_eq!(running.ctx.metrics.num_idle_timeouts(), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_message_cut_by_the_idle_timeout_is_stored_flagged() {
    let options = TcpOptions {
        idle_timeout: Duration::from_millis(200),
        ..TcpOptions::default()
    };
    let mut running = start(options, 16).await;
    let mut line = TcpStream::connect(running.addr).await.unwrap();
    line.write_all(b"<13>whole\n<13>begun, never ended")
        .await
        .unwrap();
    let mut counted = TcpStream::connect(running.addr).await.unwrap();
    counted.write_all(b"40 <13>promised forty").await.unwrap();
    expect_closed_by_server(&mut line).await;
    expect_closed_by_server(&mut counted).await;
    let mut records = receive(&mut running.records_rx, 3).await;
    records.sort_by(|a, b| a.raw.cmp(&b.raw));
    assert_eq!(
        raws(&records),
        ["<13>begun, never ended", "<13>promised forty", "<13>whole"]
    );
    let flags: Vec<bool> = records.iter().map(|record| record.truncated).collect();
    assert_eq!(flags, [true, true, false]);
    running.stop().await;
}

#[tokio::test]
async fn an_unterminated_last_line_at_the_senders_close_is_complete() {
    // As rsyslog's imtcp: senders of non-transparent framing may omit the final LF.
    let mut running = start(TcpOptions::default(), 16).await;
    send(running.addr, b"<13>first\n<13>no final LF").await;
    let records = receive(&mut running.records_rx, 2).await;
    assert_eq!(raws(&records), ["<13>first", "<13>no final LF"]);
    assert!(records.iter().all(|record| !record.truncated));
    running.stop().await;
}

#[tokio::test]
async fn partial_octet_counted_frame_at_eof_is_stored_flagged() {
    let mut running = start(TcpOptions::default(), 16).await;
    send(running.addr, b"9 <13>first40 <13>cut short by eof").await;
    let records = receive(&mut running.records_rx, 2).await;
    assert_eq!(raws(&records), ["<13>first", "<13>cut short by eof"]);
    assert_eq!((records[0].truncated, records[1].truncated), (false, true));
    running.stop().await;
}

#[tokio::test]
async fn a_full_channel_stops_reading_without_dropping() {
    // One batch of room and small batches: the listener stalls as soon as the consumer
    // does, and the sender's writes back up into the socket buffers.
    let options = TcpOptions {
        max_batch_records: 4,
        ..TcpOptions::default()
    };
    let mut running = start(options, 1).await;
    const NUM_MESSAGES: usize = 3000;
    const BODY_BYTES: usize = 8000;
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let written = Arc::clone(&written);
        let addr = running.addr;
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            for i in 0..NUM_MESSAGES {
                let message = format!("<13>msg {i:05} {}\n", "x".repeat(BODY_BYTES));
                stream.write_all(message.as_bytes()).await.unwrap();
                written.fetch_add(1, Ordering::SeqCst);
            }
            stream.shutdown().await.unwrap();
        })
    };
    // Nobody drains: the writer must stall (no progress for a while) well before the end.
    let mut last = (usize::MAX, Instant::now());
    assert!(
        wait_until(TIMEOUT, || {
            let now = written.load(Ordering::SeqCst);
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() > Duration::from_millis(300)
        })
        .await,
        "timed out waiting until the writer stalls"
    );
    let stalled_at = written.load(Ordering::SeqCst);
    assert!(stalled_at < NUM_MESSAGES, "writer never stalled");

    let records = receive(&mut running.records_rx, NUM_MESSAGES).await;
    writer.await.unwrap();
    for (i, record) in records.iter().enumerate() {
        assert!(record
            .raw
            .starts_with(format!("<13>msg {i:05} ").as_bytes()));
        assert_eq!(record.raw.len(), 4 + 10 + BODY_BYTES);
    }
    assert_eq!(running.ctx.metrics.num_dropped(DropReason::QueueFull), 0);
    running.stop().await;
}

#[tokio::test]
async fn cancel_hands_over_what_was_read_and_returns() {
    let mut running = start(TcpOptions::default(), 16).await;
    let mut open = TcpStream::connect(running.addr).await.unwrap();
    open.write_all(b"<13>a\n<13>b\n<13>partial").await.unwrap();
    let records = receive(&mut running.records_rx, 2).await;
    assert_eq!(raws(&records), ["<13>a", "<13>b"]);
    let Running {
        cancel,
        task,
        mut records_rx,
        ..
    } = running;
    cancel.cancel();
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
    // The partial last message already read is handed over, flagged: Starling cut it.
    let records = receive(&mut records_rx, 1).await;
    assert_eq!(raws(&records), ["<13>partial"]);
    assert!(
        records[0].truncated,
        "a line cut by shutdown is stored as complete"
    );
    expect_closed_by_server(&mut open).await;
    assert!(records_rx.try_recv().is_err());
}
