//! RFC 5424 on top of `syslog_loose`: the crate reads the header and STRUCTURED-DATA; this
//! layer restores what the crate's leniency loses (exactly one SP before MSG, the MSG's own
//! trailing spaces, NILVALUE vs. empty STRUCTURED-DATA, RFC SD-PARAM escapes), rejects what
//! the grammar cannot mean (a PRI above 191, VERSION 0 or above 999), and reads what the
//! crate rejects but senders plainly mean: no PRI (Juniper), a timestamp without an offset,
//! an IPv6 HOSTNAME ending in `::`, a missing STRUCTURED-DATA field.
//!
//! No I/O. Returns `None` when the line is not RFC 5424, so the caller can try RFC 3164.

use std::borrow::Cow;

use chrono::{Offset, Utc};
use syslog_loose::{ProcId, Protocol, Variant};

use super::fields::{convert_sd, leading_pri, non_empty, offset_in};
use super::timestamp::{rfc3339, HeaderTime};
use super::{ParseContext, ParseStatus, Parsed};

/// RFC 3164 section 4.3.3's PRI for a message that has none, used for RFC 5424 too.
const DEFAULT_PRI: u8 = 13;

pub fn parse(line: &str, ctx: &ParseContext) -> Option<Parsed> {
    let trimmed = line.trim_start_matches(' ');
    let (pri, after_pri, has_pri) = match leading_pri(trimmed) {
        Some((pri, after_pri)) => (pri, after_pri, true),
        // `1 2020-05-22T14:59:09.250-03:00 host …`: a header without its PRI.
        None if version_then_date(trimmed) => (DEFAULT_PRI, trimmed, false),
        None => return None,
    };
    // VERSION: 1 to 3 digits, not 0, then SP. Anything else is not RFC 5424.
    let version_len = after_pri.bytes().take_while(u8::is_ascii_digit).count();
    if !(1..=3).contains(&version_len) || after_pri.as_bytes().get(version_len) != Some(&b' ') {
        return None;
    }
    let version: u32 = after_pri[..version_len].parse().ok()?;
    if version == 0 {
        return None;
    }
    let as_sent = if has_pri {
        Cow::Borrowed(trimmed)
    } else {
        Cow::Owned(format!("<{pri}>{after_pri}"))
    };
    if let Some(parsed) = read(&as_sent, pri, version) {
        return Some(parsed);
    }
    // What `syslog_loose` rejects but a sender plainly meant: a timestamp without an offset
    // (read in the configured zone), a HOSTNAME ending in `:` (IPv6 `fe80::`), a missing
    // STRUCTURED-DATA field. The header is split here and handed over without those.
    let is_separator = |c: char| c == ' ' || c == '\t';
    let header: Vec<&str> = after_pri
        .split(is_separator)
        .filter(|field| !field.is_empty())
        .take(6)
        .collect();
    if header.len() < 6
        || header
            .iter()
            .any(|field| field.contains(char::is_whitespace))
    {
        return None;
    }
    let timestamp = match header[1] {
        "-" => None,
        text => match rfc3339(text) {
            Some((HeaderTime::Zoned(dt), "")) => Some(dt),
            Some((HeaderTime::Naive(naive), "")) => Some(ctx.rfc3164_zone.resolve(naive)),
            _ => return None,
        },
    };
    let hostname = Some(header[2]).filter(|host| *host != "-");
    let after_header = offset_in(after_pri, header[5])
        .map(|start| after_pri[start + header[5].len()..].trim_start_matches(is_separator))
        .unwrap_or("");
    let sd_and_msg = if after_header.is_empty()
        || after_header.starts_with('-')
        || after_header.starts_with('[')
    {
        after_header.to_string()
    } else {
        format!("- {after_header}")
    };
    let normalised = format!(
        "<{pri}>{version} - - {} {} {} {sd_and_msg}",
        header[3], header[4], header[5]
    );
    let mut parsed = read(&normalised, pri, version)?;
    parsed.timestamp = timestamp;
    parsed.hostname = hostname.map(str::to_string);
    Some(parsed)
}

fn version_then_date(text: &str) -> bool {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    (1..=3).contains(&digits) && text[digits..].strip_prefix(' ').and_then(rfc3339).is_some()
}

/// `syslog_loose` on a line that starts with a valid `<PRI>VERSION SP`.
fn read(line: &str, pri: u8, version: u32) -> Option<Parsed> {
    let utc = Some(Utc.fix());
    let message =
        syslog_loose::parse_message_with_year_exact_tz(line, |_| 1970, utc, Variant::RFC5424)
            .ok()?;
    if message.protocol != Protocol::RFC5424(version) {
        return None;
    }
    let after_pri = line.split_once('>').map(|(_, rest)| rest).unwrap_or("");
    let structured_data = if sd_is_nil(after_pri) {
        None
    } else {
        Some(convert_sd(&message.structured_data))
    };
    Some(Parsed {
        status: ParseStatus::Rfc5424,
        pri: Some(pri),
        facility: Some(pri >> 3),
        severity: Some(pri & 7),
        version: Some(version),
        timestamp: message.timestamp,
        hostname: message.hostname.map(str::to_string),
        app_name: message.appname.map(str::to_string),
        procid: message.procid.map(|p| procid_text(after_pri, p)),
        msgid: message.msgid.map(str::to_string),
        structured_data,
        message: non_empty(msg_text(line, message.msg)),
    })
}

/// PROCID as sent. `syslog_loose` reads a numeric PROCID as an integer, which would turn
/// `00` or `007` into `0` and `7`; the field is the fifth space-separated token after the PRI
/// (VERSION TIMESTAMP HOSTNAME APP-NAME PROCID, none of which holds a space), kept whenever it
/// reads as the same number.
fn procid_text(after_pri: &str, procid: ProcId<&str>) -> String {
    match procid {
        ProcId::PID(pid) => after_pri
            .split(' ')
            .nth(4)
            .filter(|token| token.parse::<i32>() == Ok(pid))
            .map_or_else(|| pid.to_string(), str::to_string),
        ProcId::Name(name) => name.to_string(),
    }
}

/// The STRUCTURED-DATA field is the NILVALUE: the token after the six header fields is `-`.
fn sd_is_nil(after_pri: &str) -> bool {
    let mut rest = after_pri;
    for _ in 0..6 {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        rest = &rest[end..];
    }
    let sd = rest.trim_start_matches(' ');
    sd.starts_with('-') || sd.is_empty()
}

/// The MSG as sent: `syslog_loose` swallows every space and tab before it and trims its end;
/// RFC 5424 has exactly one SP (leniently, a tab) before MSG, and trailing spaces are MSG.
fn msg_text<'a>(line: &'a str, parsed_msg: &'a str) -> &'a str {
    let Some(start) = offset_in(line, parsed_msg) else {
        return parsed_msg;
    };
    let head = &line[..start];
    let header_end = head.trim_end_matches([' ', '\t']).len();
    let from_separator = &line[header_end..];
    from_separator
        .strip_prefix([' ', '\t'])
        .unwrap_or(from_separator)
}
