//! `ingest_fields` against the full `parse::parse`: a table of tricky lines (each also saying
//! whether the fast reader must answer or hand over), the conformance corpus under several
//! contexts, and the lines the benchmarks and real senders send, which must take the fast way.

use std::borrow::Cow;
use std::path::Path;

use chrono::{TimeZone, Utc};

use super::{fast, ingest_fields, IngestFields};
use crate::parse::{parse, ParseContext, Zone};
use crate::record::{EventTime, ParseStatus};

fn contexts() -> Vec<ParseContext> {
    let at = |y, mo, d, h| Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap();
    vec![
        ParseContext {
            received_at: at(2024, 12, 31, 12),
            rfc3164_zone: Zone::Utc,
        },
        ParseContext {
            received_at: at(2025, 1, 1, 0),
            rfc3164_zone: Zone::Named(chrono_tz::Europe::Berlin),
        },
        ParseContext {
            received_at: at(2024, 3, 31, 1),
            rfc3164_zone: Zone::Named(chrono_tz::Europe::Berlin),
        },
        ParseContext {
            received_at: at(2019, 2, 8, 8),
            rfc3164_zone: Zone::Named(chrono_tz::MET),
        },
        ParseContext {
            received_at: at(2020, 6, 1, 0),
            rfc3164_zone: "-05:30".parse().unwrap(),
        },
    ]
}

/// The invariant, for one input under every context; returns whether the fast reader answered.
fn assert_same(raw: &[u8]) -> bool {
    let mut took_fast = false;
    for ctx in contexts() {
        let full = IngestFields::from_parsed(parse(raw, &ctx));
        assert_eq!(
            ingest_fields(raw, &ctx),
            full,
            "input {:?} at {:?}",
            String::from_utf8_lossy(raw),
            ctx
        );
        took_fast = fast(raw, &ctx).is_some();
    }
    took_fast
}

#[test]
fn tricky_lines_agree_with_the_full_parse() {
    // (input, whether the fast reader must answer)
    let cases: &[(&[u8], bool)] = &[
        (
            b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - msg",
            true,
        ),
        (
            b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's",
            true,
        ),
        (b"<13>1 - - - - - -", true),
        (b"<13>1 - - - - - -\r\n", true),
        (b"<13>01 2024-01-02T03:04:05z h a p m [x@1 a=\"]\"]", true),
        (b"<13>1 2024-01-02t03:04:05-00:00 h a: p m - x", true),
        (
            b"<0>999 2024-02-29T23:59:59.999999999+23:59 h a p m -x",
            true,
        ),
        (b"<13>1 2024-01-02T03:04:05Z h a p m [unclosed", false),
        (b"<13>1 2024-01-02T03:04:05Z h a p m [x] \xff\xfe", false),
        (b"<13>1 2024-01-02T03:04:05Z host: a p m - x", false),
        (b"<13>1 2024-01-02T03:04:05Z : a p m - x", false),
        (b"<13>1 2024-01-02T03:04:05Z h : p m - x", false),
        (b"<13>1 2024-01-02T03:04:05Z h a p m", false),
        (b"<13>1 2024-01-02T03:04:05Z h a p m ", false),
        (b"<13>1 2024-01-02T03:04:05Z h a p m  - x", false),
        (b"<13>1 2024-01-02T03:04:05Z h  a p m - x", false),
        (b"<13>1 2024-01-02T03:04:05Z h\ta p m - x", false),
        (b"<13>1 2024-01-02T03:04:05 h a p m - x", false),
        (b"<13>1 2024-01-02 03:04:05Z h a p m - x", false),
        (b"<13>1 2024-01-02T03:04:60Z h a p m - x", false),
        (b"<13>1 2024-01-02T03:04:05.1234567891Z h a p m - x", false),
        (b"<13>1 2024-01-02T03:04:05.Z h a p m - x", false),
        (b"<13>1 2024-01-02T03:04:05+0100 h a p m - x", false),
        (b"<13>1 2024-01-02T03:04:05+24:00 h a p m - x", false),
        (b"<13>1 2024-02-30T03:04:05Z h a p m - x", false),
        (b"<13>0 - h a p m - x", false),
        (b"<13>1000 - h a p m - x", false),
        (b"<192>1 - h a p m - x", false),
        (b"<13>1 -x h a p m - x", false),
        (b" <13>1 - h a p m - x", false),
        (b"1 2020-05-22T14:59:09.250-03:00 host app - - - x", false),
        (b"<13>1 - h\xc3\xa9 a p m - x", false),
        (b"<13>1 - fe80:: a p m - x", false),
        (b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed", true),
        (b"<34>Oct  1 22:14:15 mymachine su[123]: x", true),
        (b"<34>oct 1 22:14:15.5: host a[1]x: y", true),
        (b"<34>Feb 29 22:14:15 10.0.0.7 sshd[1]: y", true),
        (b"<34>Dec 31 23:59:59 h [12]: no app", true),
        (b"<34>Dec 31 23:59:59 h a[]: y", true),
        (b"<34>Dec 31 23:59:59 h a[b[c]: y", true),
        (b"<34>Dec 31 23:59:59 h tag", true),
        (b"<34>Dec 31 23:59:59 h tag\tmsg", true),
        (b"<34>Mar 31 02:30:00 h cron: DST gap in Berlin", true),
        (b"<34>Apr 15 21:28:13 2007 linksys app: trailing year", true),
        (b"<34>Apr 15 2007 21:28:13 host app: year before time", true),
        (b"<34>Feb 30 22:14:15 h a: no such day", false),
        (b"<34>Oct 11 22:14:15 h -: nil tag", false),
        (b"<34>Oct 11 22:14:15 - a: nil host", false),
        (b"<34>Oct 11 22:14:15 h : empty tag", false),
        (b"<34>Oct 11 22:14:15 h  a: two spaces", false),
        (b"<34>Oct 11 22:14:15  h a: two spaces", false),
        (b"<34>Oct 11 22:14:15 h\ta: tab", false),
        (b"<34>Oct 11 22:14:15 %ASA-6-302014: Teardown", false),
        (
            b"<34>Oct 11 22:14:15 Message forwarded from relay: app: x",
            false,
        ),
        (b"<34>Oct 11 22:14:15 fe80::1 app: x", false),
        (b"<34>Oct 11 22:14:15 h app\x01: x", false),
        (b"<34>Oct 11 22:14:15 h app\xc2\xa0x", false),
        (b"<34>Oct 11 22:14:15 h", false),
        (b"<34>91: *Oct 07 03:10:04: h a: x", false),
        (b"<189>date=2024-01-01 time=10:00:00", false),
        (b"just text", true),
        (b"", true),
        (b"   ", true),
        (b"\n", true),
        (b"\t<13>1 - h a p m - x", true),
        (b"\xef\xbb\xbf<13>1 - h a p m - x", true),
        (b"\xff\xfe\x00", true),
        (b"Jan 1 00:00:00 h a: x", false),
        (b"junk starting like a month", false),
        (b"2024-01-01T00:00:00Z host a: x", false),
        (b"*Oct 07 03:10:04: x", false),
        (b"<abc>text", false),
    ];
    for (input, fast_expected) in cases {
        let took_fast = assert_same(input);
        assert_eq!(
            took_fast,
            *fast_expected,
            "fast reader taken for {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn benchmark_and_rsyslog_lines_take_the_fast_way() {
    let ctx = ParseContext {
        received_at: Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 5).unwrap(),
        rfc3164_zone: Zone::Utc,
    };
    let loadgen = b"<134>1 2026-11-26T10:00:00.123456Z bench-host loadgen 4242 LOAD \
        [load@32473 conn=\"0\"] conn 0 seq 0000000042 lorem ipsum dolor sit amet";
    let expected = IngestFields {
        status: ParseStatus::Rfc5424,
        event_time: Some(EventTime {
            unix_micros: 1_795_687_200_123_456,
            utc_offset_secs: 0,
        }),
        hostname: Some(Cow::Borrowed("bench-host")),
        app_name: Some(Cow::Borrowed("loadgen")),
    };
    assert_eq!(fast(loadgen, &ctx), Some(expected));
    assert!(assert_same(loadgen));

    // rsyslog's default TCP forwarding template (RSYSLOG_TraditionalForwardFormat).
    let rsyslog = b"<30>Nov 26 09:59:58 web-01 systemd[1]: Started Session 4 of user deploy.\n";
    let expected = IngestFields {
        status: ParseStatus::Rfc3164,
        event_time: Some(EventTime {
            unix_micros: 1_795_687_198_000_000,
            utc_offset_secs: 0,
        }),
        hostname: Some(Cow::Borrowed("web-01")),
        app_name: Some(Cow::Borrowed("systemd")),
    };
    assert_eq!(fast(rsyslog, &ctx), Some(expected));
    assert!(assert_same(rsyslog));

    let text = b"just some text without any syslog header at all";
    assert_eq!(
        fast(text, &ctx).map(|fields| fields.status),
        Some(ParseStatus::Unparsed)
    );
}

/// Every input of the conformance corpus (tests/data/conformance), valid or not.
#[test]
fn conformance_corpus_agrees_with_the_full_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/conformance");
    let mut inputs = 0;
    let mut fast_taken = 0;
    for file in ["rfc5424.jsonl", "rfc3164.jsonl"] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let row: serde_json::Value = serde_json::from_str(line).expect("conformance row");
            let input = row["input"].as_str().expect("input is a string");
            let bytes: Vec<u8> = if row["bytes_as_latin1"].as_bool() == Some(true) {
                input.chars().map(|c| c as u32 as u8).collect()
            } else {
                input.as_bytes().to_vec()
            };
            fast_taken += usize::from(assert_same(&bytes));
            inputs += 1;
        }
    }
    assert!(inputs > 400, "only {inputs} conformance inputs found");
    assert!(
        fast_taken > inputs / 4,
        "fast reader took only {fast_taken} of {inputs}"
    );
}
