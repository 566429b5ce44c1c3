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

use super::fileops::FileOps;
use super::seal::write_seal;
use crate::store::format::codec;
use crate::store::format::frame::{FrameHeader, NO_MAX_EVENT, NO_MIN_EVENT};
use crate::store::format::index::SparseIndex;
use crate::store::format::scan::{read_footer, read_full, read_header, ScanStep, Scanner};
use crate::store::format::segment::{
    list_segments, segment_file_name, DamagedRange, Footer, SegmentHeader,
};
use crate::store::problem::{Problem, RecoveryReport, Truncation};

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

/// Per-frame facts kept while scanning a tail, so the truncation point can be decided once
/// every later frame's durable watermark is known.
struct FrameFacts {
    offset: u64,
    header: FrameHeader,
    /// Runs of consecutive origin sequences: (origin, first, last).
    runs: Vec<(String, u64, u64)>,
}

/// A scanned, not yet repaired, unsealed segment.
pub struct TailScan {
    path: std::path::PathBuf,
    file: File,
    header: SegmentHeader,
    frames: Vec<FrameFacts>,
    kept_damage: Vec<Damage>,
    data_end: u64,
    size: u64,
}

/// Phase one of a shard's recovery: sealed state plus its scanned tails (ascending).
pub struct RecoveryScan {
    state: ShardState,
    tails: Vec<TailScan>,
}

struct Damage {
    offset: u64,
    reason: String,
    lost: Option<(u64, u64)>,
}

/// Recovers one shard on its own, in the running process (after a write or sync failure).
/// No holes are cut: there was no power loss, so everything written is in the page cache,
/// and an origin's sequences missing from this shard are in other shards (`cut_holes` is
/// only meaningful over every shard at open).
pub fn recover_shard(
    dir: &Path,
    ops: &dyn FileOps,
    report: &mut RecoveryReport,
) -> io::Result<ShardState> {
    let scan = scan_shard(dir, ops, report)?;
    finish_shard(scan, ops, report)
}

/// Phase one: find the newest seal, set aside unreadable or never-started files, scan the
/// tails. Nothing is truncated or sealed yet.
pub fn scan_shard(
    dir: &Path,
    ops: &dyn FileOps,
    report: &mut RecoveryReport,
) -> io::Result<RecoveryScan> {
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
    let state = ShardState {
        next_seq: base_footer
            .as_ref()
            .map_or_else(|| tail.last().map_or(0, |t| t.0), |f| f.next_seq),
        hwm: base_footer.map(|f| f.hwm).unwrap_or_default(),
        segments: bases,
    };
    let mut tails = Vec::new();
    while let Some((base, file, header)) = tail.pop() {
        let path = dir.join(segment_file_name(base));
        tails.push(scan_tail(path, file, header)?);
    }
    Ok(RecoveryScan { state, tails })
}

/// Phase three: cut, seal (or remove) every tail; returns the shard's state.
pub fn finish_shard(
    scan: RecoveryScan,
    ops: &dyn FileOps,
    report: &mut RecoveryReport,
) -> io::Result<ShardState> {
    let RecoveryScan { mut state, tails } = scan;
    for tail in tails {
        let base = tail.header.base_seq;
        if base < state.next_seq {
            report.problems.push(Problem {
                file: tail.path.clone(),
                offset: 0,
                seqs: None,
                reason: format!(
                    "segment starts at seq {base}, before the previous segment's end {}",
                    state.next_seq
                ),
            });
        }
        if seal_tail(tail, &mut state, ops, report)? {
            state.segments.push(base);
        }
    }
    Ok(state)
}

/// Phase two, across shards: a process crash leaves each origin's sequences gapless (frames
/// are closed in write order), but a power loss may persist unsynced pages out of order. A
/// hole in an origin's sequences inside unsynced tails means everything written after it was
/// never acknowledged; cutting the tail frames holding later sequences of that origin keeps
/// every origin gapless, so a forwarder resuming after the high-water mark loses nothing.
/// Frames proven synced (a later frame's durable watermark passes them) are never cut, and
/// nothing is cut when any tail holds kept damage (the hole may be that damage).
pub fn cut_holes(scans: &mut [RecoveryScan]) {
    if scans
        .iter()
        .any(|s| s.tails.iter().any(|t| !t.kept_damage.is_empty()))
    {
        return;
    }
    for _ in 0..1000 {
        let mut base: HashMap<&str, u64> = HashMap::new();
        for s in scans.iter() {
            for (o, &q) in &s.state.hwm {
                let e = base.entry(o.as_str()).or_insert(0);
                *e = (*e).max(q);
            }
        }
        let mut runs: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
        for s in scans.iter() {
            for f in s.tails.iter().flat_map(|t| t.frames.iter()) {
                for (o, a, b) in &f.runs {
                    runs.entry(o.as_str()).or_default().push((*a, *b));
                }
            }
        }
        let mut holes: Vec<(String, u64)> = Vec::new();
        for (origin, mut rs) in runs {
            rs.sort_unstable();
            let mut next = base.get(origin).copied().unwrap_or(0) + 1;
            for (a, b) in rs {
                if b < next {
                    continue;
                }
                if a > next {
                    holes.push((origin.to_string(), next));
                    break;
                }
                next = b + 1;
            }
        }
        if holes.is_empty() {
            return;
        }
        let mut changed = false;
        for s in scans.iter_mut() {
            let mut cut_rest = false;
            for t in s.tails.iter_mut() {
                let synced = t
                    .frames
                    .iter()
                    .map(|f| f.header.durable_watermark)
                    .max()
                    .unwrap_or(0);
                let first_bad = if cut_rest {
                    Some(0)
                } else {
                    t.frames.iter().position(|f| {
                        f.runs
                            .iter()
                            .any(|(o, _, b)| holes.iter().any(|(ho, h)| ho == o && b >= h))
                    })
                };
                let Some(i) = first_bad else { continue };
                if i < t.frames.len() && t.frames[i].offset < synced {
                    // Proven synced: a hole before it is not an unsynced tail.
                    continue;
                }
                if i < t.frames.len() {
                    t.data_end = t.frames[i].offset;
                    t.frames.truncate(i);
                    changed = true;
                }
                cut_rest = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// Whether anything but zeros follows `offset` (a torn write, as opposed to preallocation).
fn has_bytes_at(file: &File, offset: u64) -> io::Result<bool> {
    use crate::store::format::scan::ReadAt;
    let Some((data, end)) = file.data_region(offset)? else {
        return Ok(false);
    };
    let mut buf = vec![0u8; (end - data).min(1 << 20) as usize];
    let n = read_full(file, &mut buf, data)?;
    Ok(buf[..n].iter().any(|&b| b != 0))
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

/// Scans one unsealed segment and decides where its valid data ends.
fn scan_tail(path: std::path::PathBuf, file: File, header: SegmentHeader) -> io::Result<TailScan> {
    let mut frames: Vec<FrameFacts> = Vec::new();
    let mut damages: Vec<Damage> = Vec::new();
    let mut end = None;
    let mut scanner = Scanner::new(&file, &header, true)?;
    while let Some(item) = scanner.next_step()? {
        match item {
            ScanStep::Frame {
                offset,
                header,
                payload,
            } => {
                frames.push(FrameFacts {
                    offset,
                    header,
                    runs: frame_runs(&payload),
                });
            }
            ScanStep::Corrupt {
                offset,
                reason,
                lost,
                ..
            } => damages.push(Damage {
                offset,
                reason,
                lost,
            }),
            ScanStep::End { offset, .. } => end = Some(offset),
            ScanStep::Footer { offset, .. } => end = Some(offset),
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
    Ok(TailScan {
        path,
        file,
        header,
        frames,
        kept_damage,
        data_end,
        size,
    })
}

/// Cuts a scanned tail at its data end and seals it, or removes it if no frame is left.
/// Returns false if it was removed.
fn seal_tail(
    tail: TailScan,
    state: &mut ShardState,
    ops: &dyn FileOps,
    report: &mut RecoveryReport,
) -> io::Result<bool> {
    let TailScan {
        path,
        file,
        header,
        frames,
        kept_damage,
        data_end,
        size,
    } = tail;
    let (path, file, header) = (path.as_path(), &file, &header);
    if frames.is_empty() {
        std::fs::remove_file(path)?;
        ops.sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        report.removed.push(path.to_path_buf());
        return Ok(false);
    }
    if data_end < size && has_bytes_at(file, data_end)? {
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
        for (origin, _, last) in &f.runs {
            let e = state.hwm.entry(origin.clone()).or_insert(0);
            *e = (*e).max(*last);
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

/// Runs of consecutive origin sequences per origin in one verified payload. A gap marker
/// counts as its whole range (`lost_from..=origin_seq`): those sequences are accounted for,
/// not a hole.
fn frame_runs(payload: &[u8]) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    let mut last = 0usize;
    for range in codec::Records::new(payload).flatten() {
        let Ok(id) = codec::identity(&payload[range]) else {
            continue;
        };
        let seq = id.origin_seq;
        let first = id.lost_from.unwrap_or(seq).min(seq);
        let hit = match out.get(last) {
            Some(e) if e.0.as_bytes() == id.origin => Some(last),
            _ => out.iter().rposition(|e| e.0.as_bytes() == id.origin),
        };
        match hit {
            Some(i) if out[i].2.checked_add(1) == Some(first) => {
                out[i].2 = seq;
                last = i;
            }
            Some(i) => {
                let origin = out[i].0.clone();
                out.push((origin, first, seq));
                last = out.len() - 1;
            }
            None => {
                out.push((String::from_utf8_lossy(id.origin).into_owned(), first, seq));
                last = out.len() - 1;
            }
        }
    }
    out
}

/// What opening found of one shard directory whose `shard.meta` does not verify.
pub enum MetaRepair {
    /// Rebuilt from the directory name (checked against every readable segment header's
    /// shard id); the bad file is kept as `shard.meta.damaged`. The shard opens as usual.
    Rebuilt,
    /// The name cannot be rebuilt: the shard is not opened (its files are left as they are),
    /// but `origin`'s highest sequence in it is returned, so numbering never goes back.
    Fenced { origin_mark: u64 },
}

/// The source name a plain (`s-…`) shard directory name encodes, if `encode` gives the name
/// back (hashed names cannot be decoded).
fn plain_source(dir_name: &str) -> Option<Vec<u8>> {
    use crate::store::format::shardname::encode;
    let rest = dir_name.strip_prefix("s-")?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    (encode(&out) == dir_name).then_some(out)
}

/// A shard directory whose `shard.meta` is missing (with segments present) or does not
/// verify (`reason`): rebuilds it when the directory name gives the source back and every
/// readable segment header carries that source's shard id (FNV of the name); otherwise
/// fences it, returning the highest sequence of `origin` in any of its segments. Either way
/// the problem goes to `report`.
pub fn repair_meta(
    shard_dir: &Path,
    reason: &str,
    origin: &str,
    ops: &dyn FileOps,
    report: &mut RecoveryReport,
) -> MetaRepair {
    use crate::store::format::shardname::{encode_meta, shard_id, META_FILE};
    let meta = shard_dir.join(META_FILE);
    let name = shard_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(plain_source);
    let ids_match = |source: &[u8]| -> io::Result<bool> {
        let id = shard_id(source);
        for base in list_segments(shard_dir)? {
            let file = File::open(shard_dir.join(segment_file_name(base)))?;
            if let Ok(header) = read_header(&file)? {
                if header.shard_id != id {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    };
    let rebuilt = name.as_deref().map(|source| -> io::Result<bool> {
        if !ids_match(source)? {
            return Ok(false);
        }
        if meta.exists() {
            ops.rename(&meta, &shard_dir.join("shard.meta.damaged"))?;
        }
        let tmp = shard_dir.join("shard.meta.tmp");
        ops.write_file(&tmp, &encode_meta(source))?;
        ops.sync_data(&File::open(&tmp)?)?;
        ops.rename(&tmp, &meta)?;
        ops.sync_dir(shard_dir)?;
        Ok(true)
    });
    match rebuilt {
        Some(Ok(true)) => {
            report.problems.push(Problem {
                file: meta,
                offset: 0,
                seqs: None,
                reason: format!(
                    "{reason}; rebuilt from the directory name (the segments' shard id \
                     matches), the bad file kept as shard.meta.damaged"
                ),
            });
            MetaRepair::Rebuilt
        }
        other => {
            let why = match other {
                Some(Err(e)) => format!("cannot rebuild it: {e}"),
                Some(Ok(_)) => "the segments' shard id does not match the directory name".into(),
                None => "the directory name does not give the source back".into(),
            };
            let origin_mark = match origin_mark_in(shard_dir, origin) {
                Ok(mark) => mark,
                Err(e) => {
                    report.problems.push(Problem {
                        file: shard_dir.to_path_buf(),
                        offset: 0,
                        seqs: None,
                        reason: format!("cannot read the segments of a fenced shard: {e}"),
                    });
                    0
                }
            };
            report.problems.push(Problem {
                file: meta,
                offset: 0,
                seqs: None,
                reason: format!(
                    "{reason}; {why}: shard fenced (not opened, files kept for repair)"
                ),
            });
            MetaRepair::Fenced { origin_mark }
        }
    }
}

/// The highest sequence of `origin` in any segment of `shard_dir`: a sealed segment's footer
/// carries the shard's cumulative marks, an unsealed one is scanned (read only).
pub fn origin_mark_in(shard_dir: &Path, origin: &str) -> io::Result<u64> {
    let mut mark = 0u64;
    for base in list_segments(shard_dir)? {
        let file = File::open(shard_dir.join(segment_file_name(base)))?;
        let Ok(header) = read_header(&file)? else {
            continue;
        };
        if let Some((_, footer)) = read_footer(&file, header.nonce)? {
            mark = mark.max(footer.hwm.get(origin).copied().unwrap_or(0));
            continue;
        }
        let mut scanner = Scanner::new(&file, &header, true)?;
        while let Some(step) = scanner.next_step()? {
            match step {
                ScanStep::Frame { payload, .. } => {
                    for (o, _, last) in frame_runs(&payload) {
                        if o == origin {
                            mark = mark.max(last);
                        }
                    }
                }
                ScanStep::Corrupt { .. } => {}
                ScanStep::End { .. } | ScanStep::Footer { .. } => break,
            }
        }
    }
    Ok(mark)
}
