//! The node's cluster side: joins the gossip cluster, serves forwarded batches (the forward
//! server answers only while this node is master), ships this node's own records to the
//! master (the forwarder idles while this node is master), publishes spool size and forward
//! lag, closes the spool gate when the unforwarded backlog passes `spool-max-bytes`, and
//! leaves the cluster cleanly on shutdown. With `STARLING_FAULT_INJECTION=1` in the
//! environment (tests only) it also serves `POST /debug/gossip-faults` to partition the node.
//!
//! One store per node: the listeners append with this node's origin and the store assigns the
//! sequences; that store is the node's spool, and while the node is master it is also the
//! cluster store. This file only wires `cluster` and `forward` to the store; it owns no
//! protocol, no election rule and no file format.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::status::Status;
use crate::cluster::{ClusterConfig, ClusterHandle, ClusterTiming, ClusterView, GossipFaults};
use crate::config::ClusterSection;
use crate::forward::client::{ForwarderConfig, ForwarderStats};
use crate::forward::metrics::SpoolGauges;
use crate::forward::server::{ServerConfig, ServerContext, ServerStats};
use crate::forward::spool::StoreSpool;
use crate::store::StoreHandle;

use super::acked_mark;
use super::spool_gate::SpoolGate;

/// How often spool size and forward lag are measured (and the spool gate re-evaluated).
const MEASURE_INTERVAL: Duration = Duration::from_millis(250);
/// Every this many measurements, they are published in gossip (every change is gossiped).
const PUBLISH_EVERY: u32 = 4;
/// Every this many measurements, a moved acknowledged mark is saved (`acked_mark`).
const SAVE_ACKED_EVERY: u32 = 4;
/// Longest wait between two attempts to reach the master.
const FORWARD_RETRY_MAX: Duration = Duration::from_millis(500);

/// Set to `1` to serve `POST /debug/gossip-faults` (body `isolate` or `heal`): lets tests
/// partition a running node. Off by default; never set it in production.
pub const FAULT_INJECTION_ENV: &str = "STARLING_FAULT_INJECTION";

/// What the cluster side needs from the node.
pub(super) struct ClusterStart<'a> {
    pub section: &'a ClusterSection,
    pub node_id: &'a str,
    pub data_dir: &'a Path,
    pub store: StoreHandle,
    /// The bound API address, advertised for `starling status`.
    pub api_addr: Option<SocketAddr>,
    /// The node's metrics registry: the cluster, forwarding and spool families go here.
    pub registry: &'a mut prometheus_client::registry::Registry,
}

/// The running cluster side of a node.
pub(super) struct NodeCluster {
    pub gossip_addr: SocketAddr,
    pub forward_addr: SocketAddr,
    handle: Arc<ClusterHandle>,
    view: watch::Receiver<ClusterView>,
    generation: u64,
    spool_gate: Arc<SpoolGate>,
    measure_cancel: CancellationToken,
    measure_task: JoinHandle<()>,
    forward_cancel: CancellationToken,
    server_task: JoinHandle<()>,
    forwarder_task: JoinHandle<()>,
    /// Present when fault injection is enabled.
    faults: Option<GossipFaults>,
}

impl NodeCluster {
    /// Binds the forward listener, joins gossip, starts the forward server, the forwarder and
    /// the measuring task.
    pub(super) async fn start(start: ClusterStart<'_>) -> anyhow::Result<NodeCluster> {
        let section = start.section;
        let gossip_listen = crate::config::parse_address(&section.gossip)
            .map_err(|message| anyhow::anyhow!("cluster.gossip: {message}"))?;
        let gossip_advertise = match &section.gossip_advertise {
            Some(text) => Some(
                crate::config::parse_address(text)
                    .map_err(|message| anyhow::anyhow!("cluster.gossip-advertise: {message}"))?,
            ),
            None => None,
        };
        let forward_listen = crate::config::parse_address(&section.forward)
            .map_err(|message| anyhow::anyhow!("cluster.forward: {message}"))?;
        let forward_listener = tokio::net::TcpListener::bind(forward_listen)
            .await
            .with_context(|| format!("cannot listen for forwarding on {forward_listen}"))?;
        let forward_addr = forward_listener.local_addr()?;
        // Peers must reach the published addresses: a wildcard bind is advertised with the
        // gossip address's IP.
        let reachable_ip = gossip_advertise.unwrap_or(gossip_listen).ip();
        let advertised = |addr: SocketAddr| {
            if addr.ip().is_unspecified() && !reachable_ip.is_unspecified() {
                SocketAddr::new(reachable_ip, addr.port())
            } else {
                addr
            }
        };
        let faults = GossipFaults::new();
        let handle = crate::cluster::start_with_faults(
            ClusterConfig {
                node_id: start.node_id.to_string(),
                cluster_id: section.cluster_id.clone(),
                gossip_listen,
                gossip_advertise,
                seeds: section.seeds.clone(),
                priority: section.priority,
                may_be_master: section.may_be_master,
                forward_addr: advertised(forward_addr),
                // Without an API the address is published as 0.0.0.0:0 (nothing to query).
                api_addr: advertised(
                    start
                        .api_addr
                        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                ),
                timing: ClusterTiming::default(),
            },
            faults.clone(),
        )
        .await
        .context("cannot join the cluster")?;
        let handle = Arc::new(handle);
        let gossip_addr = handle.gossip_addr();
        let view = handle.watch();

        let forward_cancel = CancellationToken::new();
        let server_stats = Arc::new(ServerStats::default());
        let server_context = Arc::new(ServerContext {
            config: ServerConfig::new(section.cluster_id.clone()),
            store: start.store.clone(),
            view: handle.watch(),
            stats: server_stats.clone(),
        });
        let server_task = tokio::spawn(crate::forward::server::run(
            forward_listener,
            server_context,
            forward_cancel.clone(),
        ));

        // What a master acknowledged receiving from this data directory before the restart.
        // The listeners are not running yet: the store holds what it held at start.
        let saved = acked_mark::load(start.data_dir, start.node_id);
        let local_hwm = start.store.high_water_mark(start.node_id);
        let spool = StoreSpool::new(start.data_dir, start.node_id, start.store.clone())
            .with_context(|| format!("cannot read the spool in {}", start.data_dir.display()))?
            .with_forwarded_before(saved.is_some().then_some(local_hwm));
        let forwarder_stats = Arc::new(ForwarderStats::default());
        if let Some(acknowledged) = saved {
            forwarder_stats
                .sent_acked_seq
                .store(acknowledged, Ordering::Relaxed);
            // Counted as forwarded until a master's handshake says otherwise.
            forwarder_stats
                .acked_seq
                .store(acknowledged.min(local_hwm), Ordering::Relaxed);
            tracing::info!(acknowledged, "acknowledged by a master before the restart");
        }
        let forwarder = crate::forward::client::run(
            spool,
            handle.watch(),
            forwarder_config(&section.cluster_id, start.node_id),
            forwarder_stats.clone(),
            forward_cancel.clone(),
        );
        let forwarder_task = tokio::spawn(async move {
            if let Err(error) = forwarder.await {
                tracing::error!(%error, "the forwarder could not start; records are not forwarded");
            }
        });

        let spool_gate = Arc::new(SpoolGate::new(section.spool_max_bytes));
        handle.register_metrics(start.registry);
        crate::forward::metrics::register(
            start.registry,
            forwarder_stats.clone(),
            server_stats.clone(),
        );
        let spool_gauges = SpoolGauges::register(start.registry);
        spool_gate.register_metrics(start.registry);
        let measure_cancel = CancellationToken::new();
        let measure_task = tokio::spawn(
            Measurer {
                handle: handle.clone(),
                store: start.store,
                origin: start.node_id.to_string(),
                data_dir: start.data_dir.to_path_buf(),
                saved_acked: saved,
                save_failing: false,
                forwarder_stats,
                spool_gauges,
                spool_gate: spool_gate.clone(),
            }
            .run(measure_cancel.clone()),
        );
        Ok(NodeCluster {
            gossip_addr,
            forward_addr,
            generation: handle.generation(),
            handle,
            view,
            spool_gate,
            measure_cancel,
            measure_task,
            forward_cancel,
            server_task,
            forwarder_task,
            faults: (std::env::var(FAULT_INJECTION_ENV).as_deref() == Ok("1")).then_some(faults),
        })
    }

    /// `POST /debug/gossip-faults` when fault injection is enabled (see `FAULT_INJECTION_ENV`).
    pub(super) fn fault_router(&self) -> Option<axum::Router> {
        let faults = self.faults.clone()?;
        tracing::warn!(
            "fault injection enabled: POST /debug/gossip-faults can partition this node"
        );
        let handler = move |body: String| {
            let faults = faults.clone();
            async move {
                match body.trim() {
                    "isolate" => faults.isolate(),
                    "heal" => faults.heal(),
                    other => {
                        return (
                            axum::http::StatusCode::BAD_REQUEST,
                            format!("unknown fault {other:?}: use isolate or heal\n"),
                        )
                    }
                }
                tracing::warn!(fault = body.trim(), "gossip fault injected");
                (axum::http::StatusCode::OK, "ok\n".to_string())
            }
        };
        Some(axum::Router::new().route("/debug/gossip-faults", axum::routing::post(handler)))
    }

    /// Closed while the unforwarded backlog is over `spool-max-bytes`: ingest waits, so TCP
    /// senders are pushed back and UDP datagrams are dropped (and counted) by the listeners.
    pub(super) fn spool_gate(&self) -> Arc<SpoolGate> {
        self.spool_gate.clone()
    }

    /// Produces this node's `/v1/status` answer.
    pub(super) fn status_fn(&self) -> impl Fn() -> Status + Send + Sync + 'static {
        let view = self.view.clone();
        let generation = self.generation;
        move || Status::from_view(&view.borrow(), generation)
    }

    /// Leaves the cluster (peers elect a new master at once if this was it), then stops the
    /// forward server (it lets connections acknowledge what they appended) and the forwarder.
    /// Call after the listeners drained into the store and before the store closes.
    pub(super) async fn shutdown(self, deadline: tokio::time::Instant) {
        self.measure_cancel.cancel();
        let _ = tokio::time::timeout_at(deadline, self.measure_task).await;
        match Arc::try_unwrap(self.handle) {
            Ok(handle) => {
                if tokio::time::timeout_at(deadline, handle.leave())
                    .await
                    .is_err()
                {
                    tracing::warn!("leaving the cluster took too long");
                }
            }
            // Only the measuring task shares the handle, and it has ended.
            Err(_) => {
                tracing::warn!("the cluster handle is still shared; stopping without a goodbye")
            }
        }
        self.forward_cancel.cancel();
        if tokio::time::timeout_at(deadline, self.server_task)
            .await
            .is_err()
        {
            tracing::warn!("forward connections did not drain in time");
        }
        if tokio::time::timeout_at(deadline, self.forwarder_task)
            .await
            .is_err()
        {
            tracing::warn!("the forwarder did not stop in time");
        }
    }
}

/// The forwarder's settings: the defaults, with retries capped at `FORWARD_RETRY_MAX` so a
/// forwarder that reached a new master before it took over (peers detect a death at slightly
/// different times and it answers "not master" meanwhile) connects soon after it does.
fn forwarder_config(cluster_id: &str, node_id: &str) -> ForwarderConfig {
    let mut config = ForwarderConfig::new(cluster_id, node_id);
    config.retry_max = config.retry_max.min(FORWARD_RETRY_MAX);
    config
}

/// Measures spool size and forward lag, publishes them, and drives the spool gate.
struct Measurer {
    handle: Arc<ClusterHandle>,
    store: StoreHandle,
    origin: String,
    data_dir: std::path::PathBuf,
    /// The acknowledged mark last saved in the data directory (`acked_mark`).
    saved_acked: Option<u64>,
    save_failing: bool,
    forwarder_stats: Arc<ForwarderStats>,
    spool_gauges: SpoolGauges,
    spool_gate: Arc<SpoolGate>,
}

impl Measurer {
    /// Saves the mark of what a master acknowledged receiving from this data directory when
    /// it moved (at most once per `SAVE_ACKED_EVERY`, and at shutdown). A failure is logged
    /// once per run of failures; the file is only a hint.
    fn save_acked(&mut self) {
        let acknowledged = self.forwarder_stats.sent_acked_seq.load(Ordering::Relaxed);
        if acknowledged == 0 || self.saved_acked == Some(acknowledged) {
            return;
        }
        match acked_mark::save(&self.data_dir, &self.origin, acknowledged) {
            Ok(()) => {
                self.saved_acked = Some(acknowledged);
                self.save_failing = false;
            }
            Err(error) => {
                if !self.save_failing {
                    tracing::warn!(%error, file = acked_mark::FILE, "cannot save the acknowledged mark");
                }
                self.save_failing = true;
            }
        }
    }

    async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(MEASURE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round = 0u32;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let stats = self.store.stats();
            let is_master = self.handle.view().is_master();
            let acknowledged = self.forwarder_stats.acked_seq.load(Ordering::Relaxed);
            // Retention keeps whatever of this node's records no master has acknowledged.
            self.store
                .set_unforwarded_after((!is_master).then_some(acknowledged));
            let forward_lag = if is_master {
                0
            } else {
                self.store
                    .high_water_mark(&self.origin)
                    .saturating_sub(acknowledged)
            };
            let backlog_bytes =
                backlog_bytes(forward_lag, stats.appended_bytes, stats.appended_records);
            self.spool_gate.measured(backlog_bytes, !is_master);
            self.spool_gauges.set(stats.bytes_on_disk, forward_lag);
            if round % PUBLISH_EVERY == 0 {
                self.handle
                    .publish_stats(stats.bytes_on_disk, forward_lag)
                    .await;
            }
            if round % SAVE_ACKED_EVERY == 0 {
                self.save_acked();
            }
            round = round.wrapping_add(1);
        }
        self.save_acked();
        // Nobody waits on a closed gate after shutdown.
        self.spool_gate.open();
    }
}

/// Estimated bytes of `forward_lag` records: the lag times the store's mean record size.
fn backlog_bytes(forward_lag: u64, appended_bytes: u64, appended_records: u64) -> u64 {
    if appended_records == 0 {
        return 0;
    }
    let mean = appended_bytes as f64 / appended_records as f64;
    (forward_lag as f64 * mean) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_is_lag_times_mean_record_size() {
        assert_eq!(backlog_bytes(0, 1000, 10), 0);
        assert_eq!(backlog_bytes(5, 0, 0), 0);
        assert_eq!(backlog_bytes(5, 1000, 10), 500);
    }
}
