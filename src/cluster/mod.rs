//! Cluster membership and master election: the only module that imports `chitchat`.
//!
//! `start` runs chitchat over UDP with settings for a log cluster, publishes this node's keys
//! (`keys`), and keeps a typed `ClusterView` (members keyed by node id, newest generation only,
//! plus the elected master) behind a `ClusterHandle`. The election rule lives in `election`
//! (pure), the view in `view` (pure), the UDP socket with its sealing and fault-injection seam
//! in `transport`, the keyring and the sealed datagram format in `seal` (pure). This module
//! does not forward records, touch the store or know about HTTP; the only file it reads is
//! the gossip keyring.

mod election;
mod handle;
pub mod keys;
mod metrics;
pub mod seal;
pub mod status;
mod transport;
mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use election::{choose, ElectionConfig, Elector};
pub use handle::{start, start_with_faults, ClusterHandle};
pub use transport::GossipFaults;
pub use view::{members_from_nodes, ClusterView, Member, NodeSnapshot};

/// Everything a node needs to join the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub node_id: String,
    /// Nodes with a different cluster id ignore each other.
    pub cluster_id: String,
    /// UDP address chitchat binds (port 0: any free port, see `ClusterHandle::gossip_addr`).
    pub gossip_listen: SocketAddr,
    /// Address peers gossip to; `None`: the bound address (which must then be a concrete IP).
    pub gossip_advertise: Option<SocketAddr>,
    /// `ip:port` or `host:port` of nodes to join through; host names are re-resolved by chitchat.
    pub seeds: Vec<String>,
    /// Higher wins the election.
    pub priority: u32,
    pub may_be_master: bool,
    /// Published so forwarders can reach this node when it is master.
    pub forward_addr: SocketAddr,
    /// Published for `starling status`.
    pub api_addr: SocketAddr,
    pub timing: ClusterTiming,
    /// Gossip keyring file (one base64 key per line, first seals, all open; re-read when it
    /// changes); `None`: plaintext gossip.
    pub gossip_keys_file: Option<PathBuf>,
    /// With a keyring, also accept plaintext gossip (turning encryption on in a running
    /// cluster).
    pub gossip_accept_plaintext: bool,
}

/// Gossip, failure detection and election timing. The defaults gossip twice a second with a
/// phi-accrual threshold of 8: a dead node is detected in about 2–3.5 s (`bench/failover.sh`
/// measures kill -9 to a new master storing at about 3.3 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterTiming {
    pub gossip_interval: Duration,
    /// Phi-accrual threshold: a node is dead after about `phi_threshold` × its mean heartbeat
    /// interval of silence.
    pub phi_threshold: f64,
    /// Prior mean heartbeat interval; kept close to `gossip_interval` so a young cluster does
    /// not detect deaths slowly.
    pub failure_initial_interval: Duration,
    /// Heartbeat intervals longer than this are not sampled.
    pub failure_max_interval: Duration,
    /// How long a dead node stays listed before it is forgotten.
    pub dead_node_grace: Duration,
    /// How long deleted keys are kept as tombstones.
    pub deletion_grace: Duration,
    /// How long a master that stopped looking alive is still followed (hysteresis).
    pub master_grace: Duration,
    /// How long a node with seeds waits to hear a peer before it may elect itself.
    pub settle_timeout: Duration,
}

impl Default for ClusterTiming {
    fn default() -> Self {
        ClusterTiming {
            gossip_interval: Duration::from_millis(500),
            phi_threshold: 8.0,
            failure_initial_interval: Duration::from_millis(500),
            failure_max_interval: Duration::from_secs(5),
            dead_node_grace: Duration::from_secs(15 * 60),
            deletion_grace: Duration::from_secs(15 * 60),
            master_grace: Duration::from_millis(500),
            settle_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("node id must not be empty")]
    EmptyNodeId,
    #[error("cannot bind gossip socket {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("gossip listens on {addr}: set a gossip advertise address peers can reach")]
    UnspecifiedAdvertise { addr: SocketAddr },
    #[error("cannot load the gossip keys from {path}: {reason}")]
    Keys { path: PathBuf, reason: String },
    #[error("cannot start gossip on {addr}: {reason}")]
    Start { addr: SocketAddr, reason: String },
}

#[cfg(test)]
mod tests;
