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

fn frame(payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(payload.len() as u32);
    buf.put_slice(payload);
    buf
}

/// Decodes `input` in one go; `expected`: `Ok(messages)` or `Err(substring of the error)`.
fn check(input: &[u8], expected: Result<Vec<Message>, &str>) {
    let mut codec = ForwardCodec::new(1024);
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
    let transport_at = lost_flag_at + 1 + 1;
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
    let long = Message::Rejected {
        reason: "x".repeat(70_000),
    };
    let error = ForwardCodec::default().encode(long, &mut buf).unwrap_err();
    assert_eq!(
        error.to_string(),
        "reason of 70000 bytes is too long to encode"
    );
    assert_eq!(&buf[..], b"keep");
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
    let mut codec = ForwardCodec::default();
    let mut bytes = BytesMut::new();
    codec.encode(message.clone(), &mut bytes).unwrap();
    assert_eq!(codec.decode(&mut bytes).unwrap(), Some(message));
}
