//! `[input]`: inputs besides the syslog listeners. `[[input.file]]` tables name local files to
//! tail (`input_file`); `--file GLOB` adds one table with its defaults. Every value is parsed
//! while the file is read (globs compiled, severity and facility names resolved, durations
//! read); `validate_file_input` checks ranges.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::value::invalid;
use super::ConfigError;

/// Default `max-line-bytes`: a longer line is cut to it, flagged and counted.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// Largest allowed `max-line-bytes` (the largest message a node keeps, 16 MiB).
pub const MAX_LINE_BYTES_LIMIT: usize = super::MAX_MESSAGE_BYTES_LIMIT;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct InputSection {
    /// `[[input.file]]`: files to tail.
    pub file: Vec<FileInput>,
}

/// Where reading starts in a file found at the first start (no position stored for any file
/// of the input's source yet). Files found later are always read from their beginning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

/// One `[[input.file]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileInput {
    /// Glob patterns of files to tail (`*`, `?`, `[..]`, `**` for any depth).
    #[serde(deserialize_with = "patterns")]
    pub paths: Vec<Glob>,
    /// Glob patterns of paths not to tail.
    #[serde(deserialize_with = "patterns")]
    pub exclude: Vec<Glob>,
    /// The records' source (shard key); the node id when absent.
    pub source: Option<String>,
    /// The records' APP-NAME; the file's stem when absent.
    pub app_name: Option<String>,
    /// Severity given to the lines: a number 0..=7 or a name (`info`, `err`, …).
    #[serde(deserialize_with = "severity")]
    pub severity: u8,
    /// Facility given to the lines: a number 0..=23 or a name (`user`, `local0`, …).
    #[serde(deserialize_with = "facility")]
    pub facility: u8,
    pub start_at: StartAt,
    /// A longer line is cut to this many bytes, flagged `truncated` and counted; the rest of
    /// it is skipped up to its terminator.
    pub max_line_bytes: usize,
    /// How often each file is looked at for new bytes, rotation and truncation.
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub poll_interval: Duration,
    /// How long a file renamed away (rotated) is still read after its last growth.
    #[serde(deserialize_with = "crate::timespec::duration")]
    pub rotate_wait: Duration,
}

impl Default for FileInput {
    fn default() -> Self {
        FileInput {
            paths: Vec::new(),
            exclude: Vec::new(),
            source: None,
            app_name: None,
            severity: 6,
            facility: 1,
            start_at: StartAt::Beginning,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            poll_interval: Duration::from_millis(250),
            rotate_wait: Duration::from_secs(5),
        }
    }
}

impl FileInput {
    /// The table `--file GLOB` stands for.
    pub fn from_glob(text: &str) -> Result<FileInput, ConfigError> {
        let glob = parse_glob(text).map_err(|message| invalid("input.file.paths", message))?;
        Ok(FileInput {
            paths: vec![glob],
            ..FileInput::default()
        })
    }

    /// The PRI its lines get.
    pub fn pri(&self) -> u8 {
        self.facility * 8 + self.severity
    }
}

/// A compiled glob pattern and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Glob {
    pub text: String,
    pub pattern: glob::Pattern,
}

/// Compiles a glob; it must be an absolute path.
pub fn parse_glob(text: &str) -> Result<Glob, String> {
    if !text.starts_with('/') {
        return Err(format!("{text:?} is not an absolute path"));
    }
    let pattern =
        glob::Pattern::new(text).map_err(|error| format!("{text:?} is not a glob: {error}"))?;
    Ok(Glob {
        text: text.to_owned(),
        pattern,
    })
}

fn patterns<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Glob>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| parse_glob(text).map_err(serde::de::Error::custom))
        .collect()
}

const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrName {
    Number(i64),
    Name(String),
}

fn code<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &str,
    names: &[&str],
    aliases: &[(&str, usize)],
) -> Result<u8, D::Error> {
    let max = names.len() - 1;
    let index = match NumberOrName::deserialize(deserializer)? {
        NumberOrName::Number(n) => usize::try_from(n).ok().filter(|n| *n <= max),
        NumberOrName::Name(name) => names
            .iter()
            .position(|known| *known == name)
            .or_else(|| aliases.iter().find(|(a, _)| *a == name).map(|(_, i)| *i)),
    };
    index.map(|i| i as u8).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "not a {what}: a number 0..={max} or one of {}",
            names.join(", ")
        ))
    })
}

fn severity<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let aliases = [("error", 3), ("warn", 4), ("information", 6)];
    code(deserializer, "severity", &SEVERITIES, &aliases)
}

fn facility<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    code(deserializer, "facility", &FACILITIES, &[("auth-priv", 10)])
}

/// Ranges of one `[[input.file]]` table.
pub fn validate_file_input(input: &FileInput) -> Result<(), ConfigError> {
    if input.paths.is_empty() {
        return Err(invalid(
            "input.file.paths",
            "must name at least one glob".into(),
        ));
    }
    if !(1..=MAX_LINE_BYTES_LIMIT).contains(&input.max_line_bytes) {
        return Err(invalid(
            "input.file.max-line-bytes",
            format!(
                "{} is outside 1..={MAX_LINE_BYTES_LIMIT}",
                input.max_line_bytes
            ),
        ));
    }
    if let Some(source) = &input.source {
        if source.is_empty() {
            return Err(invalid("input.file.source", "must not be empty".into()));
        }
    }
    if let Some(app_name) = &input.app_name {
        if app_name.is_empty() || app_name.len() > 255 {
            return Err(invalid(
                "input.file.app-name",
                "must be 1 to 255 bytes long".into(),
            ));
        }
    }
    if input.poll_interval.is_zero() || input.poll_interval > Duration::from_secs(60) {
        return Err(invalid(
            "input.file.poll-interval",
            format!("{:?} is outside (0s, 60s]", input.poll_interval),
        ));
    }
    Ok(())
}
