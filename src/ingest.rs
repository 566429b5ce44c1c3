//! From one received message to a [`Record`]: parse, event time, shard key, receive metadata.
//!
//! Owns the shard-key rule (`shard-by`: HOSTNAME, falling back to the sender's IP address when
//! absent or `-`; or the peer; or the app name). It does no I/O and keeps no state: listeners
//! call [`build_record`] for every message, the store assigns the record's sequence.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::parse::{self, ParseContext, Parsed, Zone};
use crate::record::{Record, Transport};

/// Shard key used when neither the message nor the connection names a source.
pub const UNKNOWN_SOURCE: &str = "unknown";

/// What a record's shard key (its `source`) is taken from: `syslog.shard-by` in the config
/// file (read with serde), `--shard-by` on the command line (read with [`FromStr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShardBy {
    /// The HOSTNAME field; the sender's IP address when it is absent or `-`.
    #[default]
    Hostname,
    /// The sender's IP address.
    Peer,
    /// The APP-NAME field (RFC 3164: the tag); the sender's IP address when absent.
    AppName,
}

impl ShardBy {
    /// Every value, in the order the documentation lists them.
    pub const ALL: [ShardBy; 3] = [ShardBy::Hostname, ShardBy::Peer, ShardBy::AppName];

    pub fn as_str(self) -> &'static str {
        match self {
            ShardBy::Hostname => "hostname",
            ShardBy::Peer => "peer",
            ShardBy::AppName => "app-name",
        }
    }
}

impl fmt::Display for ShardBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown shard-by value {0:?} (expected \"hostname\", \"peer\" or \"app-name\")")]
pub struct ShardByError(pub String);

impl FromStr for ShardBy {
    type Err = ShardByError;

    fn from_str(text: &str) -> Result<ShardBy, ShardByError> {
        match text {
            "hostname" => Ok(ShardBy::Hostname),
            "peer" => Ok(ShardBy::Peer),
            "app-name" => Ok(ShardBy::AppName),
            other => Err(ShardByError(other.to_owned())),
        }
    }
}

/// How a listener turns messages into records. The config hands it over per listener
/// (`config::ListenerSpec::ingest_config`); the origin is the node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// This node's id: the origin of every record it receives.
    pub origin: Arc<str>,
    pub shard_by: ShardBy,
    /// Zone of RFC 3164 timestamps (which carry none).
    pub rfc3164_zone: Zone,
}

/// Builds the record of one message. `raw` is the message without framing (already cut to
/// the maximum when `truncated`). `origin_seq` stays 0: the store assigns it.
pub fn build_record(
    raw: Bytes,
    truncated: bool,
    peer: Option<SocketAddr>,
    transport: Transport,
    received_at: DateTime<Utc>,
    cfg: &IngestConfig,
) -> Record {
    let peer = peer.map(Peer::new);
    build_record_from(raw, truncated, peer.as_ref(), transport, received_at, cfg)
}

/// A sender's address with its text forms, computed once per connection (or sender) rather
/// than once per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// `ip:port`, as records carry it.
    pub text: Arc<str>,
    /// The IP address alone, the shard key fallback.
    pub ip_text: Arc<str>,
}

impl Peer {
    /// An IPv4 sender seen through a dual-stack IPv6 socket (`::ffff:a.b.c.d`) is recorded
    /// as the IPv4 address it is.
    pub fn new(addr: SocketAddr) -> Peer {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        Peer {
            addr,
            text: Arc::from(addr.to_string()),
            ip_text: Arc::from(addr.ip().to_string()),
        }
    }
}

/// [`build_record`] with the peer's text forms already computed. Reads only what the record
/// needs (status, event time, shard key) with [`parse::ingest_fields`], which borrows from
/// `raw` for the common shapes; the other fields are read again from `raw` at read time.
pub fn build_record_from(
    raw: Bytes,
    truncated: bool,
    peer: Option<&Peer>,
    transport: Transport,
    received_at: DateTime<Utc>,
    cfg: &IngestConfig,
) -> Record {
    let ctx = ParseContext {
        received_at,
        rfc3164_zone: cfg.rfc3164_zone,
    };
    let fields = parse::ingest_fields(&raw, &ctx);
    let source = shard_key_of(
        fields.hostname.as_deref(),
        fields.app_name.as_deref(),
        peer,
        cfg.shard_by,
    );
    let (parse, event_time) = (fields.status, fields.event_time);
    Record {
        received_at_micros: received_at.timestamp_micros(),
        event_time,
        origin: cfg.origin.clone(),
        origin_seq: 0,
        peer: peer.map(|p| p.text.clone()),
        transport,
        parse,
        truncated,
        source,
        raw,
        lost_from: None,
        tls_peer: None,
        file: None,
    }
}

/// The shard key of a parsed message per `shard_by`.
pub fn shard_key(parsed: &Parsed, peer: Option<SocketAddr>, shard_by: ShardBy) -> Arc<str> {
    shard_key_of(
        parsed.hostname.as_deref(),
        parsed.app_name.as_deref(),
        peer.map(Peer::new).as_ref(),
        shard_by,
    )
}

/// The shard key from a message's HOSTNAME and APP-NAME: the chosen field trimmed, unless it
/// is empty or `-`, else the sender's IP address.
fn shard_key_of(
    hostname: Option<&str>,
    app_name: Option<&str>,
    peer: Option<&Peer>,
    shard_by: ShardBy,
) -> Arc<str> {
    let field = match shard_by {
        ShardBy::Hostname => hostname,
        ShardBy::AppName => app_name,
        ShardBy::Peer => None,
    };
    match field.map(str::trim) {
        Some(name) if !name.is_empty() && name != "-" => Arc::from(name),
        _ => match peer {
            Some(peer) => peer.ip_text.clone(),
            None => Arc::from(UNKNOWN_SOURCE),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ParseStatus;

    fn config(shard_by: ShardBy) -> IngestConfig {
        IngestConfig {
            origin: "node-a".to_owned().into(),
            shard_by,
            rfc3164_zone: Zone::Utc,
        }
    }

    fn received_at() -> DateTime<Utc> {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    /// Builds a record of `raw` from 192.0.2.7:5000 and checks its source and parse status.
    fn check(raw: &str, shard_by: ShardBy, source: &str, status: ParseStatus) {
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let record = build_record(
            Bytes::copy_from_slice(raw.as_bytes()),
            false,
            Some(peer),
            Transport::Udp,
            received_at(),
            &config(shard_by),
        );
        assert_eq!(
            (&*record.source, record.parse),
            (source, status),
            "{raw:?} by {shard_by}"
        );
    }

    #[test]
    fn shard_key_per_shard_by() {
        use ParseStatus::*;
        use ShardBy::*;
        let rfc5424 = "<34>1 2026-11-26T09:00:00Z web1 sshd 42 - - hello";
        check(rfc5424, Hostname, "web1", Rfc5424);
        check(rfc5424, Peer, "192.0.2.7", Rfc5424);
        check(rfc5424, AppName, "sshd", Rfc5424);
        check(
            "<34>1 2026-11-26T09:00:00Z - - - - - hi",
            Hostname,
            "192.0.2.7",
            Rfc5424,
        );
        check(
            "<34>1 2026-11-26T09:00:00Z - - - - - hi",
            AppName,
            "192.0.2.7",
            Rfc5424,
        );
        check(
            "<13>Nov 26 09:00:00 db2 cron[7]: job",
            Hostname,
            "db2",
            Rfc3164,
        );
        check("not syslog at all", Hostname, "192.0.2.7", Unparsed);
        // Hostile names are kept as they are: the store encodes directory names.
        check(
            "<34>1 - ../../etc/passwd a - - - x",
            Hostname,
            "../../etc/passwd",
            Rfc5424,
        );
    }

    /// The record's status, event time and source are those of the full parse, whichever
    /// way `ingest_fields` read them.
    #[test]
    fn record_fields_match_the_full_parse() {
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let lines = [
            "<134>1 2026-11-26T10:00:00.123456Z h1 loadgen 4242 LOAD [load@32473 conn=\"0\"] x",
            "<134>1 2026-11-26T10:00:00+02:00 - - - - - x",
            "<30>Nov 26 09:59:58 web-01 systemd[1]: Started",
            "<30>Nov 26 09:59:58 web-01 [1]: no app",
            "<30>Nov 26 09:59:58 %ASA-6-302014: Teardown",
            "<13>1 - fe80:: app - - - hi",
            "plain text",
        ];
        for line in lines {
            for shard_by in [ShardBy::Hostname, ShardBy::Peer, ShardBy::AppName] {
                let record = build_record(
                    Bytes::copy_from_slice(line.as_bytes()),
                    false,
                    Some(peer),
                    Transport::Tcp,
                    received_at(),
                    &config(shard_by),
                );
                let ctx = ParseContext {
                    received_at: received_at(),
                    rfc3164_zone: Zone::Utc,
                };
                let parsed = parse::parse(line.as_bytes(), &ctx);
                assert_eq!(
                    (record.parse, record.event_time, record.source),
                    (
                        parsed.status,
                        parsed.event_time(),
                        shard_key(&parsed, Some(peer), shard_by)
                    ),
                    "{line:?} by {shard_by}"
                );
            }
        }
    }

    #[test]
    fn record_carries_receive_metadata_and_raw_bytes() {
        let raw = Bytes::from_static(b"<34>1 2026-11-26T09:00:00.5+01:00 web1 sshd - - - hi");
        let record = build_record(
            raw.clone(),
            true,
            Some("[2001:db8::1]:514".parse().unwrap()),
            Transport::Tcp,
            received_at(),
            &config(ShardBy::Hostname),
        );
        assert_eq!(record.raw, raw);
        assert!(record.truncated);
        assert_eq!(&*record.origin, "node-a");
        assert_eq!(record.origin_seq, 0);
        assert_eq!(record.peer.as_deref(), Some("[2001:db8::1]:514"));
        assert_eq!(record.transport, Transport::Tcp);
        assert_eq!(record.received_at_micros, received_at().timestamp_micros());
        let event_time = record.event_time.unwrap();
        assert_eq!(event_time.utc_offset_secs, 3600);
        assert_eq!(
            event_time.unix_micros,
            "2026-11-26T08:00:00.5Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
                .timestamp_micros()
        );
    }

    #[test]
    fn ipv4_mapped_peers_are_recorded_as_ipv4() {
        let peer = Peer::new("[::ffff:192.0.2.7]:514".parse().unwrap());
        assert_eq!(
            (&*peer.text, &*peer.ip_text),
            ("192.0.2.7:514", "192.0.2.7")
        );
        let peer = Peer::new("[2001:db8::1]:514".parse().unwrap());
        assert_eq!(
            (&*peer.text, &*peer.ip_text),
            ("[2001:db8::1]:514", "2001:db8::1")
        );
    }

    #[test]
    fn missing_peer_gives_the_unknown_source() {
        let parsed = Parsed::unparsed("x".to_owned());
        assert_eq!(
            &*shard_key(&parsed, None, ShardBy::Hostname),
            UNKNOWN_SOURCE
        );
    }

    #[test]
    fn shard_by_parses_its_config_names() {
        for shard_by in [ShardBy::Hostname, ShardBy::Peer, ShardBy::AppName] {
            assert_eq!(shard_by.as_str().parse::<ShardBy>(), Ok(shard_by));
        }
        let error = "host".parse::<ShardBy>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown shard-by value \"host\" (expected \"hostname\", \"peer\" or \"app-name\")"
        );
    }
}
