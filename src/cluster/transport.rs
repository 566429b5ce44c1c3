//! The gossip transport seam: chitchat's UDP socket, opened before chitchat starts (so a caller
//! can bind port 0 and learn the address to advertise), wrapped with fault injection.
//!
//! `GossipFaults` is a shared switchboard a test holds on to: it drops datagrams to and/or from
//! chosen peers, which is how tests build symmetric and one-way partitions. In production it
//! stays empty and costs one uncontended lock per datagram. This module does not interpret
//! gossip content.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpTransport};
use chitchat::ChitchatEnvelope;

/// Which peers' datagrams are dropped, in each direction. Cloning shares the switchboard.
#[derive(Clone, Debug, Default)]
pub struct GossipFaults {
    inner: Arc<Mutex<FaultSet>>,
}

#[derive(Debug, Default)]
struct FaultSet {
    drop_to: HashSet<SocketAddr>,
    drop_from: HashSet<SocketAddr>,
    drop_all: bool,
}

impl GossipFaults {
    pub fn new() -> GossipFaults {
        GossipFaults::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut FaultSet) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Drops everything sent to and received from `peer` (a symmetric cut of one link).
    pub fn cut(&self, peer: SocketAddr) {
        self.with(|set| {
            set.drop_to.insert(peer);
            set.drop_from.insert(peer);
        });
    }

    /// Drops only what is sent to `peer` (one-way loss).
    pub fn drop_sends_to(&self, peer: SocketAddr) {
        self.with(|set| set.drop_to.insert(peer));
    }

    /// Drops only what is received from `peer` (one-way loss).
    pub fn drop_receives_from(&self, peer: SocketAddr) {
        self.with(|set| set.drop_from.insert(peer));
    }

    /// Drops every datagram in both directions (the node is isolated).
    pub fn isolate(&self) {
        self.with(|set| set.drop_all = true);
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.with(|set| *set = FaultSet::default());
    }

    fn drops_send(&self, to: SocketAddr) -> bool {
        self.with(|set| set.drop_all || set.drop_to.contains(&to))
    }

    fn drops_recv(&self, from: SocketAddr) -> bool {
        self.with(|set| set.drop_all || set.drop_from.contains(&from))
    }
}

/// Opens chitchat's UDP socket on `listen` and wraps it with `faults`. Returns the socket and
/// the address it is bound to (port 0 resolved).
pub(crate) async fn open_socket(
    listen: SocketAddr,
    faults: GossipFaults,
) -> anyhow::Result<(Box<dyn Socket>, SocketAddr)> {
    let socket = UdpTransport.open(listen).await?;
    let local_addr = socket.local_addr()?;
    Ok((Box::new(FaultySocket { socket, faults }), local_addr))
}

/// A `Transport` that hands chitchat the socket opened beforehand, once.
pub(crate) struct PreopenedTransport {
    socket: Mutex<Option<Box<dyn Socket>>>,
}

impl PreopenedTransport {
    pub(crate) fn new(socket: Box<dyn Socket>) -> PreopenedTransport {
        PreopenedTransport {
            socket: Mutex::new(Some(socket)),
        }
    }
}

#[async_trait]
impl Transport for PreopenedTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        self.socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| anyhow::anyhow!("gossip socket for {listen_addr} was already opened"))
    }
}

struct FaultySocket {
    socket: Box<dyn Socket>,
    faults: GossipFaults,
}

#[async_trait]
impl Socket for FaultySocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if self.faults.drops_send(to) {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        self.socket.send(to, envelope).await
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let outcome = self.socket.recv().await?;
            if !self.faults.drops_recv(outcome.from_addr) {
                return Ok(outcome);
            }
        }
    }
}
