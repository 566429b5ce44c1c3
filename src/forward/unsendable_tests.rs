//! Case 3 of issue #12: records the forward protocol once could not carry. A source name over
//! 65,535 bytes now travels whole; a record that still cannot be sent (here: larger than the
//! forwarder's frame) reaches the master as a counted, logged gap marker for its sequence, and
//! forwarding goes on with the next record instead of reconnecting forever (real stores on
//! temp directories, a real TCP connection).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::tests::{
    append_durable, message, open_store, spool_messages, start_forwarder, start_forwarder_with,
    stored_records, test_forwarder_config, view, wait_until, Master, ORIGIN,
};
use crate::record::Record;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_70000_byte_source_name_reaches_the_master_and_later_records_follow() {
    let temp = tempfile::tempdir().unwrap();
    let (spool_dir, master_dir) = (temp.path().join("spool"), temp.path().join("master"));
    let spool = open_store(&spool_dir, ORIGIN);
    spool_messages(&spool.handle(), 0, 10).await;
    let long_source = "h".repeat(70_000);
    let long = Record {
        source: long_source.clone().into(),
        ..message(10)
    };
    append_durable(&spool.handle(), vec![long]).await;
    spool_messages(&spool.handle(), 11, 20).await;
    let master = Master::start(&master_dir, "master").await;
    let (_view_tx, view_rx) = watch::channel(view(ORIGIN, "master", master.addr));
    let (stats, _, cancel, task) = start_forwarder(&spool_dir, &spool, view_rx);

    assert!(
        wait_until(Duration::from_secs(20), || master.hwm() == 20).await,
        "hwm {} (sessions {}), the record of seq 11 has a 70,000-byte source",
        master.hwm(),
        stats.sessions.load(Ordering::Relaxed)
    );
    assert_eq!(stats.unsendable.load(Ordering::Relaxed), 0);

    cancel.cancel();
    task.await.unwrap().unwrap();
    spool.close().unwrap();
    let stored = master.stop(&master_dir).await;
    let spooled = stored_records(&spool_dir);
    assert_eq!(stored.len(), 20);
    assert_eq!(stored[&11].source.len(), 70_000);
    assert_eq!(&*stored[&11].source, long_source);
    for seq in 1..=20 {
        assert_eq!(stored[&seq], spooled[&seq], "seq {seq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_protocol_cannot_carry_becomes_a_counted_gap_and_later_records_follow() {
    let temp = tempfile::tempdir().unwrap();
    let (spool_dir, master_dir) = (temp.path().join("spool"), temp.path().join("master"));
    let spool = open_store(&spool_dir, ORIGIN);
    spool_messages(&spool.handle(), 0, 10).await;
    let large = Record {
        raw: Bytes::from(vec![b'x'; 100_000]),
        ..message(10)
    };
    append_durable(&spool.handle(), vec![large]).await;
    spool_messages(&spool.handle(), 11, 20).await;
    let master = Master::start(&master_dir, "master").await;
    let (_view_tx, view_rx) = watch::channel(view(ORIGIN, "master", master.addr));
    // A forwarder whose frames are smaller than that record (64 KiB).
    let mut config = test_forwarder_config();
    config.max_frame_bytes = 64 * 1024;
    let (stats, progress, cancel, task) = start_forwarder_with(&spool_dir, &spool, view_rx, config);

    assert!(
        wait_until(Duration::from_secs(20), || master.hwm() == 20).await,
        "hwm {} (sessions {}), the record of seq 11 is larger than a frame",
        master.hwm(),
        stats.sessions.load(Ordering::Relaxed)
    );
    assert!(wait_until(Duration::from_secs(5), || progress.acked_seq() == 20).await);
    // Counted at the forwarder and, as a gap marker of one sequence, at the master's store.
    assert_eq!(stats.unsendable.load(Ordering::Relaxed), 1);
    assert_eq!(
        stats.gap_markers.load(Ordering::Relaxed),
        0,
        "not a spool loss"
    );
    let master_stats = master.store.handle().stats();
    assert_eq!((master_stats.gap_markers, master_stats.lost_seqs), (1, 1));

    cancel.cancel();
    task.await.unwrap().unwrap();
    spool.close().unwrap();
    let stored = master.stop(&master_dir).await;
    let spooled = stored_records(&spool_dir);
    assert_eq!(stored.len(), 20);
    let gap = &stored[&11];
    assert_eq!(gap.lost_from, Some(11));
    let text = String::from_utf8_lossy(&gap.raw);
    assert!(
        text.starts_with("starling: seq 11 of origin node-a could not be forwarded")
            && text.contains("over the frame limit of 65536 bytes")
            && text.contains("100000 raw bytes"),
        "{text}"
    );
    for seq in (1..=20).filter(|seq| *seq != 11) {
        assert_eq!(stored[&seq], spooled[&seq], "seq {seq}");
    }
    // The origin's own store keeps the record.
    assert_eq!(spooled[&11].raw.len(), 100_000);
}
