//! Disk full on a real, small tmpfs (mounted by the test; needs root: `sandbox::skip_or_fail`
//! otherwise): segment allocation fails with ENOSPC at fallocate, the writer stops
//! acknowledging without a SIGBUS, counts the error, and resumes by itself once space is freed.

use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use starling::record::{ParseStatus, Record, Transport};
use starling::store::{ReadOptions, Store, StoreConfig, StoreReader};

use crate::sandbox::{have_root, mount_tmpfs, skip_or_fail, wait_until};

fn record(i: u64) -> Record {
    Record {
        received_at_micros: i as i64,
        event_time: None,
        origin: "node".into(),
        origin_seq: 0,
        peer: None,
        transport: Transport::Udp,
        parse: ParseStatus::Unparsed,
        truncated: false,
        source: "full".into(),
        raw: Bytes::from(vec![b'x'; 1000]),
        lost_from: None,
        tls_peer: None,
        file: None,
    }
}

#[test]
fn disk_full_errors_without_sigbus_and_resumes_after_space_is_freed() {
    const TEST: &str = "disk_full_errors_without_sigbus_and_resumes_after_space_is_freed";
    if !have_root(TEST) {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let _mount = match mount_tmpfs(base.path(), "4m") {
        Ok(m) => m,
        Err(reason) => {
            skip_or_fail(TEST, &reason);
            return;
        }
    };
    let filler = base.path().join("filler");
    std::fs::write(&filler, vec![1u8; 1024 * 1024]).unwrap();
    let data = base.path().join("data");
    let config = StoreConfig {
        segment_max_bytes: 512 * 1024,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(&data, "node", config).unwrap();
    let handle = store.handle();
    // Append in the background until the writer reports the disk full.
    let (acked_tx, acked_rx) = mpsc::channel();
    let writer = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            for i in 0..8000u64 {
                let batch: Vec<Record> = (0..10).map(|k| record(i * 10 + k)).collect();
                let Ok(ticket) = handle.blocking_append(batch) else {
                    return;
                };
                if ticket.wait_durable().is_ok() && acked_tx.send(i).is_err() {
                    return;
                }
            }
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || handle.stats().disk_full),
        "disk never filled: {:?}",
        handle.stats()
    );
    let stats = handle.stats();
    assert!(stats.disk_full_errors >= 1, "{stats:?}");
    let acked_while_full = acked_rx.try_iter().count();
    // Nothing more is acknowledged while the disk is full.
    assert!(!wait_until(Duration::from_millis(300), || acked_rx
        .try_recv()
        .is_ok()));
    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || acked_rx.try_recv().is_ok()),
        "appends did not resume after freeing space"
    );
    assert!(
        !handle.stats().disk_full
            || wait_until(Duration::from_secs(5), || !handle.stats().disk_full)
    );
    assert!(acked_while_full > 0);
    // Stop the producer: fill again, then close (the stalled batch fails, nothing is lost).
    drop(acked_rx);
    store.close().unwrap();
    let _ = writer.join();
    let reader = StoreReader::open(&data).unwrap();
    let mut n = 0;
    for item in reader.read(&ReadOptions::default()) {
        item.expect("no corrupt frame after disk full");
        n += 1;
    }
    assert!(n > acked_while_full * 10);
}
