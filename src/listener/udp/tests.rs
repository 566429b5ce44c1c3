//! UDP listener tests on 127.0.0.1:0 with a real channel consumer.

use std::net::UdpSocket;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;
use crate::listener::test_support::{context, raws, receive, TIMEOUT};
use crate::record::ParseStatus;
use crate::telemetry::DropReason;
use crate::testutil::wait_until;

struct Running {
    addr: SocketAddr,
    ctx: Arc<ListenerContext>,
    records_rx: mpsc::Receiver<crate::pipeline::Batch>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

fn start_on(sockets: Vec<std::net::UdpSocket>, options: UdpOptions, capacity: usize) -> Running {
    let addr = sockets[0].local_addr().unwrap();
    let (ctx, records_rx) = context(Transport::Udp, capacity);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(sockets, Arc::clone(&ctx), options, cancel.clone()));
    Running {
        addr,
        ctx,
        records_rx,
        cancel,
        task,
    }
}

fn start(options: UdpOptions, capacity: usize) -> Running {
    let sockets = bind("127.0.0.1:0".parse().unwrap(), 2, 1 << 20).unwrap();
    start_on(sockets, options, capacity)
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

fn sender() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

#[test]
fn bind_gives_reuseport_sockets_on_one_port() {
    let sockets = bind("127.0.0.1:0".parse().unwrap(), 3, 1 << 20).unwrap();
    assert_eq!(sockets.len(), 3);
    let port = sockets[0].local_addr().unwrap().port();
    assert_ne!(port, 0);
    for socket in &sockets {
        assert_eq!(socket.local_addr().unwrap().port(), port);
        let socket = socket2::SockRef::from(socket);
        assert!(socket.reuse_port().unwrap());
        assert!(socket.recv_buffer_size().unwrap() > 0);
    }
}

#[tokio::test]
async fn one_datagram_is_one_message_with_its_trailer_trimmed() {
    let mut running = start(UdpOptions::default(), 16);
    let sender = sender();
    for datagram in [
        &b"<13>Nov 26 10:00:00 web1 app: plain"[..],
        b"<13>Nov 26 10:00:01 web2 app: lf\n",
        b"<13>Nov 26 10:00:02 web3 app: nul\0",
        b"<34>1 2026-11-26T10:00:03Z db1 su - - - two\nlines\r\n",
        b"\n",
    ] {
        sender.send_to(datagram, running.addr).unwrap();
    }
    let records = receive(&mut running.records_rx, 4).await;
    assert_eq!(
        raws(&records),
        [
            "<13>Nov 26 10:00:00 web1 app: plain",
            "<13>Nov 26 10:00:01 web2 app: lf",
            "<13>Nov 26 10:00:02 web3 app: nul",
            "<34>1 2026-11-26T10:00:03Z db1 su - - - two\nlines",
        ]
    );
    let sources: Vec<&str> = records.iter().map(|r| &*r.source).collect();
    assert_eq!(sources, ["web1", "web2", "web3", "db1"]);
    let peer = sender.local_addr().unwrap().to_string();
    assert!(records.iter().all(|r| r.transport == Transport::Udp
        && r.peer.as_deref() == Some(peer.as_str())
        && !r.truncated));
    assert_eq!(records[3].parse, ParseStatus::Rfc5424);
    running.stop().await;
}

#[tokio::test]
async fn oversize_datagrams_are_cut_and_flagged() {
    let options = UdpOptions {
        max_message_bytes: 16,
        ..UdpOptions::default()
    };
    let mut running = start(options, 16);
    let sender = sender();
    sender
        .send_to(b"<13>0123456789ABCDEF-the-rest", running.addr)
        .unwrap();
    sender.send_to(b"<13>0123456789ABC", running.addr).unwrap(); // 17 bytes
    sender
        .send_to(b"<13>0123456789AB\r\n", running.addr)
        .unwrap(); // 16 + CR LF
    sender.send_to(b"no syslog here", running.addr).unwrap();
    let records = receive(&mut running.records_rx, 4).await;
    assert_eq!(
        raws(&records),
        [
            "<13>0123456789AB",
            "<13>0123456789AB",
            "<13>0123456789AB",
            "no syslog here"
        ]
    );
    let truncated: Vec<bool> = records.iter().map(|r| r.truncated).collect();
    assert_eq!(truncated, [true, true, false, false]);
    assert_eq!(running.ctx.metrics.num_truncated(), 2);
    assert_eq!(running.ctx.metrics.num_unparsed(), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_full_channel_drops_and_counts() {
    let mut running = start(UdpOptions::default(), 1);
    let sender = sender();
    sender
        .send_to(b"<13>fills the channel", running.addr)
        .unwrap();
    let metrics = Arc::clone(&running.ctx.metrics);
    assert!(
        wait_until(TIMEOUT, || { metrics.num_received() == 1 }).await,
        "timed out waiting until the first datagram is received"
    );
    for i in 0..49 {
        sender
            .send_to(format!("<13>dropped {i}").as_bytes(), running.addr)
            .unwrap();
    }
    assert!(
        wait_until(TIMEOUT, || { metrics.num_received() == 50 }).await,
        "timed out waiting until every datagram is received"
    );
    assert_eq!(metrics.num_dropped(DropReason::QueueFull), 49);
    let records = receive(&mut running.records_rx, 1).await;
    assert_eq!(raws(&records), ["<13>fills the channel"]);
    running.stop().await;
}

#[tokio::test]
async fn kernel_drops_are_exported() {
    // A tiny receive buffer and nobody reading yet: the kernel drops most of a burst.
    let sockets = bind("127.0.0.1:0".parse().unwrap(), 1, 4096).unwrap();
    let addr = sockets[0].local_addr().unwrap();
    let sender = sender();
    let datagram = vec![b'x'; 1000];
    for _ in 0..500 {
        sender.send_to(&datagram, addr).unwrap();
    }
    let options = UdpOptions {
        kernel_drops_interval: Duration::from_millis(10),
        ..UdpOptions::default()
    };
    let running = start_on(sockets, options, 1024);
    let metrics = Arc::clone(&running.ctx.metrics);
    assert!(
        wait_until(TIMEOUT, || { metrics.num_kernel_drops() > 0 }).await,
        "timed out waiting until kernel drops are counted"
    );
    assert!(
        wait_until(TIMEOUT, || {
            metrics.num_received() + metrics.num_kernel_drops() == 500
        })
        .await,
        "timed out waiting until the queued datagrams are received"
    );
    running.stop().await;
}

#[tokio::test]
async fn cancel_stops_every_socket() {
    let running = start(UdpOptions::default(), 16);
    running.stop().await;
}

#[tokio::test]
async fn coalescing_sockets_deliver_every_datagram() {
    // With a large buffer (granted to root; others get the capped size and no coalescing)
    // small receives pause briefly: nothing may be lost or held back.
    let sockets = bind("127.0.0.1:0".parse().unwrap(), 1, 16 << 20).unwrap();
    let mut running = start_on(sockets, UdpOptions::default(), 1024);
    let sender = sender();
    for round in 0..20 {
        for i in 0..100 {
            let message = format!("<13>round {round} message {i}");
            sender.send_to(message.as_bytes(), running.addr).unwrap();
        }
        let records = receive(&mut running.records_rx, 100).await;
        assert_eq!(
            records[99].raw,
            format!("<13>round {round} message 99").as_bytes()
        );
    }
    assert_eq!(running.ctx.metrics.num_received(), 2000);
    running.stop().await;
}

/// The shutdown drain's filter: datagrams arriving after it are not queued but dropped and
/// counted in the socket's own drop counter (what `starling_udp_kernel_drops_total` reads),
/// while what was queued before stays readable.
#[test]
fn after_the_drain_filter_new_datagrams_are_kernel_drops_and_queued_ones_stay() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let inode = super::kernel_drops::socket_inode(&socket).unwrap();
    let target = socket.local_addr().unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"queued before", target).unwrap();
    super::sys::drop_new_arrivals(std::os::fd::AsRawFd::as_raw_fd(&socket)).unwrap();
    for _ in 0..5 {
        sender.send_to(b"after", target).unwrap();
    }
    let mut buffer = [0u8; 64];
    let (len, _) = socket.recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..len], b"queued before");
    assert_eq!(
        socket.recv_from(&mut buffer).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    assert_eq!(super::kernel_drops::read_drops(&[inode]), 5);
}
