//! The gossip transport seam: chitchat's UDP socket, opened before chitchat starts (so a caller
//! can bind port 0 and learn the address to advertise), sealing every datagram when a keyring
//! is configured (`seal`), wrapped with fault injection.
//!
//! `GossipSocket` serializes chitchat's messages itself, so it sees the bytes: with a keyring
//! it seals what it sends and opens what it receives, dropping and counting (by reason) what
//! does not open; with `accept_plaintext` it also takes plaintext gossip and answers a peer
//! whose last datagram was plaintext in plaintext (so nodes that have no key yet keep hearing
//! from it while encryption is turned on). The keyring file is re-read when it changes
//! (`spawn_key_reload`): a key rotation needs no restart.
//!
//! `GossipFaults` is a shared switchboard a test holds on to: it drops datagrams to and/or from
//! chosen peers, which is how tests build symmetric and one-way partitions. In production it
//! stays empty and costs one uncontended lock per datagram. This module does not interpret
//! gossip content.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::seal::{self, Keyring, Opened, Opener, Refusal};

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

/// How often the keyring file is checked for a change.
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Peers remembered as speaking plaintext (with `accept_plaintext`); past it, new ones are
/// answered sealed.
const MAX_PLAINTEXT_PEERS: usize = 4096;
/// At most one warning per this interval about dropped datagrams (they are all counted).
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The gossip's sealing state, shared by the socket, the keyring reload and the metrics.
#[derive(Debug)]
pub(crate) struct GossipSeal {
    /// `None`: plaintext gossip (no keyring configured).
    keyring: RwLock<Option<Arc<Keyring>>>,
    accept_plaintext: bool,
    cluster_id: String,
    pub(crate) stats: SealStats,
}

/// Counters of the sealed transport (read by `metrics`).
#[derive(Debug, Default)]
pub(crate) struct SealStats {
    /// Datagrams dropped, by `Refusal` (index in `Refusal::ALL`).
    pub(crate) dropped: [AtomicU64; 4],
    /// Messages cut into several sealed datagrams because one would pass the UDP limit.
    pub(crate) cut: AtomicU64,
    /// Messages not sent because even cut they would not fit (never seen from chitchat).
    pub(crate) unsendable: AtomicU64,
    /// Keyring file reloads, successful and refused.
    pub(crate) reloads_ok: AtomicU64,
    pub(crate) reloads_failed: AtomicU64,
    /// The longest message chitchat handed the socket, in bytes, before sealing.
    pub(crate) largest_message: AtomicU64,
}

impl GossipSeal {
    pub(crate) fn new(
        keyring: Option<Keyring>,
        accept_plaintext: bool,
        cluster_id: String,
    ) -> GossipSeal {
        GossipSeal {
            keyring: RwLock::new(keyring.map(Arc::new)),
            accept_plaintext,
            cluster_id,
            stats: SealStats::default(),
        }
    }

    fn keyring(&self) -> Option<Arc<Keyring>> {
        self.keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keys in the ring (0: plaintext gossip).
    pub(crate) fn num_keys(&self) -> usize {
        self.keyring().map_or(0, |keyring| keyring.len())
    }

    fn replace(&self, keyring: Keyring) {
        *self.keyring.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keyring));
    }

    fn count(&self, refusal: Refusal) {
        let index = Refusal::ALL
            .iter()
            .position(|r| *r == refusal)
            .expect("listed");
        self.stats.dropped[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// Re-reads the keyring file every [`KEY_RELOAD_INTERVAL`] and swaps the ring in when its
/// content changed and parses; a file that does not parse (or cannot be read) is logged and
/// the old ring stays. Stops with `cancel`.
pub(crate) fn spawn_key_reload(
    seal: Arc<GossipSeal>,
    path: PathBuf,
    loaded: String,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let mut last = loaded;
        let mut tick = tokio::time::interval(KEY_RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(text) => text,
                Err(error) => {
                    if last != "\0unreadable" {
                        warn!(path = %path.display(), %error, "cannot read the gossip key file; the keys in use stay");
                        seal.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                        last = "\0unreadable".into();
                    }
                    continue;
                }
            };
            if text == last {
                continue;
            }
            match Keyring::parse(&text) {
                Ok(keyring) => {
                    info!(path = %path.display(), keys = keyring.len(), "gossip keys reloaded");
                    seal.replace(keyring);
                    seal.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    warn!(path = %path.display(), %error, "gossip key file refused; the keys in use stay");
                    seal.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            last = text;
        }
    });
}

/// Opens chitchat's UDP socket on `listen`, sealed per `seal` and wrapped with `faults`.
/// Returns the socket and the address it is bound to (port 0 resolved).
pub(crate) async fn open_socket(
    listen: SocketAddr,
    seal: Arc<GossipSeal>,
    faults: GossipFaults,
) -> anyhow::Result<(Box<dyn Socket>, SocketAddr)> {
    let socket = tokio::net::UdpSocket::bind(listen)
        .await
        .with_context(|| format!("failed to bind to {listen}/UDP for gossip"))?;
    let local_addr = socket.local_addr()?;
    let socket = Box::new(GossipSocket {
        socket,
        send_buf: Vec::with_capacity(seal::MAX_DATAGRAM),
        recv_buf: vec![0; seal::MAX_DATAGRAM + 1].into_boxed_slice(),
        seal,
        opener: Opener::default(),
        plaintext_peers: HashSet::new(),
        last_drop_warning: None,
    });
    Ok((Box::new(FaultySocket { socket, faults }), local_addr))
}

/// chitchat's socket, serializing messages itself so it can seal them.
struct GossipSocket {
    socket: tokio::net::UdpSocket,
    send_buf: Vec<u8>,
    recv_buf: Box<[u8]>,
    seal: Arc<GossipSeal>,
    opener: Opener,
    /// Peers whose last datagram was plaintext (only with `accept_plaintext`).
    plaintext_peers: HashSet<SocketAddr>,
    last_drop_warning: Option<Instant>,
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::OutOfMemory
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

impl GossipSocket {
    fn dropped(&mut self, refusal: Refusal, from: SocketAddr, len: usize) {
        self.seal.count(refusal);
        let now = Instant::now();
        if self
            .last_drop_warning
            .is_none_or(|last| now.duration_since(last) >= DROP_WARN_INTERVAL)
        {
            self.last_drop_warning = Some(now);
            warn!(%from, len, reason = refusal.label(), "gossip datagram dropped (counted in starling_gossip_dropped_total; further drops are not logged for 10 s)");
        }
    }

    /// The next datagram's message bytes, or `None` for a datagram to skip.
    fn accept(&mut self, len: usize, from: SocketAddr) -> Option<Vec<u8>> {
        let datagram = &self.recv_buf[..len];
        let Some(keyring) = self.seal.keyring() else {
            return Some(datagram.to_vec());
        };
        if seal::is_sealed(datagram) {
            let opened = self
                .opener
                .open(&keyring, &self.seal.cluster_id, from, datagram);
            return match opened {
                Ok(Opened::Message(message)) => {
                    self.plaintext_peers.remove(&from);
                    Some(message)
                }
                Ok(Opened::Partial) => None,
                Err(refusal) => {
                    self.dropped(refusal, from, len);
                    None
                }
            };
        }
        if self.seal.accept_plaintext {
            if self.plaintext_peers.len() < MAX_PLAINTEXT_PEERS {
                self.plaintext_peers.insert(from);
            }
            return Some(datagram.to_vec());
        }
        self.dropped(Refusal::Plaintext, from, len);
        None
    }
}

#[async_trait]
impl Socket for GossipSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket
            .local_addr()
            .context("failed to get UDP socket address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        self.send_buf.clear();
        envelope.serialize(&mut self.send_buf);
        self.seal
            .stats
            .largest_message
            .fetch_max(self.send_buf.len() as u64, Ordering::Relaxed);
        let keyring = match self.seal.keyring() {
            Some(keyring) if !self.plaintext_peers.contains(&to) => keyring,
            _ => {
                let num_bytes_sent = self
                    .socket
                    .send_to(&self.send_buf, to)
                    .await
                    .context("failed to send chitchat message to peer")?;
                return Ok(SendOutcome { num_bytes_sent });
            }
        };
        let Some(datagrams) = seal::seal(&keyring, &self.seal.cluster_id, &self.send_buf) else {
            self.seal.stats.unsendable.fetch_add(1, Ordering::Relaxed);
            warn!(%to, len = self.send_buf.len(), "gossip message too large to seal; not sent");
            return Ok(SendOutcome { num_bytes_sent: 0 });
        };
        if datagrams.len() > 1 {
            self.seal.stats.cut.fetch_add(1, Ordering::Relaxed);
            debug!(%to, len = self.send_buf.len(), parts = datagrams.len(), "gossip message cut to fit sealed datagrams");
        }
        let mut num_bytes_sent = 0;
        for datagram in &datagrams {
            num_bytes_sent += self
                .socket
                .send_to(datagram, to)
                .await
                .context("failed to send chitchat message to peer")?;
        }
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let (len, from_addr) = match self.socket.recv_from(&mut self.recv_buf).await {
                Ok(received) => received,
                Err(error) if is_transient(&error) => {
                    debug!(%error, "transient gossip receive error");
                    continue;
                }
                Err(error) => return Err(error).context("fatal UDP recv error"),
            };
            let Some(message) = self.accept(len, from_addr) else {
                continue;
            };
            match ChitchatEnvelope::deserialize(&mut message.as_slice()) {
                Ok(envelope) => {
                    return Ok(RecvOutcome {
                        from_addr,
                        envelope,
                        num_bytes_received: len,
                    })
                }
                Err(error) => {
                    if self.seal.keyring().is_some() {
                        // Opened with a cluster key but not chitchat: a bug or a key leak.
                        self.dropped(Refusal::Malformed, from_addr, len);
                    } else {
                        debug!(from = %from_addr, len, error = %format!("{error:#}"), "invalid gossip payload");
                    }
                }
            }
        }
    }
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
