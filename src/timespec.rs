//! Times and durations as people type them: the time arguments of `starling read` (RFC 3339
//! instants and relative forms such as `1h`, `15m`, `2days` — meaning that long before now),
//! and the durations of the config file and flags (`10ms`, `1h`, `7days`) with the serde
//! helpers that read them, for every subsystem's config type. Pure: "now" is passed in.
//! Imports nothing of ours.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserializer;

/// Parses a duration such as `10ms`, `1h` or `7days`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not {DURATION_FORM} ({error})"))
}

/// What a duration key accepts, in the words of the error messages.
pub const DURATION_FORM: &str = "a duration like \"30s\", \"10m\" or \"7days\"";

/// `#[serde(deserialize_with = "crate::timespec::duration")]`: a duration written as text; a
/// value of another type is refused with the form expected ([`DURATION_FORM`]).
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = Duration;
        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str(DURATION_FORM)
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            parse_duration(text).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Text)
}

/// [`duration`] for a key that is off when absent (use with `#[serde(default)]`).
pub fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// Parses `text` (RFC 3339, relative, or `now`) into microseconds since the Unix epoch (UTC).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<i64, String> {
    let trimmed = text.trim();
    if trimmed == "now" {
        return Ok(now.timestamp_micros());
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(instant.timestamp_micros());
    }
    let relative = trimmed.strip_suffix(" ago").unwrap_or(trimmed);
    match humantime::parse_duration(relative) {
        Ok(duration) => {
            let micros = i64::try_from(duration.as_micros())
                .map_err(|_| format!("{text:?} reaches too far back"))?;
            now.timestamp_micros()
                .checked_sub(micros)
                .ok_or_else(|| format!("{text:?} reaches too far back"))
        }
        Err(_) => Err(format!(
            "{text:?} is neither an RFC 3339 time (2024-05-01T12:00:00Z) nor a relative one (15m, 1h, 2days)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<&str, &str>) {
        let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let got = parse_time(text, now);
        match expected {
            Ok(instant) => {
                let want = DateTime::parse_from_rfc3339(instant)
                    .unwrap()
                    .timestamp_micros();
                assert_eq!(got, Ok(want), "{text:?}");
            }
            Err(fragment) => {
                let error = got.expect_err(text);
                assert!(error.contains(fragment), "{text:?}: {error}");
            }
        }
    }

    #[test]
    fn times() {
        check("2026-11-26T10:00:00Z", Ok("2026-11-26T10:00:00Z"));
        check("2026-11-26T11:00:00+01:00", Ok("2026-11-26T10:00:00Z"));
        check("2026-11-26T10:00:00.250Z", Ok("2026-11-26T10:00:00.250Z"));
        check("1h", Ok("2026-11-26T11:00:00Z"));
        check("15m", Ok("2026-11-26T11:45:00Z"));
        check("2days", Ok("2026-11-24T12:00:00Z"));
        check("90s ago", Ok("2026-11-26T11:58:30Z"));
        check("now", Ok("2026-11-26T12:00:00Z"));
        check("yesterday", Err("neither"));
        check("", Err("neither"));
        check("2026-13-01T00:00:00Z", Err("neither"));
    }
}
