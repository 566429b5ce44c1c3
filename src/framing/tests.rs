//! Table tests of the framing rules. Every case is also decoded from every two-way split of
//! its stream and byte by byte, which must give the same frames (see `decode_stream`).

use super::*;
pub(crate) use crate::fuzzcheck::framing::decode_chunks as decode_stream;

/// A frame as expected: payload and whether it is flagged truncated.
pub(crate) type Expected<'a> = (&'a [u8], bool);

/// Decodes `stream` whole, split at every byte boundary and byte by byte, and checks that each
/// way gives `expected` frames and `expect_error`.
pub(crate) fn check(stream: &[u8], max: usize, expected: &[Expected<'_>], expect_error: bool) {
    let expected: Vec<(Vec<u8>, bool)> = expected.iter().map(|(p, t)| (p.to_vec(), *t)).collect();
    let whole = decode_stream(&[stream], max);
    assert_eq!(
        whole,
        (expected, expect_error),
        "stream {:?} (max {max})",
        String::from_utf8_lossy(stream)
    );
    for split in 1..stream.len() {
        let (head, tail) = stream.split_at(split);
        assert_eq!(
            decode_stream(&[head, tail], max),
            whole,
            "stream {:?} split at {split}",
            String::from_utf8_lossy(stream)
        );
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(decode_stream(&bytes, max), whole, "byte by byte");
}

const OK: bool = false;
const ERR: bool = true;
const CUT: bool = true;

#[test]
fn non_transparent_frames_end_at_lf_crlf_or_nul() {
    check(
        b"<13>a\n<14>b\n",
        64,
        &[(b"<13>a", false), (b"<14>b", false)],
        OK,
    );
    check(
        b"<13>a\r\n<14>b\r\n",
        64,
        &[(b"<13>a", false), (b"<14>b", false)],
        OK,
    );
    check(
        b"<13>a\0<14>b\0",
        64,
        &[(b"<13>a", false), (b"<14>b", false)],
        OK,
    );
    check(b"<13>a\rb\n", 64, &[(b"<13>a\rb", false)], OK);
    check(b"plain text line\n", 64, &[(b"plain text line", false)], OK);
}

#[test]
fn octet_counted_frames_keep_embedded_terminators() {
    check(
        b"5 <13>a5 <14>b",
        64,
        &[(b"<13>a", false), (b"<14>b", false)],
        OK,
    );
    check(b"7 a\nb\0c\r\n", 64, &[(b"a\nb\0c", false)], OK);
    check(b"3 a\nb", 64, &[(b"a\nb", false)], OK);
    // One counted trailing LF is the sender's trailer.
    check(b"6 <13>a\n", 64, &[(b"<13>a", false)], OK);
    check(b"7 <13>a\n\n", 64, &[(b"<13>a\n", false)], OK);
}

#[test]
fn framing_is_detected_per_frame_on_one_connection() {
    check(
        b"5 <13>a<14>b\n6 <15>c\n<16>d\r\n1 e\0<17>f",
        64,
        &[
            (b"<13>a", false),
            (b"<14>b", false),
            (b"<15>c", false),
            (b"<16>d", false),
            (b"e", false),
            (b"<17>f", false),
        ],
        OK,
    );
    // Digits not followed by a space start a non-transparent frame.
    check(b"16<1>1\n", 64, &[(b"16<1>1", false)], OK);
    check(b"2024-01-01 boot\n", 64, &[(b"2024-01-01 boot", false)], OK);
    // A line that ends in digits is not a prefix.
    check(
        b"<13>count 12\n<13>x\n",
        64,
        &[(b"<13>count 12", false), (b"<13>x", false)],
        OK,
    );
}

#[test]
fn empty_frames_are_skipped() {
    check(b"\n\n\r\n\0<13>a\n\n\0\r\n", 64, &[(b"<13>a", false)], OK);
    check(b"1 \n2 \r\n", 64, &[], OK);
    check(b"", 64, &[], OK);
}

#[test]
fn oversize_non_transparent_frame_is_cut_and_the_rest_of_the_line_discarded() {
    check(
        b"0123456789\nnext\n",
        4,
        &[(b"0123", CUT), (b"next", false)],
        OK,
    );
    check(
        b"0123456789\0next",
        4,
        &[(b"0123", CUT), (b"next", false)],
        OK,
    );
    // Exactly the maximum is not truncated, with any trailer.
    check(
        b"0123\n4567\r\n89ab\0",
        4,
        &[(b"0123", false), (b"4567", false), (b"89ab", false)],
        OK,
    );
    // A truncated last line at EOF.
    check(b"0123456789", 4, &[(b"0123", CUT)], OK);
    check(b"0123\r", 4, &[(b"0123", CUT)], OK);
    check(
        b"ab\n0123\rx\nc\n",
        4,
        &[(b"ab", false), (b"0123", CUT), (b"c", false)],
        OK,
    );
}

#[test]
fn oversize_octet_counted_frame_is_cut_and_the_counted_rest_skipped() {
    check(
        b"10 0123456789<13>a\n",
        5,
        &[(b"01234", CUT), (b"<13>a", false)],
        OK,
    );
    check(
        b"10 01234567893 abc",
        5,
        &[(b"01234", CUT), (b"abc", false)],
        OK,
    );
    // The counted rest may contain anything, including things that look like frames.
    check(
        b"12 0123\n4 abcd\n2 ok",
        5,
        &[(b"0123\n", CUT), (b"ok", false)],
        OK,
    );
    // Exactly the maximum.
    check(
        b"4 01234 abcd",
        4,
        &[(b"0123", false), (b"abcd", false)],
        OK,
    );
}

#[test]
fn partial_message_at_eof_is_delivered() {
    check(
        b"<13>a\n<14>unterminated",
        64,
        &[(b"<13>a", false), (b"<14>unterminated", false)],
        OK,
    );
    // An octet-counted frame cut short by EOF is delivered and flagged.
    check(
        b"5 <13>a10 <14>b",
        64,
        &[(b"<13>a", false), (b"<14>b", CUT)],
        OK,
    );
    // An oversize frame still being skipped yields nothing more.
    check(b"10 0123456", 4, &[(b"0123", CUT)], OK);
    // Digits alone at EOF are a (short) line.
    check(b"<13>a\n42", 64, &[(b"<13>a", false), (b"42", false)], OK);
}

#[test]
fn impossible_length_prefix_is_an_error_after_the_frames_before_it() {
    check(b"12345678901234567890 <13>a\n", 64, &[], ERR);
    check(
        b"<13>a\n12345678901234567890 <13>b\n",
        64,
        &[(b"<13>a", false)],
        ERR,
    );
    check(b"0 <13>a\n", 64, &[], ERR);
    check(b"007 <13>a\n", 64, &[], ERR);
    // Larger than any configurable maximum message size.
    check(b"16777217 x", 64, &[], ERR);
    check(b"99999999 x", 64, &[], ERR);
    check(b"123456789 x", 64, &[], ERR);
    // The largest valid count, cut to the maximum.
    check(b"16777216 0123456789", 4, &[(b"0123", CUT)], OK);
    // A run of 64 digits is text, whatever follows.
    let mut long_digits = vec![b'7'; 64];
    long_digits.extend_from_slice(b" x\n");
    check(&long_digits, 128, &[(&long_digits[..66], false)], OK);
}

#[test]
fn non_transparent_mode_never_reads_a_length_prefix() {
    let mut decoder = FrameDecoder::with_mode(64, FramingMode::NonTransparent);
    let mut buf = BytesMut::from(&b"12 workers started\n12345678901234567890 x\n5 ab"[..]);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode_eof(&mut buf).unwrap() {
        frames.push(frame.payload);
    }
    assert_eq!(
        frames,
        ["12 workers started", "12345678901234567890 x", "5 ab"]
    );
    assert_eq!("non-transparent".parse(), Ok(FramingMode::NonTransparent));
    assert_eq!("auto".parse(), Ok(FramingMode::Auto));
    assert!("octet".parse::<FramingMode>().is_err());
}

#[test]
fn invalid_length_error_quotes_the_prefix() {
    let mut decoder = FrameDecoder::new(64);
    let mut buf = BytesMut::from(&b"12345678901234567890 x"[..]);
    let error = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid octet-count length prefix \"12345678901234567890\""
    );
}

#[test]
fn max_message_bytes_is_clamped_to_the_supported_range() {
    assert_eq!(FrameDecoder::new(0).max_message_bytes(), 1);
    assert_eq!(
        FrameDecoder::new(usize::MAX).max_message_bytes(),
        MAX_MESSAGE_BYTES_LIMIT
    );
    assert_eq!(
        FrameDecoder::default().max_message_bytes(),
        DEFAULT_MAX_MESSAGE_BYTES
    );
}

#[test]
fn a_large_frame_spanning_many_reads_is_whole() {
    let payload = vec![b'x'; 200_000];
    let mut stream = format!("{} ", payload.len()).into_bytes();
    stream.extend_from_slice(&payload);
    stream.extend_from_slice(b"3 end");
    let chunks: Vec<&[u8]> = stream.chunks(4096).collect();
    let (frames, error) = decode_stream(&chunks, 1 << 20);
    assert!(!error);
    assert_eq!(frames, vec![(payload, false), (b"end".to_vec(), false)]);
}

#[test]
fn datagram_trailers_are_trimmed() {
    for (datagram, expected) in [
        (&b"<13>a\n"[..], &b"<13>a"[..]),
        (b"<13>a\r\n", b"<13>a"),
        (b"<13>a\0", b"<13>a"),
        (b"<13>a\n\0", b"<13>a"),
        (b"<13>a\r", b"<13>a\r"),
        (b"<13>a\nb", b"<13>a\nb"),
        (b"\n", b""),
        (b"", b""),
    ] {
        assert_eq!(trim_datagram_trailer(datagram), expected, "{datagram:?}");
    }
}

/// Streams built from framing-relevant fragments, through the fuzz property check (any
/// chunking gives the same frames, bounded buffering, frames non-empty and within the max).
mod chunking_property {
    use proptest::prelude::*;

    const FRAGMENTS: &[&[u8]] = &[
        b"<13>msg",
        b"5 ",
        b"12 ",
        b"1 ",
        b"0 ",
        b"007 ",
        b"99999999 ",
        b"123",
        b"12345678901234567890 ",
        b"\n",
        b"\r\n",
        b"\r",
        b"\0",
        b" ",
        b"abcdefghij",
        b"<34>1 - host app - - - hi",
        b"\xff\xfe",
    ];

    fn stream() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40)
            .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_frames(max in any::<u8>(), seed in any::<u8>(), stream in stream()) {
            let mut data = vec![max, seed];
            data.extend_from_slice(&stream);
            crate::fuzzcheck::framing::check(&data);
        }

        #[test]
        fn arbitrary_bytes_too(data in prop::collection::vec(any::<u8>(), 0..300)) {
            crate::fuzzcheck::framing::check(&data);
        }
    }
}
