//! Record encoding inside a frame payload: a length-prefixed body per record holding receive
//! time, event time, origin, origin sequence, peer, transport, parse status, truncated flag,
//! the first lost sequence of a gap marker, the sender's verified TLS identity (flag 32) and
//! the raw bytes. The shard (source) is not stored per record: it is the shard's name,
//! except for a source too long to name its shard (`shardname::shard_name`), whose records
//! keep it (flag 16). A line tailed from a file carries where it was read (flag 64): path,
//! offset past the line, file identity, PRI and APP-NAME.
//!
//! No I/O; decoding never trusts a length without checking it against the bytes at hand.

use std::sync::Arc;

use bytes::Bytes;

use crate::record::{EventTime, FileOrigin, ParseStatus, Record, SharedStr, Transport};

const FLAG_EVENT: u8 = 1;
const FLAG_PEER: u8 = 2;
const FLAG_TRUNCATED: u8 = 4;
/// A gap marker: the first lost sequence follows the event time.
const FLAG_LOST: u8 = 8;
/// The record's source name follows the peer (u32 length + bytes): its shard is named by a
/// shortened form.
const FLAG_SOURCE: u8 = 16;
/// The sender's verified TLS identity follows the peer (and the source, if kept): u16 length +
/// UTF-8, like the peer.
const FLAG_TLS_PEER: u8 = 32;
/// A line tailed from a file: its `FileOrigin` follows the source (see `docs/format.md`).
const FLAG_FILE: u8 = 64;
/// Fixed bytes of a file field besides its two strings' bytes: path length, offset, dev, ino,
/// fingerprint, fingerprint length, PRI, file flags, app-name length.
const FILE_FIXED: usize = 2 + 8 + 8 + 8 + 4 + 4 + 1 + 1 + 2;
/// File flag: the line had no terminator when it was stored.
const FILE_PARTIAL: u8 = 1;
const FIXED: usize = 4 + 4 + 8 + 8;

/// Longest origin or peer string a record may carry.
pub const MAX_NAME_BYTES: usize = u16::MAX as usize;

/// Bytes `record` takes in a payload, or `None` if a field is too long to encode.
pub fn encoded_len(record: &Record) -> Option<usize> {
    if record.origin.len() > MAX_NAME_BYTES
        || record
            .peer
            .as_ref()
            .is_some_and(|p| p.len() > MAX_NAME_BYTES)
        || record
            .tls_peer
            .as_ref()
            .is_some_and(|p| p.len() > MAX_NAME_BYTES)
        || record
            .file
            .as_ref()
            .is_some_and(|f| f.path.len() > MAX_NAME_BYTES || f.app_name.len() > MAX_NAME_BYTES)
    {
        return None;
    }
    let mut n = FIXED + 2 + record.origin.len() + record.raw.len();
    if record.event_time.is_some() {
        n += 12;
    }
    if record.lost_from.is_some() {
        n += 8;
    }
    if let Some(peer) = &record.peer {
        n += 2 + peer.len();
    }
    if let Some(tls_peer) = &record.tls_peer {
        n += 2 + tls_peer.len();
    }
    if let Some(file) = &record.file {
        n += FILE_FIXED + file.path.len() + file.app_name.len();
    }
    Some(n)
}

/// Bytes `record` takes with its source name kept in the record (flag 16), or `None` if a
/// field is too long to encode.
pub fn encoded_len_keeping_source(record: &Record) -> Option<usize> {
    encoded_len(record)?.checked_add(4 + record.source.len())
}

/// Writes `record` into `out`, which must be exactly `encoded_len(record)` bytes long, or
/// `encoded_len_keeping_source(record)` to keep the source name in the record.
pub fn encode_into(record: &Record, out: &mut [u8]) {
    let keep_source = encoded_len(record).is_some_and(|n| out.len() > n);
    let body_len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&body_len.to_le_bytes());
    let mut flags = 0;
    if record.event_time.is_some() {
        flags |= FLAG_EVENT;
    }
    if record.peer.is_some() {
        flags |= FLAG_PEER;
    }
    if record.truncated {
        flags |= FLAG_TRUNCATED;
    }
    if record.lost_from.is_some() {
        flags |= FLAG_LOST;
    }
    if keep_source {
        flags |= FLAG_SOURCE;
    }
    if record.tls_peer.is_some() {
        flags |= FLAG_TLS_PEER;
    }
    if record.file.is_some() {
        flags |= FLAG_FILE;
    }
    out[4] = flags;
    out[5] = record.transport as u8;
    out[6] = record.parse as u8;
    out[7] = 0;
    out[8..16].copy_from_slice(&record.received_at_micros.to_le_bytes());
    out[16..24].copy_from_slice(&record.origin_seq.to_le_bytes());
    let mut at = FIXED;
    if let Some(event) = record.event_time {
        out[at..at + 8].copy_from_slice(&event.unix_micros.to_le_bytes());
        out[at + 8..at + 12].copy_from_slice(&event.utc_offset_secs.to_le_bytes());
        at += 12;
    }
    if let Some(lost_from) = record.lost_from {
        out[at..at + 8].copy_from_slice(&lost_from.to_le_bytes());
        at += 8;
    }
    at = put_str(out, at, &record.origin);
    if let Some(peer) = &record.peer {
        at = put_str(out, at, peer);
    }
    if keep_source {
        let source = record.source.as_bytes();
        out[at..at + 4].copy_from_slice(&(source.len() as u32).to_le_bytes());
        out[at + 4..at + 4 + source.len()].copy_from_slice(source);
        at += 4 + source.len();
    }
    if let Some(tls_peer) = &record.tls_peer {
        at = put_str(out, at, tls_peer);
    }
    if let Some(file) = &record.file {
        at = put_bytes(out, at, &file.path);
        for value in [file.offset, file.dev, file.ino] {
            out[at..at + 8].copy_from_slice(&value.to_le_bytes());
            at += 8;
        }
        out[at..at + 4].copy_from_slice(&file.fingerprint.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&file.fingerprint_len.to_le_bytes());
        out[at + 8] = file.pri;
        out[at + 9] = if file.partial { FILE_PARTIAL } else { 0 };
        at = put_str(out, at + 10, &file.app_name);
    }
    out[at..].copy_from_slice(&record.raw);
}

fn put_str(out: &mut [u8], at: usize, s: &str) -> usize {
    put_bytes(out, at, s.as_bytes())
}

fn put_bytes(out: &mut [u8], at: usize, s: &[u8]) -> usize {
    out[at..at + 2].copy_from_slice(&(s.len() as u16).to_le_bytes());
    out[at + 2..at + 2 + s.len()].copy_from_slice(s);
    at + 2 + s.len()
}

/// The fields recovery needs from a record, borrowed from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordIdentity<'a> {
    pub origin: &'a [u8],
    pub origin_seq: u64,
    pub received_at_micros: i64,
    /// A gap marker's first lost sequence: the record accounts for `lost_from..=origin_seq`.
    pub lost_from: Option<u64>,
}

/// Iterates the records of a payload; each item is the record's body range or an error.
pub struct Records<'a> {
    payload: &'a [u8],
    at: usize,
}

impl<'a> Records<'a> {
    pub fn new(payload: &'a [u8]) -> Records<'a> {
        Records { payload, at: 0 }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<std::ops::Range<usize>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.payload.len() {
            return None;
        }
        let rest = &self.payload[self.at..];
        if rest.len() < 4 {
            self.at = self.payload.len();
            return Some(Err(format!(
                "record length cut at payload offset {}",
                self.at
            )));
        }
        let body_len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if body_len + 4 > rest.len() || body_len + 4 < FIXED + 2 {
            self.at = self.payload.len();
            return Some(Err(format!("bad record length {body_len}")));
        }
        let range = self.at..self.at + 4 + body_len;
        self.at = range.end;
        Some(Ok(range))
    }
}

/// Reads the identity fields of one encoded record.
pub fn identity(rec: &[u8]) -> Result<RecordIdentity<'_>, String> {
    let flags = rec[4];
    let mut at = FIXED;
    if flags & FLAG_EVENT != 0 {
        at += 12;
    }
    let lost_from = if flags & FLAG_LOST != 0 {
        let lost_from = get_u64(rec, at)?;
        at += 8;
        Some(lost_from)
    } else {
        None
    };
    let (origin, _) = get_str(rec, at)?;
    Ok(RecordIdentity {
        origin,
        origin_seq: u64::from_le_bytes(rec[16..24].try_into().expect("8 bytes")),
        received_at_micros: i64::from_le_bytes(rec[8..16].try_into().expect("8 bytes")),
        lost_from,
    })
}

fn get_u64(rec: &[u8], at: usize) -> Result<u64, String> {
    match rec.get(at..at + 8) {
        Some(bytes) => Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes"))),
        None => Err("record cut inside its first lost sequence".to_string()),
    }
}

fn get_str(rec: &[u8], at: usize) -> Result<(&[u8], usize), String> {
    if at + 2 > rec.len() {
        return Err("record cut inside a string length".to_string());
    }
    let len = u16::from_le_bytes([rec[at], rec[at + 1]]) as usize;
    let end = at + 2 + len;
    if end > rec.len() {
        return Err(format!("string length {len} runs past the record"));
    }
    Ok((&rec[at + 2..end], end))
}

/// What consecutive `decode` calls share: the last origin and peer strings.
#[derive(Debug, Default)]
pub struct DecodeShared {
    origin: SharedStr,
    peer: SharedStr,
    tls_peer: SharedStr,
}

/// Decodes one record. `payload` is the whole frame payload (so `raw` can share it) and
/// `range` the record's bytes inside it.
pub fn decode(
    payload: &Bytes,
    range: std::ops::Range<usize>,
    source: &Arc<str>,
    shared: &mut DecodeShared,
) -> Result<Record, String> {
    let rec = &payload[range.clone()];
    let flags = rec[4];
    if flags
        & !(FLAG_EVENT
            | FLAG_PEER
            | FLAG_TRUNCATED
            | FLAG_LOST
            | FLAG_SOURCE
            | FLAG_TLS_PEER
            | FLAG_FILE)
        != 0
        || rec[7] != 0
    {
        return Err(format!("unknown record flags {flags:#04x}"));
    }
    let transport =
        Transport::from_u8(rec[5]).ok_or_else(|| format!("unknown transport {}", rec[5]))?;
    let parse =
        ParseStatus::from_u8(rec[6]).ok_or_else(|| format!("unknown parse status {}", rec[6]))?;
    let received_at_micros = i64::from_le_bytes(rec[8..16].try_into().expect("8 bytes"));
    let origin_seq = u64::from_le_bytes(rec[16..24].try_into().expect("8 bytes"));
    let mut at = FIXED;
    let mut event_time = None;
    if flags & FLAG_EVENT != 0 {
        if at + 12 > rec.len() {
            return Err("record cut inside its event time".to_string());
        }
        event_time = Some(EventTime {
            unix_micros: i64::from_le_bytes(rec[at..at + 8].try_into().expect("8 bytes")),
            utc_offset_secs: i32::from_le_bytes(rec[at + 8..at + 12].try_into().expect("4 bytes")),
        });
        at += 12;
    }
    let mut lost_from = None;
    if flags & FLAG_LOST != 0 {
        let first = get_u64(rec, at)?;
        if first == 0 || first > origin_seq {
            return Err(format!(
                "gap marker range {first}..={origin_seq} is empty or starts at 0"
            ));
        }
        lost_from = Some(first);
        at += 8;
    }
    let (origin, next) = get_str(rec, at)?;
    let origin = (shared.origin)
        .get_utf8(origin)
        .map_err(|_| "origin is not utf-8".to_string())?;
    at = next;
    let mut peer = None;
    if flags & FLAG_PEER != 0 {
        let (p, next) = get_str(rec, at)?;
        let p = (shared.peer)
            .get_utf8(p)
            .map_err(|_| "peer is not utf-8".to_string())?;
        peer = Some(p);
        at = next;
    }
    let mut source = source.clone();
    if flags & FLAG_SOURCE != 0 {
        let len = match rec.get(at..at + 4) {
            Some(b) => u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize,
            None => return Err("record cut inside its source length".to_string()),
        };
        let Some(name) = rec.get(at + 4..).and_then(|b| b.get(..len)) else {
            return Err(format!("source length {len} runs past the record"));
        };
        source = Arc::from(std::str::from_utf8(name).map_err(|_| "source is not utf-8")?);
        at += 4 + len;
    }
    let mut tls_peer = None;
    if flags & FLAG_TLS_PEER != 0 {
        let (p, next) = get_str(rec, at)?;
        let p = (shared.tls_peer)
            .get_utf8(p)
            .map_err(|_| "tls peer is not utf-8".to_string())?;
        tls_peer = Some(p);
        at = next;
    }
    let mut file = None;
    if flags & FLAG_FILE != 0 {
        let (origin, next) = decode_file(rec, at)?;
        file = Some(Arc::new(origin));
        at = next;
    }
    Ok(Record {
        received_at_micros,
        event_time,
        origin,
        origin_seq,
        peer,
        transport,
        parse,
        truncated: flags & FLAG_TRUNCATED != 0,
        source,
        raw: payload.slice(range.start + at..range.end),
        lost_from,
        tls_peer,
        file,
    })
}

/// The file field of a record (flag 64) at `at`, and where it ends.
fn decode_file(rec: &[u8], at: usize) -> Result<(FileOrigin, usize), String> {
    let (path, at) = get_str(rec, at)?;
    let Some(fixed) = rec.get(at..at + FILE_FIXED - 4) else {
        return Err("record cut inside its file field".to_string());
    };
    let u64_at = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().expect("4 bytes"));
    let file_flags = fixed[33];
    if file_flags & !FILE_PARTIAL != 0 {
        return Err(format!("unknown file flags {file_flags:#04x}"));
    }
    let (app_name, end) = get_str(rec, at + FILE_FIXED - 4)?;
    let app_name = std::str::from_utf8(app_name).map_err(|_| "app-name is not utf-8")?;
    Ok((
        FileOrigin {
            path: Bytes::copy_from_slice(path),
            offset: u64_at(0),
            dev: u64_at(8),
            ino: u64_at(16),
            fingerprint: u32_at(24),
            fingerprint_len: u32_at(28),
            pri: fixed[32],
            app_name: Arc::from(app_name),
            partial: file_flags & FILE_PARTIAL != 0,
        },
        end,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn record(source: &str, origin: &str, seq: u64, raw: &str) -> Record {
        Record {
            received_at_micros: 1_700_000_000_000_000 + seq as i64,
            event_time: Some(EventTime {
                unix_micros: -5,
                utc_offset_secs: 3600,
            }),
            origin: origin.to_string().into(),
            origin_seq: seq,
            peer: Some("10.0.0.1:514".into()),
            transport: Transport::Tcp,
            parse: ParseStatus::Rfc5424,
            truncated: seq % 2 == 0,
            source: source.to_string().into(),
            raw: Bytes::from(raw.to_string()),
            lost_from: None,
            tls_peer: None,
            file: None,
        }
    }

    #[test]
    fn records_round_trip() {
        let mut a = record("h", "node-1", 3, "<13>1 hello");
        let mut b = record("h", "n", 4, "");
        b.event_time = None;
        b.peer = None;
        a.raw = Bytes::from_static(b"\xff\x00raw");
        // A gap marker, with and without an event time before its first lost sequence.
        let mut c = Record::gap_marker("n", 5, 9, 7);
        c.source = "h".into();
        b.tls_peer = Some("client1.example.test".into());
        let mut d = c.clone();
        d.event_time = a.event_time;
        d.origin_seq = 12;
        d.lost_from = Some(12);
        let mut payload = Vec::new();
        for r in [&a, &b, &c, &d] {
            let len = encoded_len(r).unwrap();
            let start = payload.len();
            payload.resize(start + len, 0);
            encode_into(r, &mut payload[start..]);
        }
        let payload = Bytes::from(payload);
        let ranges: Vec<_> = Records::new(&payload).collect::<Result<_, _>>().unwrap();
        assert_eq!(ranges.len(), 4);
        for (range, want) in ranges.iter().zip([&a, &b, &c, &d]) {
            assert_eq!(
                &decode(
                    &payload,
                    range.clone(),
                    &Arc::from("h"),
                    &mut DecodeShared::default()
                )
                .unwrap(),
                want
            );
        }
        let id = identity(&payload[ranges[0].clone()]).unwrap();
        assert_eq!(
            (id.origin, id.origin_seq, id.lost_from),
            (&b"node-1"[..], 3, None)
        );
        let id = identity(&payload[ranges[3].clone()]).unwrap();
        assert_eq!(
            (id.origin, id.origin_seq, id.lost_from),
            (&b"n"[..], 12, Some(12))
        );
    }

    /// A tailed line's file field (flag 64) round-trips, next to a kept source name, with a
    /// path that is not UTF-8; a cut field or an unknown file flag is an error, not a panic.
    #[test]
    fn a_file_field_round_trips() {
        let mut a = record("h", "node-1", 3, "a line");
        a.transport = Transport::File;
        a.file = Some(Arc::new(FileOrigin {
            path: Bytes::from_static(b"/var/log/my app/\xffx.log"),
            offset: 1 << 40,
            dev: 2049,
            ino: 77,
            fingerprint: 0xdead_beef,
            fingerprint_len: 1024,
            pri: 14,
            app_name: "x".into(),
            partial: true,
        }));
        let mut b = a.clone();
        b.source = "a-long-source".into();
        for (r, keep) in [(&a, false), (&b, true)] {
            let len = if keep {
                encoded_len_keeping_source(r).unwrap()
            } else {
                encoded_len(r).unwrap()
            };
            let mut payload = vec![0u8; len];
            encode_into(r, &mut payload);
            let payload = Bytes::from(payload);
            let got = decode(
                &payload,
                0..len,
                &Arc::from("h"),
                &mut DecodeShared::default(),
            );
            assert_eq!(&got.unwrap(), r);
            // Cut anywhere inside the file field or raw: an error or a shorter raw, no panic.
            for cut in 30..len {
                let mut short = payload[..cut].to_vec();
                short[..4].copy_from_slice(&((cut - 4) as u32).to_le_bytes());
                let short = Bytes::from(short);
                let _ = decode(
                    &short,
                    0..cut,
                    &Arc::from("h"),
                    &mut DecodeShared::default(),
                );
            }
        }
        let len = encoded_len(&a).unwrap();
        let mut payload = vec![0u8; len];
        encode_into(&a, &mut payload);
        // The file flags byte sits 34 bytes after the path's length prefix and bytes.
        let flags_at = len - a.raw.len() - 2 - 1 - 1;
        assert_eq!(payload[flags_at], 1, "the partial flag");
        payload[flags_at] = 2;
        let payload = Bytes::from(payload);
        let err = decode(
            &payload,
            0..len,
            &Arc::from("h"),
            &mut DecodeShared::default(),
        );
        assert!(err.unwrap_err().contains("file flags"));
    }

    /// A record whose source is too long to name its shard keeps it (flag 16): it decodes
    /// with its own name, not the shard's, and the source's bytes are not taken for raw.
    #[test]
    fn a_kept_source_name_round_trips() {
        let mut a = record(&"long-".repeat(30_000), "node-1", 3, "<13>1 hello");
        let b = record("short", "node-1", 4, "next");
        a.peer = None;
        a.tls_peer = Some("sha-256:AB:CD".into());
        let mut payload = vec![0u8; encoded_len_keeping_source(&a).unwrap()];
        assert_eq!(payload.len(), encoded_len(&a).unwrap() + 4 + a.source.len());
        encode_into(&a, &mut payload);
        let start = payload.len();
        payload.resize(start + encoded_len(&b).unwrap(), 0);
        encode_into(&b, &mut payload[start..]);
        let payload = Bytes::from(payload);
        let ranges: Vec<_> = Records::new(&payload).collect::<Result<_, _>>().unwrap();
        let shard: Arc<str> = Arc::from("h-long-0123");
        let got: Vec<Record> = ranges
            .iter()
            .map(|r| decode(&payload, r.clone(), &shard, &mut DecodeShared::default()).unwrap())
            .collect();
        assert_eq!(got[0], a, "full name kept");
        assert_eq!(
            &*got[1].source, "h-long-0123",
            "others take the shard's name"
        );
        assert_eq!(got[1].raw, b.raw);
        // A cut source name is an error, not a panic.
        let mut cut = payload[ranges[0].clone()].to_vec();
        let body = (cut.len() - 4 - 100_000) as u32;
        cut.truncate(cut.len() - 100_000);
        cut[..4].copy_from_slice(&body.to_le_bytes());
        let cut = Bytes::from(cut);
        assert!(decode(&cut, 0..cut.len(), &shard, &mut DecodeShared::default()).is_err());
    }

    #[test]
    fn records_without_the_gap_flag_decode_as_before() {
        // The layout written before gap markers existed, spelled out byte by byte.
        let old = record("h", "node-1", 3, "<13>1 hello");
        let mut body = vec![FLAG_EVENT | FLAG_PEER, 2, 1, 0];
        body.extend_from_slice(&old.received_at_micros.to_le_bytes());
        body.extend_from_slice(&3u64.to_le_bytes());
        body.extend_from_slice(&(-5i64).to_le_bytes());
        body.extend_from_slice(&3600i32.to_le_bytes());
        for text in ["node-1", "10.0.0.1:514"] {
            body.extend_from_slice(&(text.len() as u16).to_le_bytes());
            body.extend_from_slice(text.as_bytes());
        }
        body.extend_from_slice(b"<13>1 hello");
        let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let payload = Bytes::from(bytes);
        let decoded = decode(
            &payload,
            0..payload.len(),
            &Arc::from("h"),
            &mut DecodeShared::default(),
        )
        .unwrap();
        assert_eq!((decoded.lost_from, decoded), (None, old));
    }

    #[test]
    fn an_impossible_gap_range_is_refused() {
        for (from, to) in [(0, 4), (5, 4)] {
            let mut marker = Record::gap_marker("n", 1, to, 7);
            marker.lost_from = Some(from);
            let mut bytes = vec![0u8; encoded_len(&marker).unwrap()];
            encode_into(&marker, &mut bytes);
            let payload = Bytes::from(bytes);
            let error = decode(
                &payload,
                0..payload.len(),
                &Arc::from("n"),
                &mut DecodeShared::default(),
            )
            .unwrap_err();
            assert!(error.contains("gap marker range"), "{error}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let payload = Bytes::from(bytes);
            for range in Records::new(&payload).flatten() {
                let _ = identity(&payload[range.clone()]);
                let _ = decode(
                    &payload,
                    range,
                    &Arc::from("x"),
                    &mut DecodeShared::default(),
                );
            }
        }
    }
}
