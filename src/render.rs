//! The JSON record of `starling read --format json` (README, "Reading logs back"): one object
//! per record, every key present (`null` where absent) in the documented order, except
//! `raw_base64`, which is present only when the raw bytes are not valid UTF-8.
//!
//! Pure formatting: no I/O, no parsing (the caller passes the `Parsed` fields).

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::parse::{event_time_to_datetime, Parsed, SdElement};
use crate::record::Record;

/// The JSON object for one stored record. `stored_shard_seq` (the record's position in its
/// shard) is accepted so callers can pass what the store gives them; the documented shape
/// has no key for it, so it is not rendered.
pub fn record_json(_stored_shard_seq: u64, record: &Record, parsed: &Parsed) -> Value {
    let raw_text = String::from_utf8_lossy(&record.raw);
    let raw_is_utf8 = matches!(raw_text, std::borrow::Cow::Borrowed(_));
    let timestamp = record
        .event_time
        .and_then(event_time_to_datetime)
        .map(|ts| ts.to_rfc3339_opts(SecondsFormat::AutoSi, true));

    let mut object = Map::new();
    object.insert("received_at".into(), json!(received_at(record)));
    object.insert("source".into(), json!(record.source));
    object.insert("origin".into(), json!(record.origin));
    object.insert("seq".into(), json!(record.origin_seq));
    object.insert("peer".into(), json!(record.peer));
    object.insert("transport".into(), json!(record.transport.as_str()));
    object.insert("parse".into(), json!(record.parse.as_str()));
    object.insert("pri".into(), json!(parsed.pri));
    object.insert("facility".into(), json!(parsed.facility));
    object.insert("severity".into(), json!(parsed.severity));
    object.insert("version".into(), json!(parsed.version));
    object.insert("timestamp".into(), json!(timestamp));
    object.insert("hostname".into(), json!(parsed.hostname));
    object.insert("app_name".into(), json!(parsed.app_name));
    object.insert("procid".into(), json!(parsed.procid));
    object.insert("msgid".into(), json!(parsed.msgid));
    object.insert(
        "structured_data".into(),
        parsed
            .structured_data
            .as_deref()
            .map_or(Value::Null, structured_data_json),
    );
    object.insert("message".into(), json!(parsed.message));
    object.insert("raw".into(), json!(raw_text));
    if !raw_is_utf8 {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&record.raw);
        object.insert("raw_base64".into(), json!(encoded));
    }
    object.insert("truncated".into(), json!(record.truncated));
    object.insert("tls_peer".into(), json!(record.tls_peer));
    let file = record.file.as_deref();
    object.insert(
        "file".into(),
        json!(file.map(|f| String::from_utf8_lossy(&f.path))),
    );
    object.insert("offset".into(), json!(file.map(|f| f.offset)));
    Value::Object(object)
}

/// RFC 3339 in UTC with as many fraction digits as needed; the raw micros if out of range.
fn received_at(record: &Record) -> Value {
    match DateTime::<Utc>::from_timestamp_micros(record.received_at_micros) {
        Some(at) => json!(at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        None => json!(record.received_at_micros),
    }
}

/// `[{"id": …, "params": {name: value}}]`; a repeated name gives a list of its values.
fn structured_data_json(elements: &[SdElement]) -> Value {
    let list = elements
        .iter()
        .map(|element| {
            let mut params = Map::new();
            for (name, value) in &element.params {
                match params.get_mut(name) {
                    None => {
                        params.insert(name.clone(), json!(value));
                    }
                    Some(Value::Array(values)) => values.push(json!(value)),
                    Some(first) => *first = json!([first.take(), value]),
                }
            }
            json!({"id": element.id, "params": params})
        })
        .collect();
    Value::Array(list)
}

/// The keys of the documented JSON record shape (README), in its order: what the tests hold the
/// renderer (and the real binary's output) to. The renderer does not use this list.
#[doc(hidden)]
pub const JSON_KEYS: [&str; 23] = [
    "received_at",
    "source",
    "origin",
    "seq",
    "peer",
    "transport",
    "parse",
    "pri",
    "facility",
    "severity",
    "version",
    "timestamp",
    "hostname",
    "app_name",
    "procid",
    "msgid",
    "structured_data",
    "message",
    "raw",
    "truncated",
    "tls_peer",
    "file",
    "offset",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, ParseContext, Zone};
    use crate::record::{ParseStatus, Transport};
    use bytes::Bytes;
    use chrono::TimeZone;

    fn sample(raw: &[u8]) -> (Record, Parsed) {
        let received_at = Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()
            + chrono::Duration::microseconds(250);
        let ctx = ParseContext {
            received_at,
            rfc3164_zone: Zone::Utc,
        };
        let parsed = parse(raw, &ctx);
        let record = Record {
            received_at_micros: received_at.timestamp_micros(),
            event_time: parsed.event_time(),
            origin: "node-a".into(),
            origin_seq: 42,
            peer: Some("10.0.0.7:514".into()),
            transport: Transport::Tcp,
            parse: parsed.status,
            truncated: false,
            source: "web1".into(),
            raw: Bytes::copy_from_slice(raw),
            lost_from: None,
            tls_peer: None,
            file: None,
        };
        (record, parsed)
    }

    #[test]
    fn rfc5424_record() {
        let raw = br#"<165>1 2003-08-24T05:14:15.000003-07:00 web1 myproc 8710 ID1 [x@1 a="1" a="2" b="3"][y@2] hello"#;
        let (record, parsed) = sample(raw);
        let value = record_json(7, &record, &parsed);
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, JSON_KEYS);
        assert_eq!(
            value,
            json!({
                "received_at": "2024-05-06T07:08:09.000250Z",
                "source": "web1",
                "origin": "node-a",
                "seq": 42,
                "peer": "10.0.0.7:514",
                "transport": "tcp",
                "parse": "rfc5424",
                "pri": 165,
                "facility": 20,
                "severity": 5,
                "version": 1,
                "timestamp": "2003-08-24T05:14:15.000003-07:00",
                "hostname": "web1",
                "app_name": "myproc",
                "procid": "8710",
                "msgid": "ID1",
                "structured_data": [
                    {"id": "x@1", "params": {"a": ["1", "2"], "b": "3"}},
                    {"id": "y@2", "params": {}}
                ],
                "message": "hello",
                "raw": String::from_utf8_lossy(raw),
                "truncated": false,
                "tls_peer": null,
                "file": null,
                "offset": null
            })
        );
    }

    #[test]
    fn unparsed_invalid_utf8_record() {
        let raw = b"\xffbad\x00 bytes";
        let (mut record, parsed) = sample(raw);
        record.peer = None;
        record.truncated = true;
        record.transport = Transport::Udp;
        assert_eq!(record.parse, ParseStatus::Unparsed);
        let value = record_json(0, &record, &parsed);
        let object = value.as_object().unwrap();
        for key in JSON_KEYS {
            assert!(object.contains_key(key), "missing {key}");
        }
        for key in [
            "peer",
            "pri",
            "facility",
            "severity",
            "version",
            "timestamp",
            "hostname",
            "app_name",
            "procid",
            "msgid",
            "structured_data",
        ] {
            assert_eq!(object[key], Value::Null, "{key}");
        }
        assert_eq!(object["parse"], "unparsed");
        assert_eq!(object["transport"], "udp");
        assert_eq!(object["truncated"], true);
        assert_eq!(object["raw"], "\u{fffd}bad\u{0} bytes");
        assert_eq!(object["message"], "\u{fffd}bad\u{0} bytes");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(object["raw_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, raw);
    }

    #[test]
    fn timestamp_as_sent_and_raw_base64_only_when_needed() {
        let (record, parsed) = sample(b"<13>Jan  2 03:04:05 host app: text");
        let value = record_json(1, &record, &parsed);
        assert_eq!(value["timestamp"], "2024-01-02T03:04:05Z");
        assert_eq!(value["parse"], "rfc3164");
        assert_eq!(value["version"], Value::Null);
        assert!(value.get("raw_base64").is_none());

        let (record, parsed) = sample(b"<13>1 2024-01-02T03:04:05.120+05:30 h a - - - x");
        let value = record_json(1, &record, &parsed);
        assert_eq!(value["timestamp"], "2024-01-02T03:04:05.120+05:30");
    }
}
