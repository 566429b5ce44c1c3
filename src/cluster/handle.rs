//! The running membership: starts chitchat, keeps the `ClusterView` up to date, publishes this
//! node's election claim, and leaves cleanly.
//!
//! One background task owns the chitchat handle. It recomputes the view when the live set
//! changes, when a peer announces it is leaving, and on a short tick (for the election's
//! grace timers). Dropping the `ClusterHandle` stops gossip without a goodbye (like a crash);
//! `leave` announces the departure first. This file does not decide who is master (see
//! `election`) and does not interpret members beyond building the view.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use tokio::sync::{mpsc, oneshot, watch, Mutex, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};

use super::election::{ElectionConfig, Elector};
use super::seal::Keyring;
use super::transport::{
    open_socket, spawn_key_reload, GossipFaults, GossipSeal, PreopenedTransport,
};
use super::view::{members_from_nodes, ClusterView, NodeSnapshot};
use super::{keys, ClusterConfig, ClusterError};

/// How often the view is recomputed even when gossip reports no change.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// Capacity of the command channel from the handle to its task.
const COMMAND_CHANNEL_CAPACITY: usize = 8;

/// A handle on this node's cluster membership.
pub struct ClusterHandle {
    view_rx: watch::Receiver<ClusterView>,
    command_tx: mpsc::Sender<Command>,
    chitchat: Arc<Mutex<Chitchat>>,
    gossip_addr: SocketAddr,
    generation: u64,
    master_changes: Arc<AtomicU64>,
    seal: Arc<GossipSeal>,
    task: JoinHandle<()>,
    _stop_on_drop: DropGuard,
}

enum Command {
    Leave(oneshot::Sender<()>),
}

enum Event {
    Refresh,
    Leave(oneshot::Sender<()>),
    Stop,
}

/// Joins the cluster described by `config`.
pub async fn start(config: ClusterConfig) -> Result<ClusterHandle, ClusterError> {
    start_with_faults(config, GossipFaults::new()).await
}

/// Like `start`, with a fault-injection switchboard on the gossip socket (tests).
pub async fn start_with_faults(
    config: ClusterConfig,
    faults: GossipFaults,
) -> Result<ClusterHandle, ClusterError> {
    if config.node_id.is_empty() {
        return Err(ClusterError::EmptyNodeId);
    }
    let keys = match &config.gossip_keys_file {
        Some(path) => {
            let keys_error = |reason: String| ClusterError::Keys {
                path: path.clone(),
                reason,
            };
            let text =
                std::fs::read_to_string(path).map_err(|error| keys_error(error.to_string()))?;
            let keyring = Keyring::parse(&text).map_err(keys_error)?;
            Some((path.clone(), text, keyring))
        }
        None => None,
    };
    let seal = Arc::new(GossipSeal::new(
        keys.as_ref().map(|(_, _, keyring)| keyring.clone()),
        config.gossip_accept_plaintext,
        config.cluster_id.clone(),
    ));
    let (socket, bound_addr) = open_socket(config.gossip_listen, seal.clone(), faults)
        .await
        .map_err(|error| ClusterError::Bind {
            addr: config.gossip_listen,
            reason: format!("{error:#}"),
        })?;
    let advertise = config.gossip_advertise.unwrap_or(bound_addr);
    if advertise.ip().is_unspecified() {
        return Err(ClusterError::UnspecifiedAdvertise { addr: advertise });
    }
    let generation = next_generation();
    let timing = config.timing;
    let chitchat_config = ChitchatConfig {
        chitchat_id: ChitchatId::new(config.node_id.clone(), generation, advertise),
        cluster_id: config.cluster_id.clone(),
        gossip_interval: timing.gossip_interval,
        listen_addr: bound_addr,
        seed_nodes: config.seeds.clone(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: timing.phi_threshold,
            sampling_window_size: 1_000,
            max_interval: timing.failure_max_interval,
            initial_interval: timing.failure_initial_interval,
            dead_node_grace_period: timing.dead_node_grace,
        },
        marked_for_deletion_grace_period: timing.deletion_grace,
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    };
    let initial_keys = vec![
        (
            keys::FORWARD_ADDR.to_string(),
            config.forward_addr.to_string(),
        ),
        (keys::API_ADDR.to_string(), config.api_addr.to_string()),
        (keys::PRIORITY.to_string(), config.priority.to_string()),
        (
            keys::MAY_BE_MASTER.to_string(),
            keys::encode_bool(config.may_be_master).to_string(),
        ),
        (
            keys::VERSION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (keys::ROLE.to_string(), keys::ROLE_FOLLOWER.to_string()),
        (keys::MASTER.to_string(), String::new()),
    ];
    let transport = PreopenedTransport::new(socket);
    let chitchat_handle = spawn_chitchat(chitchat_config, initial_keys, &transport)
        .await
        .map_err(|error| ClusterError::Start {
            addr: bound_addr,
            reason: format!("{error:#}"),
        })?;
    let chitchat = chitchat_handle.chitchat();
    let expects_peers = config.seeds.iter().any(|seed| {
        seed.parse::<SocketAddr>()
            .map_or(true, |addr| addr != advertise && addr != bound_addr)
    });
    let elector = Elector::new(
        ElectionConfig {
            master_grace: timing.master_grace,
            settle_timeout: timing.settle_timeout,
            expects_peers,
        },
        Instant::now(),
    );
    let initial_view = ClusterView {
        self_id: config.node_id.clone(),
        members: Vec::new(),
        master: None,
    };
    let (view_tx, view_rx) = watch::channel(initial_view);
    let (command_tx, command_rx) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
    let cancel = CancellationToken::new();
    if let Some((path, text, keyring)) = keys {
        info!(path = %path.display(), keys = keyring.len(), accept_plaintext = config.gossip_accept_plaintext, "gossip is sealed");
        spawn_key_reload(seal.clone(), path, text, cancel.clone());
    }
    info!(node_id = %config.node_id, generation, gossip = %advertise, seeds = ?config.seeds, "joining cluster");
    let master_changes = Arc::new(AtomicU64::new(0));
    let membership = Membership {
        master_changes: master_changes.clone(),
        self_id: config.node_id,
        chitchat_handle,
        elector,
        view_tx,
        published: Published::default(),
        gossip_interval: timing.gossip_interval,
    };
    let task = tokio::spawn(membership.run(command_rx, cancel.clone()));
    Ok(ClusterHandle {
        view_rx,
        command_tx,
        chitchat,
        gossip_addr: advertise,
        generation,
        master_changes,
        seal,
        task,
        _stop_on_drop: cancel.drop_guard(),
    })
}

/// Unix nanoseconds, strictly increasing within this process (several nodes in one test).
fn next_generation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    let previous = LAST.fetch_max(now, Ordering::SeqCst);
    if previous >= now {
        LAST.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        now
    }
}

impl ClusterHandle {
    /// The current view.
    pub fn view(&self) -> ClusterView {
        self.view_rx.borrow().clone()
    }

    /// A receiver that sees every change of the view (members, liveness, keys, master).
    pub fn watch(&self) -> watch::Receiver<ClusterView> {
        self.view_rx.clone()
    }

    /// The address peers gossip to (the bound address when none was configured).
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// This incarnation's generation (start time in Unix nanoseconds).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many times the master this node follows has changed (for `/metrics`).
    pub fn master_changes(&self) -> u64 {
        self.master_changes.load(Ordering::Relaxed)
    }

    /// Registers the cluster's families (members, mastership, master changes) in the node's
    /// metrics registry; they read this handle's view at scrape time.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        super::metrics::register(
            registry,
            self.watch(),
            self.master_changes.clone(),
            self.seal.clone(),
        );
    }

    /// The sealed transport's counters (tests).
    #[cfg(test)]
    pub(crate) fn seal_stats(&self) -> &super::transport::SealStats {
        &self.seal.stats
    }

    /// Sets a key of this node's gossip state (tests).
    #[cfg(test)]
    pub(crate) async fn set_key(&self, key: &str, value: &str) {
        self.chitchat.lock().await.self_node_state().set(key, value);
    }

    /// The value of `key` in the state of the newest incarnation of `node_id` (tests).
    #[cfg(test)]
    pub(crate) async fn key_of(&self, node_id: &str, key: &str) -> Option<String> {
        let chitchat = self.chitchat.lock().await;
        let state = chitchat
            .node_states()
            .iter()
            .filter(|(id, _)| &*id.node_id == node_id)
            .max_by_key(|(id, _)| id.generation_id)?
            .1;
        state.get(key).map(str::to_string)
    }

    /// Publishes this node's spool size and forward lag for `starling status` (rate-limit the
    /// calls: every change is gossiped).
    pub async fn publish_stats(&self, spool_bytes: u64, forward_lag: u64) {
        let mut chitchat = self.chitchat.lock().await;
        let state = chitchat.self_node_state();
        state.set(keys::SPOOL_BYTES, spool_bytes);
        state.set(keys::FORWARD_LAG, forward_lag);
    }

    /// Announces a clean shutdown (peers elect a new master at once if this was the master),
    /// waits about one gossip round for the news to spread, then stops gossiping.
    pub async fn leave(self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.command_tx.send(Command::Leave(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
        let _ = self.task.await;
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Published {
    claims_master: bool,
    follows: Option<String>,
}

struct Membership {
    self_id: String,
    master_changes: Arc<AtomicU64>,
    chitchat_handle: ChitchatHandle,
    elector: Elector,
    view_tx: watch::Sender<ClusterView>,
    published: Published,
    gossip_interval: Duration,
}

impl Membership {
    async fn run(mut self, mut command_rx: mpsc::Receiver<Command>, cancel: CancellationToken) {
        let chitchat = self.chitchat_handle.chitchat();
        let leaving_notify = Arc::new(Notify::new());
        let (mut live_rx, _leaving_listener) = {
            let guard = chitchat.lock().await;
            let notify = leaving_notify.clone();
            let listener = guard.subscribe_event(keys::LEAVING, move |_| notify.notify_one());
            (guard.live_nodes_watcher(), listener)
        };
        let mut tick = tokio::time::interval(REFRESH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => Event::Stop,
                changed = live_rx.changed() => match changed {
                    Ok(()) => Event::Refresh,
                    Err(_) => {
                        warn!("gossip stopped");
                        Event::Stop
                    }
                },
                _ = leaving_notify.notified() => Event::Refresh,
                _ = tick.tick() => Event::Refresh,
                command = command_rx.recv() => match command {
                    Some(Command::Leave(done_tx)) => Event::Leave(done_tx),
                    None => Event::Stop,
                },
            };
            match event {
                Event::Refresh => self.refresh().await,
                Event::Leave(done_tx) => {
                    self.leave().await;
                    let _ = done_tx.send(());
                    return;
                }
                Event::Stop => break,
            }
        }
        // Dropped without `leave`: stop gossiping without a goodbye.
        self.chitchat_handle.abort();
    }

    async fn refresh(&mut self) {
        let chitchat = self.chitchat_handle.chitchat();
        let nodes = snapshot(&*chitchat.lock().await);
        let members = members_from_nodes(nodes);
        let master = self.elector.decide(&self.self_id, &members, Instant::now());
        let wanted = Published {
            claims_master: master.as_deref() == Some(self.self_id.as_str()),
            follows: master.clone(),
        };
        if wanted != self.published {
            info!(master = ?master, claims_master = wanted.claims_master, "master changed");
            self.master_changes.fetch_add(1, Ordering::Relaxed);
            let mut guard = chitchat.lock().await;
            let state = guard.self_node_state();
            let role = if wanted.claims_master {
                keys::ROLE_MASTER
            } else {
                keys::ROLE_FOLLOWER
            };
            state.set(keys::ROLE, role);
            state.set(keys::MASTER, wanted.follows.as_deref().unwrap_or(""));
            self.published = wanted;
        }
        let view = ClusterView {
            self_id: self.self_id.clone(),
            members,
            master,
        };
        self.view_tx.send_if_modified(|current| {
            if *current == view {
                false
            } else {
                *current = view;
                true
            }
        });
    }

    async fn leave(self) {
        let chitchat = self.chitchat_handle.chitchat();
        let peers: Vec<SocketAddr> = {
            let mut guard = chitchat.lock().await;
            let state = guard.self_node_state();
            state.set(keys::LEAVING, keys::encode_bool(true));
            state.set(keys::ROLE, keys::ROLE_FOLLOWER);
            state.set(keys::MASTER, "");
            let self_id = guard.self_chitchat_id().clone();
            guard
                .live_nodes()
                .filter(|id| **id != self_id)
                .map(|id| id.gossip_advertise_addr)
                .collect()
        };
        info!(num_peers = peers.len(), "leaving cluster");
        // Push the news now rather than at the next round, twice in case a datagram is lost.
        for round in 0..2 {
            for peer in &peers {
                if let Err(error) = self.chitchat_handle.gossip(*peer) {
                    debug!(%peer, %error, "cannot gossip leave");
                }
            }
            if round == 0 {
                tokio::time::sleep(self.gossip_interval / 4).await;
            }
        }
        tokio::time::sleep(self.gossip_interval).await;
        self.view_tx.send_modify(|view| view.master = None);
        if let Err(error) = self.chitchat_handle.shutdown().await {
            warn!(error = %format!("{error:#}"), "gossip did not stop cleanly");
        }
    }
}

/// Raw node states of every incarnation chitchat knows, with liveness.
fn snapshot(chitchat: &Chitchat) -> Vec<NodeSnapshot> {
    let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    chitchat
        .node_states()
        .iter()
        .map(|(id, state)| NodeSnapshot {
            node_id: id.node_id.to_string(),
            generation: id.generation_id,
            gossip_addr: id.gossip_advertise_addr,
            alive: live.contains(id),
            keys: state
                .key_values()
                .filter(|(key, _)| key.starts_with(keys::PREFIX))
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        })
        .collect()
}
