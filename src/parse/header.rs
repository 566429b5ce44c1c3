//! What ingest needs from a message, fast: the parse status, the event time, HOSTNAME and
//! APP-NAME (the shard key's inputs). Everything else is read again from `raw` at read time.
//!
//! A byte-level reader that allocates nothing handles the common shapes: RFC 5424 headers with
//! single spaces, printable-ASCII fields, an RFC 3339 timestamp or `-`, and STRUCTURED-DATA
//! `-` or `[…]`; RFC 3164 lines `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: msg`; and text that no
//! grammar can start with. It answers only when it is sure that the full `parse::parse` gives
//! the same four values (the reasoning is at each step, and `tests` checks it differentially);
//! anything else (invalid UTF-8, tabs, odd spacing, unusual timestamps or host words) falls
//! back to `parse::parse`. So `ingest_fields` equals `parse::parse` for every input.
//!
//! No I/O, no state, no policy of its own: the rules are those of `rfc5424` and `rfc3164`.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};

use super::fields::{leading_pri, strip_line_end};
use super::timestamp::leading_timestamp;
use super::{event_time_of, parse, rfc3164, ParseContext, Parsed};
use crate::record::{EventTime, ParseStatus};

/// The fields ingest reads from a message, as `parse::parse` would give them: slices of the
/// message where the fast reader found them, owned strings where the full parse ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestFields<'a> {
    pub status: ParseStatus,
    pub event_time: Option<EventTime>,
    pub hostname: Option<Cow<'a, str>>,
    pub app_name: Option<Cow<'a, str>>,
}

impl IngestFields<'_> {
    /// The fields of a full parse.
    pub fn from_parsed(parsed: Parsed) -> IngestFields<'static> {
        IngestFields {
            status: parsed.status,
            event_time: parsed.event_time(),
            hostname: parsed.hostname.map(Cow::Owned),
            app_name: parsed.app_name.map(Cow::Owned),
        }
    }

    const UNPARSED: IngestFields<'static> = IngestFields {
        status: ParseStatus::Unparsed,
        event_time: None,
        hostname: None,
        app_name: None,
    };
}

/// The status, event time, HOSTNAME and APP-NAME of one message, exactly as `parse::parse`
/// gives them, without allocating for the common shapes.
pub fn ingest_fields<'a>(raw: &'a [u8], ctx: &ParseContext) -> IngestFields<'a> {
    fast(raw, ctx).unwrap_or_else(|| IngestFields::from_parsed(parse(raw, ctx)))
}

/// The fast reader alone: `None` when it is not sure (then `ingest_fields` runs the full
/// parse). Exposed so tests can check that the common shapes really take it.
#[doc(hidden)]
pub fn ingest_fields_fast<'a>(raw: &'a [u8], ctx: &ParseContext) -> Option<IngestFields<'a>> {
    fast(raw, ctx)
}

fn fast<'a>(raw: &'a [u8], ctx: &ParseContext) -> Option<IngestFields<'a>> {
    if surely_unparsed(raw) {
        return Some(IngestFields::UNPARSED);
    }
    // Valid UTF-8 throughout: then the full parse's lossy text is these very bytes.
    let line = strip_line_end(std::str::from_utf8(raw).ok()?);
    // `parse` trims leading spaces before the PRI; a line starting with one is left to it.
    let (_, after_pri) = leading_pri(line)?;
    match after_pri.as_bytes().first()? {
        b'0'..=b'9' => rfc5424(after_pri),
        // A letter after the PRI is no VERSION: `rfc5424::parse` gives up, `rfc3164` reads it.
        first if first.is_ascii_alphabetic() => rfc3164(after_pri, ctx),
        _ => None,
    }
}

/// Text that neither reader can start on, so `parse` stores it as unparsed: `rfc5424` needs a
/// PRI (`<`) or a VERSION (a digit) after leading spaces, `rfc3164` a PRI or a timestamp,
/// which starts with a digit, `*`, `.` or a month name. A non-ASCII first byte (valid or not)
/// is none of these in the lossy text either.
fn surely_unparsed(raw: &[u8]) -> bool {
    let Some(start) = raw.iter().position(|b| *b != b' ') else {
        return true;
    };
    let text = &raw[start..];
    match text[0] {
        b'<' | b'0'..=b'9' | b'*' | b'.' => false,
        first if first.is_ascii_alphabetic() => !starts_with_month(text),
        _ => true,
    }
}

fn starts_with_month(text: &[u8]) -> bool {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    text.get(..3)
        .is_some_and(|head| MONTHS.iter().any(|m| m.eq_ignore_ascii_case(head)))
}

/// `VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD …` after the PRI.
/// When this accepts, `syslog_loose` (which `rfc5424::read` runs first and whose answer it
/// returns) accepts too, with these fields.
fn rfc5424(after_pri: &str) -> Option<IngestFields<'_>> {
    let bytes = after_pri.as_bytes();
    // VERSION: what `rfc5424::parse` requires (1 to 3 digits, not 0, then SP); `syslog_loose`
    // reads the same digits.
    let version_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=3).contains(&version_len)
        || bytes.get(version_len) != Some(&b' ')
        || bytes[..version_len].iter().all(|b| *b == b'0')
    {
        return None;
    }
    let mut pos = version_len + 1;
    // TIMESTAMP: `-`, or the text up to the next SP read by chrono's RFC 3339 parser.
    let event_time = if bytes.get(pos) == Some(&b'-') {
        pos += 1;
        None
    } else {
        let (timestamp, len) = strict_rfc3339(&bytes[pos..])?;
        pos += len;
        Some(event_time_of(timestamp))
    };
    let hostname = header_field(after_pri, &mut pos)?;
    // A HOSTNAME ending in `:` makes `syslog_loose` stop before the colon and fail.
    if hostname.ends_with(':') {
        return None;
    }
    let app_name = header_field(after_pri, &mut pos)?;
    header_field(after_pri, &mut pos)?; // PROCID
    header_field(after_pri, &mut pos)?; // MSGID
    if bytes.get(pos) != Some(&b' ') {
        return None;
    }
    // STRUCTURED-DATA: `-` always reads (whatever follows is MSG); `[` reads as long as a `]`
    // follows somewhere (the crate's permissive element is `[` up to the first `]`).
    match bytes.get(pos + 1)? {
        b'-' => {}
        b'[' if bytes[pos + 2..].contains(&b']') => {}
        _ => return None,
    }
    Some(IngestFields {
        status: ParseStatus::Rfc5424,
        event_time,
        hostname: nil_or(hostname),
        app_name: nil_or(app_name),
    })
}

/// SP and one header field of printable ASCII (no SP), which `syslog_loose` reads as the
/// same word; its one-character `:` is rejected by the crate, so not taken here.
fn header_field<'a>(text: &'a str, pos: &mut usize) -> Option<&'a str> {
    let bytes = text.as_bytes();
    if bytes.get(*pos) != Some(&b' ') {
        return None;
    }
    let start = *pos + 1;
    let len = bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_graphic())
        .count();
    let field = &text[start..start + len];
    if field.is_empty() || field == ":" {
        return None;
    }
    *pos = start + len;
    Some(field)
}

fn nil_or(field: &str) -> Option<Cow<'_, str>> {
    (field != "-").then_some(Cow::Borrowed(field))
}

/// `YYYY-MM-DDThh:mm:ss[.1-9 digits](Z|±hh:mm)`, ending at SP: the subset of chrono's
/// `parse_from_rfc3339` this reader is sure of (no leap second, at most nanoseconds), built
/// the way chrono builds it. Returns the timestamp and its length.
fn strict_rfc3339(bytes: &[u8]) -> Option<(DateTime<FixedOffset>, usize)> {
    let digits = |at: usize, len: usize| -> Option<u32> {
        let field = bytes.get(at..at + len)?;
        field.iter().try_fold(0u32, |value, b| {
            b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
        })
    };
    let punct = |at: usize, expected: &[u8]| bytes.get(at).is_some_and(|b| expected.contains(b));
    let year = digits(0, 4)?;
    let month = digits(5, 2)?;
    let day = digits(8, 2)?;
    let hour = digits(11, 2)?;
    let minute = digits(14, 2)?;
    let second = digits(17, 2)?;
    if !(punct(4, b"-") && punct(7, b"-") && punct(10, b"Tt") && punct(13, b":") && punct(16, b":"))
        || second > 59
    {
        return None;
    }
    let mut pos = 19;
    let mut nanos = 0;
    if punct(pos, b".") {
        let len = bytes[pos + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if !(1..=9).contains(&len) {
            return None;
        }
        nanos = digits(pos + 1, len)? * 10u32.pow(9 - len as u32);
        pos += 1 + len;
    }
    let offset_secs = match bytes.get(pos)? {
        b'Z' | b'z' => {
            pos += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let hours = digits(pos + 1, 2)?;
            let minutes = digits(pos + 4, 2)?;
            if !punct(pos + 3, b":") || hours > 23 || minutes > 59 {
                return None;
            }
            pos += 6;
            let secs = (hours * 3600 + minutes * 60) as i32;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    if bytes.get(pos) != Some(&b' ') {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let offset = FixedOffset::east_opt(offset_secs)?;
    let timestamp = date.and_time(time).and_local_timezone(offset).single()?;
    Some((timestamp, pos))
}

/// `Mmm dd hh:mm:ss HOST TAG…` after the PRI. The timestamp is read by the very function
/// `rfc3164::parse` uses (on the same text: no Cisco sequence number precedes a letter) and
/// resolved by the same rules. A HOST of letters, digits and `.-_` followed by one SP is what
/// `rfc3164::decide_hostname` leaves to `syslog_loose` (or takes itself, for an IPv4 address:
/// the same word either way), and the crate then splits the word after it as the TAG.
fn rfc3164<'a>(after_pri: &'a str, ctx: &ParseContext) -> Option<IngestFields<'a>> {
    let (time, rest) = leading_timestamp(after_pri)?;
    // Exactly one SP, so the full parse's `trim_start_matches(' ')` leaves the same body.
    let body = rest.strip_prefix(' ')?;
    if body.starts_with(rfc3164::RELAY_PREFIX) {
        return None;
    }
    let host_len = body
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        .count();
    let host = &body[..host_len];
    // `-` is NILVALUE to the crate.
    if host.is_empty() || host == "-" {
        return None;
    }
    let after_host = body[host_len..].strip_prefix(' ')?;
    // The crate's TAG: a word up to whitespace or `:`. Any other end (a control character,
    // non-ASCII text that might be Unicode whitespace) is left to the full parse.
    let tag_len = after_host
        .bytes()
        .take_while(|b| b.is_ascii_graphic() && *b != b':')
        .count();
    match after_host.as_bytes().get(tag_len) {
        None | Some(b':' | b' ' | b'\t') => {}
        Some(_) => return None,
    }
    let tag = &after_host[..tag_len];
    // An empty TAG leaves the host to the crate's other rules; `-` is a nil TAG, which drops
    // the HOSTNAME too.
    if tag.is_empty() || tag == "-" {
        return None;
    }
    let app_name = app_of_tag(tag);
    Some(IngestFields {
        status: ParseStatus::Rfc3164,
        event_time: rfc3164::resolve(time, ctx).map(event_time_of),
        hostname: Some(Cow::Borrowed(host)),
        app_name: (!app_name.is_empty()).then_some(Cow::Borrowed(app_name)),
    })
}

/// The APP-NAME `syslog_loose` takes from a TAG: `app[pid]` (the PID at least one character,
/// the `]` last) gives `app`, anything else is the whole TAG.
fn app_of_tag(tag: &str) -> &str {
    if let Some(open) = tag.find('[') {
        let inside = &tag[open + 1..];
        if inside
            .find(']')
            .is_some_and(|close| close > 0 && close + 1 == inside.len())
        {
            return &tag[..open];
        }
    }
    tag
}

#[cfg(test)]
#[path = "header_tests.rs"]
mod tests;
