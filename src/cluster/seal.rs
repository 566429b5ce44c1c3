//! Sealed gossip datagrams: the keyring (`cluster.gossip-keys-file`), XChaCha20-Poly1305
//! sealing and opening, the replay window, and splitting a message that would not fit one UDP
//! datagram once sealed.
//!
//! Wire format of a sealed datagram (all integers little-endian):
//!
//! ```text
//! "SG" | version 1 | part (index << 4 | count) | message id u32 | sent at, Unix ms u64
//!      | nonce (24) | ciphertext | tag (16)
//! ```
//!
//! The 40-byte header and the cluster id are the AEAD's associated data, so neither can be
//! changed in flight and a datagram sealed for another cluster does not open. The first key
//! of the ring seals; every key is tried to open (rotation: add a key everywhere, move it
//! first, remove the old one). A datagram whose send time is more than [`REPLAY_WINDOW`] away
//! from this node's clock is dropped. chitchat fills a datagram up to 65,507 bytes and its
//! limit cannot be configured, so a message whose sealed form would pass that limit is cut
//! into parts, each sealed on its own and reassembled on the other side (at most
//! [`MAX_PENDING_MESSAGES`] partial messages are held, for [`PART_TIMEOUT`]). This module does
//! no I/O and keeps no key in anything it prints.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, OsRng, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

/// The largest UDP payload over IPv4 (and chitchat's own datagram limit).
pub const MAX_DATAGRAM: usize = 65_507;
/// Bytes a seal adds to a message: header (40) plus tag (16).
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// How far a datagram's send time may be from this node's clock.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(60);
/// Keys a keyring may hold.
pub const MAX_KEYS: usize = 16;
/// Partial (cut) messages held at once, over all peers.
pub const MAX_PENDING_MESSAGES: usize = 16;
/// How long the parts of a cut message wait for the rest.
pub const PART_TIMEOUT: Duration = Duration::from_secs(5);

const MAGIC: [u8; 2] = *b"SG";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 2 + 1 + 1 + 4 + 8 + NONCE_LEN;
/// Plaintext bytes one part carries at most.
const MAX_PART: usize = MAX_DATAGRAM - OVERHEAD;
/// A message is cut into at most this many parts (the part byte has 4 bits for the count).
const MAX_PARTS: usize = 15;

/// The gossip keys: the first seals, all open. Debug and Display never show key material.
#[derive(Clone)]
pub struct Keyring {
    ciphers: Vec<XChaCha20Poly1305>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} keys)", self.ciphers.len())
    }
}

impl Keyring {
    /// Parses a key file: one base64 key of 32 bytes per line (`head -c 32 /dev/urandom |
    /// base64`); blank lines and lines starting with `#` are skipped. Errors name the line,
    /// never its content.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let mut ciphers = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = base64::engine::general_purpose::STANDARD
                .decode(line)
                .ok()
                .filter(|key| key.len() == 32)
                .ok_or_else(|| {
                    format!(
                        "line {}: not a base64-encoded 32-byte key (make one with \
                         `head -c 32 /dev/urandom | base64`)",
                        index + 1
                    )
                })?;
            ciphers.push(XChaCha20Poly1305::new_from_slice(&key).expect("32-byte key"));
            if ciphers.len() > MAX_KEYS {
                return Err(format!("more than {MAX_KEYS} keys"));
            }
        }
        if ciphers.is_empty() {
            return Err("no key (one base64 key per line)".into());
        }
        Ok(Keyring { ciphers })
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.ciphers.len()
    }

    /// Always false: a keyring holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.ciphers.is_empty()
    }
}

/// Why a datagram was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a sealed datagram (plaintext gossip, or garbage) while plaintext is not accepted.
    Plaintext,
    /// Sealed, but no key of the ring opens it (wrong key, other cluster, or altered).
    Key,
    /// Opened, but sent outside the replay window.
    Stale,
    /// Opened, but the part header makes no sense, or a part of a message we gave up on.
    Malformed,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::Plaintext,
        Refusal::Key,
        Refusal::Stale,
        Refusal::Malformed,
    ];

    /// The `reason` label of the drop counter.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Plaintext => "plaintext",
            Refusal::Key => "key",
            Refusal::Stale => "stale",
            Refusal::Malformed => "malformed",
        }
    }
}

/// What opening one datagram gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// A whole message (plaintext of chitchat).
    Message(Vec<u8>),
    /// A part of a cut message; the rest is still to come.
    Partial,
}

/// True when `datagram` starts like a sealed datagram.
pub fn is_sealed(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && datagram[..2] == MAGIC
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Seals `message` for `cluster_id` into one datagram, or several when it would not fit one
/// sealed (each at most [`MAX_DATAGRAM`] bytes). `None` when even [`MAX_PARTS`] parts cannot
/// hold it (over 980,000 bytes, which chitchat never sends).
pub fn seal(keyring: &Keyring, cluster_id: &str, message: &[u8]) -> Option<Vec<Vec<u8>>> {
    seal_at(keyring, cluster_id, message, now_ms())
}

fn seal_at(
    keyring: &Keyring,
    cluster_id: &str,
    message: &[u8],
    sent_ms: u64,
) -> Option<Vec<Vec<u8>>> {
    let count = message.len().div_ceil(MAX_PART).max(1);
    if count > MAX_PARTS {
        return None;
    }
    let message_id: u32 = if count == 1 { 0 } else { rand::random() };
    let cipher = &keyring.ciphers[0];
    let mut datagrams = Vec::with_capacity(count);
    for index in 0..count {
        let start = index * MAX_PART;
        let part = &message[start..message.len().min(start + MAX_PART)];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut datagram = Vec::with_capacity(OVERHEAD + part.len());
        datagram.extend_from_slice(&MAGIC);
        datagram.push(VERSION);
        datagram.push(((index as u8) << 4) | count as u8);
        datagram.extend_from_slice(&message_id.to_le_bytes());
        datagram.extend_from_slice(&sent_ms.to_le_bytes());
        datagram.extend_from_slice(&nonce);
        let aad = [&datagram[..HEADER_LEN], cluster_id.as_bytes()].concat();
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: part,
                    aad: &aad,
                },
            )
            .ok()?;
        datagram.extend_from_slice(&sealed);
        debug_assert!(datagram.len() <= MAX_DATAGRAM);
        datagrams.push(datagram);
    }
    Some(datagrams)
}

struct Pending {
    parts: Vec<Option<Vec<u8>>>,
    first_seen: Instant,
}

/// Opens sealed datagrams and reassembles cut messages (bounded: see the module doc).
#[derive(Default)]
pub struct Opener {
    pending: HashMap<(SocketAddr, u32), Pending>,
}

impl Opener {
    /// Opens one datagram from `from`.
    pub fn open(
        &mut self,
        keyring: &Keyring,
        cluster_id: &str,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Opened, Refusal> {
        self.open_at(
            keyring,
            cluster_id,
            from,
            datagram,
            now_ms(),
            Instant::now(),
        )
    }

    fn open_at(
        &mut self,
        keyring: &Keyring,
        cluster_id: &str,
        from: SocketAddr,
        datagram: &[u8],
        now_ms: u64,
        now: Instant,
    ) -> Result<Opened, Refusal> {
        if !is_sealed(datagram) {
            return Err(Refusal::Plaintext);
        }
        if datagram.len() < OVERHEAD || datagram[2] != VERSION {
            return Err(Refusal::Key);
        }
        let (header, sealed) = datagram.split_at(HEADER_LEN);
        let nonce = XNonce::from_slice(&header[16..HEADER_LEN]);
        let aad = [header, cluster_id.as_bytes()].concat();
        let part = keyring
            .ciphers
            .iter()
            .find_map(|cipher| {
                cipher
                    .decrypt(
                        nonce,
                        Payload {
                            msg: sealed,
                            aad: &aad,
                        },
                    )
                    .ok()
            })
            .ok_or(Refusal::Key)?;
        let sent_ms = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if now_ms.abs_diff(sent_ms) > REPLAY_WINDOW.as_millis() as u64 {
            return Err(Refusal::Stale);
        }
        let (index, count) = (usize::from(header[3] >> 4), usize::from(header[3] & 0x0f));
        if count == 0 || index >= count {
            return Err(Refusal::Malformed);
        }
        if count == 1 {
            return Ok(Opened::Message(part));
        }
        let message_id = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        self.pending
            .retain(|_, pending| now.duration_since(pending.first_seen) < PART_TIMEOUT);
        let key = (from, message_id);
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING_MESSAGES {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, pending)| pending.first_seen)
                .map(|(key, _)| *key)
                .expect("not empty");
            self.pending.remove(&oldest);
        }
        let pending = self.pending.entry(key).or_insert_with(|| Pending {
            parts: vec![None; count],
            first_seen: now,
        });
        if pending.parts.len() != count {
            self.pending.remove(&key);
            return Err(Refusal::Malformed);
        }
        pending.parts[index] = Some(part);
        if pending.parts.iter().all(Option::is_some) {
            let pending = self.pending.remove(&key).expect("present");
            return Ok(Opened::Message(
                pending.parts.into_iter().flatten().flatten().collect(),
            ));
        }
        Ok(Opened::Partial)
    }

    /// Partial messages held (for tests).
    #[cfg(test)]
    fn num_pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "HxwdHhsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text).unwrap()
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:7946".parse().unwrap()
    }

    fn open_all(opener: &mut Opener, keyring: &Keyring, datagrams: &[Vec<u8>]) -> Vec<u8> {
        let mut whole = None;
        for datagram in datagrams {
            match opener.open(keyring, "c", peer(), datagram).unwrap() {
                Opened::Message(message) => whole = Some(message),
                Opened::Partial => assert!(whole.is_none()),
            }
        }
        whole.expect("a whole message")
    }

    #[test]
    fn keyring_file_parses_keys_comments_and_refuses_bad_lines_without_echoing_them() {
        let keyring = ring(&format!("# primary\n{KEY_A}\n\n  {KEY_B}  \n"));
        assert_eq!(keyring.len(), 2);
        assert_eq!(format!("{keyring:?}"), "Keyring(2 keys)");
        let error = Keyring::parse(&format!("{KEY_A}\nc2VjcmV0LXNob3J0\n")).unwrap_err();
        assert!(
            error.starts_with("line 2: not a base64-encoded 32-byte key"),
            "{error}"
        );
        assert!(!error.contains("c2VjcmV0"), "{error}");
        assert!(Keyring::parse("# nothing\n\n").is_err());
        let many = format!("{KEY_A}\n").repeat(MAX_KEYS + 1);
        assert!(Keyring::parse(&many).is_err());
    }

    #[test]
    fn sealed_message_opens_with_any_key_of_the_ring_and_not_without_it() {
        let message = b"chitchat bytes".to_vec();
        let datagrams = seal(&ring(KEY_A), "c", &message).unwrap();
        assert_eq!(datagrams.len(), 1);
        assert_eq!(datagrams[0].len(), message.len() + OVERHEAD);
        assert!(!datagrams[0]
            .windows(message.len())
            .any(|window| window == message));
        let mut opener = Opener::default();
        // The receiver has the sender's key second: rotation in progress.
        let both = ring(&format!("{KEY_B}\n{KEY_A}\n"));
        assert_eq!(open_all(&mut opener, &both, &datagrams), message);
        assert_eq!(
            opener.open(&ring(KEY_B), "c", peer(), &datagrams[0]),
            Err(Refusal::Key)
        );
        // Another cluster id is associated data: it does not open.
        assert_eq!(
            opener.open(&both, "other", peer(), &datagrams[0]),
            Err(Refusal::Key)
        );
        // One flipped bit anywhere (header included) and it does not open.
        for position in [3, 10, 20, HEADER_LEN + 2, datagrams[0].len() - 1] {
            let mut altered = datagrams[0].clone();
            altered[position] ^= 1;
            assert!(
                opener.open(&both, "c", peer(), &altered).is_err(),
                "{position}"
            );
        }
        // Plaintext chitchat (magic 45139 LE) and short garbage are refused, not panicked on.
        assert_eq!(
            opener.open(&both, "c", peer(), &[0x53, 0xb0, 0, 1]),
            Err(Refusal::Plaintext)
        );
        assert_eq!(opener.open(&both, "c", peer(), b"SG"), Err(Refusal::Key));
    }

    #[test]
    fn datagrams_outside_the_replay_window_are_stale() {
        let keyring = ring(KEY_A);
        let sent = 1_000_000_000_000;
        let datagram = seal_at(&keyring, "c", b"m", sent).unwrap().remove(0);
        let mut opener = Opener::default();
        let window = REPLAY_WINDOW.as_millis() as u64;
        let now = Instant::now();
        for (at, expected) in [
            (sent + window, true),
            (sent - window, true),
            (sent + window + 1, false),
            (sent - window - 1, false),
        ] {
            let result = opener.open_at(&keyring, "c", peer(), &datagram, at, now);
            assert_eq!(result.is_ok(), expected, "{at}");
            if !expected {
                assert_eq!(result, Err(Refusal::Stale));
            }
        }
    }

    #[test]
    fn a_full_chitchat_datagram_is_cut_so_no_sealed_datagram_passes_the_udp_limit() {
        let keyring = ring(KEY_A);
        let mut opener = Opener::default();
        for len in [MAX_PART, MAX_PART + 1, MAX_DATAGRAM, 3 * MAX_PART + 7] {
            let message: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let datagrams = seal(&keyring, "c", &message).unwrap();
            assert_eq!(datagrams.len(), len.div_ceil(MAX_PART), "{len}");
            assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM), "{len}");
            // Parts may arrive in any order.
            let mut reversed = datagrams.clone();
            reversed.reverse();
            assert_eq!(open_all(&mut opener, &keyring, &reversed), message);
        }
        assert_eq!(opener.num_pending(), 0);
        assert!(seal(&keyring, "c", &vec![0; MAX_PARTS * MAX_PART + 1]).is_none());
    }

    #[test]
    fn partial_messages_held_are_bounded_and_expire() {
        let keyring = ring(KEY_A);
        let mut opener = Opener::default();
        let now = Instant::now();
        let message = vec![1u8; MAX_PART + 1];
        for _ in 0..3 * MAX_PENDING_MESSAGES {
            let first = seal(&keyring, "c", &message).unwrap().remove(0);
            let opened = opener.open_at(&keyring, "c", peer(), &first, now_ms(), now);
            assert_eq!(opened, Ok(Opened::Partial));
            assert!(opener.num_pending() <= MAX_PENDING_MESSAGES);
        }
        let first = seal(&keyring, "c", &message).unwrap().remove(0);
        let later = now + PART_TIMEOUT;
        opener
            .open_at(&keyring, "c", peer(), &first, now_ms(), later)
            .unwrap();
        assert_eq!(opener.num_pending(), 1);
    }
}
