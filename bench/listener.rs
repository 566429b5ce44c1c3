//! Listener throughput without the store: messages over loopback into a drained channel.
//!
//! `cargo bench --bench listener -- [tcp|tcp4|udp] [NUM_MESSAGES]` sends about 150-byte RFC
//! 5424 messages (octet-counted over one or four TCP connections, or one datagram each from
//! one UDP sender) as fast as possible and prints messages/s received (parsed, built into records
//! and handed to the channel). UDP counts what arrived and reports loss.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling::ingest::{IngestConfig, ShardBy};
use starling::listener::metrics::ListenerMetrics;
use starling::listener::{tcp, udp, ListenerContext};
use starling::parse::Zone;
use starling::record::Transport;
use tokio_util::sync::CancellationToken;

/// CPU seconds (user + system) this process used so far, all threads.
fn cpu_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_SELF)
}

/// CPU seconds of the calling thread.
fn thread_cpu_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_THREAD)
}

fn rusage_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Batches the drain task received, to report the average batch size.
static NUM_BATCHES: AtomicU64 = AtomicU64::new(0);

fn message(i: usize) -> String {
    format!(
        "<134>1 2026-11-26T10:00:00.000000Z web-{:02} nginx 4242 ACCESS - \
         GET /api/v1/items/{i:08} 200 1532 \"curl/8.5.0\" rt=0.004 upstream=10.0.0.7:8080",
        i % 16
    )
}

fn context(
    transport: Transport,
) -> (
    Arc<ListenerContext>,
    Arc<AtomicU64>,
    tokio::task::JoinHandle<()>,
) {
    let budget = Arc::new(starling::pipeline::ByteBudget::new(u64::MAX));
    let (records_tx, mut records_rx) = starling::pipeline::Intake::channel(64, budget);
    let ctx = Arc::new(ListenerContext {
        name: "bench".to_owned(),
        ingest: IngestConfig {
            origin: "bench-node".to_owned().into(),
            shard_by: ShardBy::Hostname,
            rfc3164_zone: Zone::Utc,
        },
        records_tx,
        metrics: ListenerMetrics::detached("bench", transport),
        guard: Default::default(),
    });
    let num_records = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&num_records);
    let drain = tokio::spawn(async move {
        while let Some(batch) = records_rx.recv().await {
            counter.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
            NUM_BATCHES.fetch_add(1, Ordering::Relaxed);
        }
    });
    (ctx, num_records, drain)
}

async fn wait_for(num_records: &AtomicU64, target: u64, quiet: Duration) -> u64 {
    let mut last = 0;
    let mut last_change = Instant::now();
    loop {
        let now = num_records.load(Ordering::Relaxed);
        if now >= target {
            return now;
        }
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > quiet {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn bench_tcp(num_messages: usize, num_connections: usize) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ctx, num_records, _drain) = context(Transport::Tcp);
    let cancel = CancellationToken::new();
    tokio::spawn(tcp::run(
        listener,
        ctx,
        tcp::TcpOptions::default(),
        cancel.clone(),
    ));
    let per_connection = num_messages / num_connections;
    let num_messages = per_connection * num_connections;
    let streams: Vec<Vec<u8>> = (0..num_connections)
        .map(|c| {
            let mut stream_bytes = Vec::with_capacity(per_connection * 160);
            for i in c * per_connection..(c + 1) * per_connection {
                let m = message(i);
                write!(stream_bytes, "{} {m}", m.len()).unwrap();
            }
            stream_bytes
        })
        .collect();
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let senders: Vec<_> = streams
        .into_iter()
        .map(|stream_bytes| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream.write_all(&stream_bytes).unwrap();
                thread_cpu_seconds()
            })
        })
        .collect();
    let received = wait_for(&num_records, num_messages as u64, Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_started;
    let sender_cpu: f64 = senders.into_iter().map(|s| s.join().unwrap()).sum();
    cancel.cancel();
    println!(
        "tcp, {num_connections} connection(s): {received} of {num_messages} messages in {:.3} s = {:.0} messages/s; \
         receiver {:.3} CPU s per million messages (sender thread {:.3}); {:.1} records per batch",
        elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64(),
        (cpu - sender_cpu) / received as f64 * 1e6,
        sender_cpu / received as f64 * 1e6,
        received as f64 / NUM_BATCHES.load(Ordering::Relaxed).max(1) as f64,
    );
}

async fn bench_udp(num_messages: usize) {
    let sockets = udp::bind(
        "127.0.0.1:0".parse().unwrap(),
        udp::default_num_sockets(),
        udp::DEFAULT_RECV_BUFFER_BYTES,
    )
    .unwrap();
    let addr = sockets[0].local_addr().unwrap();
    let (ctx, num_records, _drain) = context(Transport::Udp);
    let metrics = Arc::clone(&ctx.metrics);
    let cancel = CancellationToken::new();
    tokio::spawn(udp::run(
        sockets,
        ctx,
        udp::UdpOptions::default(),
        cancel.clone(),
    ));
    let messages: Vec<String> = (0..num_messages).map(message).collect();
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let sender = std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for m in &messages {
            socket.send_to(m.as_bytes(), addr).unwrap();
        }
        thread_cpu_seconds()
    });
    let sender_cpu = sender.join().unwrap();
    let sent = started.elapsed();
    let received = wait_for(
        &num_records,
        num_messages as u64,
        Duration::from_millis(500),
    )
    .await;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_started;
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!(
        "udp, 1 sender: sent {num_messages} in {:.3} s, received {received} ({:.0} messages/s, \
         receiver {:.3} CPU s per million, sender thread {:.3}), lost {} (kernel drops \
         counted: {}, pipeline drops: {}); {:.1} records per batch",
        sent.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64(),
        (cpu - sender_cpu) / received.max(1) as f64 * 1e6,
        sender_cpu / received.max(1) as f64 * 1e6,
        num_messages as u64 - received,
        metrics.num_kernel_drops(),
        metrics.num_dropped(starling::telemetry::DropReason::QueueFull),
        received as f64 / NUM_BATCHES.load(Ordering::Relaxed).max(1) as f64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let which = args.first().map_or("tcp", String::as_str).to_owned();
    let num_messages = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        match which.as_str() {
            "udp" => bench_udp(num_messages).await,
            "tcp4" => bench_tcp(num_messages, 4).await,
            _ => bench_tcp(num_messages, 1).await,
        }
    });
}
