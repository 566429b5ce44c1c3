//! Many distinct sources (spoofed HOSTNAMEs over UDP) against a node with a small
//! `max-open-shards`: open files stay bounded by it, disk reserved beyond the data stays
//! bounded by it plus a few KiB per source, and every datagram sent is stored or counted
//! as dropped. "Reserved beyond the data" is the space the data directory's files take
//! (st_blocks) less the bytes of records the store appended: preallocation, file headers,
//! footers, shard.meta files and block rounding. The same shape as issue #12's 100,000-source target, made small enough for
//! the suite; `bench/shard_flood.sh` runs the full size.

use std::net::UdpSocket;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sandbox::{count_records, wait_until, Node};

/// Distinct sources, the rate they are sent at, and the open-segment limit.
const SOURCES: usize = 500;
const PER_SECOND: usize = 20_000;
const MAX_OPEN: usize = 16;
/// What the target allows per source beyond the open segments' preallocation:
/// (2 GiB − 1,024 × 1 MiB) / 100,000 sources.
const RESERVED_PER_SOURCE: u64 = (2 * 1024 - 1024) * 1024 * 1024 / 100_000;

/// (open descriptors, of which segment files) of process `pid`.
pub fn open_files(pid: u32) -> (usize, usize) {
    let mut all = 0;
    let mut segments = 0;
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        all += 1;
        if std::fs::read_link(entry.path()).is_ok_and(|t| t.extension().is_some_and(|e| e == "seg"))
        {
            segments += 1;
        }
    }
    (all, segments)
}

/// Bytes allocated (st_blocks × 512) to the regular files under `dir`.
pub fn allocated_bytes(dir: &Path) -> u64 {
    let mut allocated = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(m) = entry.metadata() else { continue };
            if m.is_dir() {
                stack.push(entry.path());
            } else if m.is_file() {
                allocated += m.blocks() * 512;
            }
        }
    }
    allocated
}

#[test]
fn a_flood_of_distinct_sources_keeps_files_and_disk_bounded_and_counts_everything() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("starling.toml");
    std::fs::write(
        &config,
        format!("[store]\nmax-open-shards = {MAX_OPEN}\nidle-shard-seal = \"1h\"\n"),
    )
    .unwrap();
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let pid = node.pid();
    let (baseline, _) = open_files(pid);

    // Sample the node's descriptors while it works.
    let done = Arc::new(AtomicBool::new(false));
    let peak_all = Arc::new(AtomicU64::new(0));
    let peak_segments = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak_all, peak_segments) =
            (done.clone(), peak_all.clone(), peak_segments.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let (all, segments) = open_files(pid);
                peak_all.fetch_max(all as u64, Ordering::Relaxed);
                peak_segments.fetch_max(segments as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = node.udp.unwrap();
    let started = Instant::now();
    for i in 0..SOURCES {
        // Paced: datagram i leaves at i / PER_SECOND seconds.
        let due = Duration::from_secs_f64(i as f64 / PER_SECOND as f64);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead);
        }
        let datagram = format!("<13>1 2026-12-04T00:00:00Z spoofed-{i} app - - - message {i}");
        socket.send_to(datagram.as_bytes(), target).unwrap();
    }

    let sent = SOURCES as f64;
    let accounted = || {
        let m = node.metrics();
        let stored = crate::sandbox::metric_value(&m, "starling_stored_messages_total");
        let dropped = crate::sandbox::metric_value(&m, "starling_pipeline_dropped_messages_total");
        let kernel = crate::sandbox::metric_value(&m, "starling_udp_kernel_drops_total");
        (stored, dropped, kernel)
    };
    let balanced = wait_until(Duration::from_secs(120), || {
        let (stored, dropped, kernel) = accounted();
        stored + dropped + kernel == sent
    });
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let (stored, dropped, kernel) = accounted();
    assert!(
        balanced,
        "sent {sent}, stored {stored} + dropped {dropped} + kernel drops {kernel}"
    );

    let peak_all = peak_all.load(Ordering::Relaxed) as usize;
    let peak_segments = peak_segments.load(Ordering::Relaxed) as usize;
    assert!(
        peak_segments <= MAX_OPEN,
        "{peak_segments} segment files open at once, max-open-shards {MAX_OPEN}"
    );
    assert!(
        peak_all <= baseline + MAX_OPEN + 16,
        "{peak_all} descriptors open at the peak, {baseline} before the flood"
    );

    let data = node.metric("starling_store_appended_bytes_total") as u64;
    let allocated = allocated_bytes(&node.data_dir);
    let reserved = allocated.saturating_sub(data);
    let bound = MAX_OPEN as u64 * 1024 * 1024 + SOURCES as u64 * RESERVED_PER_SOURCE;
    assert!(
        reserved < bound,
        "{reserved} bytes reserved beyond {data} bytes of data (bound {bound})"
    );

    // What the metrics call stored is what `starling read` finds.
    assert_eq!(count_records(&node.data_dir) as f64, stored);
    assert!(stored > 0.0);
}
