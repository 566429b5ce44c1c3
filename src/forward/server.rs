//! The master's side of forwarding: accepts forwarder connections on the forward address,
//! answers the handshake with the store's high-water mark for the sender's origin, appends each
//! batch to the store and acknowledges it only once it is durable.
//!
//! One task per connection (capped by a semaphore). Inside a connection the reading half
//! appends batches in order (the store's queue is the backpressure) and hands each append
//! ticket to the writing half, which awaits durability in order and sends the acks, so
//! batches are pipelined. A node that is not (or stops being) master answers `NotMaster` with
//! its view of who is. A gap marker (seqs lost from the forwarder's spool) is checked and
//! stored like a record covering its range, with a warning. A bad peer costs its connection
//! only. This file does not choose the
//! master and does not read the spool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use super::protocol::{
    ForwardCodec, Message, DEFAULT_MAX_FRAME_BYTES, MAX_REASON_BYTES, PROTOCOL_VERSION,
};
use crate::cluster::ClusterView;
use crate::record::Record;
use crate::store::budget::{batch_bytes, ByteBudget};
use crate::store::{AppendTicket, StoreHandle};

/// How long `run` waits, once cancelled, for connections to acknowledge what they appended.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Forwarders of another cluster are rejected.
    pub cluster_id: String,
    pub max_connections: usize,
    /// Time a new connection has to send its `Hello`.
    pub handshake_timeout: Duration,
    pub max_frame_bytes: usize,
    /// Batches of one connection appended but not yet acknowledged.
    pub max_batches_in_flight: usize,
}

impl ServerConfig {
    pub fn new(cluster_id: impl Into<String>) -> ServerConfig {
        ServerConfig {
            cluster_id: cluster_id.into(),
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_batches_in_flight: 32,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub connections_accepted: AtomicU64,
    pub handshakes_not_master: AtomicU64,
    pub handshakes_rejected: AtomicU64,
    pub batches_acked: AtomicU64,
    pub records_stored: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    pub batches_refused: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Batches that waited for room in the node's byte budget before their append.
    pub budget_waits: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Everything a connection needs.
pub struct ServerContext {
    pub config: ServerConfig,
    pub store: StoreHandle,
    /// This node's cluster view: it serves only while it is the master.
    pub view: watch::Receiver<ClusterView>,
    pub stats: Arc<ServerStats>,
    /// The node's byte budget (`syslog.pipeline-max-bytes`), shared with the pipeline: a
    /// batch holds its bytes from before it is appended until the writer answers it.
    pub budget: Arc<ByteBudget>,
}

/// Serves forwarders on `listener` until `cancel`; then stops accepting, lets every
/// connection acknowledge what it already appended (for at most `DRAIN_DEADLINE`), and
/// returns.
pub async fn run(listener: TcpListener, ctx: Arc<ServerContext>, cancel: CancellationToken) {
    let connection_slots = Arc::new(Semaphore::new(ctx.config.max_connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            permit = connection_slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "cannot accept forward connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        bump(&ctx.stats.connections_accepted, 1);
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let cancel = cancel.clone();
        tracker.spawn(
            async move {
                serve_connection(stream, &ctx, cancel).await;
                drop(permit);
            }
            .instrument(info_span!("forward_in", %peer)),
        );
    }
    tracker.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            num_connections = tracker.len(),
            "forward connections still draining at the deadline, leaving them"
        );
    }
}

/// What the reading half hands the writing half, in order.
enum Reply {
    Durable {
        batch_id: u64,
        last_seq: u64,
        ticket: AppendTicket,
    },
    Now(Message),
}

async fn serve_connection(stream: TcpStream, ctx: &ServerContext, cancel: CancellationToken) {
    let mut framed = Framed::new(stream, ForwardCodec::new(ctx.config.max_frame_bytes));
    let origin = match handshake(&mut framed, ctx).await {
        Some(origin) => origin,
        None => return,
    };
    framed.codec_mut().establish();
    let high_water_mark = ctx.store.high_water_mark(&origin);
    if framed
        .send(Message::HelloAck { high_water_mark })
        .await
        .is_err()
    {
        return;
    }
    debug!(%origin, high_water_mark, "forwarder connected");
    let (sink, mut stream) = framed.split();
    let (reply_tx, reply_rx) = mpsc::channel(ctx.config.max_batches_in_flight.max(1));
    let writer = tokio::spawn(write_replies(sink, reply_rx, ctx.stats.clone()));
    let mut next_seq = high_water_mark + 1;
    let mut view = ctx.view.clone();
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break,
            changed = view.changed() => {
                if changed.is_ok() && view.borrow_and_update().is_master() {
                    continue;
                }
                let answer = not_master(&view.borrow());
                let _ = reply_tx.send(Reply::Now(answer)).await;
                break;
            }
            frame = stream.next() => frame,
        };
        let (batch_id, records) = match frame {
            None => break,
            // Decoded here, so not shared: unwrapping copies nothing.
            Some(Ok(Message::Batch { batch_id, records })) => (
                batch_id,
                Arc::try_unwrap(records).unwrap_or_else(|shared| (*shared).clone()),
            ),
            Some(Ok(other)) => {
                bump(&ctx.stats.protocol_errors, 1);
                warn!(message = ?message_kind(&other), "unexpected message from forwarder");
                break;
            }
            Some(Err(error)) => {
                bump(&ctx.stats.protocol_errors, 1);
                warn!(%error, "bad frame from forwarder, closing");
                break;
            }
        };
        let last_seq = match check_batch(&origin, next_seq, &records) {
            Ok(last_seq) => last_seq,
            Err(reason) => {
                let _ = reply_tx
                    .send(Reply::Now(Message::Refused { batch_id, reason }))
                    .await;
                break;
            }
        };
        for marker in records.iter().filter(|record| record.lost_from.is_some()) {
            let text =
                String::from_utf8_lossy(&marker.raw[..marker.raw.len().min(MAX_REASON_BYTES)]);
            warn!(
                %origin,
                from = marker.first_seq(),
                to = marker.origin_seq,
                %text,
                "forwarder reports seqs it could not forward; storing its gap marker"
            );
        }
        let Some(last_seq) = last_seq else {
            let ack = Message::Ack {
                batch_id,
                high_water_mark: next_seq - 1,
            };
            if reply_tx.send(Reply::Now(ack)).await.is_err() {
                break;
            }
            continue;
        };
        // The batch's bytes of the node's budget, held until the writer answers it: past the
        // budget this connection stops reading, which pushes the forwarder back.
        let bytes = batch_bytes(&records);
        let permit = match ctx.budget.try_acquire(bytes) {
            Some(permit) => permit,
            None => {
                bump(&ctx.stats.budget_waits, 1);
                match ctx.budget.acquire(bytes).await {
                    Ok(permit) => permit,
                    Err(_) => break,
                }
            }
        };
        let reply = match ctx
            .store
            .append_holding(records, Some(Box::new(permit)))
            .await
        {
            Ok(ticket) => Reply::Durable {
                batch_id,
                last_seq,
                ticket,
            },
            Err(error) => Reply::Now(Message::Refused {
                batch_id,
                reason: error.to_string(),
            }),
        };
        let refused = matches!(reply, Reply::Now(_));
        if reply_tx.send(reply).await.is_err() || refused {
            break;
        }
        next_seq = next_seq.max(last_seq + 1);
    }
    drop(reply_tx);
    let _ = writer.await;
}

/// Reads and checks the `Hello`; answers and returns `None` when the connection must end.
async fn handshake(
    framed: &mut Framed<TcpStream, ForwardCodec>,
    ctx: &ServerContext,
) -> Option<String> {
    let first = tokio::time::timeout(ctx.config.handshake_timeout, framed.next()).await;
    let (version, cluster_id, origin) = match first {
        Err(_) => {
            debug!("no hello before the handshake timeout");
            return None;
        }
        Ok(None) => return None,
        Ok(Some(Err(error))) => {
            bump(&ctx.stats.protocol_errors, 1);
            warn!(%error, "bad hello frame, closing");
            return None;
        }
        Ok(Some(Ok(Message::Hello {
            version,
            cluster_id,
            origin,
        }))) => (version, cluster_id, origin),
        Ok(Some(Ok(other))) => {
            bump(&ctx.stats.protocol_errors, 1);
            let reason = format!("expected hello, got {}", message_kind(&other));
            let _ = framed.send(Message::Rejected { reason }).await;
            return None;
        }
    };
    let rejection = if version != PROTOCOL_VERSION {
        Some(format!(
            "unsupported forward protocol version {version}, this node speaks \
             {PROTOCOL_VERSION}: nothing is forwarded between them until both run releases \
             of one protocol version"
        ))
    } else if cluster_id != ctx.config.cluster_id {
        Some(format!(
            "cluster id {cluster_id:?} does not match {:?}",
            ctx.config.cluster_id
        ))
    } else if origin.is_empty() {
        Some("empty origin".to_string())
    } else {
        None
    };
    if let Some(reason) = rejection {
        bump(&ctx.stats.handshakes_rejected, 1);
        warn!(%reason, "rejecting forwarder");
        let _ = framed.send(Message::Rejected { reason }).await;
        return None;
    }
    let view = ctx.view.borrow().clone();
    if !view.is_master() {
        bump(&ctx.stats.handshakes_not_master, 1);
        let _ = framed.send(not_master(&view)).await;
        return None;
    }
    info!(%origin, "forwarder handshake");
    Some(origin)
}

fn not_master(view: &ClusterView) -> Message {
    let master = view
        .master_member()
        .filter(|member| member.node_id != view.self_id)
        .and_then(|member| Some((member.node_id.clone(), member.forward_addr?)));
    Message::NotMaster { master }
}

/// Checks a batch against the connection's origin and next expected sequence. Returns the
/// batch's last sequence (`None` for an empty batch) or why it is refused. Records at or below
/// the high-water mark are allowed (the store drops them as duplicates); a gap is not. A gap
/// marker counts as its whole range `lost_from..=origin_seq`.
fn check_batch(origin: &str, next_seq: u64, records: &[Record]) -> Result<Option<u64>, String> {
    let Some(first) = records.first() else {
        return Ok(None);
    };
    if let Some(stranger) = records.iter().find(|record| *record.origin != *origin) {
        return Err(format!(
            "record of origin {:?} on a connection of origin {origin:?}",
            stranger.origin
        ));
    }
    if let Some(marker) = records.iter().find(|record| {
        record
            .lost_from
            .is_some_and(|from| from == 0 || from > record.origin_seq)
    }) {
        return Err(format!(
            "gap marker with an impossible range {}..={}",
            marker.first_seq(),
            marker.origin_seq
        ));
    }
    if first.origin_seq == 0 || first.first_seq() > next_seq {
        return Err(format!(
            "gap: expected seq {next_seq}, batch starts at {}",
            first.first_seq()
        ));
    }
    for pair in records.windows(2) {
        if pair[1].first_seq() != pair[0].origin_seq + 1 {
            return Err(format!(
                "sequences not consecutive: {} then {}",
                pair[0].origin_seq,
                pair[1].first_seq()
            ));
        }
    }
    Ok(records.last().map(|record| record.origin_seq))
}

async fn write_replies(
    mut sink: futures::stream::SplitSink<Framed<TcpStream, ForwardCodec>, Message>,
    mut reply_rx: mpsc::Receiver<Reply>,
    stats: Arc<ServerStats>,
) {
    while let Some(reply) = reply_rx.recv().await {
        let (message, last) = match reply {
            Reply::Durable {
                batch_id,
                last_seq,
                ticket,
            } => match ticket.durable().await {
                Ok(outcome) => {
                    bump(&stats.batches_acked, 1);
                    bump(&stats.records_stored, outcome.num_stored as u64);
                    bump(&stats.duplicates_dropped, outcome.num_duplicates as u64);
                    (
                        Message::Ack {
                            batch_id,
                            high_water_mark: last_seq,
                        },
                        false,
                    )
                }
                Err(error) => {
                    warn!(%error, batch_id, "forwarded batch not stored");
                    (
                        Message::Refused {
                            batch_id,
                            reason: error.to_string(),
                        },
                        true,
                    )
                }
            },
            Reply::Now(message) => {
                let last = !matches!(message, Message::Ack { .. });
                (message, last)
            }
        };
        if matches!(message, Message::Refused { .. }) {
            bump(&stats.batches_refused, 1);
        }
        if sink.send(message).await.is_err() || last {
            break;
        }
    }
    let _ = sink.close().await;
}

fn message_kind(message: &Message) -> &'static str {
    match message {
        Message::Hello { .. } => "hello",
        Message::HelloAck { .. } => "hello-ack",
        Message::NotMaster { .. } => "not-master",
        Message::Rejected { .. } => "rejected",
        Message::Batch { .. } => "batch",
        Message::Ack { .. } => "ack",
        Message::Refused { .. } => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(origin: &str, seq: u64) -> Record {
        Record {
            received_at_micros: 1,
            event_time: None,
            origin: origin.to_string().into(),
            origin_seq: seq,
            peer: None,
            transport: crate::record::Transport::Udp,
            parse: crate::record::ParseStatus::Unparsed,
            truncated: false,
            source: "h".into(),
            raw: Bytes::from_static(b"x"),
            lost_from: None,
            tls_peer: None,
            file: None,
        }
    }

    fn marker(from: u64, to: u64) -> Record {
        Record::gap_marker("a", from, to, 1)
    }

    fn check(next_seq: u64, batch: &[(&str, u64)], expected: Result<Option<u64>, &str>) {
        let records: Vec<Record> = batch
            .iter()
            .map(|(origin, seq)| record(origin, *seq))
            .collect();
        check_records(next_seq, records, expected);
    }

    fn check_records(next_seq: u64, records: Vec<Record>, expected: Result<Option<u64>, &str>) {
        let got = check_batch("a", next_seq, &records);
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(got), Err(want)) => assert!(got.contains(want), "{got:?} lacks {want:?}"),
            (got, want) => panic!("batch {records:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn check_batch_table() {
        check(1, &[], Ok(None));
        check(1, &[("a", 1), ("a", 2)], Ok(Some(2)));
        // Overlap with what is stored is fine (duplicates), a gap is not.
        check(5, &[("a", 3), ("a", 4), ("a", 5)], Ok(Some(5)));
        check(
            5,
            &[("a", 6)],
            Err("gap: expected seq 5, batch starts at 6"),
        );
        check(
            1,
            &[("a", 0)],
            Err("gap: expected seq 1, batch starts at 0"),
        );
        check(1, &[("a", 1), ("a", 3)], Err("not consecutive: 1 then 3"));
        // A gap marker counts as its whole range.
        check_records(5, vec![marker(5, 9), record("a", 10)], Ok(Some(10)));
        check_records(7, vec![marker(5, 9)], Ok(Some(9)));
        check_records(5, vec![record("a", 5), marker(6, 9)], Ok(Some(9)));
        check_records(
            5,
            vec![marker(6, 9)],
            Err("gap: expected seq 5, batch starts at 6"),
        );
        check_records(
            1,
            vec![record("a", 1), marker(3, 9)],
            Err("not consecutive: 1 then 3"),
        );
        let mut backwards = marker(1, 4);
        backwards.lost_from = Some(5);
        check_records(
            1,
            vec![backwards],
            Err("gap marker with an impossible range 5..=4"),
        );
        check(
            1,
            &[("a", 1), ("b", 2)],
            Err("origin \"b\" on a connection of origin \"a\""),
        );
    }
}
