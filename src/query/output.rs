//! How query results are written, the same by the API and `starling read`: one JSON object
//! per line in the documented record shape, or the raw message one line per record
//! (control characters escaped as rsyslog does, `#012` for a newline) or exactly as stored;
//! and the API's final `{"_meta": …}` line.

use std::io::Write as _;

use serde_json::{json, Value};

use super::filter::Hit;
use super::scan::Summary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    /// The raw message, one line per record (`exact`: the stored bytes, unescaped).
    Raw { exact: bool },
}

/// Appends `raw` with every control character (below 0x20, and DEL) written as `#` and three
/// octal digits, as rsyslog's `$EscapeControlCharactersOnReceive` does: a multi-line message
/// stays one line (`#012` for each newline) and `grep` sees one record per line.
pub fn escape_control(raw: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &byte) in raw.iter().enumerate() {
        if byte < 0x20 || byte == 0x7f {
            out.extend_from_slice(&raw[start..i]);
            let _ = write!(out, "#{byte:03o}");
            start = i + 1;
        }
    }
    out.extend_from_slice(&raw[start..]);
}

/// Appends one record's line (with its newline).
pub fn write_hit(out: &mut Vec<u8>, hit: &Hit, format: Format) {
    let record = &hit.stored.record;
    match format {
        Format::Raw { exact: true } => out.extend_from_slice(&record.raw),
        Format::Raw { exact: false } => escape_control(&record.raw, out),
        Format::Json => {
            let value = crate::render::record_json(hit.stored.shard_seq, record, &hit.parsed());
            // Serialising a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &value);
        }
    }
    out.push(b'\n');
}

/// The final line of an API answer: `{"_meta": {…}}`.
pub fn meta_value(summary: &Summary, elapsed_ms: u64, partial: Option<&str>) -> Value {
    let mut meta = json!({
        "cursor": summary.cursor.as_ref().map(|c| c.encode()),
        "scanned": summary.scanned,
        "returned": summary.returned,
        "corrupt_frames": summary.corrupt,
        "unreadable_files": summary.unreadable,
        "problems": summary.problems,
        "complete": summary.complete,
        "partial": partial.is_some(),
        "elapsed_ms": elapsed_ms,
    });
    if let Some(reason) = partial {
        meta["partial_reason"] = json!(reason);
    }
    json!({ "_meta": meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_like_rsyslog() {
        let mut out = Vec::new();
        escape_control(b"a\nb\tc\x7f\x00d#012", &mut out);
        assert_eq!(out, b"a#012b#011c#177#000d#012");
    }
}
