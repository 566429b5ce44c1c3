//! The node-to-node forwarding protocol: versioned, length-prefixed binary frames, as a
//! `tokio_util` codec. No I/O.
//!
//! Frame: `u32` big-endian payload length, then the payload: one message-type byte and the
//! message's fields. Integers are big-endian; strings are a `u16` length plus UTF-8, except a
//! record's source, a `u32` length (at most `MAX_SOURCE_BYTES`) plus UTF-8; raw bytes are a
//! `u32` length plus the bytes. Every length is checked against its cap and against what is
//! left of the frame before it is used, and the frame length against the codec's limit before
//! anything is buffered: a garbage length is an error, and the caller closes that connection.
//!
//! The limit is `HELLO_MAX_FRAME_BYTES` until the handshake is done (`ForwardCodec::establish`),
//! `max_frame_bytes` after it; either way the read buffer grows with the bytes that actually
//! arrive, never by an announced length, so a stranger's length prefix costs nothing.
//!
//! A record travels as: receive time, event time (flag + fields), origin, origin sequence,
//! first lost sequence (flag + `u64`, only on a gap marker), peer (flag + string), TLS peer
//! (flag + string), transport,
//! parse status, truncated flag, source, raw bytes. Every record the store accepts fits one
//! default frame (`DEFAULT_MAX_FRAME_BYTES`); one that does not fit a sender's frame or caps
//! (`unsendable`) is sent as a gap marker instead, so it never stalls its origin. Version 2
//! added the first lost sequence, version 3 the `u32` source length, version 4 the TLS peer; a peer speaking another
//! version is `Rejected` in the handshake (`Hello` and its answers keep one layout in every
//! version, so the refusal is understood), and nothing is forwarded between them.
//!
//! Conversation: the forwarder sends `Hello`; the master answers `HelloAck` with its high-water
//! mark for that origin (or `NotMaster`, or `Rejected`). The forwarder then pipelines `Batch`es;
//! each is answered `Ack` once durable, or `Refused` (e.g. a gap), in order.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::record::{EventTime, ParseStatus, Record, SharedStr, Transport};

/// Current protocol version, sent in `Hello`.
pub const PROTOCOL_VERSION: u16 = 4;
/// Magic at the start of every `Hello`, so a stray client is recognised at once.
pub const HELLO_MAGIC: [u8; 4] = *b"STRL";
/// Longest source name a record carries: a source is taken from a message (syslog HOSTNAME,
/// journald `_HOSTNAME`), which is at most 16 MiB (`framing::MAX_MESSAGE_BYTES_LIMIT`).
pub const MAX_SOURCE_BYTES: usize = 16 * 1024 * 1024;
/// Default cap on one frame's payload: room for a batch of the largest record the store
/// accepts (`store::MAX_STORED_RECORD_BYTES`, which does not count the source) with a source
/// of `MAX_SOURCE_BYTES` and the protocol's own fields, so no record the store holds is
/// unsendable between two nodes of one version.
pub const DEFAULT_MAX_FRAME_BYTES: usize =
    crate::store::MAX_STORED_RECORD_BYTES + MAX_SOURCE_BYTES + 64;
/// Cap on a frame before the handshake is done: a `Hello` (cluster id and node id) or its
/// answer. A connection announcing more is closed before anything is buffered.
pub const HELLO_MAX_FRAME_BYTES: usize = 4096;
/// Refusal and rejection reasons are cut to this many bytes when encoded (they are text for
/// a log; cutting one never fails a reply, and keeps every answer to a `Hello` small).
pub const MAX_REASON_BYTES: usize = 1024;
/// Bytes of the length prefix.
const LENGTH_PREFIX_BYTES: usize = 4;
/// At most this much room is reserved ahead of the bytes received (plus what was received):
/// the buffer of a large frame grows as its bytes arrive.
const READ_AHEAD_BYTES: usize = 64 * 1024;
/// Smallest possible encoded record (every field empty or absent), used to bound allocations.
const MIN_RECORD_BYTES: usize = 8 + 1 + 2 + 8 + 1 + 1 + 1 + 1 + 1 + 1 + 4 + 4;

const TYPE_HELLO: u8 = 1;
const TYPE_HELLO_ACK: u8 = 2;
const TYPE_NOT_MASTER: u8 = 3;
const TYPE_REJECTED: u8 = 4;
const TYPE_BATCH: u8 = 5;
const TYPE_ACK: u8 = 6;
const TYPE_REFUSED: u8 = 7;

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Forwarder → master: who is sending, for which cluster, speaking which version.
    Hello {
        version: u16,
        cluster_id: String,
        origin: String,
    },
    /// Master → forwarder: the highest sequence of `origin` stored (0: none); send from +1.
    HelloAck { high_water_mark: u64 },
    /// The receiver is not the master; `master` is who it believes is (node id, forward address).
    NotMaster {
        master: Option<(String, SocketAddr)>,
    },
    /// The handshake failed (version, cluster id, origin): do not retry this connection as is.
    Rejected { reason: String },
    /// Forwarder → master: records of the hello's origin, consecutive sequences. (Shared: the
    /// forwarder's spool keeps the batches it handed out, to resend them without a re-read.)
    Batch {
        batch_id: u64,
        records: Arc<Vec<Record>>,
    },
    /// Master → forwarder: batch `batch_id` is durable; the origin's high-water mark now.
    Ack { batch_id: u64, high_water_mark: u64 },
    /// Master → forwarder: batch `batch_id` was not stored (gap, store error, ...).
    Refused { batch_id: u64, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes before the handshake exceeds the limit of {max} bytes")]
    HelloTooLarge { len: usize, max: usize },
    #[error("empty frame")]
    EmptyFrame,
    #[error("unknown message type {kind}")]
    UnknownMessage { kind: u8 },
    #[error("frame truncated while reading {field}")]
    Truncated { field: &'static str },
    #[error("invalid {field}: {value}")]
    InvalidValue { field: &'static str, value: String },
    #[error("{num_bytes} trailing bytes after message type {kind}")]
    TrailingBytes { kind: u8, num_bytes: usize },
    #[error("{field} of {len} bytes is too long to encode")]
    FieldTooLong { field: &'static str, len: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes `Message` frames.
#[derive(Debug, Clone)]
pub struct ForwardCodec {
    max_frame_bytes: usize,
    /// The handshake is done: frames up to `max_frame_bytes` are read, not only hello-sized.
    established: bool,
}

impl ForwardCodec {
    /// A codec for a new connection: it reads frames of at most `HELLO_MAX_FRAME_BYTES` (and
    /// `max_frame_bytes`) until `establish`.
    pub fn new(max_frame_bytes: usize) -> ForwardCodec {
        ForwardCodec {
            max_frame_bytes,
            established: false,
        }
    }

    /// A codec past the handshake already (tests, tools reading a recorded conversation).
    pub fn established(max_frame_bytes: usize) -> ForwardCodec {
        ForwardCodec {
            max_frame_bytes,
            established: true,
        }
    }

    /// The handshake succeeded: from now on frames up to `max_frame_bytes` are read.
    pub fn establish(&mut self) {
        self.established = true;
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Longest frame payload `decode` accepts now.
    pub fn read_limit(&self) -> usize {
        if self.established {
            self.max_frame_bytes
        } else {
            self.max_frame_bytes.min(HELLO_MAX_FRAME_BYTES)
        }
    }
}

impl Default for ForwardCodec {
    fn default() -> Self {
        ForwardCodec::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl Decoder for ForwardCodec {
    type Item = Message;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        if src.len() < LENGTH_PREFIX_BYTES {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        let max = self.read_limit();
        if len > max {
            return Err(if self.established {
                ProtocolError::FrameTooLarge { len, max }
            } else {
                ProtocolError::HelloTooLarge { len, max }
            });
        }
        if len == 0 {
            return Err(ProtocolError::EmptyFrame);
        }
        if src.len() < LENGTH_PREFIX_BYTES + len {
            // Room for what is missing, but never more ahead than was received (or the
            // read-ahead): the announced length is not trusted with memory.
            let missing = LENGTH_PREFIX_BYTES + len - src.len();
            src.reserve(missing.min(src.len().max(READ_AHEAD_BYTES)));
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX_BYTES);
        let payload = src.split_to(len).freeze();
        decode_payload(payload).map(Some)
    }
}

impl Encoder<Message> for ForwardCodec {
    type Error = ProtocolError;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let start = dst.len();
        dst.put_u32(0);
        if let Err(error) = encode_payload(&message, dst) {
            dst.truncate(start);
            return Err(error);
        }
        let len = dst.len() - start - LENGTH_PREFIX_BYTES;
        // A hello must pass the receiver's pre-handshake limit.
        let (max, hello) = match message {
            Message::Hello { .. } => (self.max_frame_bytes.min(HELLO_MAX_FRAME_BYTES), true),
            _ => (self.max_frame_bytes, false),
        };
        if len > max {
            dst.truncate(start);
            return Err(if hello {
                ProtocolError::HelloTooLarge { len, max }
            } else {
                ProtocolError::FrameTooLarge { len, max }
            });
        }
        dst[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

/// Bytes `record` takes inside a `Batch` frame (for sizing batches under the frame limit).
pub fn encoded_record_len(record: &Record) -> usize {
    MIN_RECORD_BYTES
        + record.event_time.map_or(0, |_| 12)
        + record.lost_from.map_or(0, |_| 8)
        + record.origin.len()
        + record.peer.as_ref().map_or(0, |peer| 2 + peer.len())
        + record.tls_peer.as_ref().map_or(0, |peer| 2 + peer.len())
        + record.source.len()
        + record.raw.len()
}

/// Bytes of a `Batch` frame's header (length prefix, type, batch id, record count).
pub const BATCH_OVERHEAD_BYTES: usize = LENGTH_PREFIX_BYTES + 1 + 8 + 4;

/// Why `record` cannot travel in a `Batch` of at most `max_frame_bytes` (a field over its cap,
/// or the record alone over the frame), or `None` when it can. The forwarder sends a gap
/// marker in place of such a record rather than fail on it forever.
pub fn unsendable(record: &Record, max_frame_bytes: usize) -> Option<String> {
    let names = [
        ("origin", Some(&record.origin)),
        ("peer", record.peer.as_ref()),
        ("tls peer", record.tls_peer.as_ref()),
    ];
    for (field, value) in names {
        if let Some(value) = value.filter(|value| value.len() > u16::MAX as usize) {
            return Some(format!(
                "{field} of {} bytes exceeds the protocol's cap of {} bytes",
                value.len(),
                u16::MAX
            ));
        }
    }
    if record.source.len() > MAX_SOURCE_BYTES {
        return Some(format!(
            "source name of {} bytes exceeds the protocol's cap of {MAX_SOURCE_BYTES} bytes",
            record.source.len()
        ));
    }
    let frame_len = BATCH_OVERHEAD_BYTES - LENGTH_PREFIX_BYTES + encoded_record_len(record);
    if frame_len > max_frame_bytes {
        return Some(format!(
            "a batch of this record alone takes {frame_len} bytes, over the frame limit of \
             {max_frame_bytes} bytes"
        ));
    }
    None
}

fn encode_payload(message: &Message, dst: &mut BytesMut) -> Result<(), ProtocolError> {
    match message {
        Message::Hello {
            version,
            cluster_id,
            origin,
        } => {
            dst.put_u8(TYPE_HELLO);
            dst.put_slice(&HELLO_MAGIC);
            dst.put_u16(*version);
            put_str(dst, "cluster id", cluster_id)?;
            put_str(dst, "origin", origin)?;
        }
        Message::HelloAck { high_water_mark } => {
            dst.put_u8(TYPE_HELLO_ACK);
            dst.put_u64(*high_water_mark);
        }
        Message::NotMaster { master } => {
            dst.put_u8(TYPE_NOT_MASTER);
            match master {
                None => dst.put_u8(0),
                Some((node_id, addr)) => {
                    dst.put_u8(1);
                    put_str(dst, "master node id", node_id)?;
                    put_str(dst, "master address", &addr.to_string())?;
                }
            }
        }
        Message::Rejected { reason } => {
            dst.put_u8(TYPE_REJECTED);
            put_str(dst, "reason", cut(reason, MAX_REASON_BYTES))?;
        }
        Message::Batch { batch_id, records } => {
            dst.put_u8(TYPE_BATCH);
            dst.put_u64(*batch_id);
            let count = u32::try_from(records.len()).map_err(|_| ProtocolError::FieldTooLong {
                field: "batch",
                len: records.len(),
            })?;
            dst.put_u32(count);
            for record in records.iter() {
                put_record(dst, record)?;
            }
        }
        Message::Ack {
            batch_id,
            high_water_mark,
        } => {
            dst.put_u8(TYPE_ACK);
            dst.put_u64(*batch_id);
            dst.put_u64(*high_water_mark);
        }
        Message::Refused { batch_id, reason } => {
            dst.put_u8(TYPE_REFUSED);
            dst.put_u64(*batch_id);
            put_str(dst, "reason", cut(reason, MAX_REASON_BYTES))?;
        }
    }
    Ok(())
}

fn put_str(dst: &mut BytesMut, field: &'static str, value: &str) -> Result<(), ProtocolError> {
    let len = u16::try_from(value.len()).map_err(|_| ProtocolError::FieldTooLong {
        field,
        len: value.len(),
    })?;
    dst.put_u16(len);
    dst.put_slice(value.as_bytes());
    Ok(())
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn put_record(dst: &mut BytesMut, record: &Record) -> Result<(), ProtocolError> {
    dst.put_i64(record.received_at_micros);
    match record.event_time {
        None => dst.put_u8(0),
        Some(event_time) => {
            dst.put_u8(1);
            dst.put_i64(event_time.unix_micros);
            dst.put_i32(event_time.utc_offset_secs);
        }
    }
    put_str(dst, "origin", &record.origin)?;
    dst.put_u64(record.origin_seq);
    match record.lost_from {
        None => dst.put_u8(0),
        Some(lost_from) => {
            dst.put_u8(1);
            dst.put_u64(lost_from);
        }
    }
    match &record.peer {
        None => dst.put_u8(0),
        Some(peer) => {
            dst.put_u8(1);
            put_str(dst, "peer", peer)?;
        }
    }
    match &record.tls_peer {
        None => dst.put_u8(0),
        Some(tls_peer) => {
            dst.put_u8(1);
            put_str(dst, "tls peer", tls_peer)?;
        }
    }
    dst.put_u8(record.transport as u8);
    dst.put_u8(record.parse as u8);
    dst.put_u8(u8::from(record.truncated));
    if record.source.len() > MAX_SOURCE_BYTES {
        return Err(ProtocolError::FieldTooLong {
            field: "source",
            len: record.source.len(),
        });
    }
    dst.put_u32(record.source.len() as u32);
    dst.put_slice(record.source.as_bytes());
    let raw_len = u32::try_from(record.raw.len()).map_err(|_| ProtocolError::FieldTooLong {
        field: "raw",
        len: record.raw.len(),
    })?;
    dst.put_u32(raw_len);
    dst.put_slice(&record.raw);
    Ok(())
}

/// Reads fields off one frame's payload, checking every length against what is left.
struct Reader {
    buf: Bytes,
    /// The last origin, peer and source read (a batch repeats them), shared by the records.
    origins: SharedStr,
    peers: SharedStr,
    tls_peers: SharedStr,
    sources: SharedStr,
}

impl Reader {
    fn need(&self, num_bytes: usize, field: &'static str) -> Result<(), ProtocolError> {
        if self.buf.remaining() < num_bytes {
            Err(ProtocolError::Truncated { field })
        } else {
            Ok(())
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, ProtocolError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ProtocolError> {
        self.need(8, field)?;
        Ok(self.buf.get_u64())
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, ProtocolError> {
        self.need(8, field)?;
        Ok(self.buf.get_i64())
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        self.need(4, field)?;
        Ok(self.buf.get_i32())
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, ProtocolError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(ProtocolError::InvalidValue {
                field,
                value: other.to_string(),
            }),
        }
    }

    fn bytes(&mut self, len: usize, field: &'static str) -> Result<Bytes, ProtocolError> {
        self.need(len, field)?;
        Ok(self.buf.split_to(len))
    }

    fn string(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let len = self.u16(field)? as usize;
        let bytes = self.bytes(len, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|error| ProtocolError::InvalidValue {
            field,
            value: format!("not UTF-8 at byte {}", error.utf8_error().valid_up_to()),
        })
    }

    /// A string field with a `u16` length, shared with the previous record's when it is the
    /// same.
    fn shared_string(
        &mut self,
        field: &'static str,
        pick: fn(&mut Reader) -> &mut SharedStr,
    ) -> Result<Arc<str>, ProtocolError> {
        let len = self.u16(field)? as usize;
        self.shared_bytes_as_str(len, field, pick)
    }

    /// `len` bytes of UTF-8, shared with the previous record's when the text is the same.
    fn shared_bytes_as_str(
        &mut self,
        len: usize,
        field: &'static str,
        pick: fn(&mut Reader) -> &mut SharedStr,
    ) -> Result<Arc<str>, ProtocolError> {
        let bytes = self.bytes(len, field)?;
        pick(self)
            .get_utf8(&bytes)
            .map_err(|error| ProtocolError::InvalidValue {
                field,
                value: format!("not UTF-8 at byte {}", error.valid_up_to()),
            })
    }

    fn record(&mut self) -> Result<Record, ProtocolError> {
        let received_at_micros = self.i64("received_at")?;
        let event_time = if self.flag("event time flag")? {
            Some(EventTime {
                unix_micros: self.i64("event time")?,
                utc_offset_secs: self.i32("event time offset")?,
            })
        } else {
            None
        };
        let origin = self.shared_string("origin", |reader| &mut reader.origins)?;
        let origin_seq = self.u64("origin seq")?;
        let lost_from = if self.flag("lost flag")? {
            let first = self.u64("first lost seq")?;
            if first == 0 || first > origin_seq {
                return Err(ProtocolError::InvalidValue {
                    field: "gap marker range",
                    value: format!("{first}..={origin_seq}"),
                });
            }
            Some(first)
        } else {
            None
        };
        let peer = if self.flag("peer flag")? {
            Some(self.shared_string("peer", |reader| &mut reader.peers)?)
        } else {
            None
        };
        let tls_peer = if self.flag("tls peer flag")? {
            Some(self.shared_string("tls peer", |reader| &mut reader.tls_peers)?)
        } else {
            None
        };
        let transport_code = self.u8("transport")?;
        let transport = Transport::from_u8(transport_code).ok_or(ProtocolError::InvalidValue {
            field: "transport",
            value: transport_code.to_string(),
        })?;
        let parse_code = self.u8("parse status")?;
        let parse = ParseStatus::from_u8(parse_code).ok_or(ProtocolError::InvalidValue {
            field: "parse status",
            value: parse_code.to_string(),
        })?;
        let truncated = self.flag("truncated")?;
        let source_len = self.u32("source length")? as usize;
        if source_len > MAX_SOURCE_BYTES {
            return Err(ProtocolError::InvalidValue {
                field: "source length",
                value: format!("{source_len} bytes, over the cap of {MAX_SOURCE_BYTES}"),
            });
        }
        let source =
            self.shared_bytes_as_str(source_len, "source", |reader| &mut reader.sources)?;
        let raw_len = self.u32("raw length")? as usize;
        let raw = self.bytes(raw_len, "raw")?;
        Ok(Record {
            received_at_micros,
            event_time,
            origin,
            origin_seq,
            peer,
            transport,
            parse,
            truncated,
            source,
            raw,
            lost_from,
            tls_peer,
            file: None,
        })
    }
}

fn decode_payload(payload: Bytes) -> Result<Message, ProtocolError> {
    let mut reader = Reader {
        buf: payload,
        origins: SharedStr::default(),
        peers: SharedStr::default(),
        tls_peers: SharedStr::default(),
        sources: SharedStr::default(),
    };
    let kind = reader.u8("message type")?;
    let message = match kind {
        TYPE_HELLO => {
            let magic = reader.bytes(HELLO_MAGIC.len(), "hello magic")?;
            if magic[..] != HELLO_MAGIC {
                return Err(ProtocolError::InvalidValue {
                    field: "hello magic",
                    value: format!("{:?}", &magic[..]),
                });
            }
            Message::Hello {
                version: reader.u16("version")?,
                cluster_id: reader.string("cluster id")?,
                origin: reader.string("origin")?,
            }
        }
        TYPE_HELLO_ACK => Message::HelloAck {
            high_water_mark: reader.u64("high-water mark")?,
        },
        TYPE_NOT_MASTER => {
            let master = if reader.flag("master flag")? {
                let node_id = reader.string("master node id")?;
                let addr_text = reader.string("master address")?;
                let addr = addr_text.parse().map_err(|_| ProtocolError::InvalidValue {
                    field: "master address",
                    value: addr_text.clone(),
                })?;
                Some((node_id, addr))
            } else {
                None
            };
            Message::NotMaster { master }
        }
        TYPE_REJECTED => Message::Rejected {
            reason: reader.string("reason")?,
        },
        TYPE_BATCH => {
            let batch_id = reader.u64("batch id")?;
            let count = reader.u32("record count")? as usize;
            if count > reader.buf.remaining() / MIN_RECORD_BYTES {
                return Err(ProtocolError::InvalidValue {
                    field: "record count",
                    value: format!("{count} records in {} bytes", reader.buf.remaining()),
                });
            }
            let mut records = Vec::with_capacity(count);
            for _ in 0..count {
                records.push(reader.record()?);
            }
            Message::Batch {
                batch_id,
                records: Arc::new(records),
            }
        }
        TYPE_ACK => Message::Ack {
            batch_id: reader.u64("batch id")?,
            high_water_mark: reader.u64("high-water mark")?,
        },
        TYPE_REFUSED => Message::Refused {
            batch_id: reader.u64("batch id")?,
            reason: reader.string("reason")?,
        },
        other => return Err(ProtocolError::UnknownMessage { kind: other }),
    };
    if reader.buf.has_remaining() {
        return Err(ProtocolError::TrailingBytes {
            kind,
            num_bytes: reader.buf.remaining(),
        });
    }
    Ok(message)
}

#[cfg(test)]
mod tests;
