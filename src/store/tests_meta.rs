//! A `shard.meta` that does not verify: its shard is rebuilt from the directory name (checked
//! against the segments' shard id) or fenced, it is reported (recovery report, counter,
//! `verify`), and the local origin's numbering never goes back.

use std::path::Path;

use super::format::shardname::{encode, META_FILE};
use super::tests::{read_all, rec, small_config};
use super::*;

fn damage_meta(dir: &Path, source: &str) {
    let meta = dir.join(encode(source.as_bytes())).join(META_FILE);
    let mut bytes = std::fs::read(&meta).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&meta, bytes).unwrap();
}

/// Appends `n` local records to shard `source`; returns the sequences given.
fn append_local(store: &Store, source: &str, n: usize) -> std::ops::RangeInclusive<u64> {
    let batch = (0..n)
        .map(|i| rec(source, "me", 0, 10 + i as i64, "local record"))
        .collect();
    store
        .handle()
        .blocking_append(batch)
        .unwrap()
        .wait_durable()
        .unwrap()
        .assigned
        .unwrap()
}

fn local_seqs(dir: &Path) -> Vec<u64> {
    let (got, errs) = read_all(dir);
    assert!(errs.is_empty(), "{errs:?}");
    let mut v: Vec<u64> = got
        .iter()
        .filter(|s| *s.record.origin == *"me")
        .map(|s| s.record.origin_seq)
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn a_corrupt_shard_meta_is_rebuilt_reported_and_numbering_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), "me", small_config()).unwrap();
    assert_eq!(append_local(&store, "h1", 3), 1..=3);
    // h2 holds the newest local records.
    assert_eq!(append_local(&store, "h2", 3), 4..=6);
    store.close().unwrap();
    damage_meta(dir.path(), "h2");

    let (store, report) = Store::open(dir.path(), "me", small_config()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file.ends_with("s-h2/shard.meta") && p.reason.contains("rebuilt")),
        "{report:?}"
    );
    assert_eq!(store.handle().stats().damaged_shard_metas, 1);
    assert_eq!(store.handle().high_water_mark("me"), 6);
    assert_eq!(append_local(&store, "h3", 2), 7..=8, "numbering goes on");
    // The shard is h2's again (no `~2` beside it) and keeps its records.
    assert_eq!(append_local(&store, "h2", 1), 9..=9);
    store.close().unwrap();
    assert!(!dir.path().join("s-h2~2").exists());
    assert_eq!(local_seqs(dir.path()), (1..=9).collect::<Vec<_>>());
    let report = verify(dir.path()).unwrap();
    let text = report.to_string();
    assert_eq!(report.num_problems(), 1, "{text}");
    assert!(text.contains("shard.meta.damaged"), "{text}");
    assert!(text.contains("shard.meta did not verify"), "{text}");
}

#[test]
fn a_corrupt_shard_meta_of_a_hashed_name_is_fenced_and_numbering_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    // At most `source-name-max-bytes` (kept whole) but too long for a plain directory name.
    let long = "l".repeat(200);
    let (store, _) = Store::open(dir.path(), "me", small_config()).unwrap();
    assert_eq!(append_local(&store, "h1", 3), 1..=3);
    assert_eq!(append_local(&store, &long, 4), 4..=7);
    // Killed: the newest records are in an unsealed segment (scanned, not read from a footer).
    store.abandon();
    damage_meta(dir.path(), &long);

    let (store, report) = Store::open(dir.path(), "me", small_config()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file.ends_with(META_FILE) && p.reason.contains("fenced")),
        "{report:?}"
    );
    assert_eq!(store.handle().stats().damaged_shard_metas, 1);
    assert_eq!(store.handle().high_water_mark("me"), 7);
    assert_eq!(
        append_local(&store, "h3", 2),
        8..=9,
        "above every one on disk"
    );
    store.close().unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file.ends_with(META_FILE) && p.reason.contains("crc")),
        "{report}"
    );
}
