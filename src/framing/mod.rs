//! RFC 6587 framing of a syslog TCP byte stream into messages, as a `tokio_util` decoder.
//!
//! Owns the rules that turn bytes into frames: the framing is detected per frame (a frame that
//! starts with digits followed by a space is octet-counted, anything else is non-transparent and
//! ends at LF, CRLF or NUL), oversize frames are cut to the configured maximum and flagged while
//! the stream stays in sync, an impossible length prefix is a [`FramingError::InvalidLength`],
//! and a partial message at end of stream is still delivered. It does no I/O and knows nothing
//! about sockets, parsing or records; the TCP listener drives it through `FramedRead`.
//!
//! The outcome depends only on the bytes of the stream, never on how they were split into
//! reads, and the decoder buffers at most `max_message_bytes` plus a small constant.

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod tests;

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Default maximum message size (64 KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest maximum message size that can be configured (16 MiB).
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 16 * 1024 * 1024;
/// Largest MSG-LEN accepted in an octet-counted frame header. A longer frame is legal (it is
/// cut to the configured maximum); a count beyond this comes from a broken or hostile sender,
/// and skipping that many bytes would swallow the rest of the connection.
pub const MAX_OCTET_COUNT: usize = MAX_MESSAGE_BYTES_LIMIT;
/// A run of this many leading digits is text, not a length prefix: the frame is then
/// non-transparent. This bounds how much the decoder buffers while deciding.
const MAX_DIGIT_LOOKAHEAD: usize = 64;
/// Digits needed for [`MAX_OCTET_COUNT`]; a longer prefix is invalid whatever its value.
const MAX_OCTET_COUNT_DIGITS: usize = 8;
/// How much of an invalid prefix the error quotes.
const MAX_QUOTED_PREFIX: usize = 32;

/// One message cut out of the stream, without its framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub payload: Bytes,
    /// The message was longer than the maximum (or an octet-counted frame ended early at EOF)
    /// and `payload` holds only its beginning.
    pub truncated: bool,
}

/// Why a stream cannot be framed any further. The connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    #[error("invalid octet-count length prefix {prefix:?}")]
    InvalidLength { prefix: String },
    #[error("reading the stream: {0}")]
    Io(#[from] io::Error),
}

/// Where the decoder is inside the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a frame.
    FrameStart,
    /// Inside a non-transparent frame; `scanned` bytes are known to hold no terminator.
    Line { scanned: usize },
    /// Inside an octet-counted frame of `len` payload bytes after a header of `header` bytes.
    Counted { header: usize, len: usize },
    /// Skipping the `remaining` bytes of an oversize octet-counted frame already emitted.
    SkipCounted { remaining: usize },
    /// Discarding the rest of an oversize non-transparent frame up to its terminator.
    DiscardLine,
}

/// Which RFC 6587 framings a connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FramingMode {
    /// Detected per frame: `digits SP` starts an octet-counted frame, anything else a
    /// non-transparent one.
    #[default]
    Auto,
    /// Every frame ends at LF, CR LF or NUL, even one that starts with `digits SP` (for
    /// senders of unprefixed lines such as `12 workers started`).
    NonTransparent,
}

impl FramingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FramingMode::Auto => "auto",
            FramingMode::NonTransparent => "non-transparent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown framing {0:?} (expected \"auto\" or \"non-transparent\")")]
pub struct FramingModeError(pub String);

impl std::str::FromStr for FramingMode {
    type Err = FramingModeError;

    fn from_str(text: &str) -> Result<FramingMode, FramingModeError> {
        match text {
            "auto" => Ok(FramingMode::Auto),
            "non-transparent" => Ok(FramingMode::NonTransparent),
            other => Err(FramingModeError(other.to_owned())),
        }
    }
}

/// RFC 6587 decoder detecting octet counting or non-transparent framing per frame.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_message_bytes: usize,
    mode: FramingMode,
    state: State,
}

impl FrameDecoder {
    /// A decoder cutting messages at `max_message_bytes` (clamped to 1..=16 MiB).
    pub fn new(max_message_bytes: usize) -> Self {
        FrameDecoder::with_mode(max_message_bytes, FramingMode::Auto)
    }

    /// A decoder restricted to the framings of `mode`.
    pub fn with_mode(max_message_bytes: usize, mode: FramingMode) -> Self {
        FrameDecoder {
            max_message_bytes: max_message_bytes.clamp(1, MAX_MESSAGE_BYTES_LIMIT),
            mode,
            state: State::FrameStart,
        }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// The most bytes this decoder leaves buffered between calls (what it needs to decide).
    pub fn max_buffered_bytes(&self) -> usize {
        self.max_message_bytes + MAX_DIGIT_LOOKAHEAD + 2
    }

    /// Decides how the frame at the start of `src` is framed, or that more bytes are needed.
    fn detect(&mut self, src: &BytesMut) -> Result<Option<State>, FramingError> {
        if self.mode == FramingMode::NonTransparent {
            return Ok(Some(State::Line { scanned: 0 }));
        }
        let lookahead = &src[..src.len().min(MAX_DIGIT_LOOKAHEAD)];
        let num_digits = lookahead.iter().take_while(|b| b.is_ascii_digit()).count();
        if num_digits == 0 || num_digits == MAX_DIGIT_LOOKAHEAD {
            return Ok(Some(State::Line { scanned: 0 }));
        }
        match src.get(num_digits) {
            None => Ok(None),
            Some(b' ') => {
                let digits = &src[..num_digits];
                let len = parse_octet_count(digits).ok_or_else(|| invalid_length(digits))?;
                Ok(Some(State::Counted {
                    header: num_digits + 1,
                    len,
                }))
            }
            Some(_) => Ok(Some(State::Line { scanned: 0 })),
        }
    }

    fn decode_line(&mut self, src: &mut BytesMut, scanned: usize) -> Option<Frame> {
        let max = self.max_message_bytes;
        // A frame of `max` bytes may be followed by CR LF, so look one byte past it.
        let window = &src[..src.len().min(max + 1)];
        if let Some(offset) = memchr::memchr2(b'\n', b'\0', &window[scanned..]) {
            let end = scanned + offset;
            let is_crlf = src[end] == b'\n' && end > 0 && src[end - 1] == b'\r';
            let mut line = src.split_to(end + 1);
            line.truncate(if is_crlf { end - 1 } else { end });
            self.state = State::FrameStart;
            return Some(Frame {
                payload: line.freeze(),
                truncated: false,
            });
        }
        if src.len() <= max {
            self.state = State::Line { scanned: src.len() };
            return None;
        }
        // `max + 1` bytes without a terminator: the frame is oversize unless it is exactly
        // `max` bytes followed by CR LF.
        if src[max] == b'\r' {
            match src.get(max + 1) {
                None => {
                    self.state = State::Line { scanned: max };
                    return None;
                }
                Some(b'\n') => {
                    let line = src.split_to(max);
                    src.advance(2);
                    self.state = State::FrameStart;
                    return Some(Frame {
                        payload: line.freeze(),
                        truncated: false,
                    });
                }
                Some(_) => {}
            }
        }
        let line = src.split_to(max);
        self.state = State::DiscardLine;
        Some(Frame {
            payload: line.freeze(),
            truncated: true,
        })
    }

    fn decode_counted(&mut self, src: &mut BytesMut, header: usize, len: usize) -> Option<Frame> {
        let max = self.max_message_bytes;
        let wanted = header + len.min(max);
        if src.len() < wanted {
            src.reserve(wanted - src.len());
            return None;
        }
        src.advance(header);
        if len > max {
            let payload = src.split_to(max).freeze();
            self.state = State::SkipCounted {
                remaining: len - max,
            };
            return Some(Frame {
                payload,
                truncated: true,
            });
        }
        let mut payload = src.split_to(len);
        trim_counted_trailer(&mut payload);
        self.state = State::FrameStart;
        Some(Frame {
            payload: payload.freeze(),
            truncated: false,
        })
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        loop {
            match self.state {
                State::FrameStart => {
                    // Empty frames (a terminator right after another one) are skipped.
                    let num_empty = src
                        .iter()
                        .position(|&b| b != b'\n' && b != b'\0' && b != b'\r')
                        .unwrap_or(src.len());
                    let num_skipped = skippable_prefix(&src[..num_empty]);
                    src.advance(num_skipped);
                    if src.is_empty() {
                        return Ok(None);
                    }
                    match self.detect(src)? {
                        Some(state) => self.state = state,
                        None => return Ok(None),
                    }
                }
                State::Line { scanned } => match self.decode_line(src, scanned) {
                    Some(frame) if frame.payload.is_empty() => continue,
                    Some(frame) => return Ok(Some(frame)),
                    None => return Ok(None),
                },
                State::Counted { header, len } => match self.decode_counted(src, header, len) {
                    Some(frame) if frame.payload.is_empty() => continue,
                    Some(frame) => return Ok(Some(frame)),
                    None => return Ok(None),
                },
                State::SkipCounted { remaining } => {
                    let num_skipped = remaining.min(src.len());
                    src.advance(num_skipped);
                    if num_skipped < remaining {
                        self.state = State::SkipCounted {
                            remaining: remaining - num_skipped,
                        };
                        return Ok(None);
                    }
                    self.state = State::FrameStart;
                }
                State::DiscardLine => match memchr::memchr2(b'\n', b'\0', src) {
                    Some(end) => {
                        src.advance(end + 1);
                        self.state = State::FrameStart;
                    }
                    None => {
                        src.clear();
                        return Ok(None);
                    }
                },
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        // What is left is one unfinished frame (or bytes being skipped).
        let state = std::mem::replace(&mut self.state, State::FrameStart);
        let frame = match state {
            State::FrameStart | State::Line { .. } => {
                // An unterminated last line, or a digit run that never reached a space.
                let len = src.len().min(self.max_message_bytes);
                let truncated = src.len() > len;
                Frame {
                    payload: src.split_to(len).freeze(),
                    truncated,
                }
            }
            State::Counted { header, .. } => {
                // The sender promised more bytes than it sent: deliver what came, flagged.
                src.advance(header.min(src.len()));
                Frame {
                    payload: src.split().freeze(),
                    truncated: true,
                }
            }
            State::SkipCounted { .. } | State::DiscardLine => Frame {
                payload: Bytes::new(),
                truncated: false,
            },
        };
        src.clear();
        Ok((!frame.payload.is_empty()).then_some(frame))
    }
}

/// How many bytes at the start of `bytes` (all LF, NUL or CR) are empty frames. A CR is
/// only skipped as part of CR LF: a lone CR is content.
fn skippable_prefix(bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' | b'\0' => i += 1,
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            _ => break,
        }
    }
    i
}

/// MSG-LEN per RFC 6587: `NONZERO-DIGIT *DIGIT`, at most [`MAX_OCTET_COUNT`].
fn parse_octet_count(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits[0] == b'0' || digits.len() > MAX_OCTET_COUNT_DIGITS {
        return None;
    }
    let len = digits
        .iter()
        .fold(0usize, |acc, d| acc * 10 + usize::from(d - b'0'));
    (len <= MAX_OCTET_COUNT).then_some(len)
}

fn invalid_length(digits: &[u8]) -> FramingError {
    let quoted = &digits[..digits.len().min(MAX_QUOTED_PREFIX)];
    FramingError::InvalidLength {
        prefix: String::from_utf8_lossy(quoted).into_owned(),
    }
}

/// Drops one trailing LF (or CR LF) from an octet-counted payload: senders such as rsyslog's
/// `RSYSLOG_SyslogProtocol23Format` and `tcpflood` end each message with an LF and count it.
fn trim_counted_trailer(payload: &mut BytesMut) {
    if payload.last() == Some(&b'\n') {
        payload.truncate(payload.len() - 1);
        if payload.last() == Some(&b'\r') {
            payload.truncate(payload.len() - 1);
        }
    }
}

/// Trims the trailer of a datagram (UDP, RFC 5426): every trailing LF, CR LF and NUL.
pub fn trim_datagram_trailer(mut payload: &[u8]) -> &[u8] {
    loop {
        match payload {
            [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] | [rest @ .., b'\0'] => payload = rest,
            _ => return payload,
        }
    }
}
