//! Properties of `parse::parse` and `render::record_json` on arbitrary bytes:
//! - parsing never panics and is deterministic;
//! - ingest's `ingest_fields` gives the status, event time, HOSTNAME and APP-NAME of the full
//!   parse (its fast reader must never disagree);
//! - an unparsed message keeps the whole (lossily decoded) text;
//! - the rendered JSON gives back the exact raw bytes (`raw`, or `raw_base64` when the bytes
//!   are not UTF-8);
//! - a message read as RFC 5424, formatted back into an RFC 5424 line and read again, gives
//!   the same fields (STRUCTURED-DATA with no valid element counts as none: it cannot be
//!   written back).

use base64::Engine as _;
use bytes::Bytes;
use chrono::{SecondsFormat, TimeZone, Utc};

use crate::parse::{ingest_fields, parse, IngestFields, ParseContext, Parsed, SdElement, Zone};
use crate::record::{ParseStatus, Record, Transport};
use crate::render::record_json;

pub fn check(data: &[u8]) {
    let ctx = ParseContext {
        received_at: Utc.with_ymd_and_hms(2024, 3, 31, 1, 30, 0).unwrap(),
        rfc3164_zone: Zone::Named(chrono_tz::Europe::Berlin),
    };
    let parsed = parse(data, &ctx);
    assert_eq!(parsed, parse(data, &ctx), "parse is deterministic");
    assert_eq!(
        ingest_fields(data, &ctx),
        IngestFields::from_parsed(parsed.clone()),
        "ingest's fields differ from the full parse"
    );
    if parsed.status == ParseStatus::Unparsed {
        assert_eq!(
            parsed.message.as_deref(),
            Some(String::from_utf8_lossy(data).as_ref())
        );
    }
    check_render(data, &parsed);
    if parsed.status == ParseStatus::Rfc5424 {
        let line = format_rfc5424(&parsed);
        let again = parse(line.as_bytes(), &ctx);
        assert_eq!(
            normalise(&again),
            normalise(&parsed),
            "re-reading the formatted line {line:?} changes its fields"
        );
    }
}

fn check_render(data: &[u8], parsed: &Parsed) {
    let record = Record {
        received_at_micros: 1_711_848_600_000_000,
        event_time: parsed.event_time(),
        origin: "fuzz".into(),
        origin_seq: 1,
        peer: None,
        transport: Transport::Udp,
        parse: parsed.status,
        truncated: false,
        source: "fuzz".into(),
        raw: Bytes::copy_from_slice(data),
        lost_from: None,
        tls_peer: None,
        file: None,
    };
    let json = record_json(0, &record, parsed);
    let raw_back = match json.get("raw_base64") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("raw_base64 is a string"))
            .expect("raw_base64 decodes"),
        None => json["raw"]
            .as_str()
            .expect("raw is a string")
            .as_bytes()
            .to_vec(),
    };
    assert_eq!(raw_back, data, "the JSON record gives back the raw bytes");
    let timestamp = json["timestamp"].as_str();
    assert_eq!(timestamp.is_some(), parsed.timestamp.is_some());
}

/// Fields compared by the round trip: `Some(vec![])` structured data is written as `-`.
fn normalise(parsed: &Parsed) -> Parsed {
    let mut parsed = parsed.clone();
    if parsed.structured_data.as_ref().is_some_and(Vec::is_empty) {
        parsed.structured_data = None;
    }
    parsed
}

fn nil_or(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

/// An RFC 5424 line with the given fields; SD-PARAM values escaped per RFC 5424 6.3.3.
pub fn format_rfc5424(parsed: &Parsed) -> String {
    let timestamp = parsed.timestamp.map_or_else(
        || "-".to_string(),
        |ts| ts.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    );
    let mut line = format!(
        "<{}>{} {timestamp} {} {} {} {} ",
        parsed.pri.unwrap_or(13),
        parsed.version.unwrap_or(1),
        nil_or(&parsed.hostname),
        nil_or(&parsed.app_name),
        nil_or(&parsed.procid),
        nil_or(&parsed.msgid),
    );
    match parsed.structured_data.as_deref() {
        None | Some([]) => line.push('-'),
        Some(elements) => elements.iter().for_each(|e| push_element(&mut line, e)),
    }
    if let Some(message) = &parsed.message {
        line.push(' ');
        line.push_str(message);
    }
    line
}

fn push_element(line: &mut String, element: &SdElement) {
    line.push('[');
    line.push_str(&element.id);
    for (name, value) in &element.params {
        line.push(' ');
        line.push_str(name);
        line.push_str("=\"");
        for c in value.chars() {
            if matches!(c, '"' | '\\' | ']') {
                line.push('\\');
            }
            line.push(c);
        }
        line.push('"');
    }
    line.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_and_hostile_inputs() {
        for input in [
            &b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xef\xbb\xbfAn application event log entry..."[..],
            b"<13>1 2024-01-02T03:04:05Z h a p m [x@1 q=\"a\\\"b\" b=\"c\\\\d\" n=\"1\\n2\"]  two spaces",
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed",
            b"\xff\xfe\x00",
            b"",
            b"<13>1 - - - - - -",
        ] {
            check(input);
        }
    }

    #[test]
    fn formats_what_it_reads() {
        let ctx = ParseContext {
            received_at: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            rfc3164_zone: Zone::Utc,
        };
        let line = r#"<13>1 2024-01-02T03:04:05.500+02:00 h a p m [x@1 q="a\"b\]c\\"] msg"#;
        assert_eq!(format_rfc5424(&parse(line.as_bytes(), &ctx)), line);
    }
}
