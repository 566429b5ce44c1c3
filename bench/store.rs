//! Store benchmarks (criterion, short runs): append throughput for 150-byte records with the
//! default commit policy and with a durable wait after every batch of 64, recovery of a large
//! unsealed tail segment, sequential read throughput, and opening a store with 10,000 sealed
//! segments. Files go under `target/bench-store` (set `STARLING_BENCH_DIR` to move them);
//! `STARLING_BENCH_TAIL_MIB` sets the tail size (default 1024).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use starling::record::{ParseStatus, Record, Transport};
use starling::store::fileops::{FileOps, RealFileOps};
use starling::store::{ReadOptions, Store, StoreConfig, StoreReader};

fn bench_dir(name: &str) -> PathBuf {
    let root = std::env::var("STARLING_BENCH_DIR")
        .map_or_else(|_| PathBuf::from("target/bench-store"), PathBuf::from);
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 150-byte syslog line as a record of the local origin.
fn record(i: u64, source: &str) -> Record {
    let mut raw =
        format!("<34>1 2026-11-26T10:00:00.000Z web-01 app 4242 ID47 - message number {i:>12} ");
    while raw.len() < 150 {
        raw.push('x');
    }
    Record {
        received_at_micros: 1_764_000_000_000_000 + i as i64,
        event_time: None,
        origin: "bench-node".into(),
        origin_seq: 0,
        peer: Some("10.1.2.3:51514".into()),
        transport: Transport::Udp,
        parse: ParseStatus::Rfc5424,
        truncated: false,
        source: source.to_string().into(),
        raw: Bytes::from(raw),
        lost_from: None,
        tls_peer: None,
        file: None,
    }
}

fn batches(total: u64, batch: u64, start: u64) -> Vec<Vec<Record>> {
    (0..total / batch)
        .map(|b| {
            (0..batch)
                .map(|i| record(start + b * batch + i, "web-01"))
                .collect()
        })
        .collect()
}

/// Syncs nothing: used only to build fixtures quickly.
#[derive(Debug)]
struct NoSync;

impl FileOps for NoSync {
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        RealFileOps.allocate(file, len)
    }
    fn sync_written(&self, _: &File, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn sync_data(&self, _: &File) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
}

fn append_throughput(c: &mut Criterion) {
    const PER_ITER: u64 = 200_000;
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(PER_ITER));
    let dir = bench_dir("append-default");
    let (store, _) = Store::open(&dir, "bench-node", StoreConfig::default()).unwrap();
    let handle = store.handle();
    let mut next = 0;
    group.bench_function("150B records, default commit policy, batches of 256", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let input = batches(PER_ITER, 256, next);
                next += PER_ITER;
                let started = Instant::now();
                let mut last = None;
                for batch in input {
                    last = Some(handle.blocking_append(batch).unwrap());
                }
                last.unwrap().wait_durable().unwrap();
                total += started.elapsed();
            }
            total
        })
    });
    let appended = handle.stats().appended_records;
    if let Some(cpu) = writer_cpu_seconds() {
        eprintln!(
            "writer thread: {appended} records in {cpu:.2} CPU s = {:.0} records per writer CPU second",
            appended as f64 / cpu
        );
    }
    store.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    const PER_ITER_64: u64 = 64 * 100;
    group.throughput(Throughput::Elements(PER_ITER_64));
    let dir = bench_dir("append-64");
    let config = StoreConfig {
        commit_max_delay: Duration::ZERO,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(&dir, "bench-node", config).unwrap();
    let handle = store.handle();
    group.bench_function(
        "150B records, commit and durable wait after every batch of 64",
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let input = batches(PER_ITER_64, 64, next);
                    next += PER_ITER_64;
                    let started = Instant::now();
                    for batch in input {
                        handle
                            .blocking_append(batch)
                            .unwrap()
                            .wait_durable()
                            .unwrap();
                    }
                    total += started.elapsed();
                }
                total
            })
        },
    );
    store.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    group.finish();
}

/// CPU time (user + system) of the live `store-writer` thread, from /proc.
fn writer_cpu_seconds() -> Option<f64> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "store-writer" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        return Some(ticks / 100.0);
    }
    None
}

/// Turns the sealed tail back into an unsealed one: cut footer and trailer, re-extend.
fn unseal(seg: &Path, data_end: u64, capacity: u64) {
    let f = OpenOptions::new().write(true).open(seg).unwrap();
    f.set_len(data_end).unwrap();
    f.set_len(capacity).unwrap();
}

struct Tail {
    dir: PathBuf,
    seg: PathBuf,
    config: StoreConfig,
    data_end: u64,
    capacity: u64,
}

/// Writes an unsealed tail segment of `tail_mib` MiB, recovers it once (which seals it).
fn build_tail(tail_mib: u64) -> Tail {
    let capacity = (tail_mib + 16) << 20;
    let dir = bench_dir("tail");
    let config = StoreConfig {
        segment_max_bytes: capacity,
        ..StoreConfig::default()
    };
    let (store, _) =
        Store::open_with_ops(&dir, "bench-node", config.clone(), Arc::new(NoSync)).unwrap();
    let handle = store.handle();
    let mut i = 0;
    let stop = tail_mib << 20;
    loop {
        let batch: Vec<Record> = (0..1024).map(|k| record(i + k, "web-01")).collect();
        i += 1024;
        let t = handle.blocking_append(batch).unwrap();
        if i % (1024 * 64) == 0 {
            t.wait_durable().unwrap();
            if handle.stats().appended_bytes >= stop {
                break;
            }
        }
    }
    store.abandon();
    let shard = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let seg = shard.join(format!("{:020}.seg", 0));
    let (store, report) = Store::open(&dir, "bench-node", config.clone()).unwrap();
    assert!(report.problems.is_empty());
    drop(store);
    let sealed_len = std::fs::metadata(&seg).unwrap().len();
    let file = File::open(&seg).unwrap();
    let data_end = {
        use std::os::unix::fs::FileExt;
        let mut t = [0u8; 16];
        file.read_at(&mut t, sealed_len - 16).unwrap();
        u64::from_le_bytes(t[..8].try_into().unwrap())
    };
    Tail {
        dir,
        seg,
        config,
        data_end,
        capacity,
    }
}

fn recovery_and_read(c: &mut Criterion) {
    let tail_mib: u64 = std::env::var("STARLING_BENCH_TAIL_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut tail: Option<Tail> = None;
    let mut group = c.benchmark_group("recovery");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(tail_mib << 20));
    group.bench_function(
        format!("open with a {tail_mib} MiB unsealed tail segment"),
        |b| {
            let t = tail.get_or_insert_with(|| build_tail(tail_mib));
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    unseal(&t.seg, t.data_end, t.capacity);
                    let started = Instant::now();
                    let (store, report) =
                        Store::open(&t.dir, "bench-node", t.config.clone()).unwrap();
                    total += started.elapsed();
                    assert!(report.num_tail_records > 0);
                    drop(store);
                }
                total
            })
        },
    );
    group.finish();

    let mut group = c.benchmark_group("read");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(tail_mib << 20));
    group.bench_function(format!("sequential read of {tail_mib} MiB"), |b| {
        let t = tail.get_or_insert_with(|| build_tail(tail_mib));
        let reader = StoreReader::open(&t.dir).unwrap();
        b.iter(|| {
            let mut n = 0u64;
            for item in reader.read(&ReadOptions::default()) {
                n += item.unwrap().record.raw.len() as u64;
            }
            n
        })
    });
    group.finish();
    if let Some(t) = tail {
        let _ = std::fs::remove_dir_all(&t.dir);
    }
}

fn open_many_sealed(c: &mut Criterion) {
    const SEGMENTS: u64 = 10_000;
    let dir = bench_dir("many");
    let config = StoreConfig {
        segment_max_bytes: 4096,
        ..StoreConfig::default()
    };
    let mut built = false;
    let mut group = c.benchmark_group("open");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("open a store with 10,000 sealed segments", |b| {
        if !built {
            built = true;
            let (store, _) =
                Store::open_with_ops(&dir, "bench-node", config.clone(), Arc::new(NoSync)).unwrap();
            let handle = store.handle();
            let mut i = 0;
            while handle.stats().segments_sealed < SEGMENTS {
                let batch: Vec<Record> = (0..20).map(|k| record(i + k, "web-01")).collect();
                i += 20;
                handle
                    .blocking_append(batch)
                    .unwrap()
                    .wait_durable()
                    .unwrap();
            }
            store.close().unwrap();
        }
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let (store, report) = Store::open(&dir, "bench-node", config.clone()).unwrap();
                total += started.elapsed();
                assert!(report.problems.is_empty());
                store.abandon();
            }
            total
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(
    benches,
    append_throughput,
    recovery_and_read,
    open_many_sealed
);
criterion_main!(benches);
