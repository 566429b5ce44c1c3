//! RFC 3164 (BSD syslog) as real devices send it, on top of `syslog_loose`.
//!
//! This layer reads what `syslog_loose` gets wrong or rejects: the PRI (missing → 13, as
//! RFC 3164 section 4.3.3 tells a relay to assume), Cisco sequence numbers (`91: *Oct 07 …`),
//! every timestamp shape of `timestamp` (resolved in the configured zone, DST gaps included,
//! with the year nearest the receive time), and whether the first word is the HOSTNAME: the
//! "Message forwarded from HOST:" relay prefix, IPv6 addresses (`fe80::`), a word followed
//! by `:` (a TAG: `%ASA-6-302014:`, `haproxy[7]:`), a word no host name can be (`%bzorp`,
//! `#001`, JSON), no timestamp (then no HOSTNAME either, RFC 3164 section 4.3.3). It then
//! hands `syslog_loose` a normalised header (a fixed RFC 3339 timestamp, `-` for a HOSTNAME
//! already decided, `- :` for "no TAG") to split TAG, optional SD and MSG.
//!
//! No I/O. Returns `None` when the line has neither a PRI nor a timestamp: the caller stores
//! it as unparsed.

use std::net::IpAddr;

use chrono::{Offset, Utc};
use syslog_loose::Variant;

use super::fields::{convert_sd, leading_pri, non_empty};
use super::timestamp::{leading_timestamp, HeaderTime};
use super::zone::infer_year;
use super::{ParseContext, ParseStatus, Parsed};

/// RFC 3164 section 4.3.3: a message without PRI is user.notice.
const DEFAULT_PRI: u8 = 13;

const PLACEHOLDER_TIMESTAMP: &str = "1970-01-01T00:00:00Z";

pub(super) const RELAY_PREFIX: &str = "Message forwarded from ";

pub fn parse(line: &str, ctx: &ParseContext) -> Option<Parsed> {
    let (pri, after_pri) = match leading_pri(line.trim_start_matches(' ')) {
        Some((pri, rest)) => (Some(pri), rest),
        None => (None, line),
    };
    let after_sequence = skip_cisco_sequence(after_pri);
    let header_time = leading_timestamp(after_sequence);
    let (timestamp, after_time) = match header_time {
        Some((time, rest)) => (Some(resolve(time, ctx)), rest),
        None if pri.is_some() => (None, after_pri),
        None => return None,
    };
    let pri = pri.unwrap_or(DEFAULT_PRI);

    let body = after_time.trim_start_matches(' ');
    let decision = decide_hostname(body, header_time.is_some());
    let normalised = match decision {
        HostDecision::Given(_, rest) | HostDecision::Absent(rest) => {
            format!("<{pri}>{PLACEHOLDER_TIMESTAMP} - {rest}")
        }
        // `- :` is a nil HOSTNAME and an empty TAG: everything after it is MSG.
        HostDecision::MessageOnly(rest) => format!("<{pri}>{PLACEHOLDER_TIMESTAMP} - : {rest}"),
        HostDecision::Undecided if body.trim_end().is_empty() => {
            format!("<{pri}>{PLACEHOLDER_TIMESTAMP} -")
        }
        HostDecision::Undecided => format!("<{pri}>{PLACEHOLDER_TIMESTAMP} {body}"),
    };
    let utc = Some(Utc.fix());
    let message = syslog_loose::parse_message_with_year_exact_tz(
        &normalised,
        |_| 1970,
        utc,
        Variant::RFC3164,
    )
    .ok()?;

    let hostname = match decision {
        HostDecision::Given(host, _) => Some(host.to_string()),
        HostDecision::Absent(_) | HostDecision::MessageOnly(_) => None,
        HostDecision::Undecided => message.hostname.map(str::to_string),
    };
    let structured_data = Some(convert_sd(&message.structured_data)).filter(|sd| !sd.is_empty());

    Some(Parsed {
        status: ParseStatus::Rfc3164,
        pri: Some(pri),
        facility: Some(pri >> 3),
        severity: Some(pri & 7),
        version: None,
        timestamp: timestamp.flatten(),
        hostname,
        app_name: message.appname.and_then(non_empty),
        procid: message
            .procid
            .and_then(|p| non_empty(&procid_text(&normalised, message.appname, p))),
        msgid: None,
        structured_data,
        message: non_empty(message.msg),
    })
}

/// The PID of `TAG[PID]` as sent. `syslog_loose` reads a numeric one as an integer, which
/// would turn `007` into `7`: the text between the brackets after the TAG is kept whenever it
/// reads as the same number.
fn procid_text(line: &str, app: Option<&str>, procid: syslog_loose::ProcId<&str>) -> String {
    match procid {
        syslog_loose::ProcId::PID(pid) => app
            .and_then(|app| line.find(&format!("{app}[")).map(|at| at + app.len() + 1))
            .and_then(|start| {
                let rest = &line[start..];
                rest.find(']').map(|end| &rest[..end])
            })
            .filter(|text| text.parse::<i32>() == Ok(pid))
            .map_or_else(|| pid.to_string(), str::to_string),
        syslog_loose::ProcId::Name(name) => name.to_string(),
    }
}

pub(super) fn resolve(
    time: HeaderTime,
    ctx: &ParseContext,
) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    match time {
        HeaderTime::Zoned(dt) => Some(dt),
        HeaderTime::Naive(naive) => Some(ctx.rfc3164_zone.resolve(naive)),
        HeaderTime::NoYear { month, day, time } => {
            infer_year(&ctx.rfc3164_zone, ctx.received_at, month, day, time)
        }
    }
}

/// Cisco IOS puts a sequence number before the timestamp: `91: *Oct 07 03:10:04: …`.
fn skip_cisco_sequence(text: &str) -> &str {
    let trimmed = text.trim_start_matches(' ');
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return text;
    }
    match trimmed[digits..].strip_prefix(": ") {
        Some(rest) if leading_timestamp(rest).is_some() => rest,
        _ => text,
    }
}

enum HostDecision<'a> {
    /// The HOSTNAME, and the text after it.
    Given(&'a str, &'a str),
    /// There is no HOSTNAME; the text starts with the TAG.
    Absent(&'a str),
    /// Neither HOSTNAME nor TAG: the text is the MSG.
    MessageOnly(&'a str),
    /// Leave it to `syslog_loose`.
    Undecided,
}

fn decide_hostname(body: &str, has_timestamp: bool) -> HostDecision<'_> {
    if !has_timestamp {
        // RFC 3164 section 4.3.3: without a TIMESTAMP there is no HOSTNAME either, and only
        // an unmistakable TAG (`app:`, `app[pid]`) is taken as one: `<189>date=… time=…`
        // (Fortinet) is all message.
        return if starts_with_tag(body) {
            HostDecision::Absent(body)
        } else {
            HostDecision::MessageOnly(body)
        };
    }
    if let Some(relayed) = body.strip_prefix(RELAY_PREFIX) {
        if let Some(colon) = relayed.find(": ") {
            let host = &relayed[..colon];
            if !host.is_empty() && !host.contains(' ') {
                return HostDecision::Given(host, &relayed[colon + 2..]);
            }
        }
    }
    let token_end = body.find([' ', '\t']).unwrap_or(body.len());
    let token = &body[..token_end];
    let after_token = body[token_end..].trim_start_matches(' ');
    if token.parse::<IpAddr>().is_ok() {
        return HostDecision::Given(token, after_token);
    }
    if let Some(without_colon) = token.strip_suffix(':') {
        if without_colon.parse::<IpAddr>().is_ok() {
            return HostDecision::Given(without_colon, after_token);
        }
        if !without_colon.is_empty() {
            return HostDecision::Absent(body);
        }
    }
    if token.is_empty() || token.chars().all(is_hostname_char) {
        return HostDecision::Undecided;
    }
    // Not a host name (`%bzorp`, `#001`, `{"json"`): a program-like word is the TAG, anything
    // else starts the MSG.
    match token.chars().next() {
        Some(first) if first.is_alphanumeric() || first == '%' || first == '#' => {
            HostDecision::Absent(body)
        }
        _ => HostDecision::MessageOnly(body),
    }
}

/// Letters and digits of any script, and `.-_:/` (IPv6, relayed `host1/host2`).
fn is_hostname_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/')
}

/// The first word is a TAG by its form: `name:` or `name[pid]` (with or without the colon).
fn starts_with_tag(body: &str) -> bool {
    let token = body.split([' ', '\t']).next().unwrap_or("");
    let without_colon = token.strip_suffix(':').unwrap_or(token);
    let with_pid = without_colon
        .strip_suffix(']')
        .and_then(|head| head.find('['))
        .is_some_and(|open| open > 0);
    with_pid || (token.len() > 1 && without_colon.len() < token.len())
}
