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
//!
//! Shutdown: what the kernel already holds in the sockets' buffers is read and stored, like
//! TCP's (see `receive_loop`); datagrams arriving meanwhile are dropped by a socket filter
//! and counted by the kernel, what cannot be read by the deadline is counted as
//! `shutdown_unread`, and the listener's totals are logged as it stops.

mod kernel_drops;
mod sys;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{ListenerContext, DEFAULT_MAX_BATCH_RECORDS, DRAIN_DEADLINE};
use crate::framing::{trim_datagram_trailer, DEFAULT_MAX_MESSAGE_BYTES};
use crate::ingest::Peer;
use crate::pipeline::budget::NotSent;
use crate::record::{Record, Transport};
use crate::telemetry::DropReason;

/// The largest UDP payload there is.
const MAX_DATAGRAM_BYTES: usize = 65_536;
/// Default receive buffer asked for each socket (32 MiB).
pub const DEFAULT_RECV_BUFFER_BYTES: usize = 32 * 1024 * 1024;
/// How often a receive thread checks for cancellation while its socket is quiet.
const CANCEL_CHECK: Duration = Duration::from_millis(100);
/// Pause between attempts to hand a batch over during the shutdown drain.
const DRAIN_RETRY: Duration = Duration::from_millis(1);
/// Longest the count of unread datagrams at shutdown may take.
const UNREAD_LIMIT: Duration = Duration::from_secs(1);
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

/// Receives on every socket until `cancel` fires, then drains them (below); keeps the kernel
/// drop counter current. The sockets stay open until the final read of that counter, so it
/// includes what arrived during the drain; a last log line gives the listener's totals, which
/// outlive the process.
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
    let sockets: Vec<Arc<std::net::UdpSocket>> = sockets.into_iter().map(Arc::new).collect();
    let receivers = TaskTracker::new();
    for socket in &sockets {
        let blocking = socket
            .set_nonblocking(false)
            .and_then(|()| socket.set_read_timeout(Some(CANCEL_CHECK)));
        match blocking {
            Ok(()) => {
                let (ctx, options, cancel) = (Arc::clone(&ctx), options.clone(), cancel.clone());
                let socket = Arc::clone(socket);
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
    drop(sockets);
    let metrics = &ctx.metrics;
    tracing::info!(
        listener = %ctx.name,
        received = metrics.num_received(),
        dropped_queue_full = metrics.num_dropped(DropReason::QueueFull),
        dropped_pipeline_closed = metrics.num_dropped(DropReason::PipelineClosed),
        dropped_shutdown_unread = metrics.num_dropped(DropReason::ShutdownUnread),
        kernel_drops = metrics.num_kernel_drops(),
        "udp listener stopped"
    );
}

/// One socket's receive loop, on its own thread, until the pipeline is gone or `cancel`
/// fired and the socket is drained.
///
/// The drain: once cancelled, a filter makes the kernel drop (and count in the socket's drop
/// counter) every datagram arriving from then on, and the loop reads what the buffer holds
/// until it is empty, handing batches over as usual but waiting for room (until the drain's
/// deadline) rather than dropping. Past `DRAIN_DEADLINE` what is left is read without being
/// kept and counted as `shutdown_unread`.
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
    // Set once cancelled: the drain's deadline.
    let mut draining: Option<Instant> = None;
    loop {
        if draining.is_none() && cancel.is_cancelled() {
            if let Err(error) = sys::drop_new_arrivals(fd) {
                ctx.metrics.receive_error(None, &error);
            }
            draining = Some(Instant::now() + DRAIN_DEADLINE);
        }
        if let Some(deadline) = draining {
            if Instant::now() >= deadline {
                count_unread(&mut receiver, fd, ctx);
                return;
            }
        }
        // Sized like the last batch, so a busy socket does not grow its batch step by step.
        let mut batch: Vec<Record> =
            Vec::with_capacity(last_batch_len.max(16).min(max_batch_records));
        let mut received_at = None;
        let mut empty = false;
        while batch.len() < max_batch_records {
            // The first receive of a batch waits (up to `CANCEL_CHECK`) unless draining; the
            // rest only take what is queued.
            let received = if received_at.is_none() && draining.is_none() {
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
                    empty = error.kind() != io::ErrorKind::Interrupted;
                    break;
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
                if !ctx.guard.admit_datagram(datagram.peer, &ctx.metrics) {
                    continue;
                }
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
                let record = ctx.record(payload, truncated, peer, Transport::Udp, now, max);
                if ctx.guard.limits()
                    && !ctx
                        .guard
                        .take_datagram(datagram.peer, &record, &ctx.metrics)
                {
                    continue;
                }
                batch.push(record);
            }
            if num_received < options.recv_batch {
                break;
            }
        }
        if batch.is_empty() {
            if draining.is_some() && empty {
                // Drained: nothing arrives any more (the filter drops it).
                return;
            }
            continue;
        }
        ctx.count_received(&batch);
        last_batch_len = batch.len();
        let was_small = batch.len() < max_batch_records;
        let sent = match draining {
            None => ctx.try_send(batch),
            Some(deadline) => send_until(ctx, batch, deadline),
        };
        if !sent {
            if draining.is_some() {
                count_unread(&mut receiver, fd, ctx);
            }
            return;
        }
        if was_small && !coalesce.is_zero() && draining.is_none() {
            std::thread::sleep(coalesce);
        }
    }
}

/// Hands a batch over during the drain: waits for room (budget and channel) until
/// `deadline`, then drops and counts it. `false` when the pipeline is gone.
fn send_until(ctx: &ListenerContext, mut batch: Vec<Record>, deadline: Instant) -> bool {
    loop {
        match ctx.records_tx.try_send(batch) {
            Ok(()) => return true,
            Err((NotSent::Full, returned)) if Instant::now() < deadline => {
                batch = returned;
                std::thread::sleep(DRAIN_RETRY);
            }
            Err((reason, returned)) => {
                let dropped = match reason {
                    NotSent::Full => DropReason::QueueFull,
                    NotSent::Closed => DropReason::PipelineClosed,
                };
                ctx.metrics.pipeline_dropped(dropped, returned.len() as u64);
                return reason == NotSent::Full;
            }
        }
    }
}

/// Reads what is left in the socket's buffer without keeping it and counts it as
/// `shutdown_unread` (the filter stops new arrivals, so this ends; `UNREAD_LIMIT` bounds it
/// should the filter be missing).
fn count_unread(receiver: &mut sys::MmsgReceiver, fd: std::os::fd::RawFd, ctx: &ListenerContext) {
    let limit = Instant::now() + UNREAD_LIMIT;
    let mut unread = 0u64;
    while Instant::now() < limit {
        match receiver.recv(fd) {
            Ok(0) => break,
            Ok(num_received) => unread += num_received as u64,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if unread > 0 {
        ctx.metrics
            .pipeline_dropped(DropReason::ShutdownUnread, unread);
        tracing::warn!(listener = %ctx.name, unread, "udp datagrams left unread at shutdown");
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
