//! Parse throughput on typical lines: RFC 5424 (about 150 bytes, the load generator's size),
//! RFC 3164 with inferred year and named zone, and an unparsed line; each through the full
//! `parse` (read time) and through `ingest_fields` (what ingest reads: status, event time,
//! HOSTNAME, APP-NAME). The `rfc5424_loadgen` line is what `bench/loadgen.rs` sends.
//! Run: `cargo bench --bench parse` (filter: `-- parse/`, `-- ingest_fields/`).

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use starling::parse::{ingest_fields, parse, ParseContext, Zone};

fn bench_parse(c: &mut Criterion) {
    let ctx = ParseContext {
        received_at: Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap(),
        rfc3164_zone: Zone::Named(chrono_tz::Europe::Berlin),
    };
    let lines: [(&str, &[u8]); 5] = [
        ("rfc5424_loadgen", b"<134>1 2026-11-26T10:00:00.123456Z bench-host loadgen 4242 LOAD [load@32473 conn=\"0\"] conn 0 seq 0000000042 lorem ipsum dolor sit amet"),
        ("rfc5424", b"<165>1 2024-06-01T12:00:00.123456Z web-01.example.com nginx 4242 ID47 - GET /index.html 200 1532 0.003 \"Mozilla/5.0 (X11; Linux x86_64)\" 10.0.0.7"),
        ("rfc5424_sd", b"<165>1 2024-06-01T12:00:00.123Z web-01 evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] An application event log entry"),
        ("rfc3164", b"<34>Jun  1 11:59:58 web-01 sshd[4242]: Accepted publickey for deploy from 10.0.0.7 port 52022 ssh2: RSA SHA256:abcdef"),
        ("unparsed", b"just some text without any syslog header at all, sent by a misconfigured device"),
    ];
    let mut group = c.benchmark_group("parse");
    for (name, line) in lines {
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), line, |b, line| {
            b.iter(|| parse(std::hint::black_box(line), &ctx))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("ingest_fields");
    for (name, line) in lines {
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), line, |b, line| {
            b.iter(|| ingest_fields(std::hint::black_box(line), &ctx))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
