//! The configuration: the TOML file's shape, its defaults and its validation, parsed once
//! into typed values.
//!
//! Strict TOML (kebab-case keys, unknown keys rejected with their name and line), a default
//! for every key so an empty file — or no file — is a working single-node collector. Every
//! value is parsed while the file is read — addresses into `SocketAddr`, seed nodes into
//! [`HostPort`], zones into `parse::Zone`, durations into `Duration` — and one that does not
//! parse is refused with its key, value and line; `validate()` then checks ranges and the
//! keys against each other (everything `run` would refuse before binding) and names the
//! offending key, which [`Origins::locate`] points at its file line or flag. Sizes take units
//! in every `*-bytes` key (`file`, structurally); type errors are reworded for operators. `cli` parses command-line flags with the same functions and applies them
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

mod file;
mod input;
mod value;

pub use file::KeyLines;
pub use input::{parse_glob, FileInput, Glob, InputSection, StartAt, DEFAULT_MAX_LINE_BYTES};
use value::{de, invalid};
pub use value::{
    format_size, parse_address, parse_listeners, parse_log_level, parse_optional_address,
    parse_size, parse_value, parse_zone, validate_node_id, LOG_LEVELS, SIZE_FORM,
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
    pub tls: TlsSection,
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
            tls: TlsSection::default(),
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
    /// Sender networks (CIDR) allowed; absent or empty: every sender.
    #[serde(default)]
    pub allow: Vec<String>,
    pub rate_limit: Option<RateLimitSpec>,
}

/// A listener's per-source rate limit (`rate-limit = { messages-per-second, burst, by,
/// max-keys }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateLimitSpec {
    pub messages_per_second: u32,
    /// Messages a source may send at once above the rate; `messages-per-second` when absent.
    pub burst: Option<u32>,
    /// `address` (the peer's IP, default) or `source` (the record's source name).
    #[serde(default)]
    pub by: RateLimitBy,
    /// Sources tracked at most; past it, untracked sources share one bucket.
    #[serde(default = "default_rate_limit_max_keys")]
    pub max_keys: usize,
}

fn default_rate_limit_max_keys() -> usize {
    65_536
}

/// `rate-limit.by`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateLimitBy {
    #[default]
    Address,
    Source,
}

/// One syslog listener, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    /// Its own zone; `syslog.rfc3164-timezone` when `None`.
    pub rfc3164_timezone: Option<Zone>,
    /// Sender networks allowed; empty: every sender.
    pub allow: Vec<ipnet::IpNet>,
    pub rate_limit: Option<RateLimitSpec>,
}

/// A listener as the node starts it: its address and how it turns messages into records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub address: SocketAddr,
    /// The listener's own zone, else `syslog.rfc3164-timezone`.
    pub rfc3164_timezone: Zone,
    pub shard_by: ShardBy,
    /// Sender networks allowed; empty: every sender.
    pub allow: Vec<ipnet::IpNet>,
    pub rate_limit: Option<RateLimitSpec>,
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
    /// Syslog over TLS (RFC 5425) listeners, with the `[tls]` certificates; none by default.
    #[serde(deserialize_with = "de::tls")]
    pub tls: Vec<Listener>,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        let any = Listener {
            address: SocketAddr::from(([0, 0, 0, 0], 5514)),
            rfc3164_timezone: None,
            allow: Vec::new(),
            rate_limit: None,
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
            tls: Vec::new(),
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
    /// Gossip keyring file: one base64 32-byte key per line; the first seals, all open; re-read
    /// when it changes. Absent: gossip is plaintext.
    pub gossip_keys_file: Option<PathBuf>,
    /// With `gossip-keys-file`, also accept plaintext gossip (while turning encryption on).
    pub gossip_accept_plaintext: bool,
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
            gossip_keys_file: None,
            gossip_accept_plaintext: false,
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
    /// How far back from the store's last write the start-up scan reads journal records to
    /// rebuild the cursor memory (the store is not read whole at every start).
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub upload_cursor_lookback: Duration,
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
            upload_cursor_lookback: Duration::from_secs(3600),
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
            _ => Err(format!("{text:?} is not auto, always or never")),
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
            _ => Err(format!("{text:?} is not text or json")),
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

/// `[tls]`: the certificate, key and client authentication of every TLS surface (the syslog
/// TLS listeners; see `docs/security.md`). The files are read by the `tls` module, not here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsSection {
    /// PEM certificate chain of this node (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (`ca`, `ca+name`).
    pub client_ca: Option<PathBuf>,
    /// How a TLS client must authenticate.
    pub client_auth: ClientAuth,
    /// `ca+name`: names (or `*.example.com` wildcards of one left label) that a client
    /// certificate's DNS names (its common name when it has none) must match.
    pub permitted_peers: Vec<String>,
    /// `fingerprint`: SHA-256 fingerprints of the permitted client certificates,
    /// `sha-256:AB:CD:…` (colons and case optional), normalised to that form.
    #[serde(deserialize_with = "de::fingerprints")]
    pub fingerprints: Vec<String>,
    /// A TLS handshake that has not finished in this long is abandoned (and counted).
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub handshake_timeout: Duration,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert: None,
            key: None,
            client_ca: None,
            client_auth: ClientAuth::Ca,
            permitted_peers: Vec::new(),
            fingerprints: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// `tls.client-auth`: what a TLS client must prove (rsyslog's `StreamDriver.AuthMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for (the connection is encrypted, the sender unknown).
    None,
    /// A client certificate that chains to `client-ca` and is within its validity.
    Ca,
    /// As `Ca`, and one of its names matches `permitted-peers`.
    CaName,
    /// Any certificate (self-signed too) whose SHA-256 fingerprint is in `fingerprints`.
    Fingerprint,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Ca => "ca",
            ClientAuth::CaName => "ca+name",
            ClientAuth::Fingerprint => "fingerprint",
        }
    }
}

impl std::str::FromStr for ClientAuth {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(ClientAuth::None),
            "ca" => Ok(ClientAuth::Ca),
            "ca+name" => Ok(ClientAuth::CaName),
            "fingerprint" => Ok(ClientAuth::Fingerprint),
            _ => Err(format!(
                "tls.client-auth must be none, ca, ca+name or fingerprint, not {text:?}"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for ClientAuth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A SHA-256 fingerprint in the form the docs show (`sha-256:AB:CD:…`, 32 bytes), from that
/// form or bare hex, any case, with or without colons.
pub fn parse_fingerprint(text: &str) -> Result<String, String> {
    let hex = text
        .strip_prefix("sha-256:")
        .or_else(|| text.strip_prefix("SHA-256:"))
        .or_else(|| text.strip_prefix("sha256:"))
        .unwrap_or(text);
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a SHA-256 fingerprint (sha-256: and 32 bytes in hex)"
        ));
    }
    let upper = digits.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..32).map(|i| &upper[2 * i..2 * i + 2]).collect();
    Ok(format!("sha-256:{}", pairs.join(":")))
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
    /// An [`Invalid`](ConfigError::Invalid) value that a command-line flag set.
    #[error("invalid value for `{key}` (set by {flag}): {message}")]
    Flag {
        flag: &'static str,
        key: &'static str,
        message: String,
    },
}

/// Where the values of an effective configuration came from — the file (and the line of
/// each of its keys) or a command-line flag — so that a refusal points at what to edit.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    pub file: Option<PathBuf>,
    pub lines: KeyLines,
    /// Keys set by a flag (which wins over the file), with the flag.
    pub flags: Vec<(&'static str, &'static str)>,
}

impl Origins {
    /// Records that `flag` set `key`.
    pub fn set_by_flag(&mut self, key: &'static str, flag: &'static str) {
        self.flags.retain(|(known, _)| *known != key);
        self.flags.push((key, flag));
    }

    /// Points an [`Invalid`](ConfigError::Invalid) error at the flag or the file line that
    /// set its key; a key at its default keeps the error as it is.
    pub fn locate(&self, error: ConfigError) -> ConfigError {
        let ConfigError::Invalid { key, message } = error else {
            return error;
        };
        if let Some((_, flag)) = self.flags.iter().find(|(known, _)| *known == key) {
            return ConfigError::Flag { flag, key, message };
        }
        match (&self.file, self.lines.line_of(key)) {
            (Some(path), Some(line)) => ConfigError::Parse {
                path: path.clone(),
                message: format!("line {line}: invalid value for `{key}`: {message}"),
            },
            (Some(path), None) => ConfigError::Parse {
                path: path.clone(),
                message: format!("invalid value for `{key}`: {message}"),
            },
            (None, _) => ConfigError::Invalid { key, message },
        }
    }
}

/// A byte count in messages: `65536 bytes (64 KiB)`, or `100 bytes` below a KiB.
fn bytes(count: u64) -> String {
    if count < 1024 {
        format!("{count} bytes")
    } else {
        format!("{count} bytes ({})", format_size(count))
    }
}

/// Default `syslog.pipeline-max-bytes`: the records between the inputs and the store's commit
/// (256 MiB).
pub const DEFAULT_PIPELINE_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Largest allowed `max-message-bytes` (16 MiB).
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 16 * 1024 * 1024;

impl Config {
    /// Reads and parses a TOML file (not yet validated).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_origins(path).map(|(config, _)| config)
    }

    /// [`Config::load`], with where each key was written (for [`Origins::locate`]).
    pub fn load_with_origins(path: &Path) -> Result<(Config, Origins), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (config, lines) = file::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let origins = Origins {
            file: Some(path.to_owned()),
            lines,
            flags: Vec::new(),
        };
        Ok((config, origins))
    }

    /// Parses TOML text; the error names the key, its line and the expected form.
    pub fn parse_toml(text: &str) -> Result<Config, String> {
        file::parse(text).map(|(config, _)| config)
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
                    "{} is outside 480 bytes to {}",
                    bytes(syslog.max_message_bytes as u64),
                    format_size(MAX_MESSAGE_BYTES_LIMIT as u64)
                ),
            ));
        }
        if syslog.pipeline_max_bytes < syslog.max_message_bytes as u64 {
            return Err(invalid(
                "syslog.pipeline-max-bytes",
                format!(
                    "{} is less than syslog.max-message-bytes ({})",
                    bytes(syslog.pipeline_max_bytes),
                    bytes(syslog.max_message_bytes as u64)
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
                format!(
                    "{} is below the minimum of 64 KiB",
                    bytes(store.segment_max_bytes)
                ),
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
                format!(
                    "{} is above the maximum of 10s",
                    humantime::format_duration(store.commit_max_delay)
                ),
            ));
        }
        if self.cluster.cluster_id.is_empty() {
            return Err(invalid("cluster.cluster-id", "must not be empty".into()));
        }
        if self.cluster.gossip_accept_plaintext && self.cluster.gossip_keys_file.is_none() {
            return Err(invalid(
                "cluster.gossip-accept-plaintext",
                "needs cluster.gossip-keys-file (without keys gossip is plaintext anyway)".into(),
            ));
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
        parse_log_level(&self.log.level).map_err(|message| invalid("log.level", message))?;
        self.validate_addresses()?;
        if self.tls_in_use() {
            self.validate_tls()?;
        }
        for file in &self.input.file {
            input::validate_file_input(file)?;
        }
        Ok(())
    }

    /// The checks across address keys that `run` would otherwise fail on after binding
    /// some of its sockets: peers must be able to reach the advertised gossip address, and
    /// no two listeners of one protocol may share an address.
    fn validate_addresses(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        let advertised = cluster.gossip_advertise.unwrap_or(cluster.gossip);
        if advertised.ip().is_unspecified() {
            let (key, what) = match cluster.gossip_advertise {
                Some(_) => ("cluster.gossip-advertise", "is"),
                None => ("cluster.gossip", "listens on"),
            };
            return Err(invalid(
                key,
                format!(
                    "gossip {what} {advertised}, an address peers cannot reach: set \
                     cluster.gossip-advertise (--gossip-advertise) to this node's address, \
                     e.g. 192.0.2.10:{}",
                    advertised.port()
                ),
            ));
        }
        // (key, address) of every listener, by protocol; port 0 picks a free port.
        let udp = self
            .syslog
            .udp
            .iter()
            .map(|listener| ("syslog.udp", listener.address))
            .chain([("cluster.gossip", cluster.gossip)]);
        let tcp = self
            .syslog
            .tcp
            .iter()
            .map(|listener| ("syslog.tcp", listener.address))
            .chain(
                self.syslog
                    .tls
                    .iter()
                    .map(|listener| ("syslog.tls", listener.address)),
            )
            .chain([("cluster.forward", cluster.forward)])
            .chain(self.api.listen.map(|address| ("api.listen", address)));
        for (protocol, listeners) in [
            ("UDP", udp.collect::<Vec<_>>()),
            ("TCP", tcp.collect::<Vec<_>>()),
        ] {
            for (index, (key, address)) in listeners.iter().enumerate() {
                let clash = listeners[..index].iter().find(|(_, other)| {
                    address.port() != 0
                        && other.port() == address.port()
                        && other.is_ipv4() == address.is_ipv4()
                        && (other.ip() == address.ip()
                            || other.ip().is_unspecified()
                            || address.ip().is_unspecified())
                });
                if let Some((other_key, other)) = clash {
                    return Err(invalid(
                        key,
                        format!(
                            "{address} ({protocol}) is also {other_key}'s address ({other}): \
                             give each listener its own port"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether a TLS surface is configured (so `[tls]` must be complete).
    pub fn tls_in_use(&self) -> bool {
        !self.syslog.tls.is_empty()
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let tls = &self.tls;
        if tls.cert.is_none() {
            return Err(invalid(
                "tls.cert",
                "is required with syslog.tls listeners".into(),
            ));
        }
        if tls.key.is_none() {
            return Err(invalid(
                "tls.key",
                "is required with syslog.tls listeners".into(),
            ));
        }
        if matches!(tls.client_auth, ClientAuth::Ca | ClientAuth::CaName) && tls.client_ca.is_none()
        {
            return Err(invalid(
                "tls.client-ca",
                format!(
                    "is required with tls.client-auth = {:?} (or set client-auth = \"none\")",
                    tls.client_auth.as_str()
                ),
            ));
        }
        if tls.client_auth == ClientAuth::CaName && tls.permitted_peers.is_empty() {
            return Err(invalid(
                "tls.permitted-peers",
                "must name at least one peer with tls.client-auth = \"ca+name\"".into(),
            ));
        }
        if let Some(bad) = tls.permitted_peers.iter().find(|name| {
            name.is_empty()
                || name.chars().skip(1).any(|c| c == '*')
                || (name.starts_with('*') && !name.starts_with("*."))
        }) {
            return Err(invalid(
                "tls.permitted-peers",
                format!("{bad:?}: a name, or `*.` followed by a name"),
            ));
        }
        if tls.client_auth == ClientAuth::Fingerprint && tls.fingerprints.is_empty() {
            return Err(invalid(
                "tls.fingerprints",
                "must list at least one fingerprint with tls.client-auth = \"fingerprint\"".into(),
            ));
        }
        if tls.handshake_timeout.is_zero() {
            return Err(invalid(
                "tls.handshake-timeout",
                "must be greater than zero".into(),
            ));
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

    /// The syslog TLS listeners to start (none unless configured).
    pub fn tls_listeners(&self) -> Vec<ListenerSpec> {
        self.listener_specs(&self.syslog.tls)
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
                allow: listener.allow.clone(),
                rate_limit: listener.rate_limit,
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
