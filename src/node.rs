//! A running node: binds every socket, opens the store, starts the listeners, the ingest
//! `pipeline` (which every input, the journald upload included, hands its records to) and
//! the API, prints where it listens, and shuts down in three steps (detect a signal, cancel,
//! drain with a deadline). The cluster side (gossip, forward server, forwarder and the
//! readers of its progress) is wired in `node::cluster`. This module owns no protocol, no
//! file format and no pipeline stage; it only starts the pieces below it and passes handles.

mod cluster;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::listener::syslog::{SyslogListeners, SyslogStart};
use crate::pipeline::{ByteBudget, Pipeline, PipelineStart, SpoolGate};
use crate::store::Store;
use crate::telemetry::PipelineMetrics;

/// How long shutdown may take before the remaining work is abandoned.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(4);

/// What SIGHUP needs: how to build the configuration again — the file under the flags,
/// validated, exactly as at start — and where to apply its `[log]` section.
pub struct Reload<'a> {
    pub load: Box<dyn Fn() -> Result<Config, String> + 'a>,
    pub log: &'a crate::logging::LogControl,
}

/// Runs a node until SIGTERM or SIGINT, then shuts it down. SIGHUP reloads the
/// configuration ([`reload`]).
pub async fn run_until_signal(config: Config, reload: Reload<'_>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Watched before anything starts: a HUP right after `ready` must not kill the node.
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let node = Node::start(config.clone()).await?;
    node.announce();
    let mut running = config;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => running = self::reload(running, &reload),
        }
    }
    tracing::info!("signal received, shutting down");
    node.shutdown().await
}

/// SIGHUP: reads and validates the configuration again. A refused one is logged and the
/// running configuration stays. Otherwise what can change without a restart changes now
/// (`[log]`: level, format, colour), and the keys that changed but take effect only at the
/// next start are named in one warning. Returns the configuration now in effect.
pub fn reload(running: Config, reload: &Reload<'_>) -> Config {
    let new = match (reload.load)() {
        Ok(new) => new,
        Err(error) => {
            tracing::error!(
                %error,
                "SIGHUP: the configuration was not reloaded; the running one stays"
            );
            return running;
        }
    };
    if let Err(error) = reload.log.apply(&new.log) {
        tracing::error!(%error, "SIGHUP: cannot apply the [log] section; it stays as it was");
        return running;
    }
    let restart = keys_needing_restart(&running, &new);
    if !restart.is_empty() {
        tracing::warn!(
            keys = %restart.join(", "),
            "SIGHUP: changed in the configuration but applied only at the next start"
        );
    }
    tracing::info!(log_level = %new.log.level, "SIGHUP: configuration reloaded");
    Config {
        log: new.log,
        ..running
    }
}

/// The keys (or sections) of `new` that differ from `running` and cannot change live.
fn keys_needing_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |key: &'static str, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    check("node-id", running.node_id != new.node_id);
    check("data-dir", running.data_dir != new.data_dir);
    check("[syslog]", running.syslog != new.syslog);
    check("[store]", running.store != new.store);
    check("[cluster]", running.cluster != new.cluster);
    check("[api]", running.api != new.api);
    // Sections added later fall here, named as a whole.
    let live = Config {
        log: running.log.clone(),
        ..new.clone()
    };
    if keys.is_empty() && live != *running {
        keys.push("(other sections)");
    }
    keys
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
    pub syslog_tls: Vec<SocketAddr>,
}

pub struct Node {
    pub node_id: String,
    pub data_dir: PathBuf,
    pub addresses: BoundAddresses,
    store: Store,
    listeners: SyslogListeners,
    api_cancel: CancellationToken,
    api_task: Option<tokio::task::JoinHandle<()>>,
    pipeline: Pipeline,
    cluster: cluster::NodeCluster,
    files: crate::input_file::FileInputs,
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
        let store_config = config.store_config();
        let (store, recovery) = {
            let (dir, origin) = (data_dir.clone(), node_id.clone());
            tokio::task::spawn_blocking(move || Store::open(&dir, &origin, store_config))
                .await
                .context("store open task failed")?
                .with_context(|| format!("cannot open the store in {}", data_dir.display()))?
        };
        recovery.log();

        // One registry per node; each subsystem registers its own families in it.
        let mut registry = prometheus_client::registry::Registry::default();
        let pipeline_metrics = PipelineMetrics::register(&mut registry);
        let listener_metrics =
            crate::listener::metrics::ListenerFamilies::register(&mut registry, &pipeline_metrics);
        crate::store::metrics::register(&mut registry, store.handle());
        let mut addresses = BoundAddresses::default();
        // The API is bound first so the cluster can advertise its address.
        let api_listener = match config.api_address() {
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
        let spool_gate = Arc::new(SpoolGate::new(config.cluster.spool_max_bytes));
        spool_gate.register_metrics(&mut registry);
        // One byte budget for every record in flight to the store: the inputs' (through the
        // pipeline) and the forwarders' (through the forward server).
        let budget = Arc::new(ByteBudget::new(config.syslog.pipeline_max_bytes));
        budget.register_metrics(&mut registry);
        let cluster = cluster::NodeCluster::start(cluster::ClusterStart {
            section: &config.cluster,
            node_id: &node_id,
            data_dir: &data_dir,
            store: store.handle(),
            api_addr: addresses.api,
            registry: &mut registry,
            budget: budget.clone(),
        })
        .await?;
        addresses.gossip = Some(cluster.gossip_addr);
        addresses.forward = Some(cluster.forward_addr);

        let (pipeline, records_tx) = Pipeline::start_budgeted(
            PipelineStart {
                store: store.handle(),
                origin: node_id.clone(),
                gate: spool_gate,
                progress: cluster.progress(),
                metrics: pipeline_metrics.clone(),
            },
            budget,
        );
        let tls_families = crate::tls::TlsFamilies::register(&mut registry);
        let tls_server = if config.tls_in_use() {
            let server = crate::tls::TlsServer::load(&config.tls)
                .context("cannot load the TLS certificates")?;
            Some(Arc::new(server))
        } else {
            None
        };
        let listeners = SyslogListeners::start(SyslogStart {
            syslog: &config.syslog,
            udp: config.udp_listeners(),
            tcp: config.tcp_listeners(),
            origin: &node_id,
            families: &listener_metrics,
            records_tx,
            tls: config.tls_listeners(),
            tls_server: tls_server.clone().map(|server| (server, &tls_families)),
        })
        .await?;
        addresses.syslog_tls.clone_from(&listeners.tls);
        addresses.syslog_udp.clone_from(&listeners.udp);
        addresses.syslog_tcp.clone_from(&listeners.tcp);
        let files = crate::input_file::FileInputs::start(crate::input_file::FileStart {
            inputs: config.input.file.clone(),
            node_id: node_id.clone(),
            data_dir: data_dir.clone(),
            pipeline: pipeline.handle(),
            metrics: crate::input_file::FileMetrics::register(&mut registry),
        })
        .context("cannot start the file input")?;

        let api_cancel = CancellationToken::new();
        let mut api_task = None;
        if let Some(listener) = api_listener {
            let upload_metrics = crate::journal_upload::UploadMetrics::register(&mut registry);
            let mut upload = crate::journal_upload::UploadState::new(
                pipeline.handle(),
                node_id.clone(),
                crate::journal_upload::UploadLimits {
                    max_entry_bytes: config.syslog.max_message_bytes,
                    max_entry_wire_bytes: config.api.upload_max_entry_bytes,
                    max_journals: config.api.upload_max_journals,
                    cursor_lookback: config.api.upload_cursor_lookback,
                },
                &listener_metrics,
                pipeline_metrics.clone(),
                upload_metrics,
            );
            // Uploads wait until the cursors of the journal records already stored are known.
            upload.remember_stored(data_dir.clone());
            let query_metrics = crate::query::http::QueryMetrics::register(&mut registry);
            let logs = crate::query::http::LogsState::new(store_reader(&data_dir)?, query_metrics);
            let state =
                crate::api::ApiState::new(Arc::new(registry)).with_status(cluster.status_fn());
            let mut router = crate::api::router(state).merge(crate::journal_upload::router(upload));
            router = router.merge(crate::query::http::router(logs));
            if let Some(faults) = cluster.faults() {
                router = router.merge(crate::api::fault_router(faults));
            }
            let cancel = api_cancel.clone();
            let limits = crate::api::ApiLimits {
                max_connections: config.api.max_connections,
                header_timeout: config.api.header_timeout,
                body_timeout: config.api.body_timeout,
            };
            api_task = Some(tokio::spawn(async move {
                if let Err(error) = crate::api::serve_router(listener, router, limits, cancel).await
                {
                    tracing::error!(%error, "the API server failed");
                }
            }));
        }

        Ok(Node {
            node_id,
            data_dir,
            addresses,
            store,
            listeners,
            api_cancel,
            api_task,
            pipeline,
            cluster,
            files,
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
        for address in &self.addresses.syslog_tls {
            let _ = writeln!(out, "starling: listening syslog-tls {address}");
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
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        self.listeners.cancel();
        self.pipeline.drain();
        self.files.stop(deadline).await;
        if !self.listeners.wait(deadline).await {
            tracing::warn!("listeners did not stop in time");
        }
        if !self.pipeline.wait_appended(deadline).await {
            tracing::warn!("the pipeline did not drain in time");
        }
        self.cluster.shutdown(deadline).await;
        let store = self.store;
        let closed = tokio::task::spawn_blocking(move || store.close())
            .await
            .context("store close task failed")?;
        self.pipeline.stop(deadline).await;
        self.api_cancel.cancel();
        if let Some(api_task) = self.api_task {
            let _ = tokio::time::timeout_at(deadline, api_task).await;
        }
        closed.context("cannot close the store cleanly")?;
        tracing::info!("stopped");
        Ok(())
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

/// A reader of the node's own data directory, for the query API.
fn store_reader(data_dir: &std::path::Path) -> anyhow::Result<crate::store::StoreReader> {
    crate::store::StoreReader::open(data_dir)
        .with_context(|| format!("cannot read the store in {}", data_dir.display()))
}
