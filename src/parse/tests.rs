//! The parsing table: RFC examples, real device formats, year inference, zones and DST,
//! invalid input. One `check(input, expected)` helper; `expected` is the one-line rendering
//! of `show`, so a failing case prints both lines for comparison.

use chrono::{TimeZone, Utc};

use super::{parse, ParseContext, Parsed, Zone};

/// Receive time of most cases: the end of 2024, so the inferred year is 2024 for any month.
fn ctx() -> ParseContext {
    ParseContext {
        received_at: Utc.with_ymd_and_hms(2024, 12, 31, 12, 0, 0).unwrap(),
        rfc3164_zone: Zone::Utc,
    }
}

fn show(parsed: &Parsed) -> String {
    fn opt<T: std::fmt::Debug>(value: &Option<T>) -> String {
        value
            .as_ref()
            .map_or_else(|| "-".to_string(), |v| format!("{v:?}"))
    }
    let sd = match &parsed.structured_data {
        None => "-".to_string(),
        Some(elements) => elements
            .iter()
            .map(|e| {
                let params: Vec<String> =
                    e.params.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
                format!("[{} {}]", e.id, params.join(" "))
            })
            .collect(),
    };
    format!(
        "{} pri={} fac={} sev={} ver={} ts={} host={} app={} procid={} msgid={} sd={} msg={}",
        parsed.status.as_str(),
        opt(&parsed.pri),
        opt(&parsed.facility),
        opt(&parsed.severity),
        opt(&parsed.version),
        parsed
            .timestamp
            .map_or_else(|| "-".to_string(), |t| t.to_rfc3339()),
        opt(&parsed.hostname),
        opt(&parsed.app_name),
        opt(&parsed.procid),
        opt(&parsed.msgid),
        sd,
        opt(&parsed.message),
    )
}

fn check_in(ctx: &ParseContext, input: &[u8], expected: &str) {
    let got = show(&parse(input, ctx));
    assert_eq!(
        got,
        expected,
        "\ninput:    {:?}\ngot:      {got}\nexpected: {expected}",
        String::from_utf8_lossy(input)
    );
}

fn check(input: &str, expected: &str) {
    check_in(&ctx(), input.as_bytes(), expected);
}

#[test]
fn rfc5424_examples() {
    check(
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8",
        "rfc5424 pri=34 fac=4 sev=2 ver=1 ts=2003-10-11T22:14:15.003+00:00 host=\"mymachine.example.com\" app=\"su\" procid=- msgid=\"ID47\" sd=- msg=\"\\u{feff}'su root' failed for lonvick on /dev/pts/8\"",
    );
    check(
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        "rfc5424 pri=165 fac=20 sev=5 ver=1 ts=2003-08-24T05:14:15.000003-07:00 host=\"192.0.2.1\" app=\"myproc\" procid=\"8710\" msgid=- sd=- msg=\"%% It's time to make the do-nuts.\"",
    );
    check(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \u{feff}An application event log entry...",
        "rfc5424 pri=165 fac=20 sev=5 ver=1 ts=2003-10-11T22:14:15.003+00:00 host=\"mymachine.example.com\" app=\"evntslog\" procid=- msgid=\"ID47\" sd=[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] msg=\"\\u{feff}An application event log entry...\"",
    );
    check(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]",
        "rfc5424 pri=165 fac=20 sev=5 ver=1 ts=2003-10-11T22:14:15.003+00:00 host=\"mymachine.example.com\" app=\"evntslog\" procid=- msgid=\"ID47\" sd=[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"] msg=-",
    );
}

#[test]
fn rfc5424_details() {
    // SD-PARAM escapes; a repeated name is kept twice; `\n` stays literal.
    check(
        r#"<13>1 2024-01-02T03:04:05Z h a p m [x@1 q="a\"b" b="c\\d" r="e\]f" n="1\n2" n="3"] hi"#,
        r#"rfc5424 pri=13 fac=1 sev=5 ver=1 ts=2024-01-02T03:04:05+00:00 host="h" app="a" procid="p" msgid="m" sd=[x@1 q="a\"b" b="c\\d" r="e]f" n="1\\n2" n="3"] msg="hi""#,
    );
    // Exactly one SP before MSG: the rest, trailing spaces included, is the message.
    check(
        "<13>1 2024-01-02T03:04:05Z h a - - -   indented  ",
        "rfc5424 pri=13 fac=1 sev=5 ver=1 ts=2024-01-02T03:04:05+00:00 host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"  indented  \"",
    );
    check(
        "<13>1 2024-01-02T03:04:05Z h a - - - \ttabbed",
        "rfc5424 pri=13 fac=1 sev=5 ver=1 ts=2024-01-02T03:04:05+00:00 host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"\\ttabbed\"",
    );
    // All NILVALUEs, no MSG.
    check(
        "<0>1 - - - - - -",
        "rfc5424 pri=0 fac=0 sev=0 ver=1 ts=- host=- app=- procid=- msgid=- sd=- msg=-",
    );
    // A timestamp without offset is read in the configured zone.
    check(
        "<134>1 2009-10-16T11:51:56 exchange MSExchange_ADAccess 20208 - - entry",
        "rfc5424 pri=134 fac=16 sev=6 ver=1 ts=2009-10-16T11:51:56+00:00 host=\"exchange\" app=\"MSExchange_ADAccess\" procid=\"20208\" msgid=- sd=- msg=\"entry\"",
    );
    // An IPv6 HOSTNAME ending in `::` (Vector #26103).
    check(
        "<13>1 2024-01-02T03:04:05Z fe80:: app - - - text",
        "rfc5424 pri=13 fac=1 sev=5 ver=1 ts=2024-01-02T03:04:05+00:00 host=\"fe80::\" app=\"app\" procid=- msgid=- sd=- msg=\"text\"",
    );
    // No STRUCTURED-DATA field at all.
    check(
        "<34>1 2003-11-11T22:14:15.003Z mymachine su - ID47 last message repeated 5 times",
        "rfc5424 pri=34 fac=4 sev=2 ver=1 ts=2003-11-11T22:14:15.003+00:00 host=\"mymachine\" app=\"su\" procid=- msgid=\"ID47\" sd=- msg=\"last message repeated 5 times\"",
    );
    // No PRI (Juniper): user.notice, as RFC 3164 section 4.3.3 prescribes.
    check(
        "1 2020-05-22T14:59:09.250-03:00 MX204 LSYS:rpd 6589 - - bgp_listen_accept",
        "rfc5424 pri=13 fac=1 sev=5 ver=1 ts=2020-05-22T14:59:09.250-03:00 host=\"MX204\" app=\"LSYS:rpd\" procid=\"6589\" msgid=- sd=- msg=\"bgp_listen_accept\"",
    );
    // Framing residue at the end is not part of the message.
    check(
        "<13>1 - h a - - - text\r\n",
        "rfc5424 pri=13 fac=1 sev=5 ver=1 ts=- host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"text\"",
    );
}

#[test]
fn rfc3164_examples() {
    check(
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        "rfc3164 pri=34 fac=4 sev=2 ver=- ts=2024-10-11T22:14:15+00:00 host=\"mymachine\" app=\"su\" procid=- msgid=- sd=- msg=\"'su root' failed for lonvick on /dev/pts/8\"",
    );
    check(
        "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-02-05T17:32:18+00:00 host=\"10.0.0.99\" app=\"Use\" procid=- msgid=- sd=- msg=\"the BFG!\"",
    );
    check(
        "<165>Aug 24 05:34:00 mymachine myproc[10]: %% It's time to make the do-nuts.",
        "rfc3164 pri=165 fac=20 sev=5 ver=- ts=2024-08-24T05:34:00+00:00 host=\"mymachine\" app=\"myproc\" procid=\"10\" msgid=- sd=- msg=\"%% It's time to make the do-nuts.\"",
    );
    // A numeric PID is kept as sent: `syslog_loose` reads it as an integer (`007` → `7`).
    check(
        "<165>Aug 24 05:34:00 mymachine myproc[007]: zero-padded",
        "rfc3164 pri=165 fac=20 sev=5 ver=- ts=2024-08-24T05:34:00+00:00 host=\"mymachine\" app=\"myproc\" procid=\"007\" msgid=- sd=- msg=\"zero-padded\"",
    );
}

#[test]
fn device_formats() {
    // Cisco ASA without a timestamp: the TAG right after the PRI.
    check(
        "<166>%ASA-6-302013: Built outbound TCP connection 1 for outside:10.0.0.1/443",
        "rfc3164 pri=166 fac=20 sev=6 ver=- ts=- host=- app=\"%ASA-6-302013\" procid=- msgid=- sd=- msg=\"Built outbound TCP connection 1 for outside:10.0.0.1/443\"",
    );
    // No timestamp and no TAG form (Fortinet key=value): all message.
    check(
        "<189>date=2024-01-01 time=12:00:00 devname=fw01 type=traffic",
        "rfc3164 pri=189 fac=23 sev=5 ver=- ts=- host=- app=- procid=- msgid=- sd=- msg=\"date=2024-01-01 time=12:00:00 devname=fw01 type=traffic\"",
    );
    check(
        "<15> openvpn[2499]: PTHREAD support initialized",
        "rfc3164 pri=15 fac=1 sev=7 ver=- ts=- host=- app=\"openvpn\" procid=\"2499\" msgid=- sd=- msg=\"PTHREAD support initialized\"",
    );
    // Cisco ASA with a year in the timestamp and no hostname.
    check(
        "<190>Apr 15 2007 21:28:13: %PIX-6-302014: Teardown TCP connection 1688438",
        "rfc3164 pri=190 fac=23 sev=6 ver=- ts=2007-04-15T21:28:13+00:00 host=- app=\"%PIX-6-302014\" procid=- msgid=- sd=- msg=\"Teardown TCP connection 1688438\"",
    );
    // Cisco IOS: sequence number, `*` (clock not synchronised), milliseconds.
    check(
        "<189>123: *Mar  1 18:46:11.123: %SYS-5-CONFIG_I: Configured from console by vty0",
        "rfc3164 pri=189 fac=23 sev=5 ver=- ts=2024-03-01T18:46:11.123+00:00 host=- app=\"%SYS-5-CONFIG_I\" procid=- msgid=- sd=- msg=\"Configured from console by vty0\"",
    );
    check(
        "<0>91: *Oct 07 03:10:04: mydevice.com %CRYPTO-4-RECVD_PKT_INV_SPI: decaps: bad spi",
        "rfc3164 pri=0 fac=0 sev=0 ver=- ts=2024-10-07T03:10:04+00:00 host=\"mydevice.com\" app=\"%CRYPTO-4-RECVD_PKT_INV_SPI\" procid=- msgid=- sd=- msg=\"decaps: bad spi\"",
    );
    // No hostname (haproxy).
    check(
        "<133>Jan 13 16:33:35 haproxy[73411]: Proxy sticky-servers started.",
        "rfc3164 pri=133 fac=16 sev=5 ver=- ts=2024-01-13T16:33:35+00:00 host=- app=\"haproxy\" procid=\"73411\" msgid=- sd=- msg=\"Proxy sticky-servers started.\"",
    );
    // IPv6 host names, including one ending in `::`.
    check(
        "<13>Jan 10 01:00:00 2001:db8::1 sshd[7]: hello",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-01-10T01:00:00+00:00 host=\"2001:db8::1\" app=\"sshd\" procid=\"7\" msgid=- sd=- msg=\"hello\"",
    );
    check(
        "<0>Jan 10 01:00:00 fe80:: prg0: msgtxt",
        "rfc3164 pri=0 fac=0 sev=0 ver=- ts=2024-01-10T01:00:00+00:00 host=\"fe80::\" app=\"prg0\" procid=- msgid=- sd=- msg=\"msgtxt\"",
    );
    // Single-digit day with one space.
    check(
        "<131>Jun 8 11:54:08 master apache_error [Tue Jun 08 11:54:08.929301 2021] [php7:emerg] x",
        "rfc3164 pri=131 fac=16 sev=3 ver=- ts=2024-06-08T11:54:08+00:00 host=\"master\" app=\"apache_error\" procid=- msgid=- sd=- msg=\"[Tue Jun 08 11:54:08.929301 2021] [php7:emerg] x\"",
    );
    // RFC 3339 timestamp in a BSD line (rsyslog's RSYSLOG_ForwardFormat) with SD after the tag.
    check(
        "<190>2019-02-13T21:53:30.605850+00:00 74794bfb6795 liblogging-stdlog:  [origin software=\"rsyslogd\"] start",
        "rfc3164 pri=190 fac=23 sev=6 ver=- ts=2019-02-13T21:53:30.605850+00:00 host=\"74794bfb6795\" app=\"liblogging-stdlog\" procid=- msgid=- sd=[origin software=\"rsyslogd\"] msg=\"start\"",
    );
    // No PRI: user.notice (RFC 3164 section 4.3.3).
    check(
        "Feb 18 16:01:59 serverX -- MARK --",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-02-18T16:01:59+00:00 host=\"serverX\" app=\"--\" procid=- msgid=- sd=- msg=\"MARK --\"",
    );
    // Upper-case month, year after the time (embedded devices), relay prefix.
    check(
        "<190>NOV 22 00:00:33 192.168.33.8 CMDLOGGER[1]: cli",
        "rfc3164 pri=190 fac=23 sev=6 ver=- ts=2024-11-22T00:00:33+00:00 host=\"192.168.33.8\" app=\"CMDLOGGER\" procid=\"1\" msgid=- sd=- msg=\"cli\"",
    );
    check(
        "<190>Apr 15 21:28:13 2007 linksys app: msg",
        "rfc3164 pri=190 fac=23 sev=6 ver=- ts=2007-04-15T21:28:13+00:00 host=\"linksys\" app=\"app\" procid=- msgid=- sd=- msg=\"msg\"",
    );
    check(
        "<38>Sep 22 10:11:56 Message forwarded from cdaix66: sshd[679960]: Accepted publickey",
        "rfc3164 pri=38 fac=4 sev=6 ver=- ts=2024-09-22T10:11:56+00:00 host=\"cdaix66\" app=\"sshd\" procid=\"679960\" msgid=- sd=- msg=\"Accepted publickey\"",
    );
    // A first word that cannot be a host name: the TAG (Snare), or the start of MSG (JSON).
    check(
        "<175>Oct 16 23:47:31 #001 MSWinEventLog 0#011Security",
        "rfc3164 pri=175 fac=21 sev=7 ver=- ts=2024-10-16T23:47:31+00:00 host=- app=\"#001\" procid=- msgid=- sd=- msg=\"MSWinEventLog 0#011Security\"",
    );
    check(
        "<13>Oct 16 23:47:31 {\"user\":\"x\",\"ok\":true}",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-10-16T23:47:31+00:00 host=- app=- procid=- msgid=- sd=- msg=\"{\\\"user\\\":\\\"x\\\",\\\"ok\\\":true}\"",
    );
    // PRI and timestamp only.
    check(
        "<14>Aug 30 23:00:05",
        "rfc3164 pri=14 fac=1 sev=6 ver=- ts=2024-08-30T23:00:05+00:00 host=- app=- procid=- msgid=- sd=- msg=-",
    );
}

#[test]
fn unparsed_keeps_the_whole_text() {
    check(
        "complete and utter gobbledegook",
        "unparsed pri=- fac=- sev=- ver=- ts=- host=- app=- procid=- msgid=- sd=- msg=\"complete and utter gobbledegook\"",
    );
    check(
        "",
        "unparsed pri=- fac=- sev=- ver=- ts=- host=- app=- procid=- msgid=- sd=- msg=\"\"",
    );
    // PRI out of range: not a PRI.
    check(
        "<192>1 - - - - - - x",
        "unparsed pri=- fac=- sev=- ver=- ts=- host=- app=- procid=- msgid=- sd=- msg=\"<192>1 - - - - - - x\"",
    );
    check_in(
        &ctx(),
        b"\xff\xfe garbage \x00",
        "unparsed pri=- fac=- sev=- ver=- ts=- host=- app=- procid=- msgid=- sd=- msg=\"\u{fffd}\u{fffd} garbage \\0\"",
    );
}

#[test]
fn invalid_utf8_is_parsed_lossily() {
    check_in(
        &ctx(),
        b"<13>Jan  2 00:00:00 host app: caf\xe9 \xc3\x28",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-01-02T00:00:00+00:00 host=\"host\" app=\"app\" procid=- msgid=- sd=- msg=\"caf\u{fffd} \u{fffd}(\"",
    );
    check_in(
        &ctx(),
        b"<13>1 - h\xff a - - - m\xff",
        "rfc5424 pri=13 fac=1 sev=5 ver=1 ts=- host=\"h\u{fffd}\" app=\"a\" procid=- msgid=- sd=- msg=\"m\u{fffd}\"",
    );
}

#[test]
fn year_inference_around_new_year() {
    let just_after_new_year = ParseContext {
        received_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 10).unwrap(),
        rfc3164_zone: Zone::Utc,
    };
    check_in(
        &just_after_new_year,
        b"<13>Dec 31 23:59:59 h a: m",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-12-31T23:59:59+00:00 host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"m\"",
    );
    let new_years_eve = ParseContext {
        received_at: Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 0).unwrap(),
        rfc3164_zone: Zone::Utc,
    };
    // A sender whose clock is a little ahead: next year, within a day.
    check_in(
        &new_years_eve,
        b"<13>Jan  1 00:00:30 h a: m",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2025-01-01T00:00:30+00:00 host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"m\"",
    );
    // More than a day ahead is never the future: the past January.
    let days_before = ParseContext {
        received_at: Utc.with_ymd_and_hms(2024, 12, 29, 12, 0, 0).unwrap(),
        rfc3164_zone: Zone::Utc,
    };
    check_in(
        &days_before,
        b"<13>Jan  1 00:00:30 h a: m",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-01-01T00:00:30+00:00 host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"m\"",
    );
}

#[test]
fn zones_and_dst() {
    let berlin = |received_at| ParseContext {
        received_at,
        rfc3164_zone: Zone::Named(chrono_tz::Europe::Berlin),
    };
    let spring = berlin(Utc.with_ymd_and_hms(2024, 4, 1, 0, 0, 0).unwrap());
    // 02:30 does not exist in Berlin on 2024-03-31: read with the offset before the gap.
    check_in(
        &spring,
        b"<13>Mar 31 02:30:00 h a: m",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-03-31T02:30:00+01:00 host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"m\"",
    );
    check_in(
        &spring,
        b"<13>Mar 30 12:00:00 h a: m",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-03-30T12:00:00+01:00 host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"m\"",
    );
    // Ambiguous (the hour repeated in autumn): the earlier instant.
    let autumn = berlin(Utc.with_ymd_and_hms(2024, 10, 28, 0, 0, 0).unwrap());
    check_in(
        &autumn,
        b"<13>Oct 27 02:30:00 h a: m",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-10-27T02:30:00+02:00 host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"m\"",
    );
    // An explicit offset is never re-zoned.
    check_in(
        &autumn,
        b"<13>2024-10-27T02:30:00-05:00 h a: m",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-10-27T02:30:00-05:00 host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"m\"",
    );
    // A fixed-offset zone.
    let fixed = ParseContext {
        received_at: Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap(),
        rfc3164_zone: "+05:30".parse().unwrap(),
    };
    check_in(
        &fixed,
        b"<13>May 31 10:00:00 h a: m",
        "rfc3164 pri=13 fac=1 sev=5 ver=- ts=2024-05-31T10:00:00+05:30 host=\"h\" app=\"a\" procid=- msgid=- sd=- msg=\"m\"",
    );
}

#[test]
fn event_time_keeps_the_offset() {
    let parsed = parse(b"<13>1 2024-01-02T03:04:05.5+02:00 h a - - -", &ctx());
    let event_time = parsed.event_time().unwrap();
    assert_eq!(event_time.utc_offset_secs, 7200);
    assert_eq!(
        event_time.unix_micros,
        Utc.with_ymd_and_hms(2024, 1, 2, 1, 4, 5)
            .unwrap()
            .timestamp_micros()
            + 500_000
    );
    assert_eq!(super::event_time_to_datetime(event_time), parsed.timestamp);
    assert_eq!(parse(b"no time here", &ctx()).event_time(), None);
}
