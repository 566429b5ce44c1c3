//! The framing cases of the shared conformance corpus (`tests/data/conformance/framing.jsonl`,
//! transcribed from go-syslog, rsyslog, syslog-ng, Vector and jtarchie/syslog test suites;
//! each line names its source). Every case runs through `tests::check` (whole, every split,
//! byte by byte, and the source's own chunks). Where Starling deliberately differs from the
//! source, `DEVIATIONS` gives Starling's frames and the reason.

use super::tests::{check, decode_stream};
use super::*;

const CORPUS: &str = include_str!("../../tests/data/conformance/framing.jsonl");

/// The bytes of a corpus string: UTF-8, or one byte per char when `bytes_as_latin1`.
fn corpus_bytes(value: &serde_json::Value, latin1: bool) -> Vec<u8> {
    let text = value.as_str().expect("corpus strings are strings");
    if latin1 {
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin1 char"))
            .collect()
    } else {
        text.as_bytes().to_vec()
    }
}

#[test]
fn corpus_cases() {
    let mut num_checked = 0;
    for line in CORPUS.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).expect("corpus line is json");
        let id = case["id"].as_str().expect("id");
        let latin1 = case["bytes_as_latin1"].as_bool().unwrap_or(false);
        let stream = corpus_bytes(&case["stream"], latin1);
        let max = case["max_message_size"]
            .as_u64()
            .map_or(DEFAULT_MAX_MESSAGE_BYTES, |m| m as usize);
        let (expected, expect_error): (Vec<(Vec<u8>, bool)>, bool) =
            match DEVIATIONS.iter().find(|d| d.id == id) {
                Some(deviation) => (
                    deviation
                        .frames
                        .iter()
                        .map(|(p, t)| (p.to_vec(), *t))
                        .collect(),
                    deviation.error,
                ),
                None => (
                    case["expect_messages"]
                        .as_array()
                        .expect("expect_messages")
                        .iter()
                        .map(|m| (corpus_bytes(m, latin1), false))
                        .collect(),
                    case["expect_error"].as_bool().expect("expect_error"),
                ),
            };
        let expected_refs: Vec<(&[u8], bool)> =
            expected.iter().map(|(p, t)| (p.as_slice(), *t)).collect();
        check(&stream, max, &expected_refs, expect_error);
        if let Some(chunks) = case["chunks"].as_array() {
            let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| corpus_bytes(c, latin1)).collect();
            let chunk_refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            assert_eq!(
                decode_stream(&chunk_refs, max),
                (expected.clone(), expect_error),
                "{id} in the source's chunks"
            );
        }
        num_checked += 1;
    }
    assert_eq!(num_checked, 55, "every corpus case is checked");
    for deviation in DEVIATIONS {
        assert!(
            !deviation.reason.is_empty(),
            "{} needs a reason",
            deviation.id
        );
        assert!(
            CORPUS.contains(&format!("\"id\": \"{}\"", deviation.id)),
            "{}",
            deviation.id
        );
    }
}

struct Deviation {
    id: &'static str,
    frames: &'static [(&'static [u8], bool)],
    error: bool,
    reason: &'static str,
}

const CUT: bool = true;

const PER_FRAME_DETECTION: &str = "framing is detected per frame: bytes that do not start \
    with `digits SP` begin a non-transparent frame, which is stored (a collector never drops \
    what it received) instead of failing the connection";
const TRUNCATE_OVERSIZE: &str = "an oversize frame is cut to the maximum and flagged \
    truncated (like syslog-ng's trim-large-messages(yes)), and the stream stays in sync";
const PARTIAL_AT_EOF: &str = "a partial message at EOF is stored; an octet-counted one \
    that ended before its count is flagged truncated";
const COUNTED_TRAILER: &str = "one trailing LF (or CR LF) counted into an octet frame is \
    the sender's trailer and is dropped: rsyslog's own forwarder sends \
    RSYSLOG_SyslogProtocol23Format (which ends in LF) with that LF counted, and rsyslog's \
    receiver drops it too (DropTrailingLFOnReception); this keeps raw bytes free of the \
    transport trailer, as for UDP and non-transparent frames";
const EVERY_TERMINATOR: &str = "every LF (and NUL) ends a non-transparent frame, as in \
    rsyslog, syslog-ng and Vector; go-syslog's rule (a trailer ends a frame only before `<` \
    or EOF) glues the next line onto a message whenever a sender omits the PRI, and \
    multi-line messages have octet counting";
const NUL_TERMINATES: &str = "NUL ends a non-transparent frame (syslog-ng's default text \
    server, rsyslog's addtlframedelimiter=\"0\", Juniper NetScreen senders); a NUL inside a \
    message needs octet counting";

const UTF8_TEXT: &[u8] = "árvíztűrőtükörfúrógép".as_bytes();
const LATIN2_TEXT: &[u8] = b"\xe1rv\xedzt\xfbr\xf5t\xfck\xf6rf\xfar\xf3g\xe9p";
const UCS4_TEXT: &[u8] = b"\0\0\0\xe1\0\0\0r\0\0\0v\0\0\0\xed\0\0\0z\0\0\0t\0\0\x01q\0\0\0r";

const DEVIATIONS: &[Deviation] = &[
    Deviation {
        id: "framing-001",
        frames: &[],
        error: false,
        reason: "an empty stream is a connection closed without messages, not an error",
    },
    Deviation {
        id: "framing-003",
        frames: &[(b"<1>1 - - - - - -", false), (b"xaaa", false)],
        error: false,
        reason: PER_FRAME_DETECTION,
    },
    Deviation {
        id: "framing-004",
        frames: &[(b"<1>1 A B C D E -", false), (b"xaaa", false)],
        error: false,
        reason: PER_FRAME_DETECTION,
    },
    Deviation {
        id: "framing-006",
        frames: &[(b"<1>1", CUT)],
        error: false,
        reason: PARTIAL_AT_EOF,
    },
    Deviation {
        id: "framing-007",
        frames: &[(b"16<1>1", false)],
        error: false,
        reason: PER_FRAME_DETECTION,
    },
    Deviation {
        id: "framing-008",
        frames: &[(b"1", false)],
        error: false,
        reason: PER_FRAME_DETECTION,
    },
    Deviation {
        id: "framing-009",
        frames: &[
            (b"<1>1 2003-10-11T22:14:15.003Z host.local - - - -", false),
            (b"<3>1 - host.local - - - -", false),
            ("<2>1 - host.local su - - - κόσμε".as_bytes(), CUT),
        ],
        error: false,
        reason: "the corpus stream is one octet shorter than its last MSG-LEN (38 announced, \
            37 sent: the source's text has a decomposed character the corpus composes), so \
            the last message is a partial frame at EOF, stored and flagged truncated",
    },
    Deviation {
        id: "framing-011",
        frames: &[(b"<1>1 - - -", CUT)],
        error: false,
        reason: TRUNCATE_OVERSIZE,
    },
    Deviation {
        id: "framing-012",
        frames: &[(b"<1>217 <11>1 - -", false), (b" - - - -", false)],
        error: false,
        reason: PER_FRAME_DETECTION,
    },
    Deviation {
        id: "framing-022",
        frames: &[
            (b"<2>1 - - - - - - A", false),
            (b"B", false),
            (b"<1>1 -", false),
            (b"<1>1 - - - - - - A", false),
            (b"B", false),
            (b"C", false),
            (b"D", false),
        ],
        error: false,
        reason: EVERY_TERMINATOR,
    },
    Deviation {
        id: "framing-023",
        frames: &[
            (b"<2>1 - - - - - - A", false),
            (b"B", false),
            (b"<1>1 -", false),
            (b"<1>1 - - - - - - A", false),
            (b"B", false),
            (b"C", false),
            (b"D", false),
        ],
        error: false,
        reason: EVERY_TERMINATOR,
    },
    Deviation {
        id: "framing-027",
        frames: &[(b"232>1 zork", false)],
        error: false,
        reason: PER_FRAME_DETECTION,
    },
    Deviation {
        id: "framing-028",
        frames: &[(b"\xf0(\x8c\xbc", false)],
        error: false,
        reason: "framing does not require UTF-8 (RFC 6587 does not either): the bytes are \
            stored exactly and parsed lossily",
    },
    Deviation {
        id: "framing-029",
        frames: &[(b"32thisshouldbelo", CUT)],
        error: false,
        reason: TRUNCATE_OVERSIZE,
    },
    Deviation {
        id: "framing-030",
        frames: &[(b"abcdefghijklmnop", CUT), (b"and here we are", false)],
        error: false,
        reason: TRUNCATE_OVERSIZE,
    },
    Deviation {
        id: "framing-031",
        frames: &[(b"abcdefghijklmnop", CUT), (b"and here we are", false)],
        error: false,
        reason: TRUNCATE_OVERSIZE,
    },
    Deviation {
        id: "framing-032",
        frames: &[(b"32thisshouldbelo", CUT), (b"something valid", CUT)],
        error: false,
        reason: TRUNCATE_OVERSIZE,
    },
    Deviation {
        id: "framing-033",
        frames: &[(b"abcdef", CUT)],
        error: false,
        reason: "the source pauses the stream, Starling's table ends it: the oversize frame \
            is cut at what arrived and flagged",
    },
    Deviation {
        id: "framing-034",
        frames: &[
            (b"0123456789ABCDEF0123456789ABCDEF", false),
            (b"01234567\n", false),
            (b"01234567\0\0", false),
            (UTF8_TEXT, false),
            (LATIN2_TEXT, false),
            (UCS4_TEXT, false),
        ],
        error: false,
        reason: COUNTED_TRAILER,
    },
    Deviation {
        id: "framing-035",
        frames: &[(b"1q 0123456789ABCDEF0123456789ABC", CUT)],
        error: false,
        reason: PER_FRAME_DETECTION,
    },
    Deviation {
        id: "framing-036",
        frames: &[(b"0123456789ABCDEF0123456789ABCDEF", CUT)],
        error: false,
        reason: TRUNCATE_OVERSIZE,
    },
    Deviation {
        id: "framing-037",
        frames: &[(b"01", false), (b"1abcdefg", CUT), (b"2abc", false)],
        error: false,
        reason: COUNTED_TRAILER,
    },
    Deviation {
        id: "framing-038",
        frames: &[(b"0123456789ABCDE", false), (b"0123456789ABCDE", false)],
        error: false,
        reason: COUNTED_TRAILER,
    },
    Deviation {
        id: "framing-039",
        frames: &[(b"012345", false), (b"123", false)],
        error: false,
        reason: COUNTED_TRAILER,
    },
    Deviation {
        id: "framing-040",
        frames: &[(b"foobar", false), (b"fooba", CUT)],
        error: false,
        reason: "the source injects an I/O error where Starling's table has EOF, where a \
            partial octet-counted frame is stored and flagged truncated (on an I/O error the \
            listener closes the connection and counts it)",
    },
    Deviation {
        id: "framing-041",
        frames: &[
            (b"01234567", false),
            (b"0123456789ABCDEF0123456789ABCDEF", CUT),
            (UTF8_TEXT, false),
            (LATIN2_TEXT, false),
            (b"01234567", false),
            (b"01234567", false),
            (b"01234567", false),
            (b"01234567", false),
            (b"01234567", false),
            (b"01234567", false),
        ],
        error: false,
        reason: "an oversize line is cut and flagged and the rest of it discarded, not split \
            into a second message (a tail is not a syslog message); empty frames are skipped",
    },
    Deviation {
        id: "framing-043",
        frames: &[(b"01234567", false), (b"alma", false), (b"korte", false)],
        error: false,
        reason: "the source uses syslog-ng's non-default text-with-nuls mode; NUL always \
            ends a non-transparent frame in Starling",
    },
    Deviation {
        id: "framing-045",
        frames: &[
            (b"<167>Mar  6 16:57:54 172.20.245.8 test: msgnum:0 ", false),
            (b" test message", false),
            (b"<167>Mar  6 16:57:54 172.20.245.8 ", false),
            (b"test: msgnum:1 test message", false),
        ],
        error: false,
        reason: NUL_TERMINATES,
    },
    Deviation {
        id: "framing-046",
        frames: &[
            (b"<120> 2011-03-01T11:22:12Z host msgnum:1", false),
            (b"<120> 2011-03-01T11:22:12Z host msgnum:1", false),
        ],
        error: false,
        reason: COUNTED_TRAILER,
    },
    Deviation {
        id: "framing-051",
        frames: &[
            (
                b"<30>Apr  6 13:21:08 docker/6befb258da22[6128]: TOO LONG \
                bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb123456789B12",
                CUT,
            ),
            (
                b"<30>Apr  6 13:21:09 docker/6defd258da22[6128]: NEXT_MSG",
                false,
            ),
        ],
        error: false,
        reason: "same frames; the corpus does not state the truncation flag, Starling sets it",
    },
];
