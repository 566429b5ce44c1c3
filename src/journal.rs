//! The journal export format (what `systemd-journal-upload` POSTs): an incremental decoder
//! of entries, and the mapping of one entry to syslog-like fields for `read`.
//!
//! Format (systemd's "Journal Export Format"): an entry is a run of fields ended by an empty
//! line. A text field is `NAME=value\n`; a binary-safe field is `NAME\n`, a little-endian
//! u64 length, that many bytes, and `\n`. Names are upper-case letters, digits and `_`.
//!
//! The decoder never allocates by a length it read: an entry keeps at most
//! `max_entry_bytes` of its bytes (the rest is skipped while the structure is still followed,
//! and the entry is flagged truncated), so a bogus binary length costs nothing but the wait
//! for bytes that never come. Its memory is that, a field name and a few counters, whatever
//! the input. An entry longer on the wire than `max_entry_wire_bytes` (if set) is an error
//! ([`JournalError::EntryTooLarge`]) as soon as it passes the limit, or at once when a binary
//! field announces a length past it, so an entry that never ends cannot hold a request open
//! forever. No I/O here.

use bytes::{Buf, Bytes, BytesMut};

/// Longest accepted field name (systemd allows 64).
pub const MAX_FIELD_NAME_BYTES: usize = 64;

/// One decoded entry: its export-format bytes (possibly cut at the limit) and whether it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub raw: Bytes,
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JournalError {
    #[error("invalid field name {name:?} at byte {offset} of the upload")]
    FieldName { name: String, offset: u64 },
    #[error("missing newline after the binary field {name:?} at byte {offset} of the upload")]
    BinaryTerminator { name: String, offset: u64 },
    #[error("the upload ends inside an entry ({num_bytes} bytes of it)")]
    UnterminatedEntry { num_bytes: usize },
    #[error(
        "an entry at byte {offset} of the upload is larger than {limit} bytes \
         (api.upload-max-entry-bytes)"
    )]
    EntryTooLarge { limit: u64, offset: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field (or of the blank line that ends the entry).
    FieldStart,
    /// Inside a field name; `name_len` bytes of it seen.
    Name { name_len: usize },
    /// Inside a text value, until `\n`.
    TextValue,
    /// Reading the 8-byte length of a binary field; `have` bytes of it seen.
    BinaryLength { have: usize },
    /// Inside binary data, `remaining` bytes to go.
    BinaryData { remaining: u64 },
    /// Expecting the `\n` after binary data.
    BinaryEnd,
}

/// Incremental decoder: feed it the body as it arrives, take entries as they complete.
#[derive(Debug)]
pub struct ExportDecoder {
    max_entry_bytes: usize,
    /// The longest entry accepted on the wire (kept or skipped bytes alike).
    max_entry_wire_bytes: u64,
    state: State,
    /// Bytes of the current entry kept so far (at most `max_entry_bytes`).
    entry: Vec<u8>,
    entry_len: u64,
    num_fields: usize,
    name: Vec<u8>,
    length_bytes: [u8; 8],
    /// Bytes consumed from the whole body, for error offsets.
    offset: u64,
    /// Where the current entry starts in the body, for error offsets.
    entry_offset: u64,
}

impl ExportDecoder {
    /// A decoder keeping at most `max_entry_bytes` of each entry, with no limit on an
    /// entry's length on the wire.
    pub fn new(max_entry_bytes: usize) -> Self {
        ExportDecoder {
            max_entry_bytes,
            max_entry_wire_bytes: u64::MAX,
            state: State::FieldStart,
            entry: Vec::new(),
            entry_len: 0,
            num_fields: 0,
            name: Vec::new(),
            length_bytes: [0; 8],
            offset: 0,
            entry_offset: 0,
        }
    }

    /// Refuses (`EntryTooLarge`) an entry longer than `limit` bytes on the wire.
    pub fn with_max_entry_wire_bytes(mut self, limit: u64) -> Self {
        self.max_entry_wire_bytes = limit;
        self
    }

    fn too_large(&self) -> JournalError {
        JournalError::EntryTooLarge {
            limit: self.max_entry_wire_bytes,
            offset: self.entry_offset,
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = self.max_entry_bytes.saturating_sub(self.entry.len());
        self.entry
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.entry_len += bytes.len() as u64;
    }

    fn finish_entry(&mut self) -> JournalEntry {
        let truncated = self.entry_len > self.entry.len() as u64;
        let raw = Bytes::from(std::mem::take(&mut self.entry));
        self.entry_len = 0;
        self.num_fields = 0;
        self.entry_offset = self.offset;
        JournalEntry { raw, truncated }
    }

    /// Consumes bytes from `buffer` and returns the next complete entry, if any.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<JournalEntry>, JournalError> {
        while !buffer.is_empty() {
            if self.entry_len > self.max_entry_wire_bytes {
                return Err(self.too_large());
            }
            match self.state {
                State::FieldStart => {
                    if buffer[0] == b'\n' {
                        buffer.advance(1);
                        self.offset += 1;
                        if self.num_fields > 0 {
                            return Ok(Some(self.finish_entry()));
                        }
                        // Extra blank lines between entries carry nothing.
                        self.entry_offset = self.offset;
                        continue;
                    }
                    self.name.clear();
                    self.state = State::Name { name_len: 0 };
                }
                State::Name { name_len } => {
                    let end = buffer
                        .iter()
                        .position(|byte| *byte == b'=' || *byte == b'\n');
                    let take = end.unwrap_or(buffer.len());
                    let name_len = name_len + take;
                    if name_len > MAX_FIELD_NAME_BYTES {
                        let mut name = self.name.clone();
                        name.extend_from_slice(&buffer[..take.min(MAX_FIELD_NAME_BYTES)]);
                        return Err(self.bad_name(&name));
                    }
                    self.name.extend_from_slice(&buffer[..take]);
                    let chunk = buffer.split_to(take);
                    self.keep(&chunk);
                    self.offset += take as u64;
                    let Some(_) = end else {
                        self.state = State::Name { name_len };
                        continue;
                    };
                    if !valid_name(&self.name) {
                        let name = self.name.clone();
                        return Err(self.bad_name(&name));
                    }
                    let separator = buffer[0];
                    buffer.advance(1);
                    self.offset += 1;
                    self.keep(&[separator]);
                    self.num_fields += 1;
                    self.state = if separator == b'=' {
                        State::TextValue
                    } else {
                        State::BinaryLength { have: 0 }
                    };
                }
                State::TextValue => {
                    let end = buffer.iter().position(|byte| *byte == b'\n');
                    let take = end.map_or(buffer.len(), |end| end + 1);
                    let chunk = buffer.split_to(take);
                    self.keep(&chunk);
                    self.offset += take as u64;
                    if end.is_some() {
                        self.state = State::FieldStart;
                    }
                }
                State::BinaryLength { have } => {
                    let take = (8 - have).min(buffer.len());
                    self.length_bytes[have..have + take].copy_from_slice(&buffer[..take]);
                    let chunk = buffer.split_to(take);
                    self.keep(&chunk);
                    self.offset += take as u64;
                    let have = have + take;
                    self.state = if have == 8 {
                        match u64::from_le_bytes(self.length_bytes) {
                            0 => State::BinaryEnd,
                            // Refused before waiting for data that would pass the limit.
                            remaining
                                if self.entry_len.saturating_add(remaining)
                                    > self.max_entry_wire_bytes =>
                            {
                                return Err(self.too_large())
                            }
                            remaining => State::BinaryData { remaining },
                        }
                    } else {
                        State::BinaryLength { have }
                    };
                }
                State::BinaryData { remaining } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(buffer.len());
                    let chunk = buffer.split_to(take);
                    self.keep(&chunk);
                    self.offset += take as u64;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::BinaryEnd
                    } else {
                        State::BinaryData { remaining }
                    };
                }
                State::BinaryEnd => {
                    if buffer[0] != b'\n' {
                        return Err(JournalError::BinaryTerminator {
                            name: String::from_utf8_lossy(&self.name).into_owned(),
                            offset: self.offset,
                        });
                    }
                    buffer.advance(1);
                    self.offset += 1;
                    self.keep(b"\n");
                    self.state = State::FieldStart;
                }
            }
        }
        if self.entry_len > self.max_entry_wire_bytes {
            return Err(self.too_large());
        }
        Ok(None)
    }

    /// At the end of the body: the last entry may lack its blank line; anything cut inside a
    /// field is an error.
    pub fn finish(&mut self) -> Result<Option<JournalEntry>, JournalError> {
        match self.state {
            State::FieldStart if self.num_fields > 0 => Ok(Some(self.finish_entry())),
            State::FieldStart => Ok(None),
            _ => Err(JournalError::UnterminatedEntry {
                num_bytes: self.entry.len(),
            }),
        }
    }

    fn bad_name(&self, name: &[u8]) -> JournalError {
        JournalError::FieldName {
            name: String::from_utf8_lossy(name).into_owned(),
            offset: self.offset,
        }
    }
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || *byte == b'_')
}

/// The fields of one entry's export bytes, in order. A field cut off by truncation is kept
/// with the part that is there. Never fails: bytes that do not fit the format end the list.
pub fn fields(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() && rest[0] != b'\n' {
        let Some(end) = rest.iter().position(|byte| *byte == b'=' || *byte == b'\n') else {
            break;
        };
        let name = String::from_utf8_lossy(&rest[..end]).into_owned();
        if rest[end] == b'=' {
            let value = &rest[end + 1..];
            let value_end = value
                .iter()
                .position(|byte| *byte == b'\n')
                .unwrap_or(value.len());
            fields.push((name, value[..value_end].to_vec()));
            rest = &value[(value_end + 1).min(value.len())..];
        } else {
            let after = &rest[end + 1..];
            if after.len() < 8 {
                break;
            }
            let length = u64::from_le_bytes(after[..8].try_into().expect("8 bytes"));
            let data = &after[8..];
            let take = usize::try_from(length)
                .unwrap_or(usize::MAX)
                .min(data.len());
            fields.push((name, data[..take].to_vec()));
            rest = &data[(take + 1).min(data.len())..];
        }
    }
    fields
}

/// Syslog-like fields of one journal entry, for `read`: MESSAGE, PRIORITY, SYSLOG_FACILITY,
/// SYSLOG_IDENTIFIER, _PID, _HOSTNAME and __REALTIME_TIMESTAMP map to their syslog
/// counterparts; every other field is kept as a parameter of one `journal` SD element.
pub fn to_parsed(raw: &[u8]) -> crate::parse::Parsed {
    let mut parsed = crate::parse::Parsed::unparsed(String::new());
    parsed.status = crate::record::ParseStatus::Journal;
    parsed.message = None;
    let text = |value: &[u8]| String::from_utf8_lossy(value).into_owned();
    let number = |value: &[u8]| std::str::from_utf8(value).ok()?.trim().parse::<u8>().ok();
    let mut params = Vec::new();
    for (name, value) in fields(raw) {
        match name.as_str() {
            "MESSAGE" => parsed.message = Some(text(&value)),
            "PRIORITY" => parsed.severity = number(&value).filter(|severity| *severity < 8),
            "SYSLOG_FACILITY" => parsed.facility = number(&value).filter(|facility| *facility < 24),
            "SYSLOG_IDENTIFIER" => parsed.app_name = Some(text(&value)),
            "_PID" => parsed.procid = Some(text(&value)),
            "_HOSTNAME" => parsed.hostname = Some(text(&value)),
            "__REALTIME_TIMESTAMP" => {
                parsed.timestamp = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|micros| micros.parse::<i64>().ok())
                    .and_then(chrono::DateTime::from_timestamp_micros)
                    .map(|instant| instant.fixed_offset());
            }
            _ => params.push((name, text(&value))),
        }
    }
    if let Some(severity) = parsed.severity {
        // journald's default facility for entries without one is user (1).
        let facility = *parsed.facility.get_or_insert(1);
        parsed.pri = Some(facility * 8 + severity);
    }
    parsed.structured_data = Some(vec![crate::parse::SdElement {
        id: "journal".to_string(),
        params,
    }]);
    parsed
}

/// The entry's `__REALTIME_TIMESTAMP` as an event time (UTC).
pub fn event_time(raw: &[u8]) -> Option<crate::record::EventTime> {
    let micros = fields(raw)
        .into_iter()
        .find(|(name, _)| name == "__REALTIME_TIMESTAMP")
        .and_then(|(_, value)| std::str::from_utf8(&value).ok()?.parse::<i64>().ok())?;
    Some(crate::record::EventTime {
        unix_micros: micros,
        utc_offset_secs: 0,
    })
}

/// The entry's `_HOSTNAME`, the shard key of journal records (else the uploader's address).
pub fn hostname(raw: &[u8]) -> Option<String> {
    fields(raw)
        .into_iter()
        .find(|(name, _)| name == "_HOSTNAME")
        .map(|(_, value)| String::from_utf8_lossy(&value).into_owned())
        .filter(|hostname| !hostname.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_field(name: &str, value: &[u8]) -> Vec<u8> {
        let mut field = format!("{name}\n").into_bytes();
        field.extend_from_slice(&(value.len() as u64).to_le_bytes());
        field.extend_from_slice(value);
        field.push(b'\n');
        field
    }

    fn sample() -> Vec<u8> {
        let mut body =
            b"__CURSOR=s=1;i=1\n__REALTIME_TIMESTAMP=1700000000000000\nMESSAGE=hello\n\n".to_vec();
        body.extend_from_slice(b"__REALTIME_TIMESTAMP=1700000001000000\n");
        body.extend_from_slice(&binary_field("MESSAGE", b"line1\nline2\x00\xff"));
        body.extend_from_slice(b"PRIORITY=3\n\n");
        body
    }

    /// Decodes `body` delivered in chunks of `chunk` bytes.
    fn decode_all(
        body: &[u8],
        chunk: usize,
        max: usize,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let mut decoder = ExportDecoder::new(max);
        let mut buffer = BytesMut::new();
        let mut entries = Vec::new();
        for piece in body.chunks(chunk.max(1)) {
            buffer.extend_from_slice(piece);
            while let Some(entry) = decoder.decode(&mut buffer)? {
                entries.push(entry);
            }
        }
        entries.extend(decoder.finish()?);
        Ok(entries)
    }

    #[test]
    fn entries_and_fields_whatever_the_chunking() {
        let body = sample();
        for chunk in [1, 2, 3, 7, 64, body.len()] {
            let entries = decode_all(&body, chunk, 1 << 20).unwrap();
            assert_eq!(entries.len(), 2, "chunk {chunk}");
            assert!(!entries[0].truncated);
            assert_eq!(
                fields(&entries[0].raw),
                vec![
                    ("__CURSOR".to_string(), b"s=1;i=1".to_vec()),
                    (
                        "__REALTIME_TIMESTAMP".to_string(),
                        b"1700000000000000".to_vec()
                    ),
                    ("MESSAGE".to_string(), b"hello".to_vec()),
                ]
            );
            let second = fields(&entries[1].raw);
            assert_eq!(
                second[1],
                ("MESSAGE".to_string(), b"line1\nline2\x00\xff".to_vec())
            );
            assert_eq!(second[2], ("PRIORITY".to_string(), b"3".to_vec()));
        }
    }

    #[test]
    fn last_entry_without_blank_line_and_extra_blank_lines() {
        let entries = decode_all(b"\n\nA=1\n\n\n\nB=2\n", 5, 1024).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            fields(&entries[1].raw),
            vec![("B".to_string(), b"2".to_vec())]
        );
    }

    #[test]
    fn oversize_entry_is_cut_and_flagged_and_the_stream_stays_in_sync() {
        let mut body = binary_field("MESSAGE", &[b'x'; 5000]);
        body.extend_from_slice(b"\nNEXT=ok\n\n");
        let entries = decode_all(&body, 100, 1000).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0].truncated);
        assert_eq!(entries[0].raw.len(), 1000);
        assert_eq!(fields(&entries[0].raw)[0].1.len(), 1000 - 8 - 8);
        assert_eq!(
            fields(&entries[1].raw),
            vec![("NEXT".to_string(), b"ok".to_vec())]
        );
    }

    #[test]
    fn an_entry_longer_than_the_wire_limit_is_refused_as_soon_as_it_passes_it() {
        let decode = |body: &[u8], chunk: usize| {
            let mut decoder = ExportDecoder::new(100).with_max_entry_wire_bytes(1000);
            let mut buffer = BytesMut::new();
            let mut entries = Vec::new();
            for piece in body.chunks(chunk) {
                buffer.extend_from_slice(piece);
                while let Some(entry) = decoder.decode(&mut buffer)? {
                    entries.push(entry);
                }
            }
            entries.extend(decoder.finish()?);
            Ok::<_, JournalError>(entries)
        };
        // Within the limit: cut at 100 bytes and flagged, as without one.
        let mut fits = b"A=1\n\n".to_vec();
        fits.extend(binary_field("MESSAGE", &[b'x'; 900]));
        fits.push(b'\n');
        for chunk in [1, 7, fits.len()] {
            let entries = decode(&fits, chunk).unwrap();
            assert_eq!(entries.len(), 2);
            assert!(entries[1].truncated && entries[1].raw.len() == 100);
        }
        // A text field that never ends: refused once past the limit, not at the body's end.
        let mut endless = b"A=1\n\nMESSAGE=".to_vec();
        endless.extend_from_slice(&[b'x'; 1200]);
        for chunk in [1, 10, 300] {
            let mut decoder = ExportDecoder::new(100).with_max_entry_wire_bytes(1000);
            let mut buffer = BytesMut::new();
            let mut fed = 0;
            let error = loop {
                let piece = &endless[fed..(fed + chunk).min(endless.len())];
                fed += piece.len();
                buffer.extend_from_slice(piece);
                match decoder.decode(&mut buffer) {
                    Ok(_) => assert!(fed < endless.len(), "never refused"),
                    Err(error) => break error,
                }
            };
            assert_eq!(
                error,
                JournalError::EntryTooLarge {
                    limit: 1000,
                    offset: 5
                }
            );
            assert!(fed <= 5 + 1001 + chunk, "refused late: {fed} bytes fed");
        }
        // A binary length past the limit: refused at the length, before its data.
        let announced = [b"MESSAGE\n".as_slice(), &1001u64.to_le_bytes()].concat();
        assert_eq!(
            decode(&announced, 3),
            Err(JournalError::EntryTooLarge {
                limit: 1000,
                offset: 0
            })
        );
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic_or_a_huge_allocation() {
        let bogus_length = [b"MESSAGE\n".as_slice(), &u64::MAX.to_le_bytes(), b"tiny"].concat();
        assert_eq!(
            decode_all(&bogus_length, 3, 1024),
            Err(JournalError::UnterminatedEntry {
                num_bytes: 8 + 8 + 4
            })
        );
        assert!(matches!(
            decode_all(b"lower=case\n\n", 4, 1024),
            Err(JournalError::FieldName { .. })
        ));
        assert!(matches!(
            decode_all(&[b'A'; 100], 7, 1024),
            Err(JournalError::FieldName { .. })
        ));
        let no_terminator = [b"DATA\n".as_slice(), &2u64.to_le_bytes(), b"abX"].concat();
        assert!(matches!(
            decode_all(&no_terminator, 1, 1024),
            Err(JournalError::BinaryTerminator { .. })
        ));
        assert_eq!(
            decode_all(b"A=1\nB=unterminated", 4, 1024),
            Err(JournalError::UnterminatedEntry { num_bytes: 18 })
        );
    }
}
