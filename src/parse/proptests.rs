//! Property test on stable: any well-formed RFC 5424 message (generated field by field, with
//! SD-PARAM values full of characters that need escaping and MSGs with leading spaces or a
//! BOM) parses back to exactly the fields it was built from.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;

use super::{parse, ParseContext, ParseStatus, SdElement, Zone};
use crate::fuzzcheck::parse::format_rfc5424;
use crate::parse::Parsed;

fn header_field(max_len: usize) -> impl Strategy<Value = Option<String>> {
    // PRINTUSASCII without SP; a lone `-` is NILVALUE, a lone `:` is not a field.
    proptest::option::of(
        proptest::string::string_regex(&format!("[!-~]{{1,{max_len}}}"))
            .unwrap()
            .prop_filter("not a NILVALUE or separator", |s| s != "-" && s != ":"),
    )
}

fn timestamp() -> impl Strategy<Value = Option<DateTime<FixedOffset>>> {
    proptest::option::of(
        (
            1970i32..2100,
            1u32..=12,
            1u32..=28,
            0u32..24,
            0u32..60,
            0u32..60,
            0u32..1_000_000,
            -(23 * 60 + 59)..=(23 * 60 + 59),
        )
            .prop_map(|(y, mo, d, h, mi, s, micros, offset_minutes)| {
                let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
                let naive = NaiveDate::from_ymd_opt(y, mo, d)
                    .unwrap()
                    .and_hms_micro_opt(h, mi, s, micros)
                    .unwrap();
                offset.from_local_datetime(&naive).unwrap()
            }),
    )
}

fn sd_element() -> impl Strategy<Value = SdElement> {
    let name = "[a-zA-Z0-9_.@-]{1,32}";
    let value = "[a-z\"\\\\\\] =äß€\u{feff}]{0,12}";
    (name, proptest::collection::vec((name, value), 0..4))
        .prop_map(|(id, params)| SdElement { id, params })
}

fn message() -> impl Strategy<Value = Option<String>> {
    // Anything but the line-end residue the parser strips (CR, LF, NUL at the end).
    proptest::option::of("[ a-z\\[\\]\"=\\-:\u{feff}äß€\t]{0,20}[a-z.!]")
}

prop_compose! {
    fn rfc5424_fields()(
        pri in 0u8..=191,
        version in 1u32..=999,
        timestamp in timestamp(),
        hostname in header_field(255),
        app_name in header_field(48),
        procid in header_field(128),
        msgid in header_field(32),
        structured_data in proptest::option::of(proptest::collection::vec(sd_element(), 1..4)),
        message in message(),
    ) -> Parsed {
        Parsed {
            status: ParseStatus::Rfc5424,
            pri: Some(pri),
            facility: Some(pri >> 3),
            severity: Some(pri & 7),
            version: Some(version),
            timestamp,
            hostname,
            app_name,
            procid,
            msgid,
            structured_data,
            message,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn formatted_rfc5424_parses_back_to_its_fields(fields in rfc5424_fields()) {
        let ctx = ParseContext {
            received_at: Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap(),
            rfc3164_zone: Zone::Utc,
        };
        let line = format_rfc5424(&fields);
        let parsed = parse(line.as_bytes(), &ctx);
        prop_assert_eq!(parsed, fields, "line {:?}", line);
    }
}
