//! Opening one shard: list its segments, find the newest valid seal (footer) without scanning
//! sealed data, scan only the unsealed tail, cut a provably unsynced torn tail durably, keep
//! and report damage below the durable watermark, remove never-started segments, then seal the
//! tail so appends always start in a fresh segment.
//!
//! Runs before any map of the shard's files exists; it never maps anything itself.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::codec;
use super::fileops::FileOps;
use super::frame::{FrameHeader, NO_MAX_EVENT, NO_MIN_EVENT};
use super::index::SparseIndex;
use super::problem::{Problem, RecoveryReport, Truncation};
use super::scan::{read_footer, read_full, read_header, Item, Scanner};
use super::seal::write_seal;
use super::segment::{
    parse_segment_file_name, segment_file_name, DamagedRange, Footer, SegmentHeader,
};

/// The state of a shard after recovery.
#[derive(Debug, Clone, Default)]
pub struct ShardState {
    /// Shard sequence the next record gets.
    pub next_seq: u64,
    /// Per origin, highest origin_seq stored in this shard.
    pub hwm: HashMap<String, u64>,
    /// Base sequences of the segments on disk, ascending (all sealed after recovery).
    pub segments: Vec<u64>,
}

/// Sorted base sequences of the `*.seg` files in `dir`.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Per-frame facts kept while scanning a tail, so the truncation point can be decided once
/// every later frame's durable watermark is known.
struct FrameFacts {
    offset: u64,
    header: FrameHeader,
    origins: Vec<(String, u64)>,
}

struct Damage {
    offset: u64,
    reason: String,
    lost: Option<(u64, u64)>,
}

pub fn recover_shard(
    dir: &Path,
    ops: &dyn FileOps,
    report: &mut RecoveryReport,
) -> io::Result<ShardState> {
    let mut bases = list_segments(dir)?;
    // Walk back from the newest segment to the newest valid seal; everything after it is tail.
    let mut tail: Vec<(u64, File, SegmentHeader)> = Vec::new();
    let mut base_footer: Option<Footer> = None;
    while let Some(&base) = bases.last() {
        let path = dir.join(segment_file_name(base));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        match read_header(&file)? {
            Err(reason) => {
                bases.pop();
                if tail.is_empty() && is_all_zero(&file)? {
                    drop(file);
                    std::fs::remove_file(&path)?;
                    ops.sync_dir(dir)?;
                    report.removed.push(path);
                    continue;
                }
                // Keep the bytes for repair, out of the segment chain.
                let aside = path.with_extension("seg.damaged");
                std::fs::rename(&path, &aside)?;
                ops.sync_dir(dir)?;
                report.problems.push(Problem {
                    file: aside,
                    offset: 0,
                    seqs: None,
                    reason,
                });
            }
            Ok(header) if header.base_seq != base => {
                bases.pop();
                let aside = path.with_extension("seg.damaged");
                std::fs::rename(&path, &aside)?;
                ops.sync_dir(dir)?;
                report.problems.push(Problem {
                    file: aside,
                    offset: 0,
                    seqs: None,
                    reason: format!(
                        "header base seq {} does not match the file name",
                        header.base_seq
                    ),
                });
            }
            Ok(header) => match read_footer(&file, header.nonce)? {
                Some((_, footer)) => {
                    base_footer = Some(footer);
                    break;
                }
                None => {
                    bases.pop();
                    tail.push((base, file, header));
                }
            },
        }
    }
    let mut state = ShardState {
        next_seq: base_footer
            .as_ref()
            .map_or_else(|| tail.last().map_or(0, |t| t.0), |f| f.next_seq),
        hwm: base_footer.map(|f| f.hwm).unwrap_or_default(),
        segments: bases,
    };
    while let Some((base, file, header)) = tail.pop() {
        let path = dir.join(segment_file_name(base));
        if header.base_seq < state.next_seq {
            report.problems.push(Problem {
                file: path.clone(),
                offset: 0,
                seqs: None,
                reason: format!(
                    "segment starts at seq {base}, before the previous segment's end {}",
                    state.next_seq
                ),
            });
        }
        let kept = recover_tail(&path, &file, &header, &mut state, ops, report)?;
        if kept {
            state.segments.push(base);
        }
    }
    Ok(state)
}

fn is_all_zero(file: &File) -> io::Result<bool> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    loop {
        let n = read_full(file, &mut buf, at)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < buf.len() {
            return Ok(true);
        }
        at += n as u64;
    }
}

/// Scans, repairs and seals one unsealed segment. Returns false if it held no frame and was
/// removed.
fn recover_tail(
    path: &Path,
    file: &File,
    header: &SegmentHeader,
    state: &mut ShardState,
    ops: &dyn FileOps,
    report: &mut RecoveryReport,
) -> io::Result<bool> {
    let mut frames: Vec<FrameFacts> = Vec::new();
    let mut damages: Vec<Damage> = Vec::new();
    let mut end = None;
    let mut scanner = Scanner::new(file, header, true)?;
    while let Some(item) = scanner.next_item()? {
        match item {
            Item::Frame {
                offset,
                header,
                payload,
            } => {
                frames.push(FrameFacts {
                    offset,
                    header,
                    origins: frame_origins(&payload),
                });
            }
            Item::Corrupt {
                offset,
                reason,
                lost,
                ..
            } => damages.push(Damage {
                offset,
                reason,
                lost,
            }),
            Item::End { offset, .. } => end = Some(offset),
            Item::Footer { offset, .. } => end = Some(offset),
        }
    }
    let size = file.metadata()?.len();
    let mut data_end = end.unwrap_or(size);
    // The earliest damage that no later frame proves synced marks an unsynced tail: cut there.
    let mut kept_damage = Vec::new();
    for d in damages {
        let proven = frames
            .iter()
            .any(|f| f.offset > d.offset && f.header.durable_watermark > d.offset);
        if proven {
            kept_damage.push(d);
        } else {
            data_end = data_end.min(d.offset);
            break;
        }
    }
    frames.retain(|f| f.offset < data_end);
    if frames.is_empty() {
        std::fs::remove_file(path)?;
        ops.sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        report.removed.push(path.to_path_buf());
        return Ok(false);
    }
    if data_end < size {
        report.truncated.push(Truncation {
            file: path.to_path_buf(),
            offset: data_end,
            bytes_removed: size - data_end,
        });
    }
    let mut footer = Footer {
        next_seq: header.base_seq,
        data_end,
        min_recv: i64::MAX,
        max_recv: i64::MIN,
        min_event: NO_MIN_EVENT,
        max_event: NO_MAX_EVENT,
        ..Footer::default()
    };
    let mut index = SparseIndex::new();
    for f in &frames {
        let h = &f.header;
        footer.num_records += u64::from(h.record_count);
        footer.next_seq = h.first_seq + u64::from(h.record_count);
        footer.min_recv = footer.min_recv.min(h.min_recv);
        footer.max_recv = footer.max_recv.max(h.max_recv);
        footer.min_event = footer.min_event.min(h.min_event);
        footer.max_event = footer.max_event.max(h.max_event);
        index.on_frame(f.offset, h);
        for (origin, seq) in &f.origins {
            let e = state.hwm.entry(origin.clone()).or_insert(0);
            *e = (*e).max(*seq);
        }
    }
    for d in kept_damage {
        let (first_seq, last_seq) = d.lost.unwrap_or((0, 0));
        footer.damaged.push(DamagedRange {
            offset: d.offset,
            first_seq,
            last_seq,
        });
        report.problems.push(Problem {
            file: path.to_path_buf(),
            offset: d.offset,
            seqs: d.lost,
            reason: d.reason,
        });
    }
    footer.hwm = state.hwm.clone();
    report.num_tail_records += footer.num_records;
    state.next_seq = state.next_seq.max(footer.next_seq);
    write_seal(
        file,
        path.parent().unwrap_or(Path::new(".")),
        header,
        &footer,
        &index,
        ops,
    )?;
    Ok(true)
}

/// Highest origin_seq per origin in one verified payload.
fn frame_origins(payload: &[u8]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut last = 0usize;
    for range in codec::Records::new(payload).flatten() {
        let Ok(id) = codec::identity(&payload[range]) else {
            continue;
        };
        if let Some(e) = out.get_mut(last).filter(|e| e.0.as_bytes() == id.origin) {
            e.1 = e.1.max(id.origin_seq);
            continue;
        }
        match out.iter().position(|e| e.0.as_bytes() == id.origin) {
            Some(i) => {
                out[i].1 = out[i].1.max(id.origin_seq);
                last = i;
            }
            None => {
                out.push((
                    String::from_utf8_lossy(id.origin).into_owned(),
                    id.origin_seq,
                ));
                last = out.len() - 1;
            }
        }
    }
    out
}
