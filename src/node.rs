//! A running node: binds every socket, opens the store, starts the listeners, the ingest
//! pipeline and the API, prints where it listens, and shuts down in three steps (detect a
//! signal, cancel, drain with a deadline).
//!
//! The pipeline: listeners → bounded channel of record batches → one ingest task that
//! appends to the store (awaiting queue room, so a slow disk slows TCP senders) → a
//! durability task that counts what became durable. The cluster side (gossip, forward
//! server, forwarder, spool gate) is wired in `node::cluster`. This module owns no protocol
//! and no file format; it only wires the pieces below it.

mod acked_mark;
mod cluster;
mod spool_gate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ListenerSpec};
use crate::listener::ListenerContext;
use crate::record::{Record, Transport};
use crate::store::{AppendTicket, Store, StoreHandle};
use crate::telemetry::PipelineMetrics;

/// Batches in flight between the listeners and the store.
const PIPELINE_CAPACITY_BATCHES: usize = 1024;
/// Appended batches whose durability is awaited in order.
const DURABILITY_QUEUE_BATCHES: usize = 4096;
/// How long shutdown may take before the remaining work is abandoned.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(4);

/// Runs a node until SIGTERM or SIGINT, then shuts it down.
pub async fn run_until_signal(config: Config) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    node.announce();
    wait_for_signal().await?;
    tracing::info!("signal received, shutting down");
    node.shutdown().await
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

/// Where a started node listens.
#[derive(Debug, Clone, Default)]
pub struct BoundAddresses {
    pub syslog_udp: Vec<SocketAddr>,
    pub syslog_tcp: Vec<SocketAddr>,
    pub api: Option<SocketAddr>,
    /// The gossip address peers use (the advertised one).
    pub gossip: Option<SocketAddr>,
    pub forward: Option<SocketAddr>,
}

pub struct Node {
    pub node_id: String,
    pub data_dir: PathBuf,
    pub addresses: BoundAddresses,
    store: Store,
    listeners_cancel: CancellationToken,
    listeners: TaskTracker,
    api_cancel: CancellationToken,
    api_task: Option<tokio::task::JoinHandle<()>>,
    ingest_task: tokio::task::JoinHandle<()>,
    durability_task: tokio::task::JoinHandle<()>,
    cluster: cluster::NodeCluster,
}

impl Node {
    /// Opens the store and binds every listener; returns once all are bound.
    pub async fn start(config: Config) -> anyhow::Result<Node> {
        let node_id = match &config.node_id {
            Some(node_id) => node_id.clone(),
            None => local_host_name(),
        };
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let store_config = store_config(&config);
        let (store, recovery) = {
            let (dir, origin) = (data_dir.clone(), node_id.clone());
            tokio::task::spawn_blocking(move || Store::open(&dir, &origin, store_config))
                .await
                .context("store open task failed")?
                .with_context(|| format!("cannot open the store in {}", data_dir.display()))?
        };
        log_recovery(&recovery);

        // One registry per node; each subsystem registers its own families in it.
        let mut registry = prometheus_client::registry::Registry::default();
        let pipeline_metrics = PipelineMetrics::register(&mut registry);
        let listener_metrics =
            crate::listener::metrics::ListenerFamilies::register(&mut registry, &pipeline_metrics);
        crate::store::metrics::register(&mut registry, store.handle());
        let mut addresses = BoundAddresses::default();
        // The API is bound first so the cluster can advertise its address.
        let api_listener = match config.api_address()? {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen for the API on {address}"))?;
                addresses.api = Some(listener.local_addr()?);
                Some(listener)
            }
            None => None,
        };
        if let Some(max_age) = config.store.retention.max_age {
            if max_age < config.cluster.spool_retention {
                tracing::info!(
                    ?max_age,
                    spool_retention = ?config.cluster.spool_retention,
                    "store.retention.max-age is shorter than cluster.spool-retention: segments \
                     holding this node's own records are kept for cluster.spool-retention"
                );
            }
        }
        let cluster = cluster::NodeCluster::start(cluster::ClusterStart {
            section: &config.cluster,
            node_id: &node_id,
            data_dir: &data_dir,
            store: store.handle(),
            api_addr: addresses.api,
            registry: &mut registry,
        })
        .await?;
        addresses.gossip = Some(cluster.gossip_addr);
        addresses.forward = Some(cluster.forward_addr);

        let listeners_cancel = CancellationToken::new();
        let (records_tx, records_rx) = mpsc::channel::<Vec<Record>>(PIPELINE_CAPACITY_BATCHES);
        let (tickets_tx, tickets_rx) =
            mpsc::channel::<(Transport, AppendTicket)>(DURABILITY_QUEUE_BATCHES);
        let ingest_task = tokio::spawn(ingest_loop(
            records_rx,
            store.handle(),
            tickets_tx,
            pipeline_metrics.clone(),
            cluster.spool_gate(),
            listeners_cancel.clone(),
        ));
        let durability_task = tokio::spawn(durability_loop(tickets_rx, pipeline_metrics.clone()));

        let listeners = TaskTracker::new();
        let syslog = &config.syslog;
        for spec in config.udp_listeners()? {
            let num_sockets = match syslog.udp_sockets {
                0 => crate::listener::udp::default_num_sockets(),
                configured => configured,
            };
            let sockets =
                crate::listener::udp::bind(spec.address, num_sockets, syslog.udp_recv_buffer_bytes)
                    .with_context(|| format!("cannot listen for syslog on udp {}", spec.address))?;
            let local = sockets[0].local_addr()?;
            addresses.syslog_udp.push(local);
            let name = format!("udp:{local}");
            let context = Arc::new(ListenerContext {
                metrics: listener_metrics.listener(&name, Transport::Udp),
                name,
                ingest: ingest_config(&node_id, &config, &spec),
                records_tx: records_tx.clone(),
            });
            let options = crate::listener::udp::UdpOptions {
                max_message_bytes: syslog.max_message_bytes,
                ..Default::default()
            };
            listeners.spawn(crate::listener::udp::run(
                sockets,
                context,
                options,
                listeners_cancel.clone(),
            ));
        }
        for spec in config.tcp_listeners()? {
            let listener = tokio::net::TcpListener::bind(spec.address)
                .await
                .with_context(|| format!("cannot listen for syslog on tcp {}", spec.address))?;
            let local = listener.local_addr()?;
            addresses.syslog_tcp.push(local);
            let name = format!("tcp:{local}");
            let context = Arc::new(ListenerContext {
                metrics: listener_metrics.listener(&name, Transport::Tcp),
                name,
                ingest: ingest_config(&node_id, &config, &spec),
                records_tx: records_tx.clone(),
            });
            let options = crate::listener::tcp::TcpOptions {
                max_message_bytes: syslog.max_message_bytes,
                max_connections: syslog.max_connections,
                idle_timeout: syslog.idle_timeout,
                ..Default::default()
            };
            listeners.spawn(crate::listener::tcp::run(
                listener,
                context,
                options,
                listeners_cancel.clone(),
            ));
        }
        // Only the listeners hold senders now: when they end, the ingest task drains and ends.
        drop(records_tx);
        listeners.close();

        let api_cancel = CancellationToken::new();
        let mut api_task = None;
        if let Some(listener) = api_listener {
            let upload = crate::journal_upload::UploadState::new(
                store.handle(),
                node_id.clone(),
                syslog.max_message_bytes,
                &listener_metrics,
                pipeline_metrics.clone(),
            );
            let state =
                crate::api::ApiState::new(Arc::new(registry)).with_status(cluster.status_fn());
            let mut router = crate::api::router(state).merge(crate::journal_upload::router(upload));
            if let Some(faults) = cluster.fault_router() {
                router = router.merge(faults);
            }
            let cancel = api_cancel.clone();
            api_task = Some(tokio::spawn(async move {
                if let Err(error) = crate::api::serve_router(listener, router, cancel).await {
                    tracing::error!(%error, "the API server failed");
                }
            }));
        }

        Ok(Node {
            node_id,
            data_dir,
            addresses,
            store,
            listeners_cancel,
            listeners,
            api_cancel,
            api_task,
            ingest_task,
            durability_task,
            cluster,
        })
    }

    /// Prints where the node listens and stores (stdout, one line each; tests read them).
    pub fn announce(&self) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "starling: node {} storing in {}",
            self.node_id,
            self.data_dir.display()
        );
        for address in &self.addresses.syslog_udp {
            let _ = writeln!(out, "starling: listening syslog-udp {address}");
        }
        for address in &self.addresses.syslog_tcp {
            let _ = writeln!(out, "starling: listening syslog-tcp {address}");
        }
        if let Some(address) = self.addresses.api {
            let _ = writeln!(out, "starling: listening api {address}");
        }
        if let Some(address) = self.addresses.gossip {
            let _ = writeln!(out, "starling: listening gossip {address}");
        }
        if let Some(address) = self.addresses.forward {
            let _ = writeln!(out, "starling: listening forward {address}");
        }
        let _ = writeln!(out, "starling: ready");
        let _ = out.flush();
        // systemd (Type=notify): every listener is bound. A no-op outside systemd.
        if let Err(error) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            tracing::warn!(%error, "cannot notify systemd");
        }
    }

    /// Stops accepting, stores everything already read, leaves the cluster (a master hands
    /// over at once), stops forwarding, commits, closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        self.listeners_cancel.cancel();
        if tokio::time::timeout_at(deadline, self.listeners.wait())
            .await
            .is_err()
        {
            tracing::warn!("listeners did not stop in time");
        }
        if tokio::time::timeout_at(deadline, self.ingest_task)
            .await
            .is_err()
        {
            tracing::warn!("the pipeline did not drain in time");
        }
        self.cluster.shutdown(deadline).await;
        let store = self.store;
        let closed = tokio::task::spawn_blocking(move || store.close())
            .await
            .context("store close task failed")?;
        let _ = tokio::time::timeout_at(deadline, self.durability_task).await;
        self.api_cancel.cancel();
        if let Some(api_task) = self.api_task {
            let _ = tokio::time::timeout_at(deadline, api_task).await;
        }
        closed.context("cannot close the store cleanly")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Appends every batch the listeners produce, in order; a full store queue (or a closed spool
/// gate: the unforwarded backlog passed `spool-max-bytes`) makes this wait, which fills the
/// channel, which slows TCP readers and makes UDP listeners drop and count. Once `drain`
/// fires (shutdown) the gate is ignored so everything read gets stored.
async fn ingest_loop(
    mut records_rx: mpsc::Receiver<Vec<Record>>,
    store: StoreHandle,
    tickets_tx: mpsc::Sender<(Transport, AppendTicket)>,
    metrics: PipelineMetrics,
    spool_gate: Arc<spool_gate::SpoolGate>,
    drain: CancellationToken,
) {
    while let Some(batch) = records_rx.recv().await {
        spool_gate.wait_for_room(&drain).await;
        let Some(transport) = batch.first().map(|record| record.transport) else {
            continue;
        };
        let num_records = batch.len() as u64;
        spool_gate.appended(batch.iter().map(spool_gate::estimated_bytes).sum());
        match store.append(batch).await {
            Ok(ticket) => {
                if tickets_tx.send((transport, ticket)).await.is_err() {
                    tracing::error!("durability tracking stopped; records are still stored");
                }
            }
            Err(error) => {
                metrics.store_refused(num_records);
                tracing::error!(%error, num_records, "the store refused a batch");
            }
        }
    }
}

/// Counts records as stored once their commit is durable.
async fn durability_loop(
    mut tickets_rx: mpsc::Receiver<(Transport, AppendTicket)>,
    metrics: PipelineMetrics,
) {
    while let Some((transport, ticket)) = tickets_rx.recv().await {
        match ticket.durable().await {
            Ok(outcome) => metrics.records_stored(transport, outcome.num_stored as u64),
            Err(error) => tracing::error!(%error, "a commit failed"),
        }
    }
}

fn log_recovery(report: &crate::store::RecoveryReport) {
    tracing::info!(
        num_shards = report.num_shards,
        num_tail_records = report.num_tail_records,
        num_truncated = report.truncated.len(),
        num_removed = report.removed.len(),
        num_problems = report.problems.len(),
        "store recovered"
    );
    for truncation in &report.truncated {
        tracing::info!(?truncation, "torn tail truncated");
    }
    for problem in &report.problems {
        tracing::warn!(%problem, "damaged data kept in place and skipped; run `starling verify`");
    }
}

fn ingest_config(
    node_id: &str,
    config: &Config,
    spec: &ListenerSpec,
) -> crate::ingest::IngestConfig {
    // Validated with the configuration; local time is the documented default.
    let zone = spec
        .rfc3164_timezone
        .parse::<crate::parse::Zone>()
        .unwrap_or(crate::parse::Zone::Local);
    crate::ingest::IngestConfig {
        origin: std::sync::Arc::from(node_id),
        shard_by: match config.syslog.shard_by {
            crate::config::ShardBy::Hostname => crate::ingest::ShardBy::Hostname,
            crate::config::ShardBy::Peer => crate::ingest::ShardBy::Peer,
            crate::config::ShardBy::AppName => crate::ingest::ShardBy::AppName,
        },
        rfc3164_zone: zone,
    }
}

fn store_config(config: &Config) -> crate::store::StoreConfig {
    let store = &config.store;
    crate::store::StoreConfig {
        segment_max_bytes: store.segment_max_bytes,
        segment_max_age: store.segment_max_age,
        commit_max_delay: store.commit_max_delay,
        commit_max_bytes: store.commit_max_bytes,
        retention: crate::store::RetentionConfig {
            max_age: store.retention.max_age,
            shard_max_bytes: store.retention.shard_max_bytes,
            total_max_bytes: store.retention.total_max_bytes,
            spool_retention: Some(config.cluster.spool_retention),
        },
        ..crate::store::StoreConfig::default()
    }
}

/// The kernel's host name, used as node id when none is configured.
pub fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "starling".to_string())
}
