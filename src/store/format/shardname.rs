//! Shard directory names: an injective, filesystem-safe encoding of a source name, and the
//! `shard.meta` file that keeps the original name.
//!
//! Encoding: `s-` followed by the bytes with `[a-z0-9._-]` kept and every other byte
//! (uppercase letters included, so case-insensitive filesystems stay injective) written as
//! `%XX`. Names whose encoding exceeds `MAX_PLAIN` become `h-<prefix>-<128-bit hash>`. The
//! result never contains `/`, `\`, NUL or `~`, is never `.`/`..`/empty; the writer appends
//! `~N` if a hashed name ever collides (checked against `shard.meta`).
//!
//! Shard names: a source longer than the store's `source-name-max-bytes` is not a shard name
//! itself; its shard is named by the hashed form above (`shard_name`), and each of its records
//! keeps the full name (see `codec`).

use std::io;
use std::path::Path;

pub const META_FILE: &str = "shard.meta";
const META_MAGIC: &[u8; 8] = b"STRLSHD1";
const MAX_PLAIN: usize = 120;
const HASHED_PREFIX: usize = 40;

/// The directory name for `source` (before any collision suffix).
pub fn encode(source: &[u8]) -> String {
    let mut out = String::with_capacity(2 + source.len());
    out.push_str("s-");
    for &b in source {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        if out.len() > MAX_PLAIN {
            break;
        }
    }
    if out.len() <= MAX_PLAIN {
        return out;
    }
    hashed(source, &out[2..2 + HASHED_PREFIX])
}

/// `h-<encoded prefix>-<two FNV-1a-64 hashes of source>`.
fn hashed(source: &[u8], encoded_prefix: &str) -> String {
    let (h1, h2) = (
        fnv1a(source, 0xcbf2_9ce4_8422_2325),
        fnv1a(source, 0x6c62_272e_07bb_0142),
    );
    format!("h-{encoded_prefix}-{h1:016x}{h2:016x}")
}

/// The longest name `shard_name` shortens to.
pub const MAX_SHORTENED: usize = 2 + HASHED_PREFIX + 1 + 32;

/// The shard name of `source`: the source itself if it is at most `max` bytes, else the
/// hashed encoding (`h-<first 40 encoded bytes>-<32 hex digits>`, at most `MAX_SHORTENED`
/// bytes), whose records then keep their full source name.
pub fn shard_name(source: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if source.len() <= max {
        return std::borrow::Cow::Borrowed(source);
    }
    let mut prefix = String::with_capacity(HASHED_PREFIX + 3);
    for &b in source.as_bytes() {
        if prefix.len() >= HASHED_PREFIX {
            break;
        }
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-' {
            prefix.push(b as char);
        } else {
            prefix.push_str(&format!("%{b:02X}"));
        }
    }
    prefix.truncate(HASHED_PREFIX);
    std::borrow::Cow::Owned(hashed(source.as_bytes(), &prefix))
}

fn fnv1a(bytes: &[u8], basis: u64) -> u64 {
    let mut h = basis;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A stable 64-bit id of the source, written into segment headers.
pub fn shard_id(source: &[u8]) -> u64 {
    fnv1a(source, 0xcbf2_9ce4_8422_2325)
}

pub fn encode_meta(source: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + source.len());
    out.extend_from_slice(META_MAGIC);
    out.extend_from_slice(&(source.len() as u32).to_le_bytes());
    out.extend_from_slice(source);
    out.extend_from_slice(&crc32fast::hash(&out).to_le_bytes());
    out
}

pub fn decode_meta(b: &[u8]) -> Result<Vec<u8>, String> {
    if b.len() < 16 || &b[..8] != META_MAGIC {
        return Err("bad shard.meta magic".to_string());
    }
    let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
    if b.len() != 16 + len {
        return Err(format!(
            "shard.meta length {} does not match name length {len}",
            b.len()
        ));
    }
    let crc = u32::from_le_bytes([b[12 + len], b[13 + len], b[14 + len], b[15 + len]]);
    if crc != crc32fast::hash(&b[..12 + len]) {
        return Err("shard.meta crc mismatch".to_string());
    }
    Ok(b[12..12 + len].to_vec())
}

/// Reads the original source name of a shard directory.
pub fn read_meta(shard_dir: &Path) -> io::Result<Result<Vec<u8>, String>> {
    let bytes = std::fs::read(shard_dir.join(META_FILE))?;
    Ok(decode_meta(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn check_safe(name: &str) {
        assert!(!name.is_empty() && name != "." && name != "..", "{name:?}");
        assert!(!name.contains(['/', '\\', '\0', '~']), "{name:?}");
        assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{name:?}");
        assert!(name.len() <= 200, "{} bytes", name.len());
        assert!(name.starts_with("s-") || name.starts_with("h-"));
    }

    #[test]
    fn shard_name_table() {
        let long_a = vec![b'a'; 4096];
        let mut long_b = long_a.clone();
        long_b[4095] = b'b';
        let table: Vec<Vec<u8>> = vec![
            b"../../etc/passwd".to_vec(),
            b".".to_vec(),
            b"..".to_vec(),
            b"".to_vec(),
            long_a,
            long_b,
            b"a/b".to_vec(),
            b"a\\b".to_vec(),
            b"a\0b".to_vec(),
            b"a\nb".to_vec(),
            b"a\x1bb".to_vec(),
            vec![0xff, 0xfe, b'x'],
            b"Host".to_vec(),
            b"host".to_vec(),
            b"HOST".to_vec(),
            b"s-host".to_vec(),
            b"%68ost".to_vec(),
            b"web-01.example.com".to_vec(),
            b"10.0.0.1:514".to_vec(),
            b"~1".to_vec(),
        ];
        let mut seen = HashSet::new();
        for source in &table {
            let name = encode(source);
            check_safe(&name);
            assert!(
                seen.insert(name.to_lowercase()),
                "collision for {source:?}: {name}"
            );
            let dir = Path::new("/data").join(&name);
            assert_eq!(dir.parent(), Some(Path::new("/data")), "{name} escapes");
            assert_eq!(decode_meta(&encode_meta(source)), Ok(source.clone()));
        }
        assert_eq!(encode(b"web-01.example.com"), "s-web-01.example.com");
        assert_eq!(encode(b""), "s-");
    }

    #[test]
    fn long_source_names_shorten_to_the_hashed_encoding() {
        assert_eq!(shard_name("web-01", 255), "web-01");
        let long = "Host-".repeat(100);
        let short = shard_name(&long, 255);
        assert!(short.len() <= MAX_SHORTENED, "{short}");
        assert_eq!(
            short,
            encode(long.as_bytes()),
            "the directory name's hashed form"
        );
        assert_ne!(shard_name(&format!("{long}x"), 255), short);
        assert_eq!(shard_name(&long, long.len()), long.as_str());
        check_safe(&encode(short.as_bytes()));
    }

    #[test]
    fn meta_rejects_damage() {
        let m = encode_meta(b"host");
        for i in 0..m.len() {
            let mut d = m.clone();
            d[i] ^= 1;
            assert!(decode_meta(&d).is_err());
        }
    }
}
