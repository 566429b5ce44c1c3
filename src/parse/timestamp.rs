//! The timestamp at the head of a BSD (RFC 3164) message, in every shape devices send:
//! `Mmm dd hh:mm:ss`, with a single-digit or space-padded day, any letter case, fractional
//! seconds, a year before the time (`Mmm dd yyyy hh:mm:ss`), a year first
//! (`yyyy Mmm dd hh:mm:ss`), a trailing `:`, Cisco's `*`/`.` clock-state marks, and RFC 3339
//! (with `T` or a space, with or without an offset).
//!
//! Reads text only; the zone and year are resolved by the caller (`zone`). No I/O.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};

/// A header timestamp as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderTime {
    /// Carries its own offset (RFC 3339 with `Z` or `±hh:mm`).
    Zoned(DateTime<FixedOffset>),
    /// A full date and time without an offset.
    Naive(NaiveDateTime),
    /// Month, day and time without a year or offset.
    NoYear {
        month: u32,
        day: u32,
        time: NaiveTime,
    },
}

/// The timestamp at the start of `text` (leading spaces allowed) and the text after it
/// (a trailing `:` right after the time is consumed).
pub fn leading_timestamp(text: &str) -> Option<(HeaderTime, &str)> {
    let text = text.trim_start_matches(' ');
    let text = text.strip_prefix(['*', '.']).unwrap_or(text);
    let (time, rest) = rfc3339(text)
        .or_else(|| bsd(text))
        .or_else(|| year_first(text))?;
    // The timestamp must end at a field boundary.
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    Some((time, rest))
}

/// A run of ASCII digits of length `min..=max` at the start: its value and the rest.
fn number(text: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let len = text.bytes().take_while(u8::is_ascii_digit).count();
    if len < min || len > max {
        return None;
    }
    Some((text[..len].parse().ok()?, &text[len..]))
}

fn month(text: &str) -> Option<(u32, &str)> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let name = text.get(..3)?;
    let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))?;
    Some((index as u32 + 1, &text[3..]))
}

fn spaces(text: &str) -> Option<&str> {
    let rest = text.trim_start_matches(' ');
    (rest.len() < text.len()).then_some(rest)
}

/// `hh:mm:ss[.fraction]`; a fraction of any length is cut to nanoseconds, a bare `.` is 0.
/// A leap second (`:60`) is read as the last nanosecond of the minute before it.
fn clock(text: &str) -> Option<(NaiveTime, &str)> {
    let (hour, rest) = number(text, 1, 2)?;
    let (minute, rest) = number(rest.strip_prefix(':')?, 2, 2)?;
    let (second, mut rest) = number(rest.strip_prefix(':')?, 2, 2)?;
    let mut nanos = 0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        let digits = &after_dot[..len.min(9)];
        if !digits.is_empty() {
            nanos = digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32);
        }
        rest = &after_dot[len..];
    }
    let time = if second == 60 {
        NaiveTime::from_hms_nano_opt(hour, minute, 59, 999_999_999)?
    } else {
        NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?
    };
    Some((time, rest))
}

/// `Mmm dd hh:mm:ss` or `Mmm dd yyyy hh:mm:ss`.
fn bsd(text: &str) -> Option<(HeaderTime, &str)> {
    let (month, rest) = month(text)?;
    let (day, rest) = number(spaces(rest)?, 1, 2)?;
    let rest = spaces(rest)?;
    if let Some((year, after_year)) = number(rest, 4, 4) {
        if let Some(after_year) = spaces(after_year) {
            let (time, rest) = clock(after_year)?;
            let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
            return Some((HeaderTime::Naive(date.and_time(time)), rest));
        }
    }
    let (time, rest) = clock(rest)?;
    if let Some((year, after_year)) = trailing_year(rest) {
        let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
        return Some((HeaderTime::Naive(date.and_time(time)), after_year));
    }
    // The date must exist in some year (Feb 29 does).
    NaiveDate::from_ymd_opt(2000, month, day)?;
    Some((HeaderTime::NoYear { month, day, time }, rest))
}

/// ` yyyy` after the time (`Apr 15 21:28:13 2007 host …`, sent by some embedded devices):
/// a plausible year followed by a space or the end.
fn trailing_year(text: &str) -> Option<(u32, &str)> {
    let (year, rest) = number(text.strip_prefix(' ')?, 4, 4)?;
    let plausible = (1970..=2200).contains(&year);
    (plausible && (rest.is_empty() || rest.starts_with(' '))).then_some((year, rest))
}

/// `yyyy Mmm dd hh:mm:ss`.
fn year_first(text: &str) -> Option<(HeaderTime, &str)> {
    let (year, rest) = number(text, 4, 4)?;
    let (month, rest) = month(spaces(rest)?)?;
    let (day, rest) = number(spaces(rest)?, 1, 2)?;
    let (time, rest) = clock(spaces(rest)?)?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    Some((HeaderTime::Naive(date.and_time(time)), rest))
}

/// `yyyy-mm-dd(T| )hh:mm:ss[.frac][Z|±hh:mm|±hhmm]`, letters in either case.
pub fn rfc3339(text: &str) -> Option<(HeaderTime, &str)> {
    let (year, rest) = number(text, 4, 4)?;
    let (month, rest) = number(rest.strip_prefix('-')?, 2, 2)?;
    let (day, rest) = number(rest.strip_prefix('-')?, 2, 2)?;
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (time, rest) = clock(rest)?;
    let naive = NaiveDate::from_ymd_opt(year as i32, month, day)?.and_time(time);
    if let Some(after) = rest.strip_prefix(['Z', 'z']) {
        let utc = FixedOffset::east_opt(0)?;
        return Some((
            HeaderTime::Zoned(naive.and_local_timezone(utc).single()?),
            after,
        ));
    }
    if let Some(sign) = rest.chars().next().filter(|c| *c == '+' || *c == '-') {
        let (hours, after) = number(&rest[1..], 2, 2)?;
        let after_colon = after.strip_prefix(':').unwrap_or(after);
        let (minutes, after) = number(after_colon, 2, 2)?;
        if hours > 23 || minutes > 59 {
            return None;
        }
        let seconds = (hours * 3600 + minutes * 60) as i32;
        let offset = FixedOffset::east_opt(if sign == '-' { -seconds } else { seconds })?;
        return Some((
            HeaderTime::Zoned(naive.and_local_timezone(offset).single()?),
            after,
        ));
    }
    Some((HeaderTime::Naive(naive), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<(&str, &str)>) {
        let got = leading_timestamp(input).map(|(time, rest)| {
            let shown = match time {
                HeaderTime::Zoned(dt) => dt.to_rfc3339(),
                HeaderTime::Naive(naive) => naive.to_string(),
                HeaderTime::NoYear { month, day, time } => format!("{month:02}-{day:02} {time}"),
            };
            (shown, rest)
        });
        let expected = expected.map(|(shown, rest)| (shown.to_string(), rest));
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn header_timestamps() {
        check("Oct 11 22:14:15 host", Some(("10-11 22:14:15", " host")));
        check("Aug  7 06:30:00 x", Some(("08-07 06:30:00", " x")));
        check("Jun 8 11:54:08 m", Some(("06-08 11:54:08", " m")));
        check("OCT 11 22:14:15 : a", Some(("10-11 22:14:15", " : a")));
        check("Mar 7 19:06:53: ex", Some(("03-07 19:06:53", " ex")));
        check("Aug 29 02:00:00.156 c", Some(("08-29 02:00:00.156", " c")));
        check("Aug 29 02:00:00. c", Some(("08-29 02:00:00", " c")));
        check(
            "Mar 7 2008 19:06:53: example",
            Some(("2008-03-07 19:06:53", " example")),
        );
        check("*Oct 07 03:10:04: dev", Some(("10-07 03:10:04", " dev")));
        check(
            ".Apr 15 2007 21:28:13: %PIX",
            Some(("2007-04-15 21:28:13", " %PIX")),
        );
        check(
            "2026 Oct 11 22:14:15 host",
            Some(("2026-10-11 22:14:15", " host")),
        );
        check(
            "2019-12-02T16:49:23+02:00 host",
            Some(("2019-12-02T16:49:23+02:00", " host")),
        );
        check(
            "2020-10-11T22:14:15.00Z m",
            Some(("2020-10-11T22:14:15+00:00", " m")),
        );
        check(
            "2006-10-29 02:00:00.156+01:00",
            Some(("2006-10-29T02:00:00.156+01:00", "")),
        );
        check(
            "2006-11-10T10:43:21.15600000000 bzorp",
            Some(("2006-11-10 10:43:21.156", " bzorp")),
        );
        check("Feb 29 14:07:19 h", Some(("02-29 14:07:19", " h")));
        check(
            "Apr 15 21:28:13 2007 linksys",
            Some(("2007-04-15 21:28:13", " linksys")),
        );
        check(
            "Apr 15 21:28:13 12345 h",
            Some(("04-15 21:28:13", " 12345 h")),
        );
        check("Feb 30 14:07:19 h", None);
        check("Oct 11 25:14:15 h", None);
        check("Oct 11 22:14:15x h", None);
        check("2003-09-31T22:14:15Z h", None);
        check("some message", None);
        check("", None);
        check(
            "Dec 31 23:59:60 h",
            Some(("12-31 23:59:59.999999999", " h")),
        );
    }
}
