//! Differential property test of `ingest_fields` against the full `parse::parse`: RFC 5424 and
//! RFC 3164 lines built piece by piece (well-formed and odd pieces alike), the same lines
//! mutated byte by byte (flips, insertions, deletions: invalid UTF-8, extra spaces, tabs,
//! colons, brackets), under several zones and receive times, always give the same status,
//! event time, HOSTNAME and APP-NAME. Canonical lines must also take the fast reader.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::{ingest_fields, ingest_fields_fast, parse, IngestFields, ParseContext, Zone};

fn context() -> impl Strategy<Value = ParseContext> {
    let zone = prop_oneof![
        Just(Zone::Utc),
        Just(Zone::Local),
        Just(Zone::Named(chrono_tz::Europe::Berlin)),
        Just(Zone::Named(chrono_tz::America::New_York)),
        Just("-05:30".parse::<Zone>().unwrap()),
    ];
    // Around New Year and DST changes as often as anywhere else.
    let received = (1971i32..2100, 0u32..366, 0u32..24).prop_map(|(year, day, hour)| {
        Utc.with_ymd_and_hms(year, 1, 1, hour, 0, 0).unwrap() + chrono::Duration::days(day.into())
    });
    (received, zone).prop_map(|(received_at, rfc3164_zone)| ParseContext {
        received_at,
        rfc3164_zone,
    })
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(options).prop_map(str::to_string)
}

fn separator() -> impl Strategy<Value = String> {
    prop_oneof![8 => Just(" ".to_string()), 1 => pick(&["  ", "\t", " \t", ""])]
}

fn line_end() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(String::new()), 1 => pick(&["\n", "\r\n", "\0", " ", "\u{a0}"])]
}

fn pri() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0u32..=191).prop_map(|p| format!("<{p}>")),
        1 => (0u32..=99).prop_map(|p| format!("<0{p}>")),
        1 => pick(&["<192>", "<>", "<1234>", "", " <13>", "<13", "<x>"]),
    ]
}

fn rfc3339() -> impl Strategy<Value = String> {
    let date = prop_oneof![
        8 => (1970u32..2100, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        2 => (0u32..10000, 0u32..=13, 0u32..=32).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        1 => pick(&["2024-02-29", "2023-02-29", "24-01-01", "2024-1-01"]),
    ];
    let time = prop_oneof![
        8 => (0u32..24, 0u32..60, 0u32..60).prop_map(|(h, m, s)| format!("{h:02}:{m:02}:{s:02}")),
        1 => (0u32..=25, 0u32..=61, 0u32..=61).prop_map(|(h, m, s)| format!("{h:02}:{m:02}:{s:02}")),
        1 => pick(&["1:02:03", "01:02", "23:59:60"]),
    ];
    let fraction = prop_oneof![
        3 => Just(String::new()),
        4 => "[0-9]{1,9}".prop_map(|digits| format!(".{digits}")),
        1 => "[0-9]{0,14}".prop_map(|digits| format!(".{digits}")),
    ];
    let offset = prop_oneof![
        4 => pick(&["Z"]),
        4 => (any::<bool>(), 0u32..24, 0u32..60)
            .prop_map(|(minus, h, m)| format!("{}{h:02}:{m:02}", if minus { '-' } else { '+' })),
        1 => pick(&["z", "", "+0100", "+01", "+24:00", "-23:60", "\u{2212}01:00", "UTC"]),
    ];
    let sep = prop_oneof![8 => Just("T"), 1 => Just("t"), 1 => Just(" ")];
    (date, sep, time, fraction, offset).prop_map(|(date, sep, time, fraction, offset)| {
        format!("{date}{sep}{time}{fraction}{offset}")
    })
}

fn header_word() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[!-~]{1,12}",
        2 => "[a-zA-Z0-9._-]{1,12}",
        1 => pick(&["-", ":", "a:", "fe80::", "::1", "h\u{e9}", "[x]", "\"q\""]),
    ]
}

fn structured_data() -> impl Strategy<Value = String> {
    let value = "[a-z\"\\\\\\] =\u{e4}]{0,8}".prop_map(|value: String| {
        let mut escaped = String::new();
        for c in value.chars() {
            if matches!(c, '"' | '\\' | ']') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        escaped
    });
    let element = (
        "[a-zA-Z0-9@._]{1,12}",
        proptest::collection::vec(("[a-z]{1,6}", value), 0..3),
    )
        .prop_map(|(id, params)| {
            let params: String = params
                .into_iter()
                .map(|(name, value)| format!(" {name}=\"{value}\""))
                .collect();
            format!("[{id}{params}]")
        });
    prop_oneof![
        3 => Just("-".to_string()),
        4 => proptest::collection::vec(element, 1..3).prop_map(|elements| elements.concat()),
        1 => pick(&["[unclosed", "[x a=\"b\"", "-x", "", "x", "[]", "[x a=\"\\\"]"]),
    ]
}

fn message() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        6 => "[ -~\u{e4}\u{feff}\t]{0,24}".prop_map(|msg| format!(" {msg}")),
        1 => "[ -~]{0,12}",
    ]
}

prop_compose! {
    fn rfc5424_line()(
        pri in pri(),
        version in pick(&["1", "1", "1", "01", "001", "0", "2", "999", "1000", "x"]),
        timestamp in prop_oneof![2 => Just("-".to_string()), 5 => rfc3339()],
        words in proptest::collection::vec((separator(), header_word()), 4),
        sd_sep in separator(),
        sd in structured_data(),
        msg in message(),
        end in line_end(),
    ) -> String {
        let mut line = format!("{pri}{version} {timestamp}");
        for (sep, word) in words {
            line.push_str(&sep);
            line.push_str(&word);
        }
        format!("{line}{sd_sep}{sd}{msg}{end}")
    }
}

fn bsd_timestamp() -> impl Strategy<Value = String> {
    let month = prop_oneof![
        8 => pick(&["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]),
        1 => pick(&["jan", "FEB", "Foo", "Ja"]),
    ];
    let day = prop_oneof![
        3 => (1u32..=28).prop_map(|d| format!("{d:>2}")),
        3 => (1u32..=31).prop_map(|d| d.to_string()),
        1 => (0u32..=32).prop_map(|d| format!("{d:02}")),
    ];
    let time = prop_oneof![
        8 => (0u32..24, 0u32..60, 0u32..60).prop_map(|(h, m, s)| format!("{h:02}:{m:02}:{s:02}")),
        1 => pick(&["1:02:03", "24:00:00", "23:59:60", "12:00:00.123", "12:00:00.", "12:00"]),
    ];
    let year = prop_oneof![
        6 => Just(String::new()),
        1 => (1960u32..2210).prop_map(|y| format!(" {y}")),
    ];
    let colon = prop_oneof![6 => Just(""), 1 => Just(":")];
    let mark = prop_oneof![8 => Just(""), 1 => Just("*"), 1 => Just(".")];
    (mark, month, day, time, year, colon).prop_map(|(mark, month, day, time, year, colon)| {
        format!("{mark}{month} {day} {time}{year}{colon}")
    })
}

prop_compose! {
    fn rfc3164_line()(
        pri in pri(),
        timestamp in bsd_timestamp(),
        sep1 in separator(),
        host in prop_oneof![
            6 => "[a-zA-Z0-9._-]{1,12}",
            2 => pick(&["10.0.0.7", "-", "2007", "fe80::1", "host:", "%ASA-6-302014:",
                "Message forwarded from relay:", "h\u{e9}", "#001", "{\"a\":1}", ""]),
        ],
        sep2 in separator(),
        tag in prop_oneof![
            4 => ("[a-zA-Z0-9._/-]{1,10}", proptest::option::of("[0-9a-z]{0,5}"), pick(&[":", "", " "]))
                .prop_map(|(app, pid, end)| match pid {
                    Some(pid) => format!("{app}[{pid}]{end}"),
                    None => format!("{app}{end}"),
                }),
            1 => pick(&["[1]:", "a[]:", "-:", "a[b[c]:", ":", "app\u{1}:", "a:b", "a]b:", "-"]),
        ],
        msg in message(),
        end in line_end(),
    ) -> String {
        format!("{pri}{timestamp}{sep1}{host}{sep2}{tag}{msg}{end}")
    }
}

fn any_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => rfc5424_line().prop_map(String::into_bytes),
        4 => rfc3164_line().prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        3 => proptest::sample::select(&b" \t:-[]<>\"\\.0123456789Tz\n\r\0\xff\xc3\x80"[..]),
        1 => any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        (any::<usize>(), byte).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        match *mutation {
            Mutation::Flip(at, b) if !bytes.is_empty() => {
                let len = bytes.len();
                bytes[at % len] = b;
            }
            Mutation::Insert(at, b) => bytes.insert(at % (bytes.len() + 1), b),
            Mutation::Delete(at) if !bytes.is_empty() => {
                let len = bytes.len();
                bytes.remove(at % len);
            }
            _ => {}
        }
    }
    bytes
}

fn check_same(raw: &[u8], ctx: &ParseContext) -> Result<(), TestCaseError> {
    let full = IngestFields::from_parsed(parse(raw, ctx));
    prop_assert_eq!(
        ingest_fields(raw, ctx),
        full,
        "input {:?} received {} zone {}",
        String::from_utf8_lossy(raw),
        ctx.received_at,
        ctx.rfc3164_zone
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn generated_lines_agree_with_the_full_parse(line in any_line(), ctx in context()) {
        check_same(&line, &ctx)?;
    }

    #[test]
    fn mutated_lines_agree_with_the_full_parse(
        line in any_line(),
        mutations in proptest::collection::vec(mutation(), 1..4),
        ctx in context(),
    ) {
        check_same(&mutate(line, &mutations), &ctx)?;
    }
}

prop_compose! {
    fn canonical_rfc5424()(
        pri in 0u32..=191,
        timestamp in prop_oneof![
            Just("-".to_string()),
            (1970u32..2100, 1u32..=12, 1u32..=28, 0u32..24, 0u32..60, 0u32..60, "(\\.[0-9]{1,6})?",
                pick(&["Z", "+02:00", "-07:00"]))
                .prop_map(|(y, mo, d, h, mi, s, frac, off)| {
                    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
                }),
        ],
        host in "[a-z0-9.-]{1,20}",
        app in "[a-z0-9_-]{1,12}",
        procid in "[0-9]{1,6}|-",
        msgid in "[A-Z0-9]{1,8}|-",
        sd in prop_oneof![Just("-".to_string()), "[a-z]{1,8}@32473 conn=\"[0-9]{1,3}\"".prop_map(|e| format!("[{e}]"))],
        msg in "[ -~]{0,60}",
    ) -> String {
        format!("<{pri}>1 {timestamp} {host} {app} {procid} {msgid} {sd} {msg}")
    }
}

prop_compose! {
    fn canonical_rfc3164()(
        pri in 0u32..=191,
        month in pick(&["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]),
        day in 1u32..=28,
        (h, m, s) in (0u32..24, 0u32..60, 0u32..60),
        host in "[a-z][a-z0-9.-]{0,20}",
        app in "[a-z][a-z0-9_/-]{0,12}",
        pid in proptest::option::of(1u32..100_000),
        msg in "[ -~]{0,60}",
    ) -> String {
        let tag = match pid {
            Some(pid) => format!("{app}[{pid}]"),
            None => app,
        };
        format!("<{pri}>{month} {day:>2} {h:02}:{m:02}:{s:02} {host} {tag}: {msg}")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A fast reader that always handed over would pass the tests above and be worthless.
    #[test]
    fn canonical_lines_take_the_fast_reader(
        line in prop_oneof![canonical_rfc5424(), canonical_rfc3164()],
        ctx in context(),
    ) {
        prop_assert!(
            ingest_fields_fast(line.as_bytes(), &ctx).is_some(),
            "fast reader handed over {:?}",
            line
        );
        check_same(line.as_bytes(), &ctx)?;
    }
}
