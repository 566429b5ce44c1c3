//! What a query asks for, parsed once from `name=value` pairs: the parameters of
//! `GET /v1/logs` and `GET /v1/logs/tail`, and the flags of `starling read` (which turns its
//! flags into the same pairs). One parser and one `Filter::check` serve the API, the offline
//! reader and the live tail, so they cannot disagree on what a filter means.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::parse::Parsed;
use crate::record::{Record, Transport};
use crate::store::StoredRecord;

/// Longest `regex` or `contains` accepted (characters).
pub const MAX_PATTERN_CHARS: usize = 4096;
/// Compiled-size limit of a `regex` (the `regex` crate's `size_limit`): a pattern that
/// would compile larger (`(a{1000}){1000}`) is refused instead of eating memory. The
/// engine matches in time linear in the input whatever the pattern.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// How many values one repeatable parameter (`source`, `app`, `transport`) may have.
pub const MAX_VALUES: usize = 64;

/// A refused parameter: which one and why, in words (the API answers 400 with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ParamError {
    pub name: String,
    pub reason: String,
}

impl ParamError {
    pub fn new(name: &str, reason: impl Into<String>) -> ParamError {
        ParamError {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

/// Syslog severity names, by value (RFC 5424 table 2).
pub const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// A severity by number (0–7) or name (`err`/`error`, `warning`/`warn`, …).
pub fn parse_severity(text: &str) -> Option<u8> {
    let text = text.trim().to_ascii_lowercase();
    if let Ok(n) = text.parse::<u8>() {
        return (n <= 7).then_some(n);
    }
    let alias = match text.as_str() {
        "error" => "err",
        "warn" => "warning",
        "emergency" | "panic" => "emerg",
        "critical" => "crit",
        "informational" => "info",
        other => other,
    };
    SEVERITY_NAMES
        .iter()
        .position(|name| *name == alias)
        .map(|n| n as u8)
}

/// The record filter. Every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Receive time at or after (microseconds since the epoch).
    pub since: Option<i64>,
    /// Receive time before.
    pub until: Option<i64>,
    /// Source (shard) name globs; any may match. Empty: every source.
    sources: Vec<glob::Pattern>,
    /// APP-NAME globs; any may match. A record without an APP-NAME never matches.
    apps: Vec<glob::Pattern>,
    /// Inclusive severity range (0 = emerg … 7 = debug). A record without one never matches.
    severity: Option<(u8, u8)>,
    /// Substring of the raw bytes.
    contains: Option<Needle>,
    /// Regular expression over the raw bytes.
    regex: Option<regex::bytes::Regex>,
    /// Transports; any may match. Empty: every transport.
    transports: Vec<Transport>,
}

#[derive(Debug, Clone)]
enum Needle {
    Exact(Arc<memchr::memmem::Finder<'static>>),
    /// Case-insensitive: the escaped text as a `(?i)` regex.
    Folded(regex::bytes::Regex),
}

/// A record that passed the filter, with its parsed fields if the filter needed them.
#[derive(Debug, Clone)]
pub struct Hit {
    pub stored: StoredRecord,
    pub parsed: Option<Parsed>,
}

impl Hit {
    /// The parsed fields (computed now if the filter did not need them).
    pub fn parsed(&self) -> std::borrow::Cow<'_, Parsed> {
        match &self.parsed {
            Some(parsed) => std::borrow::Cow::Borrowed(parsed),
            None => std::borrow::Cow::Owned(parsed_fields(&self.stored.record)),
        }
    }
}

/// The syslog (or journal) fields of a stored record, as `read --format json` shows them.
pub fn parsed_fields(record: &Record) -> Parsed {
    if record.parse == crate::record::ParseStatus::Journal {
        return crate::journal::to_parsed(&record.raw);
    }
    if let Some(file) = &record.file {
        let mut parsed = Parsed::unparsed(String::from_utf8_lossy(&record.raw).into());
        parsed.pri = Some(file.pri);
        parsed.facility = Some(file.pri >> 3);
        parsed.severity = Some(file.pri & 7);
        parsed.hostname = Some(record.source.to_string());
        parsed.app_name = Some(file.app_name.to_string());
        return parsed;
    }
    let received_at =
        DateTime::from_timestamp_micros(record.received_at_micros).unwrap_or_default();
    let context = crate::parse::ParseContext {
        received_at,
        rfc3164_zone: crate::parse::Zone::Utc,
    };
    crate::parse::parse(&record.raw, &context)
}

fn glob(name: &str, text: &str) -> Result<glob::Pattern, ParamError> {
    if text.is_empty() {
        return Err(ParamError::new(name, "empty pattern"));
    }
    if text.chars().count() > MAX_PATTERN_CHARS {
        return Err(ParamError::new(
            name,
            format!("longer than {MAX_PATTERN_CHARS} characters"),
        ));
    }
    glob::Pattern::new(text)
        .map_err(|error| ParamError::new(name, format!("{text:?} is not a glob: {error}")))
}

fn boolean(name: &str, text: &str) -> Result<bool, ParamError> {
    match text {
        "true" | "1" | "yes" | "" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(ParamError::new(
            name,
            format!("{other:?} is not true or false"),
        )),
    }
}

/// A time parameter: RFC 3339, relative (`15m`, `2h ago`) or `now`.
pub fn parse_time_param(name: &str, text: &str, now: DateTime<Utc>) -> Result<i64, ParamError> {
    crate::timespec::parse_time(text, now).map_err(|reason| ParamError::new(name, reason))
}

impl Filter {
    /// Builds the filter from the pairs it understands (`since`, `until`, `source`, `app`,
    /// `severity`, `contains`, `case-sensitive`, `regex`, `transport`); other names are left
    /// to the caller. `now` anchors relative times.
    pub fn from_params<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: DateTime<Utc>,
    ) -> Result<Filter, ParamError> {
        let mut filter = Filter::default();
        let mut contains: Option<String> = None;
        let mut case_sensitive = true;
        for (name, value) in pairs {
            match name {
                "since" => filter.since = Some(parse_time_param(name, value, now)?),
                "until" => filter.until = Some(parse_time_param(name, value, now)?),
                "source" => filter.sources.push(glob(name, value)?),
                "app" => filter.apps.push(glob(name, value)?),
                "severity" => filter.severity = Some(severity_range(value)?),
                "contains" => {
                    if value.is_empty() {
                        return Err(ParamError::new(name, "empty text"));
                    }
                    if value.chars().count() > MAX_PATTERN_CHARS {
                        return Err(ParamError::new(
                            name,
                            format!("longer than {MAX_PATTERN_CHARS} characters"),
                        ));
                    }
                    contains = Some(value.to_string());
                }
                "case-sensitive" => case_sensitive = boolean(name, value)?,
                "regex" => filter.regex = Some(compile_regex(value)?),
                "transport" => {
                    let transport = match value {
                        "udp" => Transport::Udp,
                        "tcp" => Transport::Tcp,
                        "journal" => Transport::Journal,
                        other => {
                            return Err(ParamError::new(
                                name,
                                format!("{other:?} is not one of udp, tcp, journal"),
                            ))
                        }
                    };
                    filter.transports.push(transport);
                }
                _ => {}
            }
        }
        for (name, count) in [
            ("source", filter.sources.len()),
            ("app", filter.apps.len()),
            ("transport", filter.transports.len()),
        ] {
            if count > MAX_VALUES {
                return Err(ParamError::new(
                    name,
                    format!("given {count} times; at most {MAX_VALUES}"),
                ));
            }
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until) {
            if since > until {
                return Err(ParamError::new("until", "is before since"));
            }
        }
        filter.contains = match contains {
            None => None,
            Some(text) if case_sensitive => Some(Needle::Exact(Arc::new(
                memchr::memmem::Finder::new(text.as_bytes()).into_owned(),
            ))),
            Some(text) => Some(Needle::Folded(
                regex::bytes::RegexBuilder::new(&regex::escape(&text))
                    .case_insensitive(true)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|error| ParamError::new("contains", error.to_string()))?,
            )),
        };
        Ok(filter)
    }

    /// Whether the filter keeps records of this source (shard): shards it refuses are not read.
    pub fn source_matches(&self, source: &str) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|p| p.matches(source))
    }

    /// Whether the filter needs the parsed fields (severity, APP-NAME).
    fn needs_parse(&self) -> bool {
        self.severity.is_some() || !self.apps.is_empty()
    }

    /// The record as a hit if it passes every condition (time, source, transport, text,
    /// then the parsed fields, cheapest first).
    pub fn check(&self, stored: StoredRecord) -> Option<Hit> {
        let record = &stored.record;
        let t = record.received_at_micros;
        if self.since.is_some_and(|since| t < since) || self.until.is_some_and(|until| t >= until) {
            return None;
        }
        if !self.source_matches(&record.source) {
            return None;
        }
        if !self.transports.is_empty() && !self.transports.contains(&record.transport) {
            return None;
        }
        match &self.contains {
            Some(Needle::Exact(finder)) if finder.find(&record.raw).is_none() => return None,
            Some(Needle::Folded(regex)) if !regex.is_match(&record.raw) => return None,
            _ => {}
        }
        if let Some(regex) = &self.regex {
            if !regex.is_match(&record.raw) {
                return None;
            }
        }
        if !self.needs_parse() {
            return Some(Hit {
                stored,
                parsed: None,
            });
        }
        let parsed = parsed_fields(record);
        if let Some((low, high)) = self.severity {
            match parsed.severity {
                Some(severity) if severity >= low && severity <= high => {}
                _ => return None,
            }
        }
        if !self.apps.is_empty() {
            match &parsed.app_name {
                Some(app) if self.apps.iter().any(|p| p.matches(app)) => {}
                _ => return None,
            }
        }
        Some(Hit {
            stored,
            parsed: Some(parsed),
        })
    }
}

/// `severity`: a maximum (`err`, `3`: emerg through err) or a range (`warning..err`, `2..4`,
/// either order).
fn severity_range(text: &str) -> Result<(u8, u8), ParamError> {
    let one = |part: &str| {
        parse_severity(part).ok_or_else(|| {
            ParamError::new(
                "severity",
                format!(
                    "{part:?} is not a severity: use 0-7 or one of {}",
                    SEVERITY_NAMES.join(", ")
                ),
            )
        })
    };
    match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            Ok((a.min(b), a.max(b)))
        }
        None => Ok((0, one(text)?)),
    }
}

fn compile_regex(text: &str) -> Result<regex::bytes::Regex, ParamError> {
    if text.chars().count() > MAX_PATTERN_CHARS {
        return Err(ParamError::new(
            "regex",
            format!("longer than {MAX_PATTERN_CHARS} characters"),
        ));
    }
    regex::bytes::RegexBuilder::new(text)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(8 * REGEX_SIZE_LIMIT)
        .build()
        .map_err(|error| {
            // The crate's message spans lines (a caret under the error): keep it on one.
            let text = error.to_string();
            let compact: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            ParamError::new("regex", compact.join(" "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn refuse(pairs: &[(&str, &str)], fragment: &str) {
        let error = Filter::from_params(pairs.iter().copied(), now()).unwrap_err();
        assert!(error.to_string().contains(fragment), "{pairs:?}: {error}");
    }

    #[test]
    fn hostile_and_invalid_parameters_are_refused_with_the_reason() {
        refuse(&[("regex", "(a{1000}){1000}")], "regex: ");
        refuse(&[("regex", "(unclosed")], "regex: ");
        refuse(
            &[("regex", &"a".repeat(MAX_PATTERN_CHARS + 1))],
            "longer than",
        );
        refuse(&[("since", "yesterday")], "since: ");
        refuse(&[("until", "2026-13-01T00:00:00Z")], "until: ");
        refuse(
            &[("since", "1h"), ("until", "2h")],
            "until: is before since",
        );
        refuse(&[("severity", "loud")], "not a severity");
        refuse(&[("severity", "9")], "not a severity");
        refuse(
            &[("transport", "carrier-pigeon")],
            "not one of udp, tcp, journal",
        );
        refuse(&[("source", "[")], "not a glob");
        refuse(&[("contains", "")], "empty text");
        refuse(&[("case-sensitive", "maybe")], "not true or false");
        let many: Vec<(&str, &str)> = (0..=MAX_VALUES).map(|_| ("app", "x")).collect();
        refuse(&many, "at most");
    }

    #[test]
    fn severity_forms() {
        assert_eq!(severity_range("err"), Ok((0, 3)));
        assert_eq!(severity_range("3"), Ok((0, 3)));
        assert_eq!(severity_range("err..warning"), Ok((3, 4)));
        assert_eq!(severity_range("6..2"), Ok((2, 6)));
        assert_eq!(parse_severity("WARN"), Some(4));
    }
}
