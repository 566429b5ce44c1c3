//! Forwarding composed with real cluster membership, in one process: three nodes, each with
//! gossip, one store (its spool and, when master, the cluster's store), a forward server and a
//! forwarder. Checks that the pieces fit: records reach the master exactly once, across a
//! master crash and the old master's return.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::client::{self, ForwarderConfig, ForwarderStats};
use super::progress::ForwardProgress;
use super::server::{self, ServerConfig, ServerContext, ServerStats};
use super::spool::StoreSpool;
use super::tests::append_durable;
use crate::cluster::{self, ClusterConfig, ClusterHandle, ClusterTiming};
use crate::record::{ParseStatus, Record, Transport};
use crate::store::{ReadOptions, Store, StoreConfig, StoreReader};
use crate::testutil::wait_until;

const CLUSTER: &str = "it-cluster";

struct Node {
    id: String,
    dir: PathBuf,
    cluster: ClusterHandle,
    store: Store,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    async fn start(id: &str, dir: &Path, seeds: Vec<String>) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let forward_addr = listener.local_addr().unwrap();
        let cluster = cluster::start(ClusterConfig {
            node_id: id.to_string(),
            cluster_id: CLUSTER.to_string(),
            gossip_listen: "127.0.0.1:0".parse().unwrap(),
            gossip_advertise: None,
            seeds,
            priority: 0,
            may_be_master: true,
            forward_addr,
            api_addr: "127.0.0.1:1".parse().unwrap(),
            timing: ClusterTiming::default(),
            gossip_keys_file: None,
            gossip_accept_plaintext: false,
        })
        .await
        .unwrap();
        let config = StoreConfig {
            segment_max_bytes: 256 * 1024,
            ..StoreConfig::default()
        };
        let store = Store::open(dir, id, config).unwrap().0;
        let cancel = CancellationToken::new();
        let ctx = Arc::new(ServerContext {
            config: ServerConfig::new(CLUSTER),
            store: store.handle(),
            view: cluster.watch(),
            stats: Arc::new(ServerStats::default()),
            budget: Arc::new(crate::store::budget::ByteBudget::new(64 * 1024 * 1024)),
        });
        let server_task = tokio::spawn(server::run(listener, ctx, cancel.clone()));
        let source = StoreSpool::new(dir, id, store.handle()).unwrap();
        let forwarder = client::run(
            source,
            cluster.watch(),
            ForwarderConfig::new(CLUSTER, id),
            Arc::new(ForwarderStats::default()),
            Arc::new(ForwardProgress::default()),
            cancel.clone(),
        );
        let forwarder_task = tokio::spawn(async move { forwarder.await.unwrap() });
        Node {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            cluster,
            store,
            cancel,
            tasks: vec![server_task, forwarder_task],
        }
    }

    fn gossip_seed(&self) -> String {
        self.cluster.gossip_addr().to_string()
    }

    fn master(&self) -> Option<String> {
        self.cluster.view().master
    }

    fn hwm(&self, origin: &str) -> u64 {
        self.store.handle().high_water_mark(origin)
    }

    /// Accepts `n` messages as if a listener had received them.
    async fn accept(&self, n: u64) {
        for chunk in 0..n.div_ceil(100) {
            let records = (0..100.min(n - chunk * 100))
                .map(|i| Record {
                    received_at_micros: 1_700_000_000_000_000 + (chunk * 100 + i) as i64,
                    event_time: None,
                    origin: self.id.clone().into(),
                    origin_seq: 0,
                    peer: None,
                    transport: Transport::Udp,
                    parse: ParseStatus::Unparsed,
                    truncated: false,
                    source: format!("host-{}", i % 2).into(),
                    raw: Bytes::from(format!("{} says {}", self.id, chunk * 100 + i)),
                    lost_from: None,
                    tls_peer: None,
                    file: None,
                })
                .collect();
            append_durable(&self.store.handle(), records).await;
        }
    }

    /// Stops without a goodbye (gossip just goes silent), like a crash of the process.
    async fn crash(self) -> PathBuf {
        drop(self.cluster);
        self.cancel.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
        self.store.close().unwrap();
        self.dir
    }
}

/// `origin → sorted sequences` in the store at `dir`.
fn sequences(dir: &Path) -> HashMap<String, Vec<u64>> {
    let mut by_origin: HashMap<String, Vec<u64>> = HashMap::new();
    for item in StoreReader::open(dir)
        .unwrap()
        .read(&ReadOptions::default())
    {
        let record = item.unwrap().record;
        by_origin
            .entry(record.origin.to_string())
            .or_default()
            .push(record.origin_seq);
    }
    for seqs in by_origin.values_mut() {
        seqs.sort_unstable();
    }
    by_origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_the_master_exactly_once_across_a_master_crash_and_return() {
    let temp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3)
        .map(|i| temp.path().join(format!("node-{i}")))
        .collect();
    let node_0 = Node::start("node-0", &dirs[0], Vec::new()).await;
    let seed = vec![node_0.gossip_seed()];
    let node_1 = Node::start("node-1", &dirs[1], seed.clone()).await;
    let node_2 = Node::start("node-2", &dirs[2], seed).await;
    let agreed =
        |nodes: &[&Node], master: &str| nodes.iter().all(|n| n.master().as_deref() == Some(master));
    assert!(
        wait_until(Duration::from_secs(5), || agreed(
            &[&node_0, &node_1, &node_2],
            "node-0"
        ))
        .await
    );

    for node in [&node_0, &node_1, &node_2] {
        node.accept(1000).await;
    }
    let all_at_master = |master: &Node, expected: &[(&str, u64)]| {
        expected.iter().all(|(origin, n)| master.hwm(origin) == *n)
    };
    let first = [("node-0", 1000), ("node-1", 1000), ("node-2", 1000)];
    assert!(wait_until(Duration::from_secs(10), || all_at_master(&node_0, &first)).await);

    // The master crashes; node-1 (next oldest) takes over and gets everything again from the
    // spools, plus what is accepted meanwhile.
    let crashed_at = Instant::now();
    let dir_0 = node_0.crash().await;
    node_1.accept(500).await;
    node_2.accept(500).await;
    assert!(
        wait_until(Duration::from_secs(10), || agreed(
            &[&node_1, &node_2],
            "node-1"
        ))
        .await
    );
    let second = [("node-1", 1500), ("node-2", 1500)];
    assert!(wait_until(Duration::from_secs(10), || all_at_master(&node_1, &second)).await);
    eprintln!(
        "storing at the new master {:?} after the crash",
        crashed_at.elapsed()
    );

    // The old master returns as a follower and hands over what only it had.
    let node_0 = Node::start("node-0", &dir_0, vec![node_1.gossip_seed()]).await;
    assert!(
        wait_until(Duration::from_secs(5), || agreed(
            &[&node_0, &node_1, &node_2],
            "node-1"
        ))
        .await
    );
    node_0.accept(200).await;
    let third = [("node-0", 1200), ("node-1", 1500), ("node-2", 1500)];
    assert!(wait_until(Duration::from_secs(10), || all_at_master(&node_1, &third)).await);

    let master_dir = node_1.dir.clone();
    for node in [node_0, node_2, node_1] {
        node.crash().await;
    }
    let stored = sequences(&master_dir);
    for (origin, n) in third {
        assert_eq!(
            stored[origin],
            (1..=n).collect::<Vec<_>>(),
            "origin {origin}"
        );
    }
}
