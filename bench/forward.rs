//! Forwarding component benchmark, in one process: records forwarded from a spool to a
//! master's forward server over one loopback connection, acknowledged after the master's sync,
//! compared with appending the same records straight into a store (no listener, no parsing).
//! This is not issue #4's figure (forwarded throughput as a share of the single-node ingest
//! rate, loadgen -> node over TCP -> stored): `bench/forward.sh` measures that with real
//! processes.
//!
//! Run: `cargo bench --bench forward` (optional argument: number of records, default 200000).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use starling::cluster::{ClusterView, Member};
use starling::forward::client::{self, ForwarderConfig, ForwarderStats};
use starling::forward::progress::ForwardProgress;
use starling::forward::server::{self, ServerConfig, ServerContext, ServerStats};
use starling::forward::source::{BatchLimits, SpoolSource};
use starling::forward::spool::StoreSpool;
use starling::record::{ParseStatus, Record, Transport};
use starling::store::{Store, StoreConfig, StoreHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const ORIGIN: &str = "node-a";
const BATCH: u64 = 1000;

fn record(i: u64) -> Record {
    Record {
        received_at_micros: 1_700_000_000_000_000 + i as i64,
        event_time: None,
        origin: ORIGIN.to_string().into(),
        origin_seq: 0,
        peer: Some("10.1.2.3:51514".into()),
        transport: Transport::Tcp,
        parse: ParseStatus::Rfc5424,
        truncated: false,
        source: format!("host-{}", i % 8).into(),
        raw: Bytes::from(format!(
            "<134>1 2026-11-26T10:00:00.000000Z host-{} app 1234 ID47 - request {i} served in 12 ms status=200 bytes=5120 path=/api/v1/items",
            i % 8
        )),
        lost_from: None,
        tls_peer: None,
        file: None,
    }
}

async fn ingest(store: &StoreHandle, n: u64) {
    let mut tickets = Vec::new();
    for start in (0..n).step_by(BATCH as usize) {
        let records = (start..n.min(start + BATCH)).map(record).collect();
        tickets.push(store.append(records).await.expect("append"));
    }
    for ticket in tickets {
        ticket.durable().await.expect("durable");
    }
}

fn open(dir: &Path, origin: &str) -> Store {
    Store::open(dir, origin, StoreConfig::default())
        .expect("open store")
        .0
}

fn member(node_id: &str, forward_addr: std::net::SocketAddr) -> Member {
    Member {
        node_id: node_id.to_string(),
        generation: 1,
        gossip_addr: forward_addr,
        forward_addr: Some(forward_addr),
        api_addr: None,
        priority: 0,
        may_be_master: true,
        alive: true,
        leaving: false,
        claims_master: true,
        follows: None,
        version: None,
        spool_bytes: None,
        forward_lag: None,
    }
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(n));
}

async fn run(n: u64) {
    let temp = tempfile::tempdir().expect("temp dir");

    // Baseline: appending straight into a store (the store part of the ingest path only).
    let direct = open(&temp.path().join("direct"), ORIGIN);
    let started = Instant::now();
    ingest(&direct.handle(), n).await;
    let direct_secs = started.elapsed().as_secs_f64();
    direct.close().expect("close");

    // Forwarding: a spool holding n records, drained to a master over one connection.
    let spool_dir = temp.path().join("spool");
    let spool = open(&spool_dir, ORIGIN);
    ingest(&spool.handle(), n).await;

    // The spool's read side alone.
    let mut source = StoreSpool::new(&spool_dir, ORIGIN, spool.handle()).expect("spool");
    let started = Instant::now();
    source.seek(0).expect("seek");
    let limits = BatchLimits {
        max_records: 4096,
        max_bytes: 1 << 20,
    };
    let mut num_read = 0;
    while num_read < n {
        num_read += source.next_batch(limits).expect("read").len() as u64;
    }
    let read_secs = started.elapsed().as_secs_f64();

    let master = open(&temp.path().join("master"), "master");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let master_view = ClusterView {
        self_id: "master".into(),
        members: vec![member("master", addr)],
        master: Some("master".into()),
    };
    let (_master_view_tx, master_view_rx) = watch::channel(master_view.clone());
    let cancel = CancellationToken::new();
    let ctx = Arc::new(ServerContext {
        config: ServerConfig::new("bench"),
        store: master.handle(),
        view: master_view_rx,
        stats: Arc::new(ServerStats::default()),
        budget: Arc::new(starling::store::budget::ByteBudget::new(256 * 1024 * 1024)),
    });
    let server_task = tokio::spawn(server::run(listener, ctx, cancel.clone()));
    let node_view = ClusterView {
        self_id: ORIGIN.into(),
        ..master_view
    };
    let (_node_view_tx, node_view_rx) = watch::channel(node_view);
    let stats = Arc::new(ForwarderStats::default());
    let source = StoreSpool::new(&spool_dir, ORIGIN, spool.handle()).expect("spool");
    let started = Instant::now();
    let forwarder = tokio::spawn(client::run(
        source,
        node_view_rx,
        ForwarderConfig::new("bench", ORIGIN),
        stats.clone(),
        Arc::new(ForwardProgress::default()),
        cancel.clone(),
    ));
    let master_handle = master.handle();
    while master_handle
        .high_water_marks()
        .get(ORIGIN)
        .copied()
        .unwrap_or(0)
        < n
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let forward_secs = started.elapsed().as_secs_f64();
    cancel.cancel();
    forwarder.await.expect("join").expect("forwarder");
    server_task.await.expect("join");
    spool.close().expect("close");
    master.close().expect("close");

    let rate = |secs: f64| n as f64 / secs;
    println!("records: {n}");
    println!(
        "store append:    {:>10.0} records/s ({direct_secs:.2} s)",
        rate(direct_secs)
    );
    println!(
        "spool read:      {:>10.0} records/s ({read_secs:.2} s)",
        rate(read_secs)
    );
    println!(
        "forwarded:       {:>10.0} records/s ({forward_secs:.2} s)",
        rate(forward_secs)
    );
    println!(
        "forwarded / store append: {:.0}% (component view; issue #4's figure: bench/forward.sh)",
        100.0 * direct_secs / forward_secs
    );
}
