//! Syslog over TCP (RFC 6587) and over TLS (RFC 5425): one task per connection, framing per
//! frame, backpressure.
//!
//! Owns accepting (with a cap on open connections: over it, a new connection is closed at
//! once and counted), the per-connection read loop (idle timeout, `FramedRead` with the
//! framing decoder, records batched per read) and closing a connection whose stream cannot
//! be framed without touching the others. It awaits room in the records channel, so when the
//! pipeline falls behind it stops reading and TCP flow control slows the sender. A TLS
//! listener is the same loop with a [`TlsAcceptor`]: each connection's handshake runs in the
//! connection's own task (never on the accept loop) under the handshake timeout, and the
//! decrypted stream is framed like any other, its records carrying the client's identity.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{ListenerContext, DEFAULT_MAX_BATCH_RECORDS, DRAIN_DEADLINE};
use crate::framing::{Frame, FrameDecoder, FramingError, FramingMode, DEFAULT_MAX_MESSAGE_BYTES};
use crate::ingest::Peer;
use crate::record::{Record, Transport};
use crate::tls::TlsAcceptor;

/// Read buffer of one connection (grows to hold a frame up to the maximum message size).
/// On shutdown, a connection keeps reading what is already buffered until it has been idle
/// this long ...
const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(50);
/// ... or for at most `DRAIN_DEADLINE` in all (the same bound as UDP's drain).
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Settings of one TCP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOptions {
    /// Longer messages are cut to this and flagged truncated (1 byte to 16 MiB).
    pub max_message_bytes: usize,
    /// Open connections allowed at once; more are closed at once and counted.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Most records handed over in one batch.
    pub max_batch_records: usize,
    /// Framing detected per frame (default), or non-transparent only.
    pub framing: FramingMode,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(600),
            max_batch_records: DEFAULT_MAX_BATCH_RECORDS,
            framing: FramingMode::Auto,
        }
    }
}

/// Accepts connections until `cancel` fires, then waits for every connection to hand over
/// what it has read.
pub async fn run(
    listener: TcpListener,
    ctx: Arc<ListenerContext>,
    options: TcpOptions,
    cancel: CancellationToken,
) {
    accept_loop(listener, ctx, options, None, cancel).await;
}

/// [`run`] for syslog over TLS: every connection is a TLS handshake first.
pub async fn run_tls(
    listener: TcpListener,
    ctx: Arc<ListenerContext>,
    options: TcpOptions,
    tls: TlsAcceptor,
    cancel: CancellationToken,
) {
    accept_loop(listener, ctx, options, Some(tls), cancel).await;
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ListenerContext>,
    options: TcpOptions,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
) {
    let connections = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(options.max_connections));
    loop {
        let accepted = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                ctx.metrics.receive_error(None, &error);
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        if !ctx.guard.admit_connection(peer, &ctx.metrics) {
            drop(stream);
            continue;
        }
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            ctx.metrics
                .connection_refused(peer, options.max_connections);
            drop(stream);
            continue;
        };
        ctx.metrics.connection_accepted(peer);
        let span = tracing::info_span!("tcp_connection", listener = %ctx.name, %peer);
        let connection = Connection {
            ctx: Arc::clone(&ctx),
            options: options.clone(),
            peer: Peer::new(peer),
            tls_peer: None,
            _permit: permit,
        };
        let cancel = cancel.clone();
        match tls.clone() {
            None => connections.spawn(connection.run(stream, cancel).instrument(span)),
            Some(tls) => {
                connections.spawn(connection.run_tls(stream, tls, cancel).instrument(span))
            }
        };
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The frames left in `reader`'s buffer when Starling closes the connection itself
/// (shutdown, idle timeout) while the sender is still connected: the complete ones as they
/// are, and a message the sender had begun but not finished, flagged truncated — the sender
/// did not end it, Starling cut it.
///
/// At the sender's own close (EOF) the decoder's `decode_eof` decides instead: an octet-counted
/// frame shorter than its count is truncated, but an unterminated last line is taken as a
/// complete message, as rsyslog's imtcp does ("missing LF at the end of message may occur"),
/// since senders of non-transparent framing may end the stream without a final LF.
fn cut_frames<S>(reader: &mut FramedRead<S, FrameDecoder>) -> Vec<Result<Frame, FramingError>> {
    let mut decoder = reader.decoder().clone();
    let buffer = reader.read_buffer_mut();
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = decoder.decode(buffer) {
        frames.push(Ok(frame));
    }
    if let Ok(Some(mut frame)) = decoder.decode_eof(buffer) {
        frame.truncated = true;
        frames.push(Ok(frame));
    }
    frames
}

/// One accepted connection; holds its slot under the connection cap until dropped.
struct Connection {
    ctx: Arc<ListenerContext>,
    options: TcpOptions,
    peer: Peer,
    /// The client's verified TLS identity, carried by every record of the connection.
    tls_peer: Option<Arc<str>>,
    _permit: OwnedSemaphorePermit,
}

/// Why a connection's read loop ended.
enum End {
    /// EOF, framing or read error, or the pipeline is gone.
    Done,
    /// The sender was silent for the idle timeout; a message it had begun is cut.
    IdleTimeout,
    /// The listener is shutting down.
    Cancelled,
}

impl Connection {
    /// The TLS handshake, then the connection as any other; a refused handshake closes it
    /// (already counted by reason).
    async fn run_tls(mut self, stream: TcpStream, tls: TlsAcceptor, cancel: CancellationToken) {
        match tls.accept(stream, self.peer.addr, &cancel).await {
            Some(Ok((stream, identity))) => {
                self.tls_peer = identity;
                self.run(stream, cancel).await;
            }
            Some(Err(_)) | None => self.ctx.metrics.connection_closed(self.peer.addr, 0),
        }
    }

    async fn run<S: AsyncRead + Unpin>(self, stream: S, cancel: CancellationToken) {
        let decoder = FrameDecoder::with_mode(self.options.max_message_bytes, self.options.framing);
        let reader = FramedRead::with_capacity(stream, decoder, READ_BUFFER_BYTES);
        let mut chunks = reader.ready_chunks(self.options.max_batch_records.max(1));
        let mut num_messages = 0u64;
        let end = loop {
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => break End::Cancelled,
                next = tokio::time::timeout(self.options.idle_timeout, chunks.next()) => next,
            };
            let chunk = match next {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break End::Done,
                Err(_elapsed) => {
                    self.ctx.metrics.idle_timeout(self.peer.addr);
                    break End::IdleTimeout;
                }
            };
            let (batch, failed) = self.records(chunk);
            num_messages += batch.len() as u64;
            let wait = self
                .ctx
                .guard
                .tcp_wait(self.peer.addr, &batch, &self.ctx.metrics);
            if !batch.is_empty() && !self.send(batch).await {
                break End::Done;
            }
            if failed {
                break End::Done;
            }
            if !wait.is_zero() {
                // Over the source's rate limit: read nothing until it allows more (what was
                // read is handed over above; the sender is slowed by TCP flow control).
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break End::Cancelled,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        };
        if matches!(end, End::Cancelled) {
            // The kernel already acknowledged what sits in the socket buffer, so the sender
            // will not send it again: keep reading while data is there (up to a deadline),
            // then hand over what was read, a partial last message included, flagged
            // truncated (below).
            let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
            loop {
                let idle = DRAIN_IDLE.min(deadline - tokio::time::Instant::now());
                let Ok(Some(chunk)) = tokio::time::timeout(idle, chunks.next()).await else {
                    break;
                };
                let (batch, failed) = self.records(chunk);
                num_messages += batch.len() as u64;
                if (!batch.is_empty() && !self.send(batch).await) || failed {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
        }
        if matches!(end, End::Cancelled | End::IdleTimeout) {
            let (batch, _) = self.records(cut_frames(chunks.get_mut()));
            num_messages += batch.len() as u64;
            if !batch.is_empty() {
                self.send(batch).await;
            }
        }
        self.ctx
            .metrics
            .connection_closed(self.peer.addr, num_messages);
    }

    /// Records of a chunk of decoded frames, and whether the stream failed after them.
    fn records(&self, chunk: Vec<Result<Frame, FramingError>>) -> (Vec<Record>, bool) {
        let received_at = Utc::now();
        let mut batch = Vec::with_capacity(chunk.len());
        let mut failed = false;
        for item in chunk {
            match item {
                Ok(frame) => {
                    let mut record = self.ctx.record(
                        frame.payload,
                        frame.truncated,
                        Some(&self.peer),
                        Transport::Tcp,
                        received_at,
                        self.options.max_message_bytes,
                    );
                    record.tls_peer.clone_from(&self.tls_peer);
                    batch.push(record);
                }
                Err(error @ FramingError::InvalidLength { .. }) => {
                    self.ctx.metrics.framing_error(self.peer.addr, &error);
                    failed = true;
                }
                Err(FramingError::Io(error)) => {
                    self.ctx.metrics.receive_error(Some(self.peer.addr), &error);
                    failed = true;
                }
            }
        }
        self.ctx.count_received(&batch);
        (batch, failed)
    }

    async fn send(&self, batch: Vec<Record>) -> bool {
        self.ctx.send(batch).await
    }
}

#[cfg(test)]
mod tests;
