//! A node id reused with a new data directory: the master already holds the origin's low
//! sequences (from the earlier directory), so the new directory's records are renumbered past
//! them instead of being dropped there as duplicates (real stores, a real TCP connection).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::source::{BatchLimits, SpoolSource};
use super::spool::StoreSpool;
use super::tests::{
    append_durable, message, open_store, seqs, spool_messages, start_forwarder, stored_records,
    view, wait_until, Master, ORIGIN,
};
use crate::record::Record;
use crate::store::Store;

/// Batches large enough for everything these tests spool.
const LIMITS: BatchLimits = BatchLimits {
    max_records: 1000,
    max_bytes: 1 << 20,
};

/// A store in `dir` holding messages 0..50 of the origin as seqs 1..=50.
async fn fifty_spooled(dir: &std::path::Path) -> Store {
    let store = open_store(dir, ORIGIN);
    spool_messages(&store.handle(), 0, 50).await;
    store
}

/// Asserts that local record `seq` is a note over `lost_from..=seq` whose text says `says`.
fn assert_note(local: &HashMap<u64, Record>, seq: u64, lost_from: u64, says: &str) {
    let note = &local[&seq];
    assert_eq!(note.lost_from, Some(lost_from));
    assert!(
        String::from_utf8_lossy(&note.raw).contains(says),
        "{:?}",
        note.raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_node_id_with_a_new_data_directory_loses_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let (old_dir, new_dir, master_dir) = (
        temp.path().join("old"),
        temp.path().join("new"),
        temp.path().join("master"),
    );
    let master = Master::start(&master_dir, "master").await;
    let (_view_tx, view_rx) = watch::channel(view(ORIGIN, "master", master.addr));

    // The earlier data directory forwarded messages 0..300 as seqs 1..=300.
    let old = open_store(&old_dir, ORIGIN);
    spool_messages(&old.handle(), 0, 300).await;
    let (_, _, cancel, task) = start_forwarder(&old_dir, &old, view_rx.clone());
    assert!(wait_until(Duration::from_secs(20), || master.hwm() == 300).await);
    cancel.cancel();
    task.await.unwrap().unwrap();
    old.close().unwrap();

    // The node comes back with an empty data directory and numbers from 1 again.
    let new = open_store(&new_dir, ORIGIN);
    spool_messages(&new.handle(), 1000, 1050).await;
    let (stats, _, cancel, task) = start_forwarder(&new_dir, &new, view_rx.clone());
    assert!(
        wait_until(Duration::from_secs(20), || master.hwm() == 350).await,
        "master hwm {}",
        master.hwm()
    );
    assert_eq!(stats.renumbered.load(Ordering::Relaxed), 50);
    // Live records follow the renumbered ones.
    spool_messages(&new.handle(), 1050, 1060).await;
    assert!(wait_until(Duration::from_secs(20), || master.hwm() == 360).await);
    cancel.cancel();
    task.await.unwrap().unwrap();

    // A restarted forwarder on the same directory does not renumber again.
    let (stats, _, cancel, task) = start_forwarder(&new_dir, &new, view_rx);
    spool_messages(&new.handle(), 1060, 1065).await;
    assert!(wait_until(Duration::from_secs(20), || master.hwm() == 365).await);
    assert_eq!(stats.renumbered.load(Ordering::Relaxed), 0);
    cancel.cancel();
    task.await.unwrap().unwrap();
    new.close().unwrap();

    let stored = master.stop(&master_dir).await;
    assert_eq!(
        stored.len(),
        365,
        "every record once (stored_records panics on a duplicate)"
    );
    let raw_of = |seq: u64| stored[&seq].raw.clone();
    for (i, seq) in (0..300).zip(1..=300u64) {
        assert_eq!(
            raw_of(seq),
            message(i).raw,
            "seq {seq}: the earlier directory's record"
        );
    }
    for (i, seq) in (1000..1065).zip(301..=365u64) {
        assert_eq!(
            raw_of(seq),
            message(i).raw,
            "seq {seq}: the new directory's record"
        );
    }
    // The new directory keeps a note that took up seqs 51..=300.
    assert_note(&stored_records(&new_dir), 300, 51, "earlier data directory");
}

/// Two live nodes sharing one node id would make each other's sequences look foreign again
/// and again: a spool renumbers once, and after that only reports the conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_renumbers_at_most_once() {
    let temp = tempfile::tempdir().unwrap();
    let store = fifty_spooled(temp.path()).await;
    let mut source = StoreSpool::new(temp.path(), ORIGIN, store.handle()).unwrap();
    tokio::task::block_in_place(|| {
        source.seek(300).unwrap();
        assert_eq!(source.take_renumbered(), 50);
        let batch = source.next_batch(LIMITS).unwrap();
        assert_eq!(
            (batch.first().map(|r| r.origin_seq), batch.len()),
            (Some(301), 50),
            "the copies, numbered after the master's mark"
        );
        // The master's mark jumps past this store again.
        source.seek(1000).unwrap();
        assert_eq!(source.take_renumbered(), 0, "no second renumbering");
        assert!(source.next_batch(LIMITS).unwrap().is_empty());
    });
    store.close().unwrap();
}

/// A data directory that forwarded before and now holds less than the master (its newest
/// records were lost, or it was restored from an older backup): its records from before the
/// start are the master's already, so only those accepted since are renumbered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_forwarded_before_renumbers_only_what_it_accepted_since_the_start() {
    let temp = tempfile::tempdir().unwrap();
    // 50 records from before the restart, 10 accepted since (numbered 51..=60).
    let store = fifty_spooled(temp.path()).await;
    let mut source = StoreSpool::new(temp.path(), ORIGIN, store.handle())
        .unwrap()
        .with_forwarded_before(Some(50));
    spool_messages(&store.handle(), 1000, 1010).await;
    tokio::task::block_in_place(|| {
        source.seek(300).unwrap();
        assert_eq!(
            source.take_renumbered(),
            10,
            "only the records since the start"
        );
        let batch = source.next_batch(LIMITS).unwrap();
        assert_eq!(seqs(&batch), (301..=310).collect::<Vec<_>>());
        for (record, i) in batch.iter().zip(1000..) {
            assert_eq!(record.raw, message(i).raw);
        }
    });
    store.close().unwrap();
    let local = stored_records(temp.path());
    assert_eq!(
        local.len(),
        60 + 1 + 10,
        "the 60, the note and the 10 copies"
    );
    assert_note(&local, 300, 61, "no longer holds");
}

/// The state a process leaves when it stops half-way through renumbering 50 records past a
/// master's mark of 300: the plan saved, and (if `note`) the note and copies of the first
/// `copied` originals appended.
async fn stopped_mid_renumbering(dir: &std::path::Path, note: bool, copied: u64) -> Store {
    let store = fifty_spooled(dir).await;
    std::fs::write(
        dir.join(super::spool::RENUMBER_STATE_FILE),
        format!("300 0 {ORIGIN}\n"),
    )
    .unwrap();
    if note {
        let note = Record::renumber_note(ORIGIN, 51, 300, 1_800_000_000_000_000);
        let copies = (0..copied).map(message);
        let records = std::iter::once(note).chain(copies).collect();
        append_durable(&store.handle(), records).await;
    }
    store
}

/// A renumbering a stopped process left unfinished resumes at the next start: the note is
/// appended if it was not, and only originals without a copy are copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_renumbering_resumes_at_the_next_start() {
    for (note, copied) in [(false, 0), (true, 0), (true, 20), (true, 50)] {
        let temp = tempfile::tempdir().unwrap();
        let store = stopped_mid_renumbering(temp.path(), note, copied).await;
        let mut source = StoreSpool::new(temp.path(), ORIGIN, store.handle()).unwrap();
        // The master got the copies made before the stop.
        let master_mark = 300 + copied;
        tokio::task::block_in_place(|| {
            source.seek(master_mark).unwrap();
            assert_eq!(
                source.take_renumbered(),
                50 - copied,
                "note {note}, {copied} copied"
            );
            let batch = source.next_batch(LIMITS).unwrap();
            assert_eq!(seqs(&batch), (master_mark + 1..=350).collect::<Vec<_>>());
            // A later conflict is only reported: this process renumbered.
            source.seek(1000).unwrap();
            assert_eq!(source.take_renumbered(), 0);
        });
        store.close().unwrap();
        assert!(
            !temp.path().join(super::spool::RENUMBER_STATE_FILE).exists(),
            "the finished plan is removed"
        );
        let local = stored_records(temp.path());
        assert_eq!(local.len(), 50 + 1 + 50, "originals, note, one copy each");
        assert_eq!(local[&300].lost_from, Some(51));
        let mut copies: Vec<_> = (301..=350).map(|seq| local[&seq].raw.clone()).collect();
        let mut originals: Vec<_> = (0..50).map(|i| message(i).raw).collect();
        copies.sort();
        originals.sort();
        assert_eq!(copies, originals, "every original copied exactly once");
    }
}
