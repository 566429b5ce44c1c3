//! Table tests of the forwarding protocol codec.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::*;

fn record(seq: u64) -> Record {
    Record {
        received_at_micros: 1_700_000_000_000_000 + seq as i64,
        event_time: Some(EventTime {
            unix_micros: -5,
            utc_offset_secs: 3600,
        }),
        origin: "node-a".into(),
        origin_seq: seq,
        peer: Some("10.0.0.1:514".into()),
        transport: Transport::Tcp,
        parse: ParseStatus::Rfc5424,
        truncated: seq % 2 == 0,
        source: "host-1".into(),
        raw: Bytes::from(format!("<13>1 - host-1 app - - - message {seq}")),
        lost_from: None,
        tls_peer: (seq % 2 == 1).then(|| "client1.example.test".into()),
        file: None,
    }
}

fn bare_record() -> Record {
    Record {
        received_at_micros: 0,
        event_time: None,
        origin: String::new().into(),
        origin_seq: 0,
        peer: None,
        transport: Transport::Journal,
        parse: ParseStatus::Journal,
        truncated: false,
        source: String::new().into(),
        raw: Bytes::new(),
        lost_from: None,
        tls_peer: None,
        file: None,
    }
}

fn all_messages() -> Vec<Message> {
    vec![
        Message::Hello {
            version: PROTOCOL_VERSION,
            cluster_id: "prod".into(),
            origin: "node-a".into(),
        },
        Message::HelloAck {
            high_water_mark: u64::MAX,
        },
        Message::NotMaster { master: None },
        Message::NotMaster {
            master: Some(("node-b".into(), "[::1]:5516".parse().unwrap())),
        },
        Message::Rejected {
            reason: "cluster id mismatch: \"x\"".into(),
        },
        Message::Batch {
            batch_id: 7,
            records: Arc::new(vec![record(1), record(2), bare_record()]),
        },
        Message::Batch {
            batch_id: 10,
            records: Arc::new(vec![Record::gap_marker("node-a", 3, 900, 17), record(901)]),
        },
        Message::Batch {
            batch_id: 8,
            records: Arc::new(Vec::new()),
        },
        Message::Ack {
            batch_id: 7,
            high_water_mark: 2,
        },
        Message::Refused {
            batch_id: 9,
            reason: "gap: expected 3, got 5".into(),
        },
    ]
}

fn encode(message: Message) -> BytesMut {
    let mut buf = BytesMut::new();
    ForwardCodec::default().encode(message, &mut buf).unwrap();
    buf
}

/// Decodes one whole frame with a codec past the handshake.
fn decode_established(mut bytes: BytesMut) -> Message {
    let message = ForwardCodec::established(DEFAULT_MAX_FRAME_BYTES)
        .decode(&mut bytes)
        .unwrap()
        .expect("a whole frame");
    assert!(bytes.is_empty());
    message
}

fn frame(payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(payload.len() as u32);
    buf.put_slice(payload);
    buf
}

/// Decodes `input` in one go; `expected`: `Ok(messages)` or `Err(substring of the error)`.
fn check(input: &[u8], expected: Result<Vec<Message>, &str>) {
    let mut codec = ForwardCodec::established(1024);
    let mut buf = BytesMut::from(input);
    let mut decoded = Vec::new();
    let result = loop {
        match codec.decode(&mut buf) {
            Ok(Some(message)) => decoded.push(message),
            Ok(None) => break Ok(decoded),
            Err(error) => break Err(error.to_string()),
        }
    };
    match (result, expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "input {input:?}"),
        (Err(got), Err(want)) => assert!(got.contains(want), "error {got:?} lacks {want:?}"),
        (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn every_message_round_trips() {
    for message in all_messages() {
        let bytes = encode(message.clone());
        check(&bytes, Ok(vec![message]));
    }
}

#[test]
fn any_chunking_yields_the_same_messages() {
    let mut stream = BytesMut::new();
    for message in all_messages() {
        stream.extend_from_slice(&encode(message));
    }
    for chunk_len in [1, 2, 3, 7, 64, stream.len()] {
        let mut codec = ForwardCodec::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for chunk in stream.chunks(chunk_len) {
            buf.extend_from_slice(chunk);
            while let Some(message) = codec.decode(&mut buf).unwrap() {
                decoded.push(message);
            }
        }
        assert_eq!(decoded, all_messages(), "chunk length {chunk_len}");
        assert!(buf.is_empty());
    }
}

#[test]
fn bad_input_table() {
    // Incomplete input waits for more.
    check(&[], Ok(vec![]));
    check(&[0, 0, 0], Ok(vec![]));
    check(&[0, 0, 0, 9, TYPE_ACK], Ok(vec![]));
    // A garbage length is refused before anything is buffered.
    check(
        &[0xff, 0xff, 0xff, 0xff],
        Err("frame of 4294967295 bytes exceeds the limit of 1024"),
    );
    check(&[0, 0, 4, 1], Err("frame of 1025 bytes"));
    check(&[0, 0, 0, 0], Err("empty frame"));
    check(&frame(&[99]), Err("unknown message type 99"));
    check(
        &frame(&[TYPE_ACK, 0, 0]),
        Err("truncated while reading batch id"),
    );
    let mut ack = vec![TYPE_ACK];
    ack.extend_from_slice(&[0; 16]);
    ack.push(0);
    check(&frame(&ack), Err("1 trailing bytes after message type 6"));
    check(
        &frame(b"\x01XXXX\x00\x01\x00\x00\x00\x00"),
        Err("invalid hello magic"),
    );
    check(
        &frame(b"\x01STRL\x00\x01\x00\x02\xff\xfe\x00\x00"),
        Err("invalid cluster id: not UTF-8"),
    );
    check(
        &frame(b"\x01STRL\x00\x01\x00\x09ab"),
        Err("truncated while reading cluster id"),
    );
    check(&frame(&[TYPE_NOT_MASTER, 2]), Err("invalid master flag: 2"));
    check(
        &frame(b"\x03\x01\x00\x01b\x00\x07nowhere"),
        Err("invalid master address: nowhere"),
    );
    // A record count larger than the frame could hold is refused before allocating.
    check(
        &frame(&[TYPE_BATCH, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]),
        Err("invalid record count: 4294967295 records in 0 bytes"),
    );
}

#[test]
fn bad_record_fields_are_refused() {
    let good = encode(Message::Batch {
        batch_id: 1,
        records: Arc::new(vec![bare_record()]),
    });
    let payload = &good[4..];
    // Offsets inside the payload: type 1, batch id 8, count 4, then the record.
    let record_start = 1 + 8 + 4;
    let lost_flag_at = record_start + 8 + 1 + 2 + 8;
    // lost flag, peer flag, TLS peer flag (version 4), then the transport.
    let tls_peer_flag_at = lost_flag_at + 1 + 1;
    let transport_at = tls_peer_flag_at + 1;
    let mut bad_tls_flag = payload.to_vec();
    bad_tls_flag[tls_peer_flag_at] = 2;
    check(&frame(&bad_tls_flag), Err("invalid tls peer flag: 2"));
    let mut bad_lost_flag = payload.to_vec();
    bad_lost_flag[lost_flag_at] = 2;
    check(&frame(&bad_lost_flag), Err("invalid lost flag: 2"));
    let mut bad_transport = payload.to_vec();
    bad_transport[transport_at] = 0;
    check(&frame(&bad_transport), Err("invalid transport: 0"));
    let mut bad_parse = payload.to_vec();
    bad_parse[transport_at + 1] = 9;
    check(&frame(&bad_parse), Err("invalid parse status: 9"));
    let mut bad_truncated = payload.to_vec();
    bad_truncated[transport_at + 2] = 2;
    check(&frame(&bad_truncated), Err("invalid truncated: 2"));
    let mut long_raw = payload.to_vec();
    let raw_len_at = long_raw.len() - 4;
    long_raw[raw_len_at..].copy_from_slice(&100u32.to_be_bytes());
    check(&frame(&long_raw), Err("truncated while reading raw"));
}

#[test]
fn a_gap_marker_with_an_impossible_range_is_refused() {
    for (from, to) in [(0, 5), (6, 5)] {
        let mut marker = Record::gap_marker("node-a", 1, to, 0);
        marker.lost_from = Some(from);
        let bytes = encode(Message::Batch {
            batch_id: 1,
            records: Arc::new(vec![marker]),
        });
        check(
            &bytes,
            Err(&format!("invalid gap marker range: {from}..={to}")),
        );
    }
}

#[test]
fn encoder_refuses_oversize_frames_and_fields_and_leaves_the_buffer_clean() {
    let mut codec = ForwardCodec::new(100);
    let mut buf = BytesMut::from(&b"keep"[..]);
    let batch = Message::Batch {
        batch_id: 1,
        records: Arc::new(vec![record(1), record(2)]),
    };
    let error = codec.encode(batch, &mut buf).unwrap_err();
    assert!(
        error.to_string().contains("exceeds the limit of 100"),
        "{error}"
    );
    let long_origin = Message::Hello {
        version: PROTOCOL_VERSION,
        cluster_id: "c".into(),
        origin: "o".repeat(70_000),
    };
    let error = ForwardCodec::default()
        .encode(long_origin, &mut buf)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "origin of 70000 bytes is too long to encode"
    );
    // A hello must fit the receiver's pre-handshake limit.
    let long_hello = Message::Hello {
        version: PROTOCOL_VERSION,
        cluster_id: "c".repeat(5000),
        origin: "node-a".into(),
    };
    let error = ForwardCodec::default()
        .encode(long_hello, &mut buf)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "frame of 5017 bytes before the handshake exceeds the limit of 4096 bytes"
    );
    assert_eq!(&buf[..], b"keep");
}

/// A refusal or rejection reason (error text, which may quote a long source name) is cut at
/// a character boundary instead of failing the reply.
#[test]
fn long_reasons_are_cut_not_refused() {
    let reason = format!(
        "{}é{}",
        "x".repeat(MAX_REASON_BYTES - 1),
        "y".repeat(70_000)
    );
    let cut_reason = "x".repeat(MAX_REASON_BYTES - 1);
    for (long, short) in [
        (
            Message::Rejected {
                reason: reason.clone(),
            },
            Message::Rejected {
                reason: cut_reason.clone(),
            },
        ),
        (
            Message::Refused {
                batch_id: 3,
                reason: reason.clone(),
            },
            Message::Refused {
                batch_id: 3,
                reason: cut_reason.clone(),
            },
        ),
    ] {
        // Read by a codec still in its handshake: an answer to a hello fits.
        let mut bytes = encode(long);
        assert!(bytes.len() < HELLO_MAX_FRAME_BYTES);
        assert_eq!(
            ForwardCodec::default().decode(&mut bytes).unwrap(),
            Some(short)
        );
    }
}

/// Case 3 of issue #12: a source name longer than 65,535 bytes travels whole (version 3
/// carries it with a `u32` length).
#[test]
fn a_source_name_over_64_kib_round_trips() {
    let mut long = record(5);
    long.source = "h".repeat(70_000).into();
    let message = Message::Batch {
        batch_id: 1,
        records: Arc::new(vec![record(4), long, record(6)]),
    };
    let mut bytes = BytesMut::new();
    ForwardCodec::default()
        .encode(message.clone(), &mut bytes)
        .unwrap();
    assert_eq!(decode_established(bytes), message);
}

/// A source length over `MAX_SOURCE_BYTES` is refused before it is used.
#[test]
fn a_source_length_over_the_cap_is_refused() {
    let good = encode(Message::Batch {
        batch_id: 1,
        records: Arc::new(vec![bare_record()]),
    });
    let mut payload = good[4..].to_vec();
    // The bare record ends with the source length (u32, 0) and the raw length (u32, 0).
    let source_len_at = payload.len() - 8;
    payload[source_len_at..source_len_at + 4]
        .copy_from_slice(&(MAX_SOURCE_BYTES as u32 + 1).to_be_bytes());
    check(
        &frame(&payload),
        Err("invalid source length: 16777217 bytes, over the cap of 16777216"),
    );
}

/// `unsendable` names each field over its cap and a record over the frame, and passes the
/// rest; the encoder agrees with it.
#[test]
fn unsendable_names_what_does_not_fit() {
    assert_eq!(unsendable(&record(1), 1024), None);
    let mut big_source = bare_record();
    big_source.source = "s".repeat(MAX_SOURCE_BYTES + 1).into();
    let reason = unsendable(&big_source, DEFAULT_MAX_FRAME_BYTES).unwrap();
    assert!(
        reason.contains("source name of 16777217 bytes exceeds the protocol's cap"),
        "{reason}"
    );
    let message = Message::Batch {
        batch_id: 1,
        records: Arc::new(vec![big_source]),
    };
    let mut buf = BytesMut::new();
    let error = ForwardCodec::default()
        .encode(message, &mut buf)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "source of 16777217 bytes is too long to encode"
    );
    let mut big_peer = record(1);
    big_peer.peer = Some("p".repeat(70_000).into());
    assert!(unsendable(&big_peer, DEFAULT_MAX_FRAME_BYTES)
        .unwrap()
        .contains("peer of 70000 bytes"));
    let mut big_raw = record(1);
    big_raw.raw = Bytes::from(vec![b'x'; 2000]);
    let reason = unsendable(&big_raw, 1024).unwrap();
    assert!(
        reason.contains("over the frame limit of 1024 bytes"),
        "{reason}"
    );
    // Exactly at the limit is sendable, one byte over is not.
    let alone = BATCH_OVERHEAD_BYTES - 4 + encoded_record_len(&big_raw);
    assert_eq!(unsendable(&big_raw, alone), None);
    assert!(unsendable(&big_raw, alone - 1).is_some());
    let mut codec = ForwardCodec::new(alone);
    let batch = Message::Batch {
        batch_id: 1,
        records: Arc::new(vec![big_raw]),
    };
    codec.encode(batch, &mut buf).unwrap();
    assert_eq!(buf.len(), 4 + alone);
}

/// Case 5 of issue #12: before the handshake a length prefix over the hello limit is refused
/// at once, and nothing is reserved for it.
#[test]
fn a_large_length_prefix_before_the_handshake_is_refused_without_reserving() {
    let mut codec = ForwardCodec::new(DEFAULT_MAX_FRAME_BYTES);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u32(16 * 1024 * 1024);
    let error = codec.decode(&mut buf).unwrap_err();
    assert_eq!(
        error.to_string(),
        "frame of 16777216 bytes before the handshake exceeds the limit of 4096 bytes"
    );
    assert!(buf.capacity() <= 64, "capacity {}", buf.capacity());
    // A hello-sized announcement waits for its bytes.
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u32(HELLO_MAX_FRAME_BYTES as u32);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert!(
        buf.capacity() <= 2 * READ_AHEAD_BYTES,
        "capacity {}",
        buf.capacity()
    );
}

/// After the handshake a large frame is read, but the buffer grows with the bytes that
/// arrive, not with the announced length.
#[test]
fn a_large_frame_after_the_handshake_reserves_only_what_arrived() {
    let mut codec = ForwardCodec::new(DEFAULT_MAX_FRAME_BYTES);
    codec.establish();
    let announced = 16 * 1024 * 1024;
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u32(announced as u32);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    eprintln!(
        "announced {announced} bytes, received 4: buffer capacity {}",
        buf.capacity()
    );
    assert!(
        buf.capacity() <= 2 * READ_AHEAD_BYTES,
        "capacity {} for 4 bytes received",
        buf.capacity()
    );
    // As bytes arrive (as a socket read fills the spare room), the room stays within a small
    // multiple of what was received.
    let mut received = buf.len();
    while received < 4 * 1024 * 1024 {
        let room = (buf.capacity() - buf.len()).max(1);
        buf.put_bytes(0, room);
        received += room;
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(
            buf.capacity() <= 4 * received + 2 * READ_AHEAD_BYTES,
            "capacity {} for {received} bytes received",
            buf.capacity()
        );
    }
    eprintln!(
        "announced {announced} bytes, received {received}: buffer capacity {}",
        buf.capacity()
    );
}

/// Every record the store accepts travels in one default frame: the largest stored record
/// (`store::MAX_STORED_RECORD_BYTES` of origin, peer, fields and raw bytes) with a source name
/// at the protocol's cap.
#[test]
fn the_largest_record_the_store_accepts_fits_a_default_frame() {
    let mut record = record(7);
    record.origin = "o".repeat(u16::MAX as usize).into();
    record.peer = Some("p".repeat(u16::MAX as usize).into());
    record.lost_from = Some(3);
    record.source = "s".repeat(MAX_SOURCE_BYTES).into();
    // The store's record: 24 fixed bytes, event time 12, first lost seq 8, origin and peer
    // with u16 lengths, then the raw bytes (`store::format::codec::encoded_len`).
    let stored_without_raw = 24 + 12 + 8 + 2 + record.origin.len() + 2 + u16::MAX as usize;
    let raw_len = crate::store::MAX_STORED_RECORD_BYTES - stored_without_raw;
    record.raw = Bytes::from(vec![b'x'; raw_len]);
    assert_eq!(unsendable(&record, DEFAULT_MAX_FRAME_BYTES), None);
    let message = Message::Batch {
        batch_id: 1,
        records: Arc::new(vec![record]),
    };
    let mut bytes = BytesMut::new();
    ForwardCodec::default()
        .encode(message.clone(), &mut bytes)
        .unwrap();
    assert_eq!(decode_established(bytes), message);
}

#[test]
fn encoded_record_len_matches_the_encoding() {
    for record in [
        record(1),
        bare_record(),
        Record::gap_marker("node-a", 1, 9, 0),
    ] {
        let one = encode(Message::Batch {
            batch_id: 0,
            records: Arc::new(vec![record.clone()]),
        })
        .len();
        let none = encode(Message::Batch {
            batch_id: 0,
            records: Arc::new(Vec::new()),
        })
        .len();
        assert_eq!(none, BATCH_OVERHEAD_BYTES);
        assert_eq!(one - none, encoded_record_len(&record));
    }
}

fn check_properties(data: &[u8]) {
    crate::fuzzcheck::forward::check(data);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_hold_the_properties(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        check_properties(&data);
    }

    #[test]
    fn mutated_streams_hold_the_properties(flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 0..6)) {
        let mut stream = BytesMut::new();
        for message in all_messages() {
            stream.extend_from_slice(&encode(message));
        }
        let mut data = stream.to_vec();
        for (at, value) in flips {
            let len = data.len();
            data[at % len] = value;
        }
        check_properties(&data);
    }
}

/// A record of the largest message a listener accepts (16 MiB), with origin and peer names at
/// their longest, fits one batch frame of the default size: the forwarder must never hold a
/// record it cannot send.
#[test]
fn a_largest_record_fits_a_default_frame() {
    let mut record = record(7);
    record.raw = Bytes::from(vec![b'x'; crate::framing::MAX_MESSAGE_BYTES_LIMIT]);
    record.origin = "o".repeat(u16::MAX as usize).into();
    record.peer = Some("p".repeat(u16::MAX as usize).into());
    record.lost_from = None;
    let message = Message::Batch {
        batch_id: 1,
        records: Arc::new(vec![record]),
    };
    let mut bytes = BytesMut::new();
    ForwardCodec::default()
        .encode(message.clone(), &mut bytes)
        .unwrap();
    assert_eq!(decode_established(bytes), message);
}
