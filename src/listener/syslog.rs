//! Every syslog listener of the `[syslog]` section, bound and running as one piece: binds
//! each configured UDP, TCP and TLS address (UDP with its `SO_REUSEPORT` sockets), gives each its
//! [`ListenerContext`] (name, ingest settings, counters fetched once, a clone of the records
//! sender) and spawns it on one `TaskTracker` under one `CancellationToken`.
//!
//! It owns no read loop (those are `udp` and `tcp`) and no record handling; the caller
//! passes the bounded records sender and keeps the channel's other end.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::allow::AllowList;
use super::guard::{RateBy, SenderGuard};
use super::metrics::ListenerFamilies;
use super::ratelimit::RateLimit;
use super::{tcp, udp, ListenerContext};
use crate::config::{ListenerSpec, RateLimitBy, SyslogConfig};
use crate::pipeline::Intake;
use crate::record::Transport;
use crate::tls::{TlsAcceptor, TlsFamilies, TlsServer};

/// A listener address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for syslog on {transport} {address}")]
pub struct BindError {
    pub transport: &'static str,
    pub address: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// What starting the listeners needs.
pub struct SyslogStart<'a> {
    pub syslog: &'a SyslogConfig,
    pub udp: Vec<ListenerSpec>,
    pub tcp: Vec<ListenerSpec>,
    /// This node's id: the origin of every record the listeners make.
    pub origin: &'a str,
    pub families: &'a ListenerFamilies,
    /// Where every listener hands its batches (bounded).
    pub records_tx: Intake,
    /// Syslog over TLS listeners, with the node's TLS configuration (required when any).
    pub tls: Vec<ListenerSpec>,
    pub tls_server: Option<(Arc<TlsServer>, &'a TlsFamilies)>,
}

/// The running syslog listeners.
pub struct SyslogListeners {
    /// Bound UDP addresses, in configuration order.
    pub udp: Vec<SocketAddr>,
    /// Bound TCP addresses, in configuration order.
    pub tcp: Vec<SocketAddr>,
    /// Bound syslog TLS addresses, in configuration order.
    pub tls: Vec<SocketAddr>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

/// The allow list and rate limit of `spec`.
fn guard(spec: &ListenerSpec) -> SenderGuard {
    let limit = spec.rate_limit.map(|limit| {
        let rate = RateLimit {
            messages_per_second: f64::from(limit.messages_per_second),
            burst: f64::from(limit.burst.unwrap_or(limit.messages_per_second)),
            max_keys: limit.max_keys,
        };
        let by = match limit.by {
            RateLimitBy::Address => RateBy::Address,
            RateLimitBy::Source => RateBy::Source,
        };
        (rate, by)
    });
    SenderGuard::new(AllowList::new(spec.allow.clone()), limit)
}

impl SyslogListeners {
    /// Binds every address, then starts every listener; returns once all are bound. Nothing
    /// is started if one address cannot be bound. The listeners hold the only clones of
    /// `records_tx` once this returns: when they all end, the channel closes.
    pub async fn start(start: SyslogStart<'_>) -> Result<SyslogListeners, BindError> {
        let syslog = start.syslog;
        let num_sockets = match syslog.udp_sockets {
            0 => udp::default_num_sockets(),
            configured => configured,
        };
        let mut bound_udp = Vec::new();
        for spec in &start.udp {
            let bind_error = |source| BindError {
                transport: "udp",
                address: spec.address,
                source,
            };
            let sockets = udp::bind(spec.address, num_sockets, syslog.udp_recv_buffer_bytes)
                .map_err(bind_error)?;
            let local = sockets[0].local_addr().map_err(bind_error)?;
            bound_udp.push((spec, sockets, local));
        }
        let mut bound_tcp = Vec::new();
        for spec in &start.tcp {
            let bind_error = |source| BindError {
                transport: "tcp",
                address: spec.address,
                source,
            };
            let listener = tokio::net::TcpListener::bind(spec.address)
                .await
                .map_err(bind_error)?;
            let local = listener.local_addr().map_err(bind_error)?;
            bound_tcp.push((spec, listener, local));
        }
        let mut bound_tls = Vec::new();
        for spec in &start.tls {
            let bind_error = |source| BindError {
                transport: "tls",
                address: spec.address,
                source,
            };
            let listener = tokio::net::TcpListener::bind(spec.address)
                .await
                .map_err(bind_error)?;
            let local = listener.local_addr().map_err(bind_error)?;
            bound_tls.push((spec, listener, local));
        }

        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let context =
            |prefix: &str, transport: Transport, local: SocketAddr, spec: &ListenerSpec| {
                let name = format!("{prefix}:{local}");
                Arc::new(ListenerContext {
                    metrics: start.families.listener(&name, transport),
                    name,
                    ingest: spec.ingest_config(start.origin),
                    records_tx: start.records_tx.clone(),
                    guard: guard(spec),
                })
            };
        let mut listeners = SyslogListeners {
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            tasks: tasks.clone(),
            cancel: cancel.clone(),
        };
        for (spec, sockets, local) in bound_udp {
            let options = udp::UdpOptions {
                max_message_bytes: syslog.max_message_bytes,
                ..Default::default()
            };
            let context = context("udp", Transport::Udp, local, spec);
            tasks.spawn(udp::run(sockets, context, options, cancel.clone()));
            listeners.udp.push(local);
        }
        for (spec, listener, local) in bound_tcp {
            let options = tcp::TcpOptions {
                max_message_bytes: syslog.max_message_bytes,
                max_connections: syslog.max_connections,
                idle_timeout: syslog.idle_timeout,
                ..Default::default()
            };
            let context = context("tcp", Transport::Tcp, local, spec);
            tasks.spawn(tcp::run(listener, context, options, cancel.clone()));
            listeners.tcp.push(local);
        }
        for (spec, listener, local) in bound_tls {
            let Some((server, families)) = &start.tls_server else {
                return Err(BindError {
                    transport: "tls",
                    address: spec.address,
                    source: std::io::Error::other("no TLS configuration"),
                });
            };
            let options = tcp::TcpOptions {
                max_message_bytes: syslog.max_message_bytes,
                max_connections: syslog.max_connections,
                idle_timeout: syslog.idle_timeout,
                ..Default::default()
            };
            // Records of a TLS listener are transport `tcp` (RFC 5425 runs over TCP); the
            // listener's name in logs and metrics is `tls:ADDR`.
            let context = context("tls", Transport::Tcp, local, spec);
            let acceptor = TlsAcceptor::new(Arc::clone(server), families.listener(&context.name));
            tasks.spawn(tcp::run_tls(
                listener,
                context,
                options,
                acceptor,
                cancel.clone(),
            ));
            listeners.tls.push(local);
        }
        tasks.close();
        Ok(listeners)
    }

    /// Stops accepting and reading; each listener hands over what it already read.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits until every listener has ended, or `deadline`; `false` if the deadline came
    /// first.
    pub async fn wait(&self, deadline: tokio::time::Instant) -> bool {
        tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_ok()
    }
}
