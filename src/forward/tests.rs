//! In-process forwarding tests: a spool store and a master store in temp directories, the
//! server and the client over loopback TCP, a killable TCP proxy between them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::client::{self, ForwarderConfig, ForwarderStats};
use super::progress::ForwardProgress;
use super::protocol::{ForwardCodec, Message, PROTOCOL_VERSION};
use super::server::{self, ServerConfig, ServerContext, ServerStats};
use super::spool::StoreSpool;
use crate::cluster::{ClusterView, Member};
use crate::record::{ParseStatus, Record, Transport};
use crate::store::budget::ByteBudget;
use crate::store::{ReadOptions, Store, StoreConfig, StoreHandle, StoreReader};

pub(super) const CLUSTER: &str = "test-cluster";
pub(super) const ORIGIN: &str = "node-a";

fn member(node_id: &str, forward_addr: SocketAddr) -> Member {
    Member {
        node_id: node_id.to_string(),
        generation: 1,
        gossip_addr: "127.0.0.1:1".parse().unwrap(),
        forward_addr: Some(forward_addr),
        api_addr: None,
        priority: 0,
        may_be_master: true,
        alive: true,
        leaving: false,
        claims_master: false,
        follows: None,
        version: None,
        spool_bytes: None,
        forward_lag: None,
    }
}

/// `self_id`'s view in which `master` (at `addr`) is the master.
pub(super) fn view(self_id: &str, master: &str, addr: SocketAddr) -> ClusterView {
    let mut members = vec![member(master, addr)];
    if self_id != master {
        members.push(member(self_id, "127.0.0.1:2".parse().unwrap()));
    }
    ClusterView {
        self_id: self_id.to_string(),
        members,
        master: Some(master.to_string()),
    }
}

pub(super) fn store_config() -> StoreConfig {
    StoreConfig {
        segment_max_bytes: 256 * 1024,
        ..StoreConfig::default()
    }
}

pub(super) fn open_store(dir: &Path, origin: &str) -> Store {
    Store::open(dir, origin, store_config()).unwrap().0
}

pub(super) fn message(i: u64) -> Record {
    Record {
        received_at_micros: 1_700_000_000_000_000 + i as i64,
        event_time: None,
        origin: ORIGIN.to_string().into(),
        origin_seq: 0,
        peer: Some("127.0.0.1:40000".into()),
        transport: Transport::Tcp,
        parse: ParseStatus::Unparsed,
        truncated: false,
        source: format!("host-{}", i % 3).into(),
        raw: Bytes::from(format!(
            "message number {i} {}",
            "x".repeat((i % 50) as usize)
        )),
        lost_from: None,
        tls_peer: None,
        file: None,
    }
}

/// Appends `records` to the store and waits until they are durable.
pub(super) async fn append_durable(store: &StoreHandle, records: Vec<Record>) {
    store
        .append(records)
        .await
        .unwrap()
        .durable()
        .await
        .unwrap();
}

/// A forwarded batch takes its bytes of the master's budget before it is appended and gives
/// them back once the writer answered it: with the budget used up elsewhere (the inputs, say)
/// the master appends nothing and the forwarder waits; when the room comes back everything
/// arrives once and the budget is whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_batches_wait_for_the_masters_byte_budget_and_give_it_back() {
    let temp = tempfile::tempdir().unwrap();
    let (spool_dir, master_dir) = (temp.path().join("spool"), temp.path().join("master"));
    let spool = open_store(&spool_dir, ORIGIN);
    spool_messages(&spool.handle(), 0, 500).await;
    let master = Master::start(&master_dir, "master").await;
    let held = master.budget.try_acquire(MASTER_BUDGET).unwrap();
    let (_view_tx, view_rx) = watch::channel(view(ORIGIN, "master", master.addr));
    let (_, progress, cancel, task) = start_forwarder(&spool_dir, &spool, view_rx);

    assert!(
        wait_until(Duration::from_secs(20), || {
            master
                .stats
                .budget_waits
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        })
        .await,
        "no forwarded batch waited for the budget"
    );
    // The waiting batch is not in the store: nothing of the origin was appended.
    assert_eq!(master.hwm(), 0);
    assert_eq!(master.budget.in_flight(), MASTER_BUDGET);

    drop(held);
    assert!(
        wait_until(Duration::from_secs(20), || master.hwm() == 500).await,
        "hwm {}",
        master.hwm()
    );
    assert!(wait_until(Duration::from_secs(5), || progress.acked_seq() == 500).await);
    assert!(
        wait_until(Duration::from_secs(5), || master.budget.in_flight() == 0).await,
        "{} bytes still held after every batch was answered",
        master.budget.in_flight()
    );

    cancel.cancel();
    task.await.unwrap().unwrap();
    spool.close().unwrap();
    let stored = master.stop(&master_dir).await;
    assert_exactly_once(&stored, &stored_records(&spool_dir), 500);
}

/// Appends messages `from..to` to the spool (sequences are assigned by the spool store).
pub(super) async fn spool_messages(spool: &StoreHandle, from: u64, to: u64) {
    for chunk_start in (from..to).step_by(100) {
        let records = (chunk_start..to.min(chunk_start + 100))
            .map(message)
            .collect();
        append_durable(spool, records).await;
    }
}

pub(super) use crate::testutil::wait_until;

/// The byte budget of a test master.
const MASTER_BUDGET: u64 = 64 * 1024 * 1024;

pub(super) struct Master {
    pub(super) store: Store,
    pub(super) addr: SocketAddr,
    pub(super) stats: Arc<ServerStats>,
    /// The master's byte budget (`MASTER_BUDGET` bytes).
    pub(super) budget: Arc<ByteBudget>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _view_tx: watch::Sender<ClusterView>,
}

impl Master {
    pub(super) async fn start(dir: &Path, node_id: &str) -> Master {
        let store = open_store(dir, node_id);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (view_tx, view_rx) = watch::channel(view(node_id, node_id, addr));
        let stats = Arc::new(ServerStats::default());
        let budget = Arc::new(ByteBudget::new(MASTER_BUDGET));
        let ctx = Arc::new(ServerContext {
            config: ServerConfig::new(CLUSTER),
            store: store.handle(),
            view: view_rx,
            stats: stats.clone(),
            budget: budget.clone(),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server::run(listener, ctx, cancel.clone()));
        Master {
            store,
            addr,
            stats,
            budget,
            cancel,
            task,
            _view_tx: view_tx,
        }
    }

    pub(super) fn hwm(&self) -> u64 {
        self.store.handle().high_water_mark(ORIGIN)
    }

    pub(super) async fn stop(self, dir: &Path) -> HashMap<u64, Record> {
        self.cancel.cancel();
        self.task.await.unwrap();
        self.store.close().unwrap();
        stored_records(dir)
    }
}

/// Every record of `ORIGIN` in the store at `dir`, by sequence; panics on a duplicate.
pub(super) fn stored_records(dir: &Path) -> HashMap<u64, Record> {
    let mut by_seq = HashMap::new();
    for item in StoreReader::open(dir)
        .unwrap()
        .read(&ReadOptions::default())
    {
        let record = item.unwrap().record;
        if *record.origin != *ORIGIN {
            continue;
        }
        let seq = record.origin_seq;
        assert!(
            by_seq.insert(seq, record).is_none(),
            "seq {seq} stored twice"
        );
    }
    by_seq
}

/// Exactly the messages `0..n`, with sequences `1..=n`, each once.
fn assert_exactly_once(
    stored: &HashMap<u64, Record>,
    spool_dir_records: &HashMap<u64, Record>,
    n: u64,
) {
    assert_eq!(stored.len() as u64, n, "records stored");
    for seq in 1..=n {
        let got = stored
            .get(&seq)
            .unwrap_or_else(|| panic!("seq {seq} missing"));
        assert_eq!(
            got, &spool_dir_records[&seq],
            "seq {seq} differs from the spool"
        );
    }
}

/// The forwarder the tests run: small batches and window.
pub(super) fn test_forwarder_config() -> ForwarderConfig {
    let mut config = ForwarderConfig::new(CLUSTER, ORIGIN);
    config.max_batch_records = 64;
    config.max_batches_in_flight = 4;
    config
}

pub(super) fn start_forwarder(
    spool_dir: &Path,
    spool: &Store,
    view_rx: watch::Receiver<ClusterView>,
) -> (
    Arc<ForwarderStats>,
    Arc<ForwardProgress>,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    start_forwarder_with(spool_dir, spool, view_rx, test_forwarder_config())
}

/// `start_forwarder` with its own configuration.
pub(super) fn start_forwarder_with(
    spool_dir: &Path,
    spool: &Store,
    view_rx: watch::Receiver<ClusterView>,
    config: ForwarderConfig,
) -> (
    Arc<ForwarderStats>,
    Arc<ForwardProgress>,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let source = StoreSpool::new(spool_dir, ORIGIN, spool.handle()).unwrap();
    let stats = Arc::new(ForwarderStats::default());
    let progress = Arc::new(ForwardProgress::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(client::run(
        source,
        view_rx,
        config,
        stats.clone(),
        progress.clone(),
        cancel.clone(),
    ));
    (stats, progress, cancel, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spooled_record_arrives_exactly_once_including_live_ones() {
    let temp = tempfile::tempdir().unwrap();
    let (spool_dir, master_dir) = (temp.path().join("spool"), temp.path().join("master"));
    let spool = open_store(&spool_dir, ORIGIN);
    spool_messages(&spool.handle(), 0, 3000).await;
    let master = Master::start(&master_dir, "master").await;
    let (_view_tx, view_rx) = watch::channel(view(ORIGIN, "master", master.addr));
    let (_, progress, cancel, task) = start_forwarder(&spool_dir, &spool, view_rx);

    assert!(
        wait_until(Duration::from_secs(20), || master.hwm() == 3000).await,
        "backlog: hwm {}",
        master.hwm()
    );
    // Records spooled while the forwarder runs are tailed.
    spool_messages(&spool.handle(), 3000, 4500).await;
    assert!(
        wait_until(Duration::from_secs(20), || master.hwm() == 4500).await,
        "live: hwm {}",
        master.hwm()
    );
    assert!(wait_until(Duration::from_secs(5), || progress.acked_seq() == 4500).await);

    cancel.cancel();
    task.await.unwrap().unwrap();
    spool.close().unwrap();
    let stored = master.stop(&master_dir).await;
    assert_exactly_once(&stored, &stored_records(&spool_dir), 4500);
}

/// A TCP proxy whose current connections can be cut.
struct Proxy {
    addr: SocketAddr,
    cut_tx: watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut_tx, cut_rx) = watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut_rx = cut_rx.clone();
                cut_rx.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, cut_tx }
    }

    fn cut(&self) {
        self.cut_tx.send_modify(|generation| *generation += 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_resume_without_loss_or_duplicates() {
    let temp = tempfile::tempdir().unwrap();
    let (spool_dir, master_dir) = (temp.path().join("spool"), temp.path().join("master"));
    let spool = open_store(&spool_dir, ORIGIN);
    let master = Master::start(&master_dir, "master").await;
    let proxy = Proxy::start(master.addr).await;
    let (_view_tx, view_rx) = watch::channel(view(ORIGIN, "master", proxy.addr));
    let (stats, _, cancel, task) = start_forwarder(&spool_dir, &spool, view_rx);

    let total = 6000;
    let mut cuts = 0;
    for step in 0..6 {
        spool_messages(&spool.handle(), step * 1000, (step + 1) * 1000).await;
        // Cut mid-stream, once something of this step has arrived.
        let before = master.hwm();
        wait_until(Duration::from_secs(5), || master.hwm() > before).await;
        proxy.cut();
        cuts += 1;
    }
    assert!(
        wait_until(Duration::from_secs(30), || master.hwm() == total).await,
        "hwm {}",
        master.hwm()
    );
    let sessions = stats.sessions.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sessions > 1,
        "the forwarder reconnected ({sessions} sessions, {cuts} cuts)"
    );

    cancel.cancel();
    task.await.unwrap().unwrap();
    spool.close().unwrap();
    let stored = master.stop(&master_dir).await;
    assert_exactly_once(&stored, &stored_records(&spool_dir), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_change_resumes_after_the_new_masters_high_water_mark() {
    let temp = tempfile::tempdir().unwrap();
    let spool_dir = temp.path().join("spool");
    let (dir_1, dir_2) = (temp.path().join("m1"), temp.path().join("m2"));
    let spool = open_store(&spool_dir, ORIGIN);
    spool_messages(&spool.handle(), 0, 2000).await;
    let master_1 = Master::start(&dir_1, "m1").await;
    let master_2 = Master::start(&dir_2, "m2").await;
    let (view_tx, view_rx) = watch::channel(view(ORIGIN, "m1", master_1.addr));
    let (_, _, cancel, task) = start_forwarder(&spool_dir, &spool, view_rx);
    assert!(wait_until(Duration::from_secs(20), || master_1.hwm() == 2000).await);

    view_tx.send_replace(view(ORIGIN, "m2", master_2.addr));
    spool_messages(&spool.handle(), 2000, 2500).await;
    assert!(
        wait_until(Duration::from_secs(20), || master_2.hwm() == 2500).await,
        "m2 hwm {}",
        master_2.hwm()
    );
    assert_eq!(
        master_1.hwm(),
        2000,
        "the old master got nothing after the switch"
    );

    cancel.cancel();
    task.await.unwrap().unwrap();
    spool.close().unwrap();
    let spooled = stored_records(&spool_dir);
    assert_exactly_once(&master_2.stop(&dir_2).await, &spooled, 2500);
    assert_exactly_once(&master_1.stop(&dir_1).await, &spooled, 2000);
}

async fn connect(addr: SocketAddr) -> Framed<TcpStream, ForwardCodec> {
    Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        ForwardCodec::default(),
    )
}

fn hello(cluster_id: &str) -> Message {
    Message::Hello {
        version: PROTOCOL_VERSION,
        cluster_id: cluster_id.into(),
        origin: ORIGIN.into(),
    }
}

fn seq_record(seq: u64) -> Record {
    Record {
        origin_seq: seq,
        ..message(seq)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_handshakes_refusals_and_bad_peers() {
    let temp = tempfile::tempdir().unwrap();
    let master = Master::start(temp.path(), "master").await;

    // Wrong cluster and wrong version are rejected.
    let mut conn = connect(master.addr).await;
    conn.send(hello("other")).await.unwrap();
    let answer = conn.next().await.unwrap().unwrap();
    assert!(
        matches!(&answer, Message::Rejected { reason } if reason.contains("\"other\"")),
        "{answer:?}"
    );
    // Version 1 (records without the gap-marker field) and 2 (a u16 source length) are
    // refused with a clear reason.
    for version in [1, 2, 3, 99] {
        let mut conn = connect(master.addr).await;
        conn.send(Message::Hello {
            version,
            cluster_id: CLUSTER.into(),
            origin: ORIGIN.into(),
        })
        .await
        .unwrap();
        let answer = conn.next().await.unwrap().unwrap();
        let want = format!("unsupported forward protocol version {version}, this node speaks 4");
        assert!(
            matches!(&answer, Message::Rejected { reason } if reason.starts_with(&want)),
            "{answer:?}"
        );
    }

    // A garbage length closes that connection only.
    let mut raw = TcpStream::connect(master.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, &[0xff, 0xff, 0xff, 0xff, 1])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::io::AsyncReadExt::read(&mut raw, &mut buf).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "connection closed: {read:?}"
    );

    // Batches: acked after durable, duplicates acked, a gap refused.
    let mut conn = connect(master.addr).await;
    conn.send(hello(CLUSTER)).await.unwrap();
    assert_eq!(
        conn.next().await.unwrap().unwrap(),
        Message::HelloAck { high_water_mark: 0 }
    );
    conn.send(Message::Batch {
        batch_id: 1,
        records: Arc::new((1..=3).map(seq_record).collect()),
    })
    .await
    .unwrap();
    conn.send(Message::Batch {
        batch_id: 2,
        records: Arc::new((2..=5).map(seq_record).collect()),
    })
    .await
    .unwrap();
    assert_eq!(
        conn.next().await.unwrap().unwrap(),
        Message::Ack {
            batch_id: 1,
            high_water_mark: 3
        }
    );
    assert_eq!(
        conn.next().await.unwrap().unwrap(),
        Message::Ack {
            batch_id: 2,
            high_water_mark: 5
        }
    );
    conn.send(Message::Batch {
        batch_id: 3,
        records: Arc::new(vec![seq_record(9)]),
    })
    .await
    .unwrap();
    let answer = conn.next().await.unwrap().unwrap();
    assert!(
        matches!(&answer, Message::Refused { batch_id: 3, reason } if reason.contains("gap")),
        "{answer:?}"
    );
    assert!(conn.next().await.is_none(), "closed after a refusal");

    // A new connection resumes after the high-water mark.
    let mut conn = connect(master.addr).await;
    conn.send(hello(CLUSTER)).await.unwrap();
    assert_eq!(
        conn.next().await.unwrap().unwrap(),
        Message::HelloAck { high_water_mark: 5 }
    );
    drop(conn);

    let stats = master.stats.clone();
    let stored = master.stop(temp.path()).await;
    assert_eq!(stored.len(), 5);
    assert_eq!(
        stats
            .duplicates_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert_eq!(
        stats
            .batches_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_master_names_the_master() {
    let temp = tempfile::tempdir().unwrap();
    let store = open_store(temp.path(), "b");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let master_addr: SocketAddr = "127.0.0.1:7777".parse().unwrap();
    let (view_tx, view_rx) = watch::channel(view("b", "a", master_addr));
    let ctx = Arc::new(ServerContext {
        config: ServerConfig::new(CLUSTER),
        store: store.handle(),
        view: view_rx,
        stats: Arc::new(ServerStats::default()),
        budget: Arc::new(ByteBudget::new(MASTER_BUDGET)),
    });
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server::run(listener, ctx, cancel.clone()));
    let mut conn = connect(addr).await;
    conn.send(hello(CLUSTER)).await.unwrap();
    assert_eq!(
        conn.next().await.unwrap().unwrap(),
        Message::NotMaster {
            master: Some(("a".to_string(), master_addr))
        }
    );
    // Becoming master mid-way is picked up by the next connection; losing it closes them.
    view_tx.send_replace(view("b", "b", addr));
    let mut conn = connect(addr).await;
    conn.send(hello(CLUSTER)).await.unwrap();
    assert_eq!(
        conn.next().await.unwrap().unwrap(),
        Message::HelloAck { high_water_mark: 0 }
    );
    view_tx.send_replace(view("b", "a", master_addr));
    assert_eq!(
        conn.next().await.unwrap().unwrap(),
        Message::NotMaster {
            master: Some(("a".to_string(), master_addr))
        }
    );
    cancel.cancel();
    task.await.unwrap();
    store.close().unwrap();
}

pub(super) fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|record| record.origin_seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_source_reads_in_sequence_order_and_repositions() {
    use super::source::{BatchLimits, SpoolSource};
    let temp = tempfile::tempdir().unwrap();
    let spool = open_store(temp.path(), ORIGIN);
    spool_messages(&spool.handle(), 0, 300).await;
    let limits = BatchLimits {
        max_records: 100,
        max_bytes: 1 << 20,
    };
    let mut source = StoreSpool::new(temp.path(), ORIGIN, spool.handle()).unwrap();
    source.seek(0).unwrap();
    assert_eq!(
        seqs(&source.next_batch(limits).unwrap()),
        (1..=100).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&source.next_batch(limits).unwrap()),
        (101..=200).collect::<Vec<_>>()
    );
    // Back into what was handed out (in-flight batches after a broken connection).
    source.seek(150).unwrap();
    assert_eq!(
        seqs(&source.next_batch(limits).unwrap()),
        (151..=250).collect::<Vec<_>>()
    );
    source.seek(10).unwrap();
    assert_eq!(
        seqs(&source.next_batch(limits).unwrap()),
        (11..=110).collect::<Vec<_>>()
    );
    assert_eq!(
        source.num_scans(),
        1,
        "one scan, then repositioned from what was read"
    );
    // Forward past what was read.
    source.seek(280).unwrap();
    assert_eq!(
        seqs(&source.next_batch(limits).unwrap()),
        (281..=300).collect::<Vec<_>>()
    );
    assert!(source.next_batch(limits).unwrap().is_empty());
    // New records are tailed; a byte limit cuts batches (one record always goes).
    spool_messages(&spool.handle(), 300, 310).await;
    let tiny = BatchLimits {
        max_records: 100,
        max_bytes: 1,
    };
    assert_eq!(seqs(&source.next_batch(tiny).unwrap()), vec![301]);
    assert_eq!(
        seqs(&source.next_batch(limits).unwrap()),
        (302..=310).collect::<Vec<_>>()
    );
    // A fresh reader positioned in the middle.
    let mut fresh = StoreSpool::new(temp.path(), ORIGIN, spool.handle()).unwrap();
    fresh.seek(295).unwrap();
    assert_eq!(
        seqs(&fresh.next_batch(limits).unwrap()),
        (296..=310).collect::<Vec<_>>()
    );
    spool.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_near_the_end_reads_only_a_recent_window() {
    use super::source::{BatchLimits, SpoolSource};
    let temp = tempfile::tempdir().unwrap();
    let spool = open_store(temp.path(), ORIGIN);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    // 2000 records three hours ago, then 1000 in the last minute.
    for chunk in 0..30u64 {
        let records = (chunk * 100..(chunk + 1) * 100)
            .map(|i| {
                let age_micros = if i < 2000 {
                    3 * 3_600_000_000
                } else {
                    60_000_000
                };
                Record {
                    received_at_micros: now - age_micros + i as i64,
                    ..message(i)
                }
            })
            .collect();
        append_durable(&spool.handle(), records).await;
    }
    let limits = BatchLimits {
        max_records: 1000,
        max_bytes: 1 << 20,
    };
    let mut source = StoreSpool::new(temp.path(), ORIGIN, spool.handle()).unwrap();
    source.seek(2500).unwrap();
    assert_eq!(
        seqs(&source.next_batch(limits).unwrap()),
        (2501..=3000).collect::<Vec<_>>()
    );
    assert_eq!(source.num_scans(), 1, "the 5-minute window was enough");
    // Resuming inside the old part needs wider windows, and still misses nothing.
    let mut source = StoreSpool::new(temp.path(), ORIGIN, spool.handle()).unwrap();
    source.seek(1500).unwrap();
    let mut got = Vec::new();
    while got.len() < 1500 {
        got.extend(seqs(&source.next_batch(limits).unwrap()));
    }
    assert_eq!(got, (1501..=3000).collect::<Vec<_>>());
    assert_eq!(source.num_scans(), 3, "5 min, 1 h, then 6 h");
    spool.close().unwrap();
}

/// Log lines written through `tracing` while it is the default subscriber of this thread.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Case 5 of issue #12: a stranger announcing a 16 MiB frame and sending nothing else is
/// dropped at once with a clear log, instead of holding a connection (and, before, a 16 MiB
/// reservation) until the handshake timeout. (Current-thread runtime: the server's tasks log
/// on this thread, into the captured log.)
#[tokio::test]
async fn a_large_length_prefix_before_the_handshake_is_dropped_at_once() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let temp = tempfile::tempdir().unwrap();
    let master = Master::start(temp.path(), "master").await;
    let mut raw = TcpStream::connect(master.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, &(16u32 * 1024 * 1024).to_be_bytes())
        .await
        .unwrap();
    // Well under the 10 s handshake timeout.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut raw, &mut buf),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "connection closed at once: {read:?}"
    );
    assert_eq!(
        master
            .stats
            .protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let text = log.text();
    assert!(
        text.contains("bad hello frame, closing")
            && text.contains(
                "frame of 16777216 bytes before the handshake exceeds the limit of 4096 bytes"
            ),
        "log: {text}"
    );
    master.stop(temp.path()).await;
}
