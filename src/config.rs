//! The configuration: the TOML file's shape, its defaults and its validation.
//!
//! Strict TOML (kebab-case keys, unknown keys rejected with their name and line), a default
//! for every key so an empty file — or no file — is a working single-node collector, and a
//! `validate()` that names the offending key and value. Command-line flags are applied on top
//! by `cli` (flag > file > default). This module does no I/O beyond reading the file it is
//! given; of ours it imports only `parse::Zone`, to validate time zones exactly as they will
//! be read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Everything `starling run` needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Node id; the host name when absent.
    pub node_id: Option<String>,
    pub data_dir: PathBuf,
    pub syslog: SyslogConfig,
    pub store: StoreSection,
    pub cluster: ClusterSection,
    pub api: ApiSection,
    pub log: LogSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: None,
            data_dir: PathBuf::from("./starling-data"),
            syslog: SyslogConfig::default(),
            store: StoreSection::default(),
            cluster: ClusterSection::default(),
            api: ApiSection::default(),
            log: LogSection::default(),
        }
    }
}

/// One syslog listener: an address, and optionally its own RFC 3164 time zone.
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

/// A listener after validation: `None` address lists mean "off".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub address: SocketAddr,
    pub rfc3164_timezone: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShardBy {
    Hostname,
    Peer,
    AppName,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyslogConfig {
    /// UDP listener addresses; `["none"]` or `[]` turns UDP off.
    pub udp: Vec<ListenerEntry>,
    /// TCP listener addresses; `["none"]` or `[]` turns TCP off.
    pub tcp: Vec<ListenerEntry>,
    /// Longer messages are truncated to this many bytes and flagged.
    pub max_message_bytes: usize,
    /// Concurrent TCP connections per listener.
    pub max_connections: usize,
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// UDP sockets per address (SO_REUSEPORT); 0 = one per core.
    pub udp_sockets: usize,
    /// Requested kernel receive buffer per UDP socket.
    pub udp_recv_buffer_bytes: usize,
    /// Zone of RFC 3164 timestamps (which carry none): `local`, `UTC` or an IANA name.
    pub rfc3164_timezone: String,
    pub shard_by: ShardBy,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            udp: vec![ListenerEntry::Address("0.0.0.0:5514".into())],
            tcp: vec![ListenerEntry::Address("0.0.0.0:5514".into())],
            max_message_bytes: 64 * 1024,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(600),
            udp_sockets: 0,
            udp_recv_buffer_bytes: 8 * 1024 * 1024,
            rfc3164_timezone: "local".into(),
            shard_by: ShardBy::Hostname,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreSection {
    pub segment_max_bytes: u64,
    #[serde(deserialize_with = "duration")]
    pub segment_max_age: Duration,
    #[serde(deserialize_with = "duration")]
    pub commit_max_delay: Duration,
    pub commit_max_bytes: u64,
    pub retention: RetentionSection,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            segment_max_bytes: 128 * 1024 * 1024,
            segment_max_age: Duration::from_secs(3600),
            commit_max_delay: Duration::from_millis(10),
            commit_max_bytes: 4 * 1024 * 1024,
            retention: RetentionSection::default(),
        }
    }
}

/// Retention limits; each is off when absent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetentionSection {
    #[serde(deserialize_with = "optional_duration")]
    pub max_age: Option<Duration>,
    pub shard_max_bytes: Option<u64>,
    pub total_max_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterSection {
    pub cluster_id: String,
    /// Gossip (UDP) listen address.
    pub gossip: String,
    /// Address other nodes use for gossip; the listen address when absent.
    pub gossip_advertise: Option<String>,
    /// Seed nodes' gossip addresses (`host:port`, host names allowed).
    pub seeds: Vec<String>,
    /// Node-to-node forwarding (TCP) listen address.
    pub forward: String,
    pub priority: u32,
    pub may_be_master: bool,
    pub spool_max_bytes: u64,
    #[serde(deserialize_with = "duration")]
    pub spool_retention: Duration,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            cluster_id: "starling".into(),
            gossip: "127.0.0.1:5515".into(),
            gossip_advertise: None,
            seeds: Vec::new(),
            forward: "127.0.0.1:5516".into(),
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
    /// HTTP API address (metrics, health, status); `none` turns it off.
    pub listen: String,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: "127.0.0.1:5517".into(),
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

    /// Checks every value; the first problem is returned with its key.
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
        self.udp_listeners()?;
        self.tcp_listeners()?;
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
        validate_timezone(&syslog.rfc3164_timezone)
            .map_err(|message| invalid("syslog.rfc3164-timezone", message))?;
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
        if store.commit_max_delay > Duration::from_secs(10) {
            return Err(invalid(
                "store.commit-max-delay",
                format!("{:?} is above the maximum of 10s", store.commit_max_delay),
            ));
        }
        if self.cluster.cluster_id.is_empty() {
            return Err(invalid("cluster.cluster-id", "must not be empty".into()));
        }
        parse_address(&self.cluster.gossip)
            .map_err(|message| invalid("cluster.gossip", message))?;
        if let Some(advertise) = &self.cluster.gossip_advertise {
            parse_address(advertise)
                .map_err(|message| invalid("cluster.gossip-advertise", message))?;
        }
        for seed in &self.cluster.seeds {
            validate_host_port(seed).map_err(|message| invalid("cluster.seeds", message))?;
        }
        parse_address(&self.cluster.forward)
            .map_err(|message| invalid("cluster.forward", message))?;
        if self.api.listen != "none" {
            parse_address(&self.api.listen).map_err(|message| invalid("api.listen", message))?;
        }
        Ok(())
    }

    pub fn udp_listeners(&self) -> Result<Vec<ListenerSpec>, ConfigError> {
        listener_specs(
            &self.syslog.udp,
            &self.syslog.rfc3164_timezone,
            "syslog.udp",
        )
    }

    pub fn tcp_listeners(&self) -> Result<Vec<ListenerSpec>, ConfigError> {
        listener_specs(
            &self.syslog.tcp,
            &self.syslog.rfc3164_timezone,
            "syslog.tcp",
        )
    }

    /// The API address, or `None` when turned off.
    pub fn api_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.api.listen == "none" {
            return Ok(None);
        }
        parse_address(&self.api.listen)
            .map(Some)
            .map_err(|message| invalid("api.listen", message))
    }
}

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

fn listener_specs(
    entries: &[ListenerEntry],
    default_zone: &str,
    key: &'static str,
) -> Result<Vec<ListenerSpec>, ConfigError> {
    let mut specs = Vec::new();
    for entry in entries {
        let (address, zone) = match entry {
            ListenerEntry::Address(address) => (address.as_str(), default_zone),
            ListenerEntry::Table(table) => (
                table.address.as_str(),
                table.rfc3164_timezone.as_deref().unwrap_or(default_zone),
            ),
        };
        if address == "none" {
            if entries.len() > 1 {
                return Err(invalid(
                    key,
                    "`none` cannot be combined with addresses".into(),
                ));
            }
            continue;
        }
        let address = parse_address(address).map_err(|message| invalid(key, message))?;
        validate_timezone(zone).map_err(|message| invalid(key, message))?;
        if specs
            .iter()
            .any(|spec: &ListenerSpec| spec.address == address)
        {
            return Err(invalid(key, format!("address {address} is listed twice")));
        }
        specs.push(ListenerSpec {
            address,
            rfc3164_timezone: zone.to_string(),
        });
    }
    Ok(specs)
}

/// Parses `ip:port` (a socket address; host names are not resolved for listen addresses).
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .map_err(|_| format!("{text:?} is not an address of the form IP:PORT"))
}

fn validate_host_port(text: &str) -> Result<(), String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{text:?} is not of the form HOST:PORT")),
    }
}

/// `local`, `UTC`, an IANA zone name such as `Europe/Berlin`, or an offset like `+02:00`.
pub fn validate_timezone(zone: &str) -> Result<(), String> {
    zone.parse::<crate::parse::Zone>()
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Node ids travel in gossip and in every record: printable, no spaces, at most 128 bytes.
pub fn validate_node_id(node_id: &str) -> Result<(), String> {
    if node_id.is_empty() || node_id.len() > 128 {
        return Err(format!("{node_id:?} must be 1 to 128 bytes long"));
    }
    if let Some(bad) = node_id
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("{node_id:?} contains the character {bad:?}"));
    }
    Ok(())
}

/// Parses a duration such as `10ms`, `1h` or `7days`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{text:?} is not a duration: {error}"))
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_error(toml_text: &str, expected: &str) {
        let error = match Config::parse_toml(toml_text) {
            Err(message) => message,
            Ok(config) => match config.validate() {
                Err(error) => error.to_string(),
                Ok(()) => panic!("{toml_text:?} was accepted"),
            },
        };
        assert!(
            error.contains(expected),
            "{toml_text:?}: {error:?} lacks {expected:?}"
        );
    }

    #[test]
    fn empty_file_is_the_default_single_node() {
        let config = Config::parse_toml("").unwrap();
        assert_eq!(config, Config::default());
        config.validate().unwrap();
        assert_eq!(config.udp_listeners().unwrap()[0].address.port(), 5514);
        assert_eq!(config.tcp_listeners().unwrap()[0].address.port(), 5514);
        assert_eq!(config.api_address().unwrap().unwrap().port(), 5517);
    }

    #[test]
    fn full_file_parses() {
        let config = Config::parse_toml(
            r#"
            node-id = "web-1"
            data-dir = "/var/lib/starling"
            [syslog]
            udp = ["0.0.0.0:514", { address = "127.0.0.1:1514", rfc3164-timezone = "UTC" }]
            tcp = ["none"]
            max-message-bytes = 1048576
            idle-timeout = "30s"
            rfc3164-timezone = "Europe/Berlin"
            shard-by = "app-name"
            [store]
            commit-max-delay = "5ms"
            [store.retention]
            max-age = "30days"
            total-max-bytes = 1000000000
            [cluster]
            seeds = ["node-2.example:5515"]
            priority = 3
            [api]
            listen = "none"
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        let udp = config.udp_listeners().unwrap();
        assert_eq!(udp.len(), 2);
        assert_eq!(udp[0].rfc3164_timezone, "Europe/Berlin");
        assert_eq!(udp[1].rfc3164_timezone, "UTC");
        assert!(config.tcp_listeners().unwrap().is_empty());
        assert_eq!(config.syslog.shard_by, ShardBy::AppName);
        assert_eq!(
            config.store.retention.max_age,
            Some(Duration::from_secs(30 * 86400))
        );
        assert_eq!(config.api_address().unwrap(), None);
    }

    #[test]
    fn errors_name_the_key_and_line() {
        check_error(
            "node-id = \"a\"\nbogus = 1\n",
            "line 2: unknown field `bogus`",
        );
        check_error(
            "[syslog]\nmax-mesage-bytes = 5\n",
            "unknown field `max-mesage-bytes`",
        );
        check_error(
            "[syslog]\nmax-message-bytes = 5\n",
            "syslog.max-message-bytes",
        );
        check_error("[syslog]\nudp = [\"nowhere\"]\n", "syslog.udp");
        check_error(
            "[syslog]\ntcp = [\"none\", \"127.0.0.1:1\"]\n",
            "cannot be combined",
        );
        check_error(
            "[syslog]\nrfc3164-timezone = \"Mars/Olympus\"\n",
            "unknown time zone",
        );
        check_error("[syslog]\nidle-timeout = \"soon\"\n", "not a duration");
        check_error(
            "[syslog]\nshard-by = \"color\"\n",
            "unknown variant `color`",
        );
        check_error("node-id = \"has space\"\n", "node-id");
        check_error("[cluster]\nseeds = [\"no-port\"]\n", "cluster.seeds");
        check_error(
            "[store]\nsegment-max-bytes = 10\n",
            "store.segment-max-bytes",
        );
    }

    #[test]
    fn log_keys_take_their_values_and_name_themselves_when_wrong() {
        let config = Config::parse_toml("[log]\ncolor = \"never\"\nformat = \"json\"\n").unwrap();
        assert_eq!(config.log.color, LogColor::Never);
        assert_eq!(config.log.format, LogFormat::Json);
        let defaults = Config::parse_toml("[log]\nlevel = \"debug\"\n").unwrap();
        assert_eq!(defaults.log.color, LogColor::Auto);
        assert_eq!(defaults.log.format, LogFormat::Text);
        for (text, color) in [
            ("auto", LogColor::Auto),
            ("always", LogColor::Always),
            ("never", LogColor::Never),
        ] {
            assert_eq!(text.parse::<LogColor>(), Ok(color));
        }
        check_error(
            "[log]\ncolor = \"blue\"\n",
            "line 2: log.color must be auto, always or never, not \"blue\"",
        );
        check_error(
            "[log]\nformat = \"xml\"\n",
            "line 2: log.format must be text or json, not \"xml\"",
        );
        check_error("[log]\ncolour = \"never\"\n", "unknown field `colour`");
    }
}
