//! Time zones for timestamps that carry none (RFC 3164), and the total resolution of a
//! wall-clock time written in such a zone: DST gaps are resolved, never rejected, ambiguous
//! times always pick the earlier instant, and a missing year is inferred from the receive time.
//!
//! This module does no I/O; `Zone::Local` reads the process's zone through chrono.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, Offset,
    TimeZone, Utc,
};

/// The zone an RFC 3164 timestamp (which has no offset) is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The collector's local zone.
    Local,
    Utc,
    /// An IANA zone such as `Europe/Berlin`.
    Named(chrono_tz::Tz),
    /// A fixed offset such as `+02:00`.
    Fixed(FixedOffset),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0:?}: expected \"local\", \"UTC\", an IANA name like \"Europe/Berlin\" or an offset like \"+02:00\"")]
pub struct ZoneError(pub String);

impl FromStr for Zone {
    type Err = ZoneError;

    fn from_str(text: &str) -> Result<Zone, ZoneError> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        if trimmed.eq_ignore_ascii_case("utc") || trimmed == "Z" {
            return Ok(Zone::Utc);
        }
        if let Some(offset) = parse_fixed_offset(trimmed) {
            return Ok(Zone::Fixed(offset));
        }
        trimmed
            .parse::<chrono_tz::Tz>()
            .map(Zone::Named)
            .map_err(|_| ZoneError(text.to_string()))
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Local => f.write_str("local"),
            Zone::Utc => f.write_str("UTC"),
            Zone::Named(tz) => f.write_str(tz.name()),
            Zone::Fixed(offset) => write!(f, "{offset}"),
        }
    }
}

/// Config files give a zone as text: `"local"`, `"UTC"`, an IANA name or an offset.
impl<'de> serde::Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Zone, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `+02:00`, `-0530`, `+02`: sign, hours up to 23, optional minutes.
fn parse_fixed_offset(text: &str) -> Option<FixedOffset> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl Zone {
    /// The instant a wall-clock time in this zone stands for, with the offset it was written in.
    /// Total: a time inside a DST gap is read with the offset in force just before the gap
    /// (so `02:30` on a spring-forward night in Berlin is `02:30+01:00`, the same instant as
    /// `03:30+02:00`); an ambiguous time (autumn) is the earlier of its two instants.
    pub fn resolve(&self, naive: NaiveDateTime) -> DateTime<FixedOffset> {
        match self {
            Zone::Local => resolve_in(&chrono::Local, naive),
            Zone::Utc => resolve_in(&Utc, naive),
            Zone::Named(tz) => resolve_in(tz, naive),
            Zone::Fixed(offset) => resolve_in(offset, naive),
        }
    }
}

fn resolve_in<Tz: TimeZone>(zone: &Tz, naive: NaiveDateTime) -> DateTime<FixedOffset> {
    match zone.offset_from_local_datetime(&naive) {
        LocalResult::Single(offset) | LocalResult::Ambiguous(offset, _) => {
            with_offset(naive, offset.fix())
        }
        LocalResult::None => {
            // A DST gap: the offset before the transition. Gaps are at most a few hours, so
            // the offset a day earlier is the one in force just before it.
            let before = naive - Duration::days(1);
            let offset = zone.offset_from_utc_datetime(&before).fix();
            with_offset(naive, offset)
        }
    }
}

/// `naive` read as a wall-clock time at `offset`, rounded to whole minutes: historical zone
/// data has local mean time offsets like +00:53:28, which RFC 3339 cannot write, and the
/// timestamp must print as it was sent. Out-of-range results (years near the limits of
/// chrono) fall back to UTC rather than failing.
fn with_offset(naive: NaiveDateTime, offset: FixedOffset) -> DateTime<FixedOffset> {
    let seconds = offset.local_minus_utc();
    let rounded = (f64::from(seconds) / 60.0).round() as i32 * 60;
    let offset = FixedOffset::east_opt(rounded).unwrap_or(offset);
    match offset.from_local_datetime(&naive) {
        LocalResult::Single(dt) | LocalResult::Ambiguous(dt, _) => dt,
        LocalResult::None => Utc.from_utc_datetime(&naive).fixed_offset(),
    }
}

/// A timestamp without a year (`Dec 31 23:59:59`): the year that puts it nearest to
/// `received_at`, never more than a day after it. Returns `None` when the date exists in no
/// nearby year (e.g. `Feb 30`).
pub fn infer_year(
    zone: &Zone,
    received_at: DateTime<Utc>,
    month: u32,
    day: u32,
    time: chrono::NaiveTime,
) -> Option<DateTime<FixedOffset>> {
    let received_year = received_at.year();
    let latest_allowed = received_at + Duration::days(1);
    // Feb 29 may need to look back up to four years for a leap year.
    let mut best: Option<(i64, DateTime<FixedOffset>)> = None;
    for year in (received_year - 4..=received_year + 1).rev() {
        let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else {
            continue;
        };
        let candidate = zone.resolve(date.and_time(time));
        if candidate.with_timezone(&Utc) > latest_allowed {
            continue;
        }
        let distance = (candidate.with_timezone(&Utc) - received_at)
            .num_seconds()
            .abs();
        if best.as_ref().is_none_or(|(d, _)| distance < *d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, dt)| dt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    fn naive(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn parses_zone_names() {
        assert_eq!("local".parse::<Zone>(), Ok(Zone::Local));
        assert_eq!("UTC".parse::<Zone>(), Ok(Zone::Utc));
        assert_eq!(
            "Europe/Berlin".parse::<Zone>(),
            Ok(Zone::Named(chrono_tz::Europe::Berlin))
        );
        assert_eq!(
            "+05:30".parse::<Zone>(),
            Ok(Zone::Fixed(FixedOffset::east_opt(19800).unwrap()))
        );
        assert_eq!(
            "-0700".parse::<Zone>(),
            Ok(Zone::Fixed(FixedOffset::west_opt(25200).unwrap()))
        );
        let err = "Mars/Olympus".parse::<Zone>().unwrap_err();
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
        assert!("+25:00".parse::<Zone>().is_err());
    }

    #[test]
    fn zone_text_round_trips_through_serde() {
        for text in ["local", "UTC", "Europe/Berlin", "+05:30"] {
            let zone: Zone = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(serde_json::to_value(zone).unwrap(), serde_json::json!(text));
        }
        let err = serde_json::from_value::<Zone>(serde_json::json!("Nowhere")).unwrap_err();
        assert!(err.to_string().contains("Nowhere"), "{err}");
    }

    #[test]
    fn dst_gap_is_resolved_with_the_offset_before_it() {
        let berlin = Zone::Named(chrono_tz::Europe::Berlin);
        let resolved = berlin.resolve(naive("2024-03-31 02:30:00"));
        assert_eq!(resolved.to_rfc3339(), "2024-03-31T02:30:00+01:00");
        assert_eq!(
            resolved.with_timezone(&Utc).to_rfc3339(),
            "2024-03-31T01:30:00+00:00"
        );
    }

    #[test]
    fn local_mean_time_offsets_are_rounded_to_minutes() {
        let berlin = Zone::Named(chrono_tz::Europe::Berlin);
        let resolved = berlin.resolve(naive("0985-04-12 19:20:50"));
        assert_eq!(resolved.offset().local_minus_utc(), 53 * 60);
        assert_eq!(resolved.naive_local(), naive("0985-04-12 19:20:50"));
    }

    #[test]
    fn ambiguous_time_picks_the_earlier_instant() {
        let berlin = Zone::Named(chrono_tz::Europe::Berlin);
        let resolved = berlin.resolve(naive("2024-10-27 02:30:00"));
        assert_eq!(resolved.to_rfc3339(), "2024-10-27T02:30:00+02:00");
    }

    #[test]
    fn year_inference_around_new_year() {
        let received = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 10).unwrap();
        let t = NaiveTime::from_hms_opt(23, 59, 59).unwrap();
        let got = infer_year(&Zone::Utc, received, 12, 31, t).unwrap();
        assert_eq!(got.year(), 2024);

        let received = Utc.with_ymd_and_hms(2024, 12, 31, 23, 0, 0).unwrap();
        let t = NaiveTime::from_hms_opt(0, 30, 0).unwrap();
        assert_eq!(
            infer_year(&Zone::Utc, received, 1, 1, t).unwrap().year(),
            2025
        );
        // More than a day ahead: the past year, even if further away.
        let received = Utc.with_ymd_and_hms(2024, 12, 29, 12, 0, 0).unwrap();
        assert_eq!(
            infer_year(&Zone::Utc, received, 1, 1, t).unwrap().year(),
            2024
        );
        // Feb 29 goes to the nearest leap year in the past.
        let received = Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(
            infer_year(&Zone::Utc, received, 2, 29, t).unwrap().year(),
            2024
        );
        assert!(infer_year(&Zone::Utc, received, 2, 30, t).is_none());
    }
}
