//! The record: what one accepted syslog message becomes, everywhere in Starling.
//!
//! A `Record` is created where a message is first received (listener, journal upload) and
//! is what the store persists, the spool holds and the forwarder ships. It carries the
//! message's identity `(origin, origin_seq)`, its receive metadata and the exact raw bytes.
//! Parsed fields are not stored: they are re-derived from `raw` by `parse` at read time,
//! except the event time, which may depend on receive-time context (RFC 3164 year and zone)
//! and so is resolved once, at receive time, and stored.
//!
//! This module does no I/O and imports nothing of ours.

use std::sync::Arc;

use bytes::Bytes;

/// How a message reached the node that first accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Transport {
    Udp = 1,
    Tcp = 2,
    Journal = 3,
    /// A line tailed from a local file (`input_file`).
    File = 4,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Journal => "journal",
            Transport::File => "file",
        }
    }

    pub fn from_u8(value: u8) -> Option<Transport> {
        match value {
            1 => Some(Transport::Udp),
            2 => Some(Transport::Tcp),
            3 => Some(Transport::Journal),
            4 => Some(Transport::File),
            _ => None,
        }
    }
}

/// Which grammar the message was read with. `Unparsed` records keep only their raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ParseStatus {
    Rfc5424 = 1,
    Rfc3164 = 2,
    Unparsed = 3,
    /// A journal export-format entry (journald upload).
    Journal = 4,
}

impl ParseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseStatus::Rfc5424 => "rfc5424",
            ParseStatus::Rfc3164 => "rfc3164",
            ParseStatus::Unparsed => "unparsed",
            ParseStatus::Journal => "journal",
        }
    }

    pub fn from_u8(value: u8) -> Option<ParseStatus> {
        match value {
            1 => Some(ParseStatus::Rfc5424),
            2 => Some(ParseStatus::Rfc3164),
            3 => Some(ParseStatus::Unparsed),
            4 => Some(ParseStatus::Journal),
            _ => None,
        }
    }
}

/// An event time as the message stated it (or as resolved for RFC 3164): an instant plus the
/// UTC offset it was written with, so `read` can print it "as sent".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventTime {
    /// Microseconds since the Unix epoch, UTC.
    pub unix_micros: i64,
    /// Offset from UTC in seconds of the zone the timestamp was written in.
    pub utc_offset_secs: i32,
}

/// One accepted message with its identity and receive metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Receive time on the origin node, microseconds since the Unix epoch, UTC.
    pub received_at_micros: i64,
    /// The message's own timestamp, if it had one that parsed.
    pub event_time: Option<EventTime>,
    /// Node id of the node that first accepted the message. (Shared strings: a node's records
    /// mostly carry the same origin, peer and source, so copies only bump a count.)
    pub origin: Arc<str>,
    /// Per-origin sequence number, gapless and persistent. `0` means "not yet assigned": the
    /// store assigns the next sequence of its local origin when it appends such a record.
    pub origin_seq: u64,
    /// Sender address (`ip:port`), if known.
    pub peer: Option<Arc<str>>,
    pub transport: Transport,
    pub parse: ParseStatus,
    /// The message was longer than the configured limit and was cut to it.
    pub truncated: bool,
    /// Shard key: HOSTNAME, peer address or app name, per `shard-by`.
    pub source: Arc<str>,
    /// The exact bytes received, minus transport framing (after truncation, if any).
    pub raw: Bytes,
    /// Set only on a gap marker: this record stands for the origin's sequences
    /// `lost_from..=origin_seq`, which were lost before they were forwarded (gone from the
    /// origin's spool). Its raw bytes say so in words. `None` on every received message.
    pub lost_from: Option<u64>,
    /// The sender's identity as its TLS client certificate proved it (a permitted name, the
    /// subject's DNS name or common name, or the certificate's `sha-256:` fingerprint, per
    /// `tls.client-auth`); `None` for a message that did not come over an authenticated TLS
    /// connection.
    pub tls_peer: Option<Arc<str>>,
    /// Set only on a line tailed from a local file: where it was read, and the read position
    /// it makes durable with it (`input_file`). `None` on every other record.
    pub file: Option<Arc<FileOrigin>>,
}

/// Where a tailed line came from, stored with the line so the read position is durable in
/// the same frame as the lines it covers (record flag 64, `docs/format.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileOrigin {
    /// The file's path as it was matched (bytes: a path need not be UTF-8).
    pub path: Bytes,
    /// Byte offset just past the line's terminator: where reading resumes after this line.
    pub offset: u64,
    /// The file's identity: device and inode, confirmed by a CRC-32 of its first
    /// `fingerprint_len` bytes (at most 1 KiB; fewer while the file was shorter).
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: u32,
    pub fingerprint_len: u32,
    /// The PRI given to the line (`facility * 8 + severity` of its input).
    pub pri: u8,
    /// The APP-NAME given to the line (its input's `app-name`, else the file's stem).
    pub app_name: Arc<str>,
    /// The line had no terminator yet when it was stored (`partial-line-timeout`).
    pub partial: bool,
}

impl Record {
    /// The first origin sequence this record accounts for: `lost_from` on a gap marker,
    /// otherwise its own `origin_seq`.
    pub fn first_seq(&self) -> u64 {
        self.lost_from.unwrap_or(self.origin_seq)
    }

    /// A gap marker declaring seqs `from..=to` of `origin` lost. It is stored in the shard
    /// named after the origin, as an unparsed record whose text says what happened, with
    /// transport `tcp` (it travels the forwarding connection) and no peer.
    pub fn gap_marker(origin: &str, from: u64, to: u64, received_at_micros: i64) -> Record {
        Record {
            received_at_micros,
            event_time: None,
            origin: Arc::from(origin),
            origin_seq: to,
            peer: None,
            transport: Transport::Tcp,
            parse: ParseStatus::Unparsed,
            truncated: false,
            source: Arc::from(origin),
            raw: gap_marker_text(origin, from, to),
            lost_from: Some(from),
            tls_peer: None,
            file: None,
        }
    }
}

impl Record {
    /// The record a spool appends when the master already holds `origin`'s seqs up to `to`
    /// from an earlier data directory with the same node id: it takes up `from..=to` in this
    /// store (a gap marker, so numbering continues after `to`), and says so in words.
    pub fn renumber_note(origin: &str, from: u64, to: u64, received_at_micros: i64) -> Record {
        Record {
            raw: Bytes::from(format!(
                "starling: the master already holds seqs up to {to} of origin {origin} from an \
                 earlier data directory with this node id; seqs {from}..={to} are not used in \
                 this one, and its records numbered at or below {to} were appended again after \
                 them to be forwarded"
            )),
            ..Record::gap_marker(origin, from, to, received_at_micros)
        }
    }

    /// The record a spool appends when the master already holds `origin`'s seqs up to `to`
    /// that this data directory, which forwarded to a master before, no longer holds (its
    /// newest records were lost, or it was restored from an older backup): it takes up
    /// `from..=to` here so that numbering continues after them, and says so in words.
    pub fn skip_note(origin: &str, from: u64, to: u64, received_at_micros: i64) -> Record {
        Record {
            raw: Bytes::from(format!(
                "starling: the master already holds seqs up to {to} of origin {origin}, which \
                 this data directory no longer holds (newest records lost, or restored from an \
                 older backup); seqs {from}..={to} are not used here, and records numbered at \
                 or below {to} since the node started were appended again after them"
            )),
            ..Record::gap_marker(origin, from, to, received_at_micros)
        }
    }
}

/// Hands out one shared `Arc<str>` for as long as the same text keeps coming (one origin per
/// store, one peer per connection, one host per shard are the common case), so decoding or
/// receiving many records allocates a string only when it changes.
#[derive(Debug, Default, Clone)]
pub struct SharedStr(Option<Arc<str>>);

impl SharedStr {
    /// The shared string for `bytes`, which are checked to be UTF-8 only when they differ
    /// from the previous ones (which were).
    pub fn get_utf8(&mut self, bytes: &[u8]) -> Result<Arc<str>, std::str::Utf8Error> {
        match &self.0 {
            Some(shared) if shared.as_bytes() == bytes => Ok(shared.clone()),
            _ => Ok(self.get(std::str::from_utf8(bytes)?)),
        }
    }

    pub fn get(&mut self, text: &str) -> Arc<str> {
        match &self.0 {
            Some(shared) if **shared == *text => shared.clone(),
            _ => {
                let shared: Arc<str> = Arc::from(text);
                self.0 = Some(shared.clone());
                shared
            }
        }
    }
}

/// The raw text of a gap marker for seqs `from..=to` of `origin`.
pub fn gap_marker_text(origin: &str, from: u64, to: u64) -> Bytes {
    Bytes::from(format!(
        "starling: seqs {from}..={to} of origin {origin} were lost before they were forwarded \
         (no longer in the origin's spool: removed by retention, damaged on disk or never synced)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_str_shares_while_the_text_repeats() {
        let mut shared = SharedStr::default();
        let a = shared.get_utf8(b"node-a").unwrap();
        let b = shared.get("node-a");
        assert!(Arc::ptr_eq(&a, &b), "the same text is one allocation");
        let c = shared.get_utf8(b"node-b").unwrap();
        assert_eq!(&*c, "node-b");
        assert!(!Arc::ptr_eq(&a, &c));
        // Bytes that are not UTF-8 are refused, also right after a valid text.
        assert!(shared.get_utf8(b"node-\xff").is_err());
        assert_eq!(&*shared.get_utf8(b"node-b").unwrap(), "node-b");
    }
}
