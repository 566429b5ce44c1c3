//! Syslog parsing: one message's bytes (framing already removed) into its fields.
//!
//! RFC 5424 is tried first, then RFC 3164 with the many shapes real devices send, both on top
//! of `syslog_loose`; what neither reads is `ParseStatus::Unparsed` with the whole text as the
//! message, so parsing never drops anything and never fails. Invalid UTF-8 is read lossily
//! (the caller keeps the exact bytes). Timestamps without a zone or year (RFC 3164) are
//! resolved against `ParseContext`: the zone configured for the listener and the receive time.
//!
//! Ingest needs only the status, event time, HOSTNAME and APP-NAME: `ingest_fields` (in
//! `header`) reads those without allocating for the common shapes and falls back to `parse`
//! otherwise, always giving what `parse` gives.
//!
//! This module does no I/O and keeps no state between calls.

mod fields;
mod header;
mod rfc3164;
mod rfc5424;
mod timestamp;
mod zone;

#[cfg(test)]
mod header_proptests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use chrono::{DateTime, FixedOffset, Utc};

use crate::record::{EventTime, ParseStatus};

pub use header::{ingest_fields, ingest_fields_fast, IngestFields};
pub use zone::{Zone, ZoneError};

/// What parsing needs to know beyond the bytes: used only by RFC 3164 timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseContext {
    /// When the message was received; picks the year of a timestamp that has none.
    pub received_at: DateTime<Utc>,
    /// The zone of RFC 3164 timestamps, which carry no offset.
    pub rfc3164_zone: Zone,
}

/// One STRUCTURED-DATA element: its SD-ID and its parameters in order, values unescaped.
/// A name may repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement {
    pub id: String,
    pub params: Vec<(String, String)>,
}

/// The fields of one message. `None` means absent, empty (MSG) or NILVALUE (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub status: ParseStatus,
    pub pri: Option<u8>,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    /// The RFC 5424 VERSION; `None` for RFC 3164.
    pub version: Option<u32>,
    pub timestamp: Option<DateTime<FixedOffset>>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    pub procid: Option<String>,
    pub msgid: Option<String>,
    /// `None` for NILVALUE or none given.
    pub structured_data: Option<Vec<SdElement>>,
    pub message: Option<String>,
}

impl Parsed {
    /// A message nothing could be read from: only its text.
    pub fn unparsed(text: String) -> Parsed {
        Parsed {
            status: ParseStatus::Unparsed,
            pri: None,
            facility: None,
            severity: None,
            version: None,
            timestamp: None,
            hostname: None,
            app_name: None,
            procid: None,
            msgid: None,
            structured_data: None,
            message: Some(text),
        }
    }

    /// The timestamp as the record stores it: instant plus the offset it was written with.
    pub fn event_time(&self) -> Option<EventTime> {
        self.timestamp.map(event_time_of)
    }
}

/// A timestamp as the record stores it.
fn event_time_of(ts: DateTime<FixedOffset>) -> EventTime {
    EventTime {
        unix_micros: ts.timestamp_micros(),
        utc_offset_secs: ts.offset().local_minus_utc(),
    }
}

/// Reads one message. Never fails: what cannot be read is `ParseStatus::Unparsed` with the
/// (lossily decoded) text as its message.
pub fn parse(raw: &[u8], ctx: &ParseContext) -> Parsed {
    let text = String::from_utf8_lossy(raw);
    let line = fields::strip_line_end(&text);
    if let Some(parsed) = rfc5424::parse(line, ctx) {
        return parsed;
    }
    if let Some(parsed) = rfc3164::parse(line, ctx) {
        return parsed;
    }
    Parsed::unparsed(text.into_owned())
}

/// `EventTime` back to a `DateTime` with its offset; `None` if out of chrono's range.
pub fn event_time_to_datetime(event_time: EventTime) -> Option<DateTime<FixedOffset>> {
    let offset = FixedOffset::east_opt(event_time.utc_offset_secs)?;
    let utc = DateTime::<Utc>::from_timestamp_micros(event_time.unix_micros)?;
    Some(utc.with_timezone(&offset))
}
