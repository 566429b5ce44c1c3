//! Reading back (#17, #19 item 5): `GET /v1/logs` and the offline `starling read` (the real
//! binary) on the same store agree with each other and with a model of the filter semantics,
//! over random filters, orders, limits and cursor pages; and `read`'s operator cases.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use proptest::prelude::*;
use serde_json::Value;
use starling::record::{ParseStatus, Record, Transport};
use starling::store::{Store, StoreConfig};

use crate::sandbox::starling_bin;

const SOURCES: [&str; 3] = ["web-1", "web-2", "db-1"];
const APPS: [&str; 3] = ["nginx", "sshd", "cron"];
const WORDS: [&str; 5] = ["timeout", "Timeout", "ok", "retry", "disk full"];
const ORIGINS: [&str; 2] = ["n1", "n2"];
/// Receive times spread over 100 s from here, in random order within a shard.
const BASE_MICROS: i64 = 1_780_000_000_000_000;

#[derive(Debug, Clone)]
struct Model {
    received_at: i64,
    origin: &'static str,
    seq: u64,
    source: &'static str,
    app: &'static str,
    severity: u8,
    transport: Transport,
    raw: String,
}

/// A store of `n` records with small segments (many sealed, indexed segments per shard),
/// receive times out of order within each shard, and the model of what it holds.
fn build_store(dir: &Path, n: usize, seed: u64) -> Vec<Model> {
    build_store_batched(dir, n, seed, 50)
}

fn build_store_batched(dir: &Path, n: usize, seed: u64, per_batch: usize) -> Vec<Model> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let config = StoreConfig {
        segment_max_bytes: 16 * 1024,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(dir, "me", config).unwrap();
    let mut seqs = [0u64; 2];
    let mut model = Vec::new();
    for _ in 0..n / per_batch {
        let mut batch = Vec::new();
        for _ in 0..per_batch {
            let o = rng.gen_range(0..2);
            seqs[o] += 1;
            let source = SOURCES[rng.gen_range(0..3)];
            let app = APPS[rng.gen_range(0..3)];
            let severity = rng.gen_range(0..8u8);
            let word = WORDS[rng.gen_range(0..WORDS.len())];
            let newline = if rng.gen_bool(0.1) {
                "\nsecond line"
            } else {
                ""
            };
            let raw = format!(
                "<{}>1 2026-01-01T00:00:00Z {source} {app} - - - msg {word} {}{newline}",
                8 + severity,
                seqs[o]
            );
            let transport = [Transport::Udp, Transport::Tcp][rng.gen_range(0..2)];
            let received_at = BASE_MICROS + rng.gen_range(0..100_000_000);
            batch.push(Record {
                received_at_micros: received_at,
                event_time: None,
                origin: Arc::from(ORIGINS[o]),
                origin_seq: seqs[o],
                peer: None,
                transport,
                parse: ParseStatus::Rfc5424,
                truncated: false,
                source: Arc::from(source),
                raw: Bytes::from(raw.clone()),
                lost_from: None,
                tls_peer: None,
                file: None,
            });
            model.push(Model {
                received_at,
                origin: ORIGINS[o],
                seq: seqs[o],
                source,
                app,
                severity,
                transport,
                raw,
            });
        }
        store
            .handle()
            .blocking_append(batch)
            .unwrap()
            .wait_durable()
            .unwrap();
    }
    store.close().unwrap();
    model
}

/// A random query, as `(API parameters, read flags)` built from the same choices.
#[derive(Debug, Clone)]
struct Case {
    since: Option<i64>,
    until: Option<i64>,
    sources: Vec<&'static str>,
    apps: Vec<&'static str>,
    severity: Option<(u8, u8)>,
    contains: Option<(&'static str, bool)>,
    regex: Option<&'static str>,
    transport: Option<Transport>,
    limit: u64,
    desc: bool,
}

fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl Case {
    fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut push = |n: &str, v: String| pairs.push((n.to_string(), v));
        if let Some(t) = self.since {
            push("since", rfc3339(t));
        }
        if let Some(t) = self.until {
            push("until", rfc3339(t));
        }
        for s in &self.sources {
            push("source", s.to_string());
        }
        for a in &self.apps {
            push("app", a.to_string());
        }
        if let Some((lo, hi)) = self.severity {
            push("severity", format!("{lo}..{hi}"));
        }
        if let Some((text, sensitive)) = self.contains {
            push("contains", text.to_string());
            if !sensitive {
                push("case-sensitive", "false".into());
            }
        }
        if let Some(re) = self.regex {
            push("regex", re.to_string());
        }
        if let Some(t) = self.transport {
            push("transport", t.as_str().to_string());
        }
        push("limit", self.limit.to_string());
        push("order", if self.desc { "desc" } else { "asc" }.into());
        pairs
    }

    fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for (name, value) in self.pairs() {
            match name.as_str() {
                "case-sensitive" => flags.push("--ignore-case".to_string()),
                "order" if value == "desc" => flags.push("--reverse".to_string()),
                "order" => {}
                _ => {
                    flags.push(format!("--{name}"));
                    flags.push(value);
                }
            }
        }
        flags
    }

    /// The model: what the query must return, keys in order.
    fn expect(&self, model: &[Model]) -> Vec<(String, String, u64)> {
        let glob = |pattern: &str, text: &str| glob::Pattern::new(pattern).unwrap().matches(text);
        let mut kept: Vec<&Model> = model
            .iter()
            .filter(|m| self.since.is_none_or(|t| m.received_at >= t))
            .filter(|m| self.until.is_none_or(|t| m.received_at < t))
            .filter(|m| self.sources.is_empty() || self.sources.iter().any(|p| glob(p, m.source)))
            .filter(|m| self.apps.is_empty() || self.apps.iter().any(|p| glob(p, m.app)))
            .filter(|m| {
                self.severity
                    .is_none_or(|(lo, hi)| m.severity >= lo && m.severity <= hi)
            })
            .filter(|m| match self.contains {
                None => true,
                Some((text, true)) => m.raw.contains(text),
                Some((text, false)) => m.raw.to_lowercase().contains(&text.to_lowercase()),
            })
            .filter(|m| {
                self.regex
                    .is_none_or(|re| regex::Regex::new(re).unwrap().is_match(&m.raw))
            })
            .filter(|m| self.transport.is_none_or(|t| m.transport == t))
            .collect();
        kept.sort_by_key(|m| (m.received_at, m.origin, m.seq));
        if self.desc {
            kept.reverse();
        }
        if self.limit > 0 {
            kept.truncate(self.limit as usize);
        }
        kept.iter()
            .map(|m| (rfc3339(m.received_at), m.origin.to_string(), m.seq))
            .collect()
    }
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let time = prop_oneof![
        Just(None),
        (0i64..110_000_000).prop_map(|d| Some(BASE_MICROS - 5_000_000 + d))
    ];
    (
        (time.clone(), time),
        proptest::sample::subsequence(vec!["web-1", "web-*", "db-?", "nope"], 0..=2),
        proptest::sample::subsequence(vec!["nginx", "ss*", "cron"], 0..=2),
        proptest::option::of((0u8..8, 0u8..8).prop_map(|(a, b)| (a.min(b), a.max(b)))),
        proptest::option::of((
            proptest::sample::select(vec!["timeout", "disk full", "line", "zzz"]),
            any::<bool>(),
        )),
        proptest::option::of(proptest::sample::select(vec![
            r"msg (ok|retry) \d+7$",
            r"^<1[0-2]>",
        ])),
        proptest::option::of(proptest::sample::select(vec![
            Transport::Udp,
            Transport::Tcp,
        ])),
        prop_oneof![Just(0u64), 1u64..40],
        any::<bool>(),
    )
        .prop_map(
            |((t1, t2), sources, apps, severity, contains, regex, transport, limit, desc)| {
                let (since, until) = match (t1, t2) {
                    (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                    other => other,
                };
                Case {
                    since,
                    until,
                    sources,
                    apps,
                    severity,
                    contains,
                    regex,
                    transport,
                    limit,
                    desc,
                }
            },
        )
}

/// Serves `GET /v1/logs` over `dir` (scan windows of at most `window` bytes) until the
/// process ends; returns its address.
pub fn serve_logs(dir: &Path, window: usize) -> SocketAddr {
    serve_logs_with(dir, window, Default::default())
}

fn serve_logs_with(
    dir: &Path,
    window: usize,
    metrics: starling::query::http::QueryMetrics,
) -> SocketAddr {
    let reader = starling::store::StoreReader::open(dir).unwrap();
    let state =
        starling::query::http::LogsState::new(reader, metrics).with_window_max_bytes(window);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let router = starling::query::http::router(state);
            let _ = starling::api::serve_router(
                listener,
                router,
                starling::api::ApiLimits::default(),
                tokio_util::sync::CancellationToken::new(),
            )
            .await;
        });
    });
    address
}

/// `GET /v1/logs` with `pairs`: (records, the `_meta` object).
fn api_query(address: SocketAddr, pairs: &[(String, String)]) -> (Vec<Value>, Value) {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let body = ureq::get(&format!("http://{address}/v1/logs?{query}"))
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .unwrap_or_else(|error| panic!("GET /v1/logs?{query}: {error}"));
    let mut lines: Vec<Value> = body
        .lines()
        .map(|line| serde_json::from_str(line).expect("NDJSON"))
        .collect();
    let meta = lines.pop().expect("a final line");
    assert!(meta.get("_meta").is_some(), "last line {meta}");
    (lines, meta["_meta"].clone())
}

fn keys(records: &[Value]) -> Vec<(String, String, u64)> {
    records
        .iter()
        .map(|r| {
            (
                r["received_at"].as_str().unwrap().to_string(),
                r["origin"].as_str().unwrap().to_string(),
                r["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn read_cli(dir: &Path, flags: &[String]) -> (Vec<Value>, String) {
    let output = Command::new(starling_bin())
        .args(["read", "--format", "json", "--data-dir"])
        .arg(dir)
        .args(flags)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "read {flags:?}: {stderr}");
    let records = output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    (records, stderr)
}

#[test]
fn api_and_offline_read_agree_with_the_filter_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = build_store(dir.path(), 3000, 7);
    // A small window: the API's scans split and regrow windows; the CLI's do not.
    let address = serve_logs(dir.path(), 8 * 1024);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    runner
        .run(&case_strategy(), |case| {
            let want = case.expect(&model);
            let (records, meta) = api_query(address, &case.pairs());
            prop_assert_eq!(&keys(&records), &want, "API, {:?}", case);
            prop_assert_eq!(meta["returned"].as_u64(), Some(want.len() as u64));
            prop_assert_eq!(meta["corrupt_frames"].as_u64(), Some(0));
            let no_source = !case.sources.is_empty()
                && !SOURCES.iter().any(|s| {
                    case.sources
                        .iter()
                        .any(|p| glob::Pattern::new(p).unwrap().matches(s))
                });
            if no_source {
                // `read` refuses a source that names no shard (exit 2), the API returns none.
                let output = Command::new(starling_bin())
                    .args(["read", "--data-dir"])
                    .arg(dir.path())
                    .args(case.flags())
                    .output()
                    .unwrap();
                prop_assert_eq!(output.status.code(), Some(2));
            } else {
                let (records, _) = read_cli(dir.path(), &case.flags());
                prop_assert_eq!(&keys(&records), &want, "read {:?}", case.flags());
            }
            // Paging with the cursor gives the same records, none twice.
            if case.limit == 0 && want.len() <= 200 {
                let mut paged = Vec::new();
                let mut cursor: Option<String> = None;
                for _ in 0..100 {
                    let mut pairs = case.pairs();
                    pairs.retain(|(n, _)| n != "limit");
                    pairs.push(("limit".into(), "7".into()));
                    if let Some(c) = &cursor {
                        pairs.push(("cursor".into(), c.clone()));
                    }
                    let (records, meta) = api_query(address, &pairs);
                    paged.extend(keys(&records));
                    cursor = meta["cursor"].as_str().map(String::from);
                    if records.len() < 7 {
                        break;
                    }
                }
                prop_assert_eq!(&paged, &want, "pages of 7, {:?}", case);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn hostile_parameters_get_400_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 100, 1);
    let address = serve_logs(dir.path(), 1 << 20);
    for (query, reason) in [
        ("limit=99999999999999999999999", "limit: "),
        ("limit=-1", "limit: "),
        ("regex=(a%7B1000%7D)%7B1000%7D", "regex: "),
        ("regex=(", "regex: "),
        ("since=yesterday-ish", "since: "),
        ("until=2026-02-30T00:00:00Z", "until: "),
        ("severity=loud", "severity: "),
        ("order=sideways", "order: "),
        ("cursor=%21%21", "cursor: "),
        ("format=xml", "format: "),
        ("bogus=1", "bogus: unknown parameter"),
    ] {
        let response = ureq::get(&format!("http://{address}/v1/logs?{query}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let body = response.into_body().read_to_string().unwrap();
        assert!(body.contains(reason), "{query}: {body}");
    }
}

/// A client that goes away stops its scan: one that matches nothing (the scan notices
/// between records) and one that stopped reading a big answer (the scan is blocked sending).
#[test]
fn a_disconnected_client_stops_the_scan() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let total = 400_000;
    build_store_batched(dir.path(), total, 3, 2000);
    let metrics = starling::query::http::QueryMetrics::default();
    let address = serve_logs_with(dir.path(), 1 << 20, metrics.clone());
    for query in ["contains=never-there", "contains=msg"] {
        let scanned_before = metrics.scanned.get();
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "GET /v1/logs?{query} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        // The scan is running (checked every millisecond: it takes far longer).
        let mut running = false;
        for _ in 0..5000 {
            if metrics.active.get() == 1 {
                running = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(running, "{query}: the scan never started");
        if query == "contains=msg" {
            // Read a little of the answer, then stop reading.
            let mut first = [0u8; 4096];
            let _ = stream.read(&mut first).unwrap();
        }
        drop(stream);
        assert!(
            crate::sandbox::wait_until(Duration::from_secs(5), || metrics.active.get() == 0),
            "{query}: the scan still runs after the client left"
        );
        let scanned = metrics.scanned.get() - scanned_before;
        assert!(
            scanned < total as u64,
            "{query}: the scan read all {scanned} records although the client had left"
        );
    }
}

fn read_raw(dir: &Path, flags: &[&str]) -> (String, String, Option<i32>) {
    let output = Command::new(starling_bin())
        .arg("read")
        .args(flags)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code(),
    )
}

/// #19: "`--format raw` prints a journald record as a 12-line block, which breaks `grep`";
/// "`--since now` is refused"; an empty range said nothing.
#[test]
fn read_raw_is_one_line_per_record_and_says_when_nothing_matched() {
    let dir = tempfile::tempdir().unwrap();
    let model = build_store(dir.path(), 500, 11);
    let multi_line = model.iter().filter(|m| m.raw.contains('\n')).count();
    assert!(multi_line > 0);
    let (stdout, _, code) = read_raw(dir.path(), &["--format", "raw"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.lines().count(), 500, "one line per record");
    assert_eq!(stdout.matches("#012second line").count(), multi_line);
    let (stdout, _, _) = read_raw(dir.path(), &["--format", "raw", "--exact"]);
    assert_eq!(stdout.lines().count(), 500 + multi_line, "the stored bytes");
    // `--exact` is for raw only.
    let (_, stderr, code) = read_raw(dir.path(), &["--format", "json", "--exact"]);
    assert_eq!(code, Some(2), "{stderr}");

    let (stdout, stderr, code) = read_raw(dir.path(), &["--since", "now"]);
    assert_eq!((stdout.as_str(), code), ("", Some(0)), "{stderr}");
    assert!(stderr.contains("no records received since now"), "{stderr}");
    let (_, stderr, code) = read_raw(dir.path(), &["--grep", "no-such-text"]);
    assert_eq!(code, Some(0));
    assert!(
        stderr.contains("no records stored match the filters"),
        "{stderr}"
    );
}

/// #19: "`read` does not find the packaged data: it defaults to ./starling-data and has no
/// `--config`".
#[test]
fn read_finds_the_data_directory_through_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    build_store(&data, 100, 5);
    let config = dir.path().join("starling.toml");
    std::fs::write(
        &config,
        format!("data-dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let output = Command::new(starling_bin())
        .args(["read", "--format", "raw", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 100);
}

/// #19: "`--follow` first dumps the whole history" and "`--since … --until 15m --follow`
/// never ends": `--follow` prints the newest `-n` records then new ones, and stops at a
/// future `--until` (at once for a past one).
#[test]
fn read_follow_backfills_the_newest_records_and_honours_until() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut model = build_store(dir.path(), 200, 9);
    model.sort_by_key(|m| (m.received_at, m.origin, m.seq));

    // A past --until: the read ends.
    let started = std::time::Instant::now();
    let (stdout, _, code) = read_raw(
        dir.path(),
        &["--since", "3650days", "--until", "15m", "--follow"],
    );
    assert_eq!((stdout.lines().count(), code), (200, Some(0)));
    assert!(started.elapsed() < Duration::from_secs(10));

    let until = (Utc::now() + chrono::Duration::seconds(4)).to_rfc3339();
    let mut child = Command::new(starling_bin())
        .args([
            "read", "--format", "raw", "--follow", "-n", "3", "--until", &until,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    let newest: Vec<&str> = model[197..].iter().map(|m| m.raw.as_str()).collect();
    let newest: Vec<String> = newest.iter().map(|raw| raw.replace('\n', "#012")).collect();
    assert_eq!(first, newest, "the newest three, oldest first");

    // A record committed now is printed; then the process ends after --until.
    let (store, _) = Store::open(dir.path(), "me", StoreConfig::default()).unwrap();
    let live = Record {
        received_at_micros: Utc::now().timestamp_micros(),
        event_time: None,
        origin: Arc::from("n1"),
        origin_seq: model
            .iter()
            .filter(|m| m.origin == "n1")
            .map(|m| m.seq)
            .max()
            .unwrap()
            + 1,
        peer: None,
        transport: Transport::Udp,
        parse: ParseStatus::Rfc5424,
        truncated: false,
        source: Arc::from("web-1"),
        raw: Bytes::from_static(b"<11>1 - web-1 app - - - live record"),
        lost_from: None,
        tls_peer: None,
        file: None,
    };
    store
        .handle()
        .blocking_append(vec![live])
        .unwrap()
        .wait_durable()
        .unwrap();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "<11>1 - web-1 app - - - live record"
    );
    let ended = crate::sandbox::wait_until(Duration::from_secs(15), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    assert!(ended, "read --follow did not stop at its --until");
    assert!(
        lines.next().is_none(),
        "nothing more than the backfill and the live record"
    );
    store.close().unwrap();
}
