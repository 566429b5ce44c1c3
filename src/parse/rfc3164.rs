//! RFC 3164 (BSD syslog) as real devices send it, on top of `syslog_loose`.
//!
//! This layer reads what `syslog_loose` gets wrong or rejects: the PRI (missing → 13, as
//! RFC 3164 section 4.3.3 tells a relay to assume), Cisco sequence numbers (`91: *Oct 07 …`),
//! every timestamp shape of `timestamp` (resolved in the configured zone, DST gaps included,
//! with the year nearest the receive time), the "Message forwarded from HOST:" relay prefix,
//! a first word followed by `:` (a TAG, not a HOSTNAME: `%ASA-6-302014:`, `haproxy[7]:`) and
//! IPv6 host names (`fe80::`). It then hands `syslog_loose` a normalised header (a fixed
//! RFC 3339 timestamp, and `-` for a HOSTNAME already decided) to split HOSTNAME, TAG,
//! optional SD and MSG.
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

const RELAY_PREFIX: &str = "Message forwarded from ";

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
    let (hostname, tag_and_msg) = match decide_hostname(body, header_time.is_some()) {
        HostDecision::Given(host, rest) => (Some(host.to_string()), Some(rest)),
        HostDecision::Absent(rest) => (None, Some(rest)),
        HostDecision::Undecided => (None, None),
    };
    let normalised = match tag_and_msg {
        Some(rest) => format!("<{pri}>{PLACEHOLDER_TIMESTAMP} - {rest}"),
        None if body.trim_end().is_empty() => format!("<{pri}>{PLACEHOLDER_TIMESTAMP} -"),
        None => format!("<{pri}>{PLACEHOLDER_TIMESTAMP} {body}"),
    };
    let utc = Some(Utc.fix());
    let message = syslog_loose::parse_message_with_year_exact_tz(
        &normalised,
        |_| 1970,
        utc,
        Variant::RFC3164,
    )
    .ok()?;

    let hostname = match tag_and_msg {
        Some(_) => hostname,
        None => message.hostname.map(str::to_string),
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
        procid: message.procid.and_then(|p| non_empty(&p.to_string())),
        msgid: None,
        structured_data,
        message: Some(message.msg.to_string()),
    })
}

fn resolve(time: HeaderTime, ctx: &ParseContext) -> Option<chrono::DateTime<chrono::FixedOffset>> {
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
    /// Leave it to `syslog_loose`.
    Undecided,
}

fn decide_hostname(body: &str, has_timestamp: bool) -> HostDecision<'_> {
    if !has_timestamp {
        // RFC 3164 section 4.3.3: without a TIMESTAMP there is no HOSTNAME either.
        return HostDecision::Absent(body);
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
    HostDecision::Undecided
}
