//! Syslog over UDP (RFC 5426): one datagram is one message.
//!
//! Owns binding the listener's sockets (several `SO_REUSEPORT` sockets, one per core by
//! default, each with a large receive buffer), the receive loops (batched `recvmmsg`), and the
//! kernel drop counter of those sockets. A datagram's trailing LF/NUL is trimmed, an oversize
//! one is cut and flagged. UDP cannot push back, so when the records channel is full the
//! batch is dropped and counted.
//!
//! Design: each socket has its own thread (from tokio's blocking pool) that waits in a
//! blocking `recvmmsg` (`MSG_WAITFORONE`: the first datagram, then whatever is queued) and
//! hands batches to the records channel with `try_send`. The first version drove each socket
//! from a tokio task woken by readiness; profiled under one sender, a third of its CPU went to
//! runtime worker threads parking in `epoll_wait` and being woken again for every burst. The
//! socket's receive timeout bounds how long a thread takes to notice cancellation.

mod kernel_drops;
mod sys;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{ListenerContext, DEFAULT_MAX_BATCH_RECORDS};
use crate::framing::{trim_datagram_trailer, DEFAULT_MAX_MESSAGE_BYTES};
use crate::ingest::Peer;
use crate::record::{Record, Transport};

/// The largest UDP payload there is.
const MAX_DATAGRAM_BYTES: usize = 65_536;
/// Default receive buffer asked for each socket (32 MiB).
pub const DEFAULT_RECV_BUFFER_BYTES: usize = 32 * 1024 * 1024;
/// How often a receive thread checks for cancellation while its socket is quiet.
const CANCEL_CHECK: Duration = Duration::from_millis(100);
/// Pause after a receive error other than a timeout.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Coalescing is used only on sockets with at least this much receive buffer (as the
/// kernel reports it), so the pause cannot overflow a small buffer.
const COALESCE_MIN_RECV_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Settings of one UDP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpOptions {
    /// Longer datagrams are cut to this and flagged truncated.
    pub max_message_bytes: usize,
    /// Datagrams received per `recvmmsg` call.
    pub recv_batch: usize,
    /// Most records handed over in one batch.
    pub max_batch_records: usize,
    /// How often the kernel's drop counter is read.
    pub kernel_drops_interval: Duration,
    /// After a receive that drained the socket with a small batch, wait this long before
    /// the next one so datagrams accumulate and one wake-up handles many (at most this much
    /// added latency). Only on sockets with a large receive buffer; zero turns it off.
    pub coalesce: Duration,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            recv_batch: 32,
            max_batch_records: DEFAULT_MAX_BATCH_RECORDS,
            kernel_drops_interval: Duration::from_secs(1),
            coalesce: Duration::from_millis(10),
        }
    }
}

/// One socket per core.
pub fn default_num_sockets() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Binds `num_sockets` UDP sockets on `addr` with `SO_REUSEPORT`, so the kernel spreads
/// senders over them, each asking for `recv_buffer_bytes` of receive buffer (0: the system
/// default). Port 0 binds the first socket to a free port and the others to the same one.
/// Logs a warning when the kernel grants a smaller buffer than asked.
pub fn bind(
    addr: SocketAddr,
    num_sockets: usize,
    recv_buffer_bytes: usize,
) -> io::Result<Vec<std::net::UdpSocket>> {
    let mut sockets = Vec::with_capacity(num_sockets.max(1));
    let mut bind_addr = addr;
    let mut granted = usize::MAX;
    for _ in 0..num_sockets.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        if recv_buffer_bytes > 0 {
            granted = granted.min(set_recv_buffer(&socket, recv_buffer_bytes)?);
        }
        socket.set_nonblocking(true)?;
        socket
            .bind(&bind_addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("binding udp {bind_addr}: {e}")))?;
        if let Some(local) = socket.local_addr()?.as_socket() {
            bind_addr = local;
        }
        sockets.push(socket.into());
    }
    if recv_buffer_bytes > 0 && granted < recv_buffer_bytes {
        tracing::warn!(
            %addr,
            asked = recv_buffer_bytes,
            granted,
            "udp receive buffer capped by the kernel; raise net.core.rmem_max or run with \
             CAP_NET_ADMIN to avoid drops under bursts"
        );
    }
    Ok(sockets)
}

/// Asks for a receive buffer of `bytes` (forced past `rmem_max` when privileged); returns
/// the size granted.
fn set_recv_buffer(socket: &Socket, bytes: usize) -> io::Result<usize> {
    if sys::set_recv_buffer_force(socket.as_raw_fd(), bytes).is_err() {
        socket.set_recv_buffer_size(bytes)?;
    }
    // Linux reports twice the size asked for (the doubling covers its bookkeeping).
    Ok(socket.recv_buffer_size()? / 2)
}

/// Receives on every socket until `cancel` fires; keeps the kernel drop counter current.
pub async fn run(
    sockets: Vec<std::net::UdpSocket>,
    ctx: Arc<ListenerContext>,
    options: UdpOptions,
    cancel: CancellationToken,
) {
    let inodes: Vec<u64> = sockets
        .iter()
        .filter_map(|s| kernel_drops::socket_inode(s).ok())
        .collect();
    let receivers = TaskTracker::new();
    for socket in sockets {
        let blocking = socket
            .set_nonblocking(false)
            .and_then(|()| socket.set_read_timeout(Some(CANCEL_CHECK)));
        match blocking {
            Ok(()) => {
                let (ctx, options, cancel) = (Arc::clone(&ctx), options.clone(), cancel.clone());
                receivers.spawn_blocking(move || receive_loop(&socket, &ctx, &options, &cancel));
            }
            Err(error) => ctx.metrics.receive_error(None, &error),
        }
    }
    receivers.close();
    let mut poll = tokio::time::interval(options.kernel_drops_interval);
    loop {
        tokio::select! {
            () = receivers.wait() => break,
            _ = poll.tick() => ctx.metrics.set_kernel_drops(kernel_drops::read_drops(&inodes)),
        }
    }
    ctx.metrics
        .set_kernel_drops(kernel_drops::read_drops(&inodes));
}

/// One socket's receive loop, on its own thread, until `cancel` fires or the pipeline is gone.
fn receive_loop(
    socket: &std::net::UdpSocket,
    ctx: &ListenerContext,
    options: &UdpOptions,
    cancel: &CancellationToken,
) {
    let max = options.max_message_bytes.max(1);
    // Two spare bytes let a datagram of exactly `max` bytes plus CR LF arrive whole.
    let slot_bytes = (max + 2).min(MAX_DATAGRAM_BYTES);
    let mut receiver = sys::MmsgReceiver::new(options.recv_batch, slot_bytes);
    let fd = socket.as_raw_fd();
    let max_batch_records = options.max_batch_records.max(1);
    let recv_buffer = socket2::SockRef::from(socket)
        .recv_buffer_size()
        .unwrap_or(0);
    let coalesce = if recv_buffer >= COALESCE_MIN_RECV_BUFFER_BYTES {
        options.coalesce
    } else {
        Duration::ZERO
    };
    // Senders usually send many datagrams: keep the last one's text forms.
    let mut last_peer: Option<Peer> = None;
    let mut last_batch_len = 0;
    while !cancel.is_cancelled() {
        // Sized like the last batch, so a busy socket does not grow its batch step by step.
        let mut batch: Vec<Record> =
            Vec::with_capacity(last_batch_len.max(16).min(max_batch_records));
        let mut received_at = None;
        while batch.len() < max_batch_records {
            // The first receive of a batch waits (up to `CANCEL_CHECK`); the rest only take
            // what is queued.
            let received = if received_at.is_none() {
                receiver.recv_wait(fd)
            } else {
                receiver.recv(fd)
            };
            let num_received = match received {
                Ok(num_received) => num_received,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    break
                }
                Err(error) => {
                    ctx.metrics.receive_error(None, &error);
                    // Not a tight loop on an error that persists.
                    std::thread::sleep(ERROR_PAUSE);
                    break;
                }
            };
            let now = *received_at.get_or_insert_with(Utc::now);
            let mut arena = BytesMut::with_capacity(
                (0..num_received)
                    .map(|i| receiver.datagram(i).data.len())
                    .sum(),
            );
            for i in 0..num_received {
                let datagram = receiver.datagram(i);
                let Some((payload, truncated)) =
                    message(datagram.data, datagram.cut, max, &mut arena)
                else {
                    continue;
                };
                if let Some(addr) = datagram.peer {
                    if last_peer.as_ref().is_none_or(|p| p.addr != addr) {
                        last_peer = Some(Peer::new(addr));
                    }
                }
                let peer = datagram.peer.and(last_peer.as_ref());
                batch.push(ctx.record(payload, truncated, peer, Transport::Udp, now, max));
            }
            if num_received < options.recv_batch {
                break;
            }
        }
        if batch.is_empty() {
            continue;
        }
        ctx.count_received(&batch);
        last_batch_len = batch.len();
        let was_small = batch.len() < max_batch_records;
        if !ctx.try_send(batch) {
            break;
        }
        if was_small && !coalesce.is_zero() {
            std::thread::sleep(coalesce);
        }
    }
}

/// The message of one datagram: trailer trimmed, cut to `max`; `None` when empty. The
/// bytes are copied into `arena` (one allocation per receive batch).
fn message(data: &[u8], cut: bool, max: usize, arena: &mut BytesMut) -> Option<(Bytes, bool)> {
    // A datagram the kernel cut has lost its trailer; only a whole one is trimmed.
    let data = if cut {
        data
    } else {
        trim_datagram_trailer(data)
    };
    if data.is_empty() {
        return None;
    }
    let truncated = cut || data.len() > max;
    let kept = &data[..data.len().min(max)];
    arena.extend_from_slice(kept);
    Some((arena.split().freeze(), truncated))
}

#[cfg(test)]
mod tests;
