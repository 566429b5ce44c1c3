//! The configuration: the TOML file's shape, its defaults and its validation, parsed once
//! into typed values.
//!
//! Strict TOML (kebab-case keys, unknown keys rejected with their name and line), a default
//! for every key so an empty file — or no file — is a working single-node collector. Every
//! value is parsed while the file is read — addresses into `SocketAddr`, seed nodes into
//! [`HostPort`], zones into `parse::Zone`, durations into `Duration` — and one that does not
//! parse is refused with its key, value and line; `validate()` then checks ranges and names
//! the offending key. `cli` parses command-line flags with the same functions and applies them
//! on top (flag > file > default).
//!
//! Who owns which type: a section that is one subsystem's whole configuration is that
//! subsystem's own serde type, embedded as it is (`[store]` is `store::StoreConfig`,
//! `syslog.shard-by` is `ingest::ShardBy`); sections that feed several subsystems (`[syslog]`:
//! listeners and ingest; `[cluster]`: gossip, forwarding and the spool; `[api]`, `[log]`) are
//! this module's, with typed fields, and hand the subsystems their values ready to use
//! ([`ListenerSpec::ingest_config`], [`Config::store_config`]). So this module sits above
//! `store`, `ingest`, `parse` and `timespec`, whose types it imports, and below `node` and
//! `cli`, its only users. It does no I/O beyond reading the file it is given.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::ingest::{IngestConfig, ShardBy};
use crate::parse::Zone;
use crate::store::StoreConfig;

mod input;
mod value;

pub use input::{parse_glob, FileInput, Glob, InputSection, StartAt, DEFAULT_MAX_LINE_BYTES};
use value::{de, invalid};
pub use value::{
    parse_address, parse_listeners, parse_optional_address, parse_value, parse_zone,
    validate_node_id,
};

/// Everything `starling run` needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Node id; the host name when absent.
    pub node_id: Option<String>,
    pub data_dir: PathBuf,
    pub syslog: SyslogConfig,
    pub store: StoreConfig,
    pub cluster: ClusterSection,
    pub api: ApiSection,
    pub log: LogSection,
    /// `[input]`: `[[input.file]]` tables of files to tail.
    pub input: InputSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: None,
            data_dir: PathBuf::from("./starling-data"),
            syslog: SyslogConfig::default(),
            store: StoreConfig::default(),
            cluster: ClusterSection::default(),
            api: ApiSection::default(),
            log: LogSection::default(),
            input: InputSection::default(),
        }
    }
}

/// One syslog listener as written: an address (or `none`), or a table with an address and
/// its own RFC 3164 time zone. Read into a [`Listener`] by [`parse_listeners`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ListenerEntry {
    Address(String),
    Table(ListenerTable),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenerTable {
    pub address: String,
    pub rfc3164_timezone: Option<String>,
}

/// One syslog listener, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    /// Its own zone; `syslog.rfc3164-timezone` when `None`.
    pub rfc3164_timezone: Option<Zone>,
}

/// A listener as the node starts it: its address and how it turns messages into records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub address: SocketAddr,
    /// The listener's own zone, else `syslog.rfc3164-timezone`.
    pub rfc3164_timezone: Zone,
    pub shard_by: ShardBy,
}

impl ListenerSpec {
    /// What the listener's ingest needs; `origin` is the node id.
    pub fn ingest_config(&self, origin: &str) -> IngestConfig {
        IngestConfig {
            origin: origin.into(),
            shard_by: self.shard_by,
            rfc3164_zone: self.rfc3164_timezone,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyslogConfig {
    /// UDP listeners; `["none"]` or `[]` turns UDP off (no listener).
    #[serde(deserialize_with = "de::udp")]
    pub udp: Vec<Listener>,
    /// TCP listeners; `["none"]` or `[]` turns TCP off (no listener).
    #[serde(deserialize_with = "de::tcp")]
    pub tcp: Vec<Listener>,
    /// Longer messages are truncated to this many bytes and flagged.
    pub max_message_bytes: usize,
    /// Bytes of records in flight between the inputs (syslog listeners, journald uploads)
    /// and the store's commit; past it TCP is pushed back and UDP drops and counts.
    pub pipeline_max_bytes: u64,
    /// Concurrent TCP connections per listener.
    pub max_connections: usize,
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub idle_timeout: Duration,
    /// UDP sockets per address (SO_REUSEPORT); 0 = one per core.
    pub udp_sockets: usize,
    /// Requested kernel receive buffer per UDP socket.
    pub udp_recv_buffer_bytes: usize,
    /// Zone of RFC 3164 timestamps (which carry none): `local`, `UTC` or an IANA name.
    #[serde(deserialize_with = "de::rfc3164_timezone")]
    pub rfc3164_timezone: Zone,
    pub shard_by: ShardBy,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        let any = Listener {
            address: SocketAddr::from(([0, 0, 0, 0], 5514)),
            rfc3164_timezone: None,
        };
        SyslogConfig {
            udp: vec![any.clone()],
            tcp: vec![any],
            max_message_bytes: 64 * 1024,
            pipeline_max_bytes: DEFAULT_PIPELINE_MAX_BYTES,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(600),
            udp_sockets: 0,
            udp_recv_buffer_bytes: 8 * 1024 * 1024,
            rfc3164_timezone: Zone::Local,
            shard_by: ShardBy::Hostname,
        }
    }
}

/// `host:port` of a seed node. Checked when the configuration is read and kept as text: host
/// names are resolved by the gossip layer at every attempt, so a seed may move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort(String);

impl HostPort {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<HostPort, String> {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(HostPort(text.to_string()))
            }
            _ => Err(format!("{text:?} is not of the form HOST:PORT")),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[cluster]`: gossip (the `cluster` module), forwarding (`forward`) and the spool (the
/// node's spool gate and the store's spool retention).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterSection {
    pub cluster_id: String,
    /// Gossip (UDP) listen address.
    #[serde(deserialize_with = "de::gossip")]
    pub gossip: SocketAddr,
    /// Address other nodes use for gossip; the listen address when absent.
    #[serde(deserialize_with = "de::gossip_advertise")]
    pub gossip_advertise: Option<SocketAddr>,
    /// Seed nodes' gossip addresses (`host:port`, host names allowed).
    #[serde(deserialize_with = "de::seeds")]
    pub seeds: Vec<HostPort>,
    /// Node-to-node forwarding (TCP) listen address.
    #[serde(deserialize_with = "de::forward")]
    pub forward: SocketAddr,
    pub priority: u32,
    pub may_be_master: bool,
    pub spool_max_bytes: u64,
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub spool_retention: Duration,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            cluster_id: "starling".into(),
            gossip: SocketAddr::from(([127, 0, 0, 1], 5515)),
            gossip_advertise: None,
            seeds: Vec::new(),
            forward: SocketAddr::from(([127, 0, 0, 1], 5516)),
            priority: 0,
            may_be_master: true,
            spool_max_bytes: 1024 * 1024 * 1024,
            spool_retention: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiSection {
    /// HTTP API address (metrics, health, status); `none` turns it off (`None`).
    #[serde(deserialize_with = "de::api_listen")]
    pub listen: Option<SocketAddr>,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head (and how long it may sit
    /// idle between requests) before it is closed.
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub header_timeout: Duration,
    /// How long a request body may send nothing while the server waits for it (a progress
    /// timeout: a long upload that keeps sending is never cut).
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub body_timeout: Duration,
    /// The longest journal entry `POST /upload` accepts on the wire (413 past it); entries
    /// are kept up to `syslog.max-message-bytes` and cut beyond it either way.
    pub upload_max_entry_bytes: u64,
    /// Journals whose newest upload cursor is remembered (to recognise retries); the least
    /// recently used is forgotten first.
    pub upload_max_journals: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 5517))),
            max_connections: 256,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            // Above systemd's own limit on a journal entry (768 MiB of data), so no entry
            // journald wrote is refused by default.
            upload_max_entry_bytes: 1 << 30,
            upload_max_journals: 4096,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogSection {
    /// A tracing filter, e.g. `info` or `starling=debug`; `RUST_LOG` wins when set.
    pub level: String,
    /// Colours in text logs: on a terminal only (`auto`), `always` or `never`.
    pub color: LogColor,
    /// `text` (or native journald entries when stderr is the journal) or `json` lines.
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            color: LogColor::Auto,
            format: LogFormat::Text,
        }
    }
}

/// `log.color`: whether text logs carry ANSI colour escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogColor {
    /// Only when stderr is a terminal (and `NO_COLOR` is not set).
    Auto,
    Always,
    Never,
}

impl std::str::FromStr for LogColor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(LogColor::Auto),
            "always" => Ok(LogColor::Always),
            "never" => Ok(LogColor::Never),
            _ => Err(format!(
                "log.color must be auto, always or never, not {text:?}"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for LogColor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `log.format`: how log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; native journald entries when stderr is the journal.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("log.format must be text or json, not {text:?}")),
        }
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Default `syslog.pipeline-max-bytes`: the records between the inputs and the store's commit
/// (256 MiB).
pub const DEFAULT_PIPELINE_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Largest allowed `max-message-bytes` (16 MiB).
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 16 * 1024 * 1024;

impl Config {
    /// Reads and parses a TOML file (not yet validated).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error names the key and its line.
    pub fn parse_toml(text: &str) -> Result<Config, String> {
        toml::from_str::<Config>(text).map_err(|error| {
            // toml's Display spans several lines; keep it to one with the location first.
            let mut message = error.message().to_string();
            if let Some(span) = error.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                message = format!("line {line}: {message}");
            }
            message
        })
    }

    /// Checks every range the types do not; the first problem is returned with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(node_id) = &self.node_id {
            validate_node_id(node_id).map_err(|message| ConfigError::Invalid {
                key: "node-id",
                message,
            })?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data-dir", "must not be empty".into()));
        }
        let syslog = &self.syslog;
        if syslog.max_message_bytes < 480 || syslog.max_message_bytes > MAX_MESSAGE_BYTES_LIMIT {
            return Err(invalid(
                "syslog.max-message-bytes",
                format!(
                    "{} is outside 480..={MAX_MESSAGE_BYTES_LIMIT}",
                    syslog.max_message_bytes
                ),
            ));
        }
        if syslog.pipeline_max_bytes < syslog.max_message_bytes as u64 {
            return Err(invalid(
                "syslog.pipeline-max-bytes",
                format!(
                    "{} is less than syslog.max-message-bytes ({})",
                    syslog.pipeline_max_bytes, syslog.max_message_bytes
                ),
            ));
        }
        if syslog.max_connections == 0 {
            return Err(invalid(
                "syslog.max-connections",
                "must be at least 1".into(),
            ));
        }
        if syslog.idle_timeout.is_zero() {
            return Err(invalid(
                "syslog.idle-timeout",
                "must be greater than zero".into(),
            ));
        }
        let store = &self.store;
        if store.segment_max_bytes < 64 * 1024 {
            return Err(invalid(
                "store.segment-max-bytes",
                format!("{} is below the minimum of 65536", store.segment_max_bytes),
            ));
        }
        if store.segment_max_age.is_zero() {
            return Err(invalid(
                "store.segment-max-age",
                "must be greater than zero".into(),
            ));
        }
        if store.idle_shard_seal.is_zero() {
            return Err(invalid(
                "store.idle-shard-seal",
                "must be greater than zero".into(),
            ));
        }
        if store.max_open_shards == 0 {
            return Err(invalid(
                "store.max-open-shards",
                "must be at least 1".into(),
            ));
        }
        let shortest = crate::store::shardname::MAX_SHORTENED;
        if !(shortest..=usize::from(u16::MAX)).contains(&store.source_name_max_bytes) {
            return Err(invalid(
                "store.source-name-max-bytes",
                format!(
                    "{} is outside {shortest}..=65535",
                    store.source_name_max_bytes
                ),
            ));
        }
        if store.commit_max_delay > Duration::from_secs(10) {
            return Err(invalid(
                "store.commit-max-delay",
                format!("{:?} is above the maximum of 10s", store.commit_max_delay),
            ));
        }
        if self.cluster.cluster_id.is_empty() {
            return Err(invalid("cluster.cluster-id", "must not be empty".into()));
        }
        if self.api.max_connections == 0 {
            return Err(invalid("api.max-connections", "must be at least 1".into()));
        }
        if self.api.header_timeout.is_zero() {
            return Err(invalid(
                "api.header-timeout",
                "must be greater than zero".into(),
            ));
        }
        if self.api.body_timeout.is_zero() {
            return Err(invalid(
                "api.body-timeout",
                "must be greater than zero".into(),
            ));
        }
        if self.api.upload_max_entry_bytes == 0 {
            return Err(invalid(
                "api.upload-max-entry-bytes",
                "must be at least 1".into(),
            ));
        }
        if self.api.upload_max_journals == 0 {
            return Err(invalid(
                "api.upload-max-journals",
                "must be at least 1".into(),
            ));
        }
        for file in &self.input.file {
            input::validate_file_input(file)?;
        }
        Ok(())
    }

    /// The UDP listeners to start (none when UDP is off).
    pub fn udp_listeners(&self) -> Vec<ListenerSpec> {
        self.listener_specs(&self.syslog.udp)
    }

    /// The TCP listeners to start (none when TCP is off).
    pub fn tcp_listeners(&self) -> Vec<ListenerSpec> {
        self.listener_specs(&self.syslog.tcp)
    }

    fn listener_specs(&self, listeners: &[Listener]) -> Vec<ListenerSpec> {
        listeners
            .iter()
            .map(|listener| ListenerSpec {
                address: listener.address,
                rfc3164_timezone: listener
                    .rfc3164_timezone
                    .unwrap_or(self.syslog.rfc3164_timezone),
                shard_by: self.syslog.shard_by,
            })
            .collect()
    }

    /// The API address, or `None` when turned off.
    pub fn api_address(&self) -> Option<SocketAddr> {
        self.api.listen
    }

    /// The store's configuration: `[store]`, with `cluster.spool-retention` as the spool's
    /// retention (every node's store is its spool).
    pub fn store_config(&self) -> StoreConfig {
        let mut store = self.store.clone();
        store.retention.spool_retention = Some(self.cluster.spool_retention);
        store
    }
}

#[cfg(test)]
mod tests;
