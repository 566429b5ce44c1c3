//! The node's cluster side: joins the gossip cluster, serves forwarded batches (the forward
//! server answers only while this node is master), ships this node's own records to the
//! master (`forward::outbound`; the forwarder idles while this node is master), hands the
//! forwarder's progress on (`progress()`, for the spool gate), publishes spool size and
//! forward lag in gossip once a second, and leaves the cluster cleanly on shutdown. With `STARLING_FAULT_INJECTION=1` in the
//! environment (tests only) it also serves `POST /debug/gossip-faults` to partition the node.
//!
//! One store per node: the listeners append with this node's origin and the store assigns the
//! sequences; that store is the node's spool, and while the node is master it is also the
//! cluster store. This file only wires `cluster` and `forward` to the store; it owns no
//! protocol, no election rule, no file format and not the acknowledged mark (`forward`
//! does).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::status::Status;
use crate::cluster::{ClusterConfig, ClusterHandle, ClusterTiming, ClusterView, GossipFaults};
use crate::config::ClusterSection;
use crate::forward::metrics::SpoolGauges;
use crate::forward::outbound::{Outbound, OutboundStart};
use crate::forward::progress::Progress;
use crate::forward::server::{ServerConfig, ServerContext, ServerStats};
use crate::store::budget::ByteBudget;
use crate::store::StoreHandle;

/// How often spool size and forward lag are published in gossip (every change is gossiped)
/// and measured for `/metrics`.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

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
    /// The node's metrics registry: the cluster and forwarding families go here.
    pub registry: &'a mut prometheus_client::registry::Registry,
    /// The node's byte budget: batches from forwarders take from it too.
    pub budget: Arc<ByteBudget>,
}

/// The running cluster side of a node.
pub(super) struct NodeCluster {
    pub gossip_addr: SocketAddr,
    pub forward_addr: SocketAddr,
    handle: Arc<ClusterHandle>,
    view: watch::Receiver<ClusterView>,
    generation: u64,
    outbound: Outbound,
    publish_cancel: CancellationToken,
    publish_task: JoinHandle<()>,
    server_cancel: CancellationToken,
    server_task: JoinHandle<()>,
    /// Present when fault injection is enabled.
    faults: Option<GossipFaults>,
}

impl NodeCluster {
    /// Binds the forward listener, joins gossip, starts the forward server, outbound
    /// forwarding and the publishing task.
    pub(super) async fn start(start: ClusterStart<'_>) -> anyhow::Result<NodeCluster> {
        let section = start.section;
        let (gossip_listen, gossip_advertise) = (section.gossip, section.gossip_advertise);
        let forward_listen = section.forward;
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
                seeds: section.seeds.iter().map(ToString::to_string).collect(),
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
                gossip_keys_file: section.gossip_keys_file.clone(),
                gossip_accept_plaintext: section.gossip_accept_plaintext,
            },
            faults.clone(),
        )
        .await
        .context("cannot join the cluster")?;
        let handle = Arc::new(handle);
        let gossip_addr = handle.gossip_addr();
        let view = handle.watch();

        let server_cancel = CancellationToken::new();
        let server_stats = Arc::new(ServerStats::default());
        let server_context = Arc::new(ServerContext {
            config: ServerConfig::new(section.cluster_id.clone()),
            store: start.store.clone(),
            view: handle.watch(),
            stats: server_stats.clone(),
            budget: start.budget.clone(),
        });
        let server_task = tokio::spawn(crate::forward::server::run(
            forward_listener,
            server_context,
            server_cancel.clone(),
        ));

        let outbound = Outbound::start(OutboundStart {
            cluster_id: &section.cluster_id,
            origin: start.node_id,
            data_dir: start.data_dir,
            store: start.store.clone(),
            view: handle.watch(),
        })
        .with_context(|| format!("cannot read the spool in {}", start.data_dir.display()))?;

        handle.register_metrics(start.registry);
        crate::forward::metrics::register(start.registry, outbound.stats(), server_stats);
        let spool_gauges = SpoolGauges::register(start.registry);
        let publish_cancel = CancellationToken::new();
        let publish_task = tokio::spawn(publish(
            handle.clone(),
            start.store,
            start.node_id.to_string(),
            outbound.progress(),
            spool_gauges,
            publish_cancel.clone(),
        ));
        Ok(NodeCluster {
            gossip_addr,
            forward_addr,
            generation: handle.generation(),
            handle,
            view,
            outbound,
            publish_cancel,
            publish_task,
            server_cancel,
            server_task,
            faults: (std::env::var(FAULT_INJECTION_ENV).as_deref() == Ok("1")).then_some(faults),
        })
    }

    /// The gossip fault seam when fault injection is enabled (see `FAULT_INJECTION_ENV`).
    pub(super) fn faults(&self) -> Option<GossipFaults> {
        self.faults.clone()
    }

    /// The forwarder's progress, pushed on every change (the spool gate follows it).
    pub(super) fn progress(&self) -> watch::Receiver<Progress> {
        self.outbound.progress()
    }

    /// Produces this node's `/v1/status` answer.
    pub(super) fn status_fn(&self) -> impl Fn() -> Status + Send + Sync + 'static {
        let view = self.view.clone();
        let generation = self.generation;
        move || Status::from_view(&view.borrow(), generation)
    }

    /// Leaves the cluster (peers elect a new master at once if this was it), then stops the
    /// forward server (it lets connections acknowledge what they appended) and the forwarder,
    /// and saves the acknowledged mark a last time. Call after the listeners drained into the
    /// store and before the store closes.
    pub(super) async fn shutdown(self, deadline: tokio::time::Instant) {
        self.publish_cancel.cancel();
        let _ = tokio::time::timeout_at(deadline, self.publish_task).await;
        match Arc::try_unwrap(self.handle) {
            Ok(handle) => {
                if tokio::time::timeout_at(deadline, handle.leave())
                    .await
                    .is_err()
                {
                    tracing::warn!("leaving the cluster took too long");
                }
            }
            // Only the publishing task shares the handle, and it has ended.
            Err(_) => {
                tracing::warn!("the cluster handle is still shared; stopping without a goodbye")
            }
        }
        self.server_cancel.cancel();
        let server = async {
            if tokio::time::timeout_at(deadline, self.server_task)
                .await
                .is_err()
            {
                tracing::warn!("forward connections did not drain in time");
            }
        };
        tokio::join!(server, self.outbound.stop(deadline));
    }
}

/// Every `PUBLISH_INTERVAL` until `cancel`: publishes the spool size and forward lag in
/// gossip and sets their `/metrics` gauges. Neither retention nor the
/// spool gate learns anything from here: the forwarder pushes its progress to them.
async fn publish(
    handle: Arc<ClusterHandle>,
    store: StoreHandle,
    origin: String,
    progress: watch::Receiver<Progress>,
    spool_gauges: SpoolGauges,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let spool_bytes = store.stats().bytes_on_disk;
        let forward_lag = progress.borrow().lag(store.high_water_mark(&origin));
        spool_gauges.set(spool_bytes, forward_lag);
        handle.publish_stats(spool_bytes, forward_lag).await;
    }
}
