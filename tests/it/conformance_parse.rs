//! Conformance of `parse::parse` with the expectations of peer projects' test suites
//! (tests/data/conformance, see its README for where each line comes from).
//!
//! Scoring rules (only rows whose source calls them valid are scored; every row is parsed):
//! - Each key of `expect` is one field. Not scored: `resolved_timestamp` (depends on the
//!   source's clock and zone), `tag` and `raw_msg` (rsyslog's and syslogmp's own split of the
//!   TAG), `equivalent_to`.
//! - `pri`, `facility`, `severity`, `version`: numbers, `null` = absent.
//! - `timestamp`: RFC 3339, compared as instant plus UTC offset; `null` = absent.
//! - `timestamp_parts`: one field; every stated part (`year`, `month`, `day`, `hour`, `minute`,
//!   `second`, `usec`, `utc_offset_s`) must match our timestamp in its own offset.
//! - `hostname`, `app_name`, `procid`, `msgid`: strings, `null` = absent.
//! - `structured_data`: elements in order, each `{id, params}` with a repeated name giving a
//!   list; `null` and `[]` both mean "no element".
//! - `sd_contains`: one field; every listed element and param must be among ours.
//! - `msg`: `null` and `""` are the same; per profile (README "msg"): `syslog-ng` strips a
//!   leading BOM, so ours is compared without it; `rsyslog` keeps the character after the
//!   TAG, so in a message we read as RFC 3164 one leading SP of the expected text is dropped.
//! - Lines marked `bytes_as_latin1` have every char standing for one byte: inputs are turned
//!   back into bytes and expected strings are decoded like ours (lossy UTF-8).
//! - Context: rows from syslog-ng ran under TZ=MET-1METDST with a clock of 2019-02-08, so they
//!   are parsed with zone MET and that receive time; every other row with UTC and a receive
//!   time of 2020-06-01.
//!
//! The same scoring is applied to plain `syslog_loose` 0.23 (`parse_message_with_year_exact`,
//! `Variant::Either`, as Vector uses it) so the two can be compared.

use chrono::{DateTime, Datelike, FixedOffset, Offset, TimeZone, Timelike, Utc};
use serde_json::Value;
use starling::parse::{parse, ParseContext, Parsed, SdElement, Zone};
use starling::record::ParseStatus;

const RFC5424: &str = include_str!("../data/conformance/rfc5424.jsonl");
const RFC3164: &str = include_str!("../data/conformance/rfc3164.jsonl");

struct Score {
    matched: usize,
    total: usize,
    mismatches: Vec<String>,
}

impl Score {
    fn percent(&self) -> f64 {
        100.0 * self.matched as f64 / self.total.max(1) as f64
    }
}

fn rows(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("conformance line is JSON"))
        .collect()
}

/// The bytes a row's string stands for.
fn bytes_of(row: &Value, text: &str) -> Vec<u8> {
    if row["bytes_as_latin1"].as_bool() == Some(true) {
        text.chars().map(|c| c as u32 as u8).collect()
    } else {
        text.as_bytes().to_vec()
    }
}

/// An expected string as our (lossy UTF-8) output would show it.
fn expected_text(row: &Value, text: &str) -> String {
    String::from_utf8_lossy(&bytes_of(row, text)).into_owned()
}

fn context_for(row: &Value) -> ParseContext {
    if row["profile"] == "syslog-ng" {
        ParseContext {
            received_at: Utc.with_ymd_and_hms(2019, 2, 8, 8, 37, 0).unwrap(),
            rfc3164_zone: Zone::Named(chrono_tz::MET),
        }
    } else {
        ParseContext {
            received_at: Utc.with_ymd_and_hms(2020, 6, 1, 0, 0, 0).unwrap(),
            rfc3164_zone: Zone::Utc,
        }
    }
}

fn opt_str(value: &Value, row: &Value) -> Option<String> {
    value.as_str().map(|s| expected_text(row, s))
}

fn sd_view(elements: &Option<Vec<SdElement>>) -> Vec<Value> {
    elements
        .iter()
        .flatten()
        .map(|element| {
            let mut params = serde_json::Map::new();
            for (name, value) in &element.params {
                match params.get_mut(name) {
                    None => {
                        params.insert(name.clone(), Value::String(value.clone()));
                    }
                    Some(Value::Array(values)) => values.push(Value::String(value.clone())),
                    Some(existing) => {
                        let first = existing.take();
                        *existing = Value::Array(vec![first, Value::String(value.clone())]);
                    }
                }
            }
            serde_json::json!({"id": element.id, "params": params})
        })
        .collect()
}

/// Expected SD in our lossy-UTF-8 view.
fn expected_sd(row: &Value, value: &Value) -> Vec<Value> {
    let text = serde_json::to_string(value).unwrap();
    let decoded: Value = if row["bytes_as_latin1"].as_bool() == Some(true) {
        serde_json::from_str(&expected_text(row, &text)).unwrap_or(Value::Null)
    } else {
        value.clone()
    };
    decoded.as_array().cloned().unwrap_or_default()
}

fn timestamp_matches(ours: Option<DateTime<FixedOffset>>, expected: &Value) -> bool {
    match (ours, expected.as_str()) {
        (None, None) => true,
        (Some(ours), Some(text)) => match DateTime::parse_from_rfc3339(text) {
            Ok(expected) => ours == expected && ours.offset().fix() == expected.offset().fix(),
            Err(_) => false,
        },
        _ => false,
    }
}

fn parts_match(ours: Option<DateTime<FixedOffset>>, parts: &Value) -> bool {
    let Some(ts) = ours else { return false };
    let Some(parts) = parts.as_object() else {
        return false;
    };
    parts.iter().all(|(name, value)| {
        let ours = match name.as_str() {
            "year" => i64::from(ts.year()),
            "month" => i64::from(ts.month()),
            "day" => i64::from(ts.day()),
            "hour" => i64::from(ts.hour()),
            "minute" => i64::from(ts.minute()),
            "second" => i64::from(ts.second()),
            "usec" => i64::from(ts.nanosecond() / 1000),
            "utc_offset_s" => i64::from(ts.offset().local_minus_utc()),
            _ => return false,
        };
        value.as_i64() == Some(ours)
    })
}

fn sd_contains(ours: &[Value], wanted: &Value) -> bool {
    wanted.as_array().into_iter().flatten().all(|want| {
        ours.iter().any(|have| {
            have["id"] == want["id"]
                && want["params"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .all(|(name, value)| &have["params"][name] == value)
        })
    })
}

fn field_matches(row: &Value, name: &str, expected: &Value, parsed: &Parsed) -> Option<bool> {
    let number = |ours: Option<u64>| Some(expected.as_u64() == ours);
    let text = |ours: &Option<String>| Some(opt_str(expected, row) == *ours);
    match name {
        "pri" => number(parsed.pri.map(u64::from)),
        "facility" => number(parsed.facility.map(u64::from)),
        "severity" => number(parsed.severity.map(u64::from)),
        "version" => number(parsed.version.map(u64::from)),
        "timestamp" => Some(timestamp_matches(parsed.timestamp, expected)),
        "timestamp_parts" => Some(parts_match(parsed.timestamp, expected)),
        "hostname" => text(&parsed.hostname),
        "app_name" => text(&parsed.app_name),
        "procid" => text(&parsed.procid),
        "msgid" => text(&parsed.msgid),
        "structured_data" => Some(sd_view(&parsed.structured_data) == expected_sd(row, expected)),
        "sd_contains" => Some(sd_contains(
            &sd_view(&parsed.structured_data),
            &Value::Array(expected_sd(row, expected)),
        )),
        "msg" => {
            let mut want = opt_str(expected, row).unwrap_or_default();
            let mut have = parsed.message.clone().unwrap_or_default();
            match row["profile"].as_str() {
                Some("syslog-ng") => {
                    have = have.strip_prefix('\u{feff}').unwrap_or(&have).to_string();
                }
                Some("rsyslog") if parsed.status == ParseStatus::Rfc3164 => {
                    want = want.strip_prefix(' ').unwrap_or(&want).to_string();
                }
                _ => {}
            }
            Some(want == have)
        }
        _ => None,
    }
}

fn field_debug(name: &str, parsed: &Parsed) -> String {
    match name {
        "pri" => format!("{:?}", parsed.pri),
        "facility" => format!("{:?}", parsed.facility),
        "severity" => format!("{:?}", parsed.severity),
        "version" => format!("{:?}", parsed.version),
        "timestamp" | "timestamp_parts" => format!("{:?}", parsed.timestamp),
        "hostname" => format!("{:?}", parsed.hostname),
        "app_name" => format!("{:?}", parsed.app_name),
        "procid" => format!("{:?}", parsed.procid),
        "msgid" => format!("{:?}", parsed.msgid),
        "msg" => format!("{:?}", parsed.message),
        _ => format!("{:?}", parsed.structured_data),
    }
}

fn score(text: &str, parser: impl Fn(&[u8], &ParseContext) -> Parsed) -> Score {
    let mut score = Score {
        matched: 0,
        total: 0,
        mismatches: Vec::new(),
    };
    for row in rows(text) {
        let input = bytes_of(&row, row["input"].as_str().expect("input"));
        let ctx = context_for(&row);
        let parsed = parser(&input, &ctx);
        if parsed.status == ParseStatus::Unparsed {
            assert_eq!(
                parsed.message.as_deref(),
                Some(String::from_utf8_lossy(&input).as_ref()),
                "unparsed keeps the whole text"
            );
        }
        if row["valid"].as_bool() != Some(true) {
            continue;
        }
        let expect = row["expect"].as_object().expect("expect object");
        for (name, expected) in expect {
            let Some(ok) = field_matches(&row, name, expected, &parsed) else {
                continue;
            };
            score.total += 1;
            if ok {
                score.matched += 1;
            } else {
                score.mismatches.push(format!(
                    "{} {name}: expected {expected}, got {} in {:?}",
                    row["id"].as_str().unwrap_or("?"),
                    field_debug(name, &parsed),
                    String::from_utf8_lossy(&input),
                ));
            }
        }
    }
    score
}

/// Plain `syslog_loose` 0.23 as Vector calls it, mapped into `Parsed` for the same scoring.
fn plain_syslog_loose(raw: &[u8], ctx: &ParseContext) -> Parsed {
    let text = String::from_utf8_lossy(raw);
    let zone = ctx.rfc3164_zone;
    let received_year = ctx.received_at.year();
    let tz = match zone {
        Zone::Named(tz) => tz,
        _ => chrono_tz::UTC,
    };
    let result = syslog_loose::parse_message_with_year_exact_tz(
        &text,
        |_| received_year,
        Some(tz),
        syslog_loose::Variant::Either,
    );
    let Ok(message) = result else {
        return Parsed::unparsed(text.into_owned());
    };
    let (status, version) = match message.protocol {
        syslog_loose::Protocol::RFC5424(version) => (ParseStatus::Rfc5424, Some(version)),
        syslog_loose::Protocol::RFC3164 => (ParseStatus::Rfc3164, None),
    };
    let facility = message.facility.map(|f| f as u8);
    let severity = message.severity.map(|s| s as u8);
    let pri = facility.zip(severity).map(|(f, s)| f * 8 + s);
    let structured_data: Vec<SdElement> = message
        .structured_data
        .iter()
        .map(|element| SdElement {
            id: element.id.to_string(),
            params: element
                .params()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
        })
        .collect();
    Parsed {
        status,
        pri,
        facility,
        severity,
        version,
        timestamp: message.timestamp,
        hostname: message.hostname.map(str::to_string),
        app_name: message.appname.map(str::to_string),
        procid: message.procid.map(|p| p.to_string()),
        msgid: message.msgid.map(str::to_string),
        structured_data: Some(structured_data).filter(|sd| !sd.is_empty()),
        message: Some(message.msg.to_string()),
    }
}

fn report(name: &str, ours: &Score, plain: &Score) {
    println!(
        "{name}: starling {}/{} = {:.1}%, plain syslog_loose {}/{} = {:.1}%",
        ours.matched,
        ours.total,
        ours.percent(),
        plain.matched,
        plain.total,
        plain.percent()
    );
    for mismatch in &ours.mismatches {
        println!("  mismatch {mismatch}");
    }
}

#[test]
fn rfc5424_conformance() {
    let ours = score(RFC5424, parse);
    let plain = score(RFC5424, plain_syslog_loose);
    report("rfc5424.jsonl", &ours, &plain);
    assert!(
        ours.percent() >= 97.0,
        "rfc5424 score {:.1}%",
        ours.percent()
    );
    assert!(ours.percent() > plain.percent());
}

#[test]
fn rfc3164_conformance() {
    let ours = score(RFC3164, parse);
    let plain = score(RFC3164, plain_syslog_loose);
    report("rfc3164.jsonl", &ours, &plain);
    assert!(
        ours.percent() >= 85.0,
        "rfc3164 score {:.1}%",
        ours.percent()
    );
    assert!(ours.percent() > plain.percent());
}
