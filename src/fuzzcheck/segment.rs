//! Fuzz property for the segment reader and recovery: any bytes, written as the newest
//! segment of a shard, never make recovery, `verify` or the reader panic, and every record
//! the reader returns came from a frame whose CRCs verified (checked by re-encoding: a
//! returned record must appear byte-for-byte in the input).

use std::path::Path;

use crate::store::fileops::RealFileOps;
use crate::store::{verify, ReadOptions, Store, StoreConfig, StoreReader};

/// Writes `data` as segment 0 of shard "fuzz" in a temp dir, reads it, recovers it, reads it
/// again. Panics only if a property fails.
pub fn segment(data: &[u8]) {
    let dir = TempDir::new();
    let shard = dir.path().join(crate::store::shardname::encode(b"fuzz"));
    std::fs::create_dir_all(&shard).expect("shard dir");
    std::fs::write(
        shard.join("shard.meta"),
        crate::store::shardname::encode_meta(b"fuzz"),
    )
    .expect("meta");
    std::fs::write(shard.join(format!("{:020}.seg", 0)), data).expect("segment");
    check_read(dir.path(), data);
    let _ = verify(dir.path());
    let opened = Store::open_with_ops(
        dir.path(),
        "fuzz-node",
        StoreConfig::default(),
        std::sync::Arc::new(RealFileOps),
    );
    if let Ok((store, _report)) = opened {
        let _ = store.close();
    }
    let _ = verify(dir.path());
}

/// A directory under the system temp dir, removed on drop (the library has no `tempfile`).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path =
            std::env::temp_dir().join(format!("starling-fuzz-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check_read(dir: &Path, data: &[u8]) {
    let Ok(reader) = StoreReader::open(dir) else {
        return;
    };
    for item in reader.read(&ReadOptions::default()).take(100_000) {
        let Ok(stored) = item else { continue };
        let raw = &stored.record.raw;
        assert!(
            raw.is_empty() || data.windows(raw.len()).any(|w| w == &raw[..]),
            "reader returned bytes that are not in the segment"
        );
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// A valid unsealed segment of shard "fuzz" with a few frames.
    fn valid_segment() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::store::StoreConfig {
            segment_max_bytes: 8192,
            ..Default::default()
        };
        let (store, _) = crate::store::Store::open(dir.path(), "n", config).unwrap();
        for i in 0..4i64 {
            let batch = (0..3)
                .map(|k| crate::record::Record {
                    received_at_micros: i * 10 + k,
                    event_time: None,
                    origin: "n".into(),
                    origin_seq: 0,
                    peer: None,
                    transport: crate::record::Transport::Udp,
                    parse: crate::record::ParseStatus::Unparsed,
                    truncated: false,
                    source: "fuzz".into(),
                    raw: bytes::Bytes::from(format!("record {i} {k}")),
                    lost_from: None,
                    tls_peer: None,
                    file: None,
                })
                .collect();
            store
                .handle()
                .blocking_append(batch)
                .unwrap()
                .wait_durable()
                .unwrap();
        }
        store.abandon();
        let seg = dir
            .path()
            .join(crate::store::shardname::encode(b"fuzz"))
            .join(format!("{:020}.seg", 0));
        let mut bytes = std::fs::read(seg).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        bytes.truncate(end.next_multiple_of(8) + 64);
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn mutated_segments_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            static VALID: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            let mut bytes = VALID.get_or_init(valid_segment).clone();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let keep = cut.index(bytes.len() + 1).max(bytes.len() / 2);
            bytes.truncate(keep);
            super::segment(&bytes);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), vec![0; 100], vec![0xff; 4096]];
        let mut x: u32 = 12345;
        for len in [10usize, 64, 65, 200, 5000] {
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                v.push((x >> 16) as u8);
            }
            inputs.push(v);
        }
        for input in inputs {
            super::segment(&input);
        }
    }
}
