//! Forwarding past records gone from the spool: the spool hands out one gap marker for a
//! range proven missing, and the master ends with every surviving record once plus that marker
//! (real stores on temp directories, a real TCP connection).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::spool::StoreSpool;
use super::tests::{
    append_durable, message, open_store, seqs, spool_messages, start_forwarder, store_config,
    stored_records, view, wait_until, Master, ORIGIN,
};
use crate::record::{ParseStatus, Record};
use crate::store::{ReadOptions, RetentionConfig, Store, StoreConfig, StoreReader};

/// Every readable record of `ORIGIN` in the store at `dir`, by sequence (damage skipped).
fn readable_records(dir: &Path) -> HashMap<u64, Record> {
    StoreReader::open(dir)
        .unwrap()
        .read(&ReadOptions::default())
        .filter_map(Result::ok)
        .map(|stored| (stored.record.origin_seq, stored.record))
        .filter(|(_, record)| *record.origin == *ORIGIN)
        .collect()
}

/// Writes 6000 records of one source in 100-record batches and closes the store, which then
/// spans several segments.
async fn spool_in_one_shard(dir: &Path) -> Vec<std::path::PathBuf> {
    let spool = open_store(dir, ORIGIN);
    for chunk in 0..60u64 {
        let records = (chunk * 100..(chunk + 1) * 100)
            .map(|i| Record {
                source: "one-host".into(),
                ..message(i)
            })
            .collect();
        append_durable(&spool.handle(), records).await;
    }
    spool.close().unwrap();
    let shard = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.is_dir())
        .unwrap();
    let mut segments: Vec<_> = std::fs::read_dir(&shard)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    segments.sort();
    assert!(
        segments.len() >= 3,
        "records span several segments: {segments:?}"
    );
    segments
}

/// The one contiguous range of `1..=n` missing from `present`.
fn missing_range(present: &HashMap<u64, Record>, n: u64) -> (u64, u64) {
    let missing: Vec<u64> = (1..=n).filter(|seq| !present.contains_key(seq)).collect();
    let (from, to) = (missing[0], missing[missing.len() - 1]);
    assert_eq!(missing.len() as u64, to - from + 1, "one contiguous hole");
    (from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_gone_from_the_spool_become_one_gap_marker() {
    use super::source::{BatchLimits, SpoolSource};
    let temp = tempfile::tempdir().unwrap();
    let segments = spool_in_one_shard(temp.path()).await;
    // A segment in the middle is gone (as if damaged beyond reading).
    std::fs::remove_file(&segments[1]).unwrap();
    let (from, to) = missing_range(&readable_records(temp.path()), 6000);
    assert!(from > 1 && to < 6000, "a hole in the middle: {from}..={to}");

    let spool = open_store(temp.path(), ORIGIN);
    let mut source = StoreSpool::new(temp.path(), ORIGIN, spool.handle()).unwrap();
    source.seek(0).unwrap();
    let limits = BatchLimits {
        max_records: 100,
        max_bytes: 1 << 20,
    };
    let mut got = Vec::new();
    let mut markers = Vec::new();
    while got.last().is_none_or(|(_, last)| *last < 6000) {
        let batch = source.next_batch(limits).unwrap();
        assert!(!batch.is_empty(), "stalled after {:?}", got.last());
        for record in batch.iter() {
            if record.lost_from.is_some() {
                assert_eq!(batch.len(), 1, "a gap marker goes alone");
                markers.push(record.clone());
            }
        }
        got.extend(
            batch
                .iter()
                .map(|record| (record.first_seq(), record.origin_seq)),
        );
    }
    // Every sequence accounted for once, in order: records, the marker, records.
    let mut next = 1;
    for (first, last) in got {
        assert_eq!(first, next, "consecutive");
        next = last + 1;
    }
    assert_eq!(markers.len(), 1, "{markers:?}");
    let marker = &markers[0];
    assert_eq!((marker.lost_from, marker.origin_seq), (Some(from), to));
    assert_eq!((&*marker.origin, &*marker.source), (ORIGIN, ORIGIN));
    assert_eq!(marker.parse, ParseStatus::Unparsed);
    let text = String::from_utf8(marker.raw.to_vec()).unwrap();
    assert!(
        text.starts_with(&format!(
            "starling: seqs {from}..={to} of origin {ORIGIN} were lost"
        )),
        "{text}"
    );
    // Seeking back before the hole finds the same hole again.
    source.seek(from - 2).unwrap();
    assert_eq!(seqs(&source.next_batch(limits).unwrap()), vec![from - 1]);
    let again = source.next_batch(limits).unwrap();
    assert_eq!((again[0].lost_from, again[0].origin_seq), (Some(from), to));
    spool.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_removed_by_retention_before_forwarding_become_one_marker_at_the_master() {
    let temp = tempfile::tempdir().unwrap();
    let (spool_dir, master_dir) = (temp.path().join("spool"), temp.path().join("master"));
    let master = Master::start(&master_dir, "master").await;
    let (_view_tx, view_rx) = watch::channel(view(ORIGIN, "master", master.addr));

    // 1..=1000 are forwarded while the spool keeps everything.
    let spool = open_store(&spool_dir, ORIGIN);
    spool_messages(&spool.handle(), 0, 1000).await;
    let (_, _, cancel, task) = start_forwarder(&spool_dir, &spool, view_rx.clone());
    assert!(wait_until(Duration::from_secs(20), || master.hwm() == 1000).await);
    cancel.cancel();
    task.await.unwrap().unwrap();
    spool.close().unwrap();

    // The master is away while 5000 more arrive in one shard, of which retention keeps only
    // the newest ~128 KiB (1..=1000 stay in their own shards).
    let retained = StoreConfig {
        segment_max_bytes: 32 * 1024,
        retention: RetentionConfig {
            shard_max_bytes: Some(128 * 1024),
            ..RetentionConfig::default()
        },
        ..store_config()
    };
    let spool = Store::open(&spool_dir, ORIGIN, retained).unwrap().0;
    for chunk in 10..60u64 {
        let records = (chunk * 100..(chunk + 1) * 100)
            .map(|i| Record {
                source: "one-host".into(),
                ..message(i)
            })
            .collect();
        let ticket = spool.handle().append(records).await.unwrap();
        ticket.durable().await.unwrap();
    }
    let surviving = readable_records(&spool_dir);
    let (from, to) = missing_range(&surviving, 6000);
    assert_eq!(
        from, 1001,
        "retention removed the oldest unforwarded records"
    );
    assert!(to < 6000, "some survive: {from}..={to} removed");

    let (stats, progress, cancel, task) = start_forwarder(&spool_dir, &spool, view_rx);
    assert!(
        wait_until(Duration::from_secs(30), || master.hwm() == 6000).await,
        "hwm {}",
        master.hwm()
    );
    assert!(wait_until(Duration::from_secs(5), || progress.acked_seq() == 6000).await);
    assert_eq!(stats.gap_markers.load(Ordering::Relaxed), 1);
    assert_eq!(stats.lost_seqs.load(Ordering::Relaxed), to - 1000);
    let master_stats = master.store.handle().stats();
    assert_eq!(
        (
            master_stats.gap_markers,
            master_stats.lost_seqs,
            master_stats.gaps_refused
        ),
        (1, to - 1000, 0)
    );
    cancel.cancel();
    task.await.unwrap().unwrap();
    spool.close().unwrap();

    // Every sequence once: 1..=1000 from before, one marker for exactly 1001..=to, then every
    // surviving record as the spool holds it.
    let stored = master.stop(&master_dir).await;
    assert_eq!(
        stored.len() as u64,
        1000 + 1 + (6000 - to),
        "records stored"
    );
    for seq in 1..=1000 {
        assert_eq!(stored[&seq].lost_from, None, "seq {seq}");
    }
    let marker = &stored[&to];
    assert_eq!(marker.lost_from, Some(1001));
    assert_eq!((&*marker.origin, &*marker.source), (ORIGIN, ORIGIN));
    let text = String::from_utf8(marker.raw.to_vec()).unwrap();
    assert!(
        text.starts_with(&format!(
            "starling: seqs 1001..={to} of origin {ORIGIN} were lost"
        )),
        "{text}"
    );
    for seq in to + 1..=6000 {
        assert_eq!(stored[&seq], surviving[&seq], "seq {seq} as spooled");
    }
    assert_eq!(stored_records(&spool_dir).len() as u64, 1000 + 6000 - to);
}
