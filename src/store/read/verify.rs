//! `verify`: a full, read-only check of a data directory. Scans every frame of every segment
//! of every shard (CRCs, sequence chains within and across segments, seals, headers, record
//! decoding) and lists each problem with file and offset. Safe while a writer is active: it
//! uses `pread` only and does not report the in-flight tail of a shard's newest segment.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::store::error::StoreError;
use crate::store::format::codec;
use crate::store::format::scan::{read_header, ScanStep, Scanner};
use crate::store::format::segment::{list_segments, segment_file_name};
use crate::store::format::shardname::read_meta;
use crate::store::problem::Problem;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardVerify {
    pub source: String,
    pub dir: PathBuf,
    pub num_records: u64,
    pub num_segments: usize,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub shards: Vec<ShardVerify>,
    /// Problems outside any shard (e.g. a directory without a readable `shard.meta`).
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn num_problems(&self) -> usize {
        self.problems.len() + self.shards.iter().map(|s| s.problems.len()).sum::<usize>()
    }

    pub fn is_clean(&self) -> bool {
        self.num_problems() == 0
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.shards {
            writeln!(
                f,
                "{:?}: {} records in {} segments",
                s.source, s.num_records, s.num_segments
            )?;
            for p in &s.problems {
                writeln!(f, "  problem: {p}")?;
            }
        }
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        Ok(())
    }
}

pub fn verify(dir: &Path) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let entries =
        std::fs::read_dir(dir).map_err(|e| StoreError::io("read data directory", dir, e))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("read data directory", dir, e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    for shard_dir in dirs {
        match read_meta(&shard_dir) {
            Ok(Ok(name)) => {
                let source = String::from_utf8_lossy(&name).into_owned();
                report.shards.push(verify_shard(source, &shard_dir));
            }
            Ok(Err(reason)) => report.problems.push(Problem {
                file: shard_dir.join("shard.meta"),
                offset: 0,
                seqs: None,
                reason,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let has_segments = list_segments(&shard_dir).is_ok_and(|b| !b.is_empty());
                if has_segments {
                    report.problems.push(Problem {
                        file: shard_dir.clone(),
                        offset: 0,
                        seqs: None,
                        reason: "shard directory has segments but no shard.meta".to_string(),
                    });
                }
            }
            Err(e) => report.problems.push(Problem {
                file: shard_dir.join("shard.meta"),
                offset: 0,
                seqs: None,
                reason: e.to_string(),
            }),
        }
    }
    Ok(report)
}

fn verify_shard(source: String, dir: &Path) -> ShardVerify {
    let mut out = ShardVerify {
        source,
        dir: dir.to_path_buf(),
        ..ShardVerify::default()
    };
    let problem = |file: &Path, offset: u64, seqs: Option<(u64, u64)>, reason: String| Problem {
        file: file.to_path_buf(),
        offset,
        seqs,
        reason,
    };
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "shard.meta.damaged" {
                out.problems.push(problem(
                    &e.path(),
                    0,
                    None,
                    "shard.meta did not verify: set aside and rebuilt by recovery from the \
                     directory name"
                        .to_string(),
                ));
            } else if name.ends_with(".damaged") {
                out.problems.push(problem(
                    &e.path(),
                    0,
                    None,
                    "segment set aside by recovery (damaged header)".to_string(),
                ));
            }
        }
    }
    let bases = match list_segments(dir) {
        Ok(b) => b,
        Err(e) => {
            out.problems
                .push(problem(dir, 0, None, format!("cannot list segments: {e}")));
            return out;
        }
    };
    out.num_segments = bases.len();
    let mut expected: Option<u64> = None;
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let path = dir.join(segment_file_name(base));
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                out.problems
                    .push(problem(&path, 0, None, format!("cannot open: {e}")));
                expected = None;
                continue;
            }
        };
        let header = match read_header(&file) {
            Ok(Ok(h)) => h,
            // The newest segment of a live writer, header not written yet.
            Ok(Err(_)) if last && super::reader::is_blank(&file) => continue,
            Ok(Err(reason)) => {
                out.problems.push(problem(
                    &path,
                    0,
                    None,
                    format!("bad segment header: {reason}"),
                ));
                expected = None;
                continue;
            }
            Err(e) => {
                out.problems
                    .push(problem(&path, 0, None, format!("cannot read: {e}")));
                expected = None;
                continue;
            }
        };
        if header.base_seq != base {
            out.problems.push(problem(
                &path,
                0,
                None,
                format!(
                    "header base seq {} does not match the file name",
                    header.base_seq
                ),
            ));
        }
        if let Some(exp) = expected {
            if header.base_seq > exp {
                out.problems.push(problem(
                    &path,
                    0,
                    Some((exp, header.base_seq - 1)),
                    "records missing before this segment (missing segment?)".to_string(),
                ));
            } else if header.base_seq < exp {
                out.problems.push(problem(
                    &path,
                    0,
                    None,
                    format!(
                        "segment overlaps the previous one (starts at {}, expected {exp})",
                        header.base_seq
                    ),
                ));
            }
        }
        let Ok(mut scanner) = Scanner::new(&file, &header, !last) else {
            out.problems
                .push(problem(&path, 0, None, "cannot stat".to_string()));
            continue;
        };
        let mut num_records = 0u64;
        let mut seg_corrupt = false;
        // Records are checked, not kept: they get an empty source.
        let source: std::sync::Arc<str> = std::sync::Arc::from("");
        let mut shared = codec::DecodeShared::default();
        loop {
            match scanner.next_step() {
                Ok(Some(ScanStep::Frame {
                    offset,
                    header: h,
                    payload,
                })) => {
                    let mut n = 0u64;
                    for range in codec::Records::new(&payload) {
                        match range.and_then(|r| {
                            codec::decode(&payload, r, &source, &mut shared).map(|_| ())
                        }) {
                            Ok(()) => n += 1,
                            Err(reason) => {
                                out.problems.push(problem(
                                    &path,
                                    offset,
                                    None,
                                    format!("record {n}: {reason}"),
                                ));
                                break;
                            }
                        }
                    }
                    if n != u64::from(h.record_count) {
                        out.problems.push(problem(
                            &path,
                            offset,
                            None,
                            format!("frame says {} records, holds {n}", h.record_count),
                        ));
                    }
                    num_records += n;
                }
                Ok(Some(ScanStep::Corrupt {
                    offset,
                    reason,
                    lost,
                    ..
                })) => {
                    seg_corrupt = true;
                    out.problems.push(problem(&path, offset, lost, reason));
                }
                Ok(Some(ScanStep::Footer { offset, footer, .. })) => {
                    if footer.num_records != num_records && !seg_corrupt {
                        out.problems.push(problem(
                            &path,
                            offset,
                            None,
                            format!(
                                "footer counts {} records, segment holds {num_records}",
                                footer.num_records
                            ),
                        ));
                    }
                    expected = Some(footer.next_seq);
                    break;
                }
                Ok(Some(ScanStep::End { offset, .. })) => {
                    if !last {
                        out.problems.push(problem(
                            &path,
                            offset,
                            None,
                            "segment ends without a seal".to_string(),
                        ));
                    }
                    expected = Some(scanner.expected_seq());
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    out.problems.push(problem(
                        &path,
                        scanner.position(),
                        None,
                        format!("read error: {e}"),
                    ));
                    break;
                }
            }
        }
        out.num_records += num_records;
    }
    out
}
