//! Process-wide tracing set-up, and where logs go. Logging starts before the configuration is
//! read (so configuration errors are logged), with `RUST_LOG` or `info` and the sink the
//! default `[log]` section picks; `run` then applies the configured section through reload
//! handles: the filter (unless `RUST_LOG` is set) and the sink. The sink is chosen by
//! [`choose`] from `log.format`, `log.color` and what stderr is: colours only on a terminal
//! unless told otherwise; native journald entries when `JOURNAL_STREAM` names stderr (as
//! systemd sets it for a service), or plain text without timestamps when journald's socket
//! cannot be reached; JSON lines when `log.format = "json"`. Logs never go to stdout, which
//! is reserved for command output and the start-up lines tests read. This module owns no
//! configuration parsing (that is `config`) and touches no file but stderr and journald's
//! socket.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::Layered;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogColor, LogFormat, LogSection};

/// The subscriber the output layer sits on: the registry under the reloadable filter.
type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
/// The output layer, boxed so the sink can change after the configuration is read.
type Output = Box<dyn Layer<Filtered> + Send + Sync>;

/// Where and how log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Human-readable lines on stderr; ANSI colours when `color`; timestamps unless the
    /// journal (which stamps each line itself) is reading stderr.
    Text { color: bool, timestamps: bool },
    /// Native journald entries: the level as `PRIORITY`, event fields as journal fields.
    Journald,
    /// One JSON object per line on stderr, with `timestamp`, `level`, `message` and the
    /// event's fields at the top level.
    Json,
}

/// What the process's stderr is connected to, as far as choosing a sink cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stderr {
    pub is_terminal: bool,
    /// `JOURNAL_STREAM` names stderr: systemd connected it to the journal.
    pub is_journal: bool,
    /// `NO_COLOR` is set (and not empty): `auto` means no colours.
    pub no_color: bool,
}

impl Stderr {
    /// Looks at this process's fd 2 and environment.
    pub fn detect() -> Stderr {
        let stderr = std::io::stderr();
        let is_journal = std::env::var("JOURNAL_STREAM").is_ok_and(|journal_stream| {
            stderr_device_inode()
                .is_some_and(|(device, inode)| names_stream(&journal_stream, device, inode))
        });
        Stderr {
            is_terminal: stderr.is_terminal(),
            is_journal,
            no_color: std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty()),
        }
    }
}

/// `(st_dev, st_ino)` of fd 2, read through a duplicate of it (fstat, no path lookup).
fn stderr_device_inode() -> Option<(u64, u64)> {
    let duplicate = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(duplicate).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// Whether a `JOURNAL_STREAM` value (`DEVICE:INODE`, both decimal, as systemd writes it)
/// names the file with this device and inode.
pub fn names_stream(journal_stream: &str, device: u64, inode: u64) -> bool {
    let Some((device_text, inode_text)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    device_text.parse() == Ok(device) && inode_text.parse() == Ok(inode)
}

/// The sink for a `[log]` section given where stderr goes. `json` is an explicit request and
/// wins everywhere; otherwise the journal gets native entries, and text elsewhere is coloured
/// as `log.color` says (`auto`: on a terminal only, unless `NO_COLOR` is set).
pub fn choose(section: &LogSection, stderr: Stderr) -> Sink {
    match section.format {
        LogFormat::Json => Sink::Json,
        LogFormat::Text if stderr.is_journal => Sink::Journald,
        LogFormat::Text => Sink::Text {
            color: match section.color {
                LogColor::Always => true,
                LogColor::Never => false,
                LogColor::Auto => stderr.is_terminal && !stderr.no_color,
            },
            timestamps: true,
        },
    }
}

/// The sink used when journald's socket cannot be reached although stderr is the journal:
/// plain lines (coloured only when asked for `always`) without timestamps.
fn journal_fallback(section: &LogSection) -> Sink {
    Sink::Text {
        color: section.color == LogColor::Always,
        timestamps: false,
    }
}

/// Builds the layer for `sink`. A journald sink whose socket cannot be reached is replaced
/// by [`journal_fallback`]; the sink actually built and the connection error are returned.
fn build(sink: Sink, section: &LogSection) -> (Output, Sink, Option<std::io::Error>) {
    match sink {
        Sink::Text { color, timestamps } => {
            let text = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(color);
            let layer: Output = if timestamps {
                Box::new(text)
            } else {
                Box::new(text.without_time())
            };
            (layer, sink, None)
        }
        Sink::Json => {
            let json = tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stderr);
            (Box::new(json), sink, None)
        }
        Sink::Journald => match tracing_journald::layer() {
            Ok(journald) => {
                // Syslog's meaning of the levels, so `journalctl -p info` shows info.
                let priorities = tracing_journald::PriorityMappings {
                    info: tracing_journald::Priority::Informational,
                    debug: tracing_journald::Priority::Debug,
                    ..tracing_journald::PriorityMappings::new()
                };
                let journald = journald
                    .with_syslog_identifier("starling".into())
                    .with_priority_mappings(priorities);
                (Box::new(journald), sink, None)
            }
            Err(error) => {
                let fallback = journal_fallback(section);
                let (layer, _, _) = build(fallback, section);
                (layer, fallback, Some(error))
            }
        },
    }
}

pub struct LogControl {
    filter: reload::Handle<EnvFilter, Registry>,
    output: reload::Handle<Output, Filtered>,
    from_environment: bool,
    stderr: Stderr,
    /// The sink asked for (before any journald fallback), to rebuild only on a change.
    chosen: std::sync::Mutex<Sink>,
}

/// Installs the global subscriber with the default `[log]` section's sink. Call once, first
/// thing.
pub fn init() -> LogControl {
    use tracing_subscriber::prelude::*;
    let from_environment = std::env::var_os("RUST_LOG").is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, filter_handle) = reload::Layer::new(filter);
    let stderr = Stderr::detect();
    let section = LogSection::default();
    let chosen = choose(&section, stderr);
    let (output, _, journald_error) = build(chosen, &section);
    let (output, output_handle) = reload::Layer::new(output);
    // A second init (e.g. in tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init();
    if let Some(error) = journald_error {
        tracing::warn!(%error, "cannot reach journald; logging plain text to stderr");
    }
    LogControl {
        filter: filter_handle,
        output: output_handle,
        from_environment,
        stderr,
        chosen: std::sync::Mutex::new(chosen),
    }
}

impl LogControl {
    /// Applies the configured `[log]` section: `log.level` (unless `RUST_LOG` chose one), and
    /// the sink `log.format` and `log.color` pick for this stderr.
    pub fn apply(&self, section: &LogSection) -> anyhow::Result<()> {
        self.set_filter(&section.level)?;
        let sink = choose(section, self.stderr);
        let mut chosen = self
            .chosen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *chosen == sink {
            return Ok(());
        }
        let (output, _, journald_error) = build(sink, section);
        self.output
            .reload(output)
            .map_err(|error| anyhow::anyhow!("cannot apply the [log] section: {error}"))?;
        *chosen = sink;
        if let Some(error) = journald_error {
            tracing::warn!(%error, "cannot reach journald; logging plain text to stderr");
        }
        Ok(())
    }

    /// Applies `log.level`, unless `RUST_LOG` chose one.
    fn set_filter(&self, directives: &str) -> anyhow::Result<()> {
        if self.from_environment {
            return Ok(());
        }
        let filter = EnvFilter::try_new(directives)
            .map_err(|error| anyhow::anyhow!("invalid log.level {directives:?}: {error}"))?;
        self.filter
            .reload(filter)
            .map_err(|error| anyhow::anyhow!("cannot apply log.level: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: Stderr = Stderr {
        is_terminal: false,
        is_journal: false,
        no_color: false,
    };
    const TERMINAL: Stderr = Stderr {
        is_terminal: true,
        ..FILE
    };
    const JOURNAL: Stderr = Stderr {
        is_journal: true,
        ..FILE
    };
    const TEXT: Sink = Sink::Text {
        color: false,
        timestamps: true,
    };
    const COLOURED: Sink = Sink::Text {
        color: true,
        timestamps: true,
    };

    fn check(format: LogFormat, color: LogColor, stderr: Stderr, expected: Sink) {
        let section = LogSection {
            format,
            color,
            ..LogSection::default()
        };
        assert_eq!(
            choose(&section, stderr),
            expected,
            "format {format:?}, color {color:?}, stderr {stderr:?}"
        );
    }

    #[test]
    fn colours_only_on_a_terminal_unless_told() {
        use LogColor::*;
        use LogFormat::Text;
        check(Text, Auto, TERMINAL, COLOURED);
        check(Text, Auto, FILE, TEXT);
        let no_color = Stderr {
            no_color: true,
            ..TERMINAL
        };
        check(Text, Auto, no_color, TEXT);
        check(Text, Always, FILE, COLOURED);
        check(Text, Always, no_color, COLOURED);
        check(Text, Never, TERMINAL, TEXT);
    }

    #[test]
    fn the_journal_gets_native_entries_and_json_wins_everywhere() {
        use LogColor::*;
        use LogFormat::{Json, Text};
        for color in [Auto, Always, Never] {
            check(Text, color, JOURNAL, Sink::Journald);
            for stderr in [FILE, TERMINAL, JOURNAL] {
                check(Json, color, stderr, Sink::Json);
            }
        }
        let terminal_journal = Stderr {
            is_terminal: true,
            ..JOURNAL
        };
        check(Text, Auto, terminal_journal, Sink::Journald);
    }

    #[test]
    fn without_journald_the_journal_gets_plain_lines_without_timestamps() {
        let mut section = LogSection::default();
        let plain = Sink::Text {
            color: false,
            timestamps: false,
        };
        assert_eq!(journal_fallback(&section), plain);
        section.color = LogColor::Never;
        assert_eq!(journal_fallback(&section), plain);
        section.color = LogColor::Always;
        assert_eq!(
            journal_fallback(&section),
            Sink::Text {
                color: true,
                timestamps: false
            }
        );
    }

    #[test]
    fn journal_stream_names_a_file_by_device_and_inode() {
        let file = tempfile::tempfile().unwrap();
        let metadata = file.metadata().unwrap();
        let (device, inode) = (metadata.dev(), metadata.ino());
        assert!(names_stream(&format!("{device}:{inode}"), device, inode));
        assert!(names_stream(&format!("{device}:{inode}\n"), device, inode));
        assert!(!names_stream(
            &format!("{device}:{}", inode + 1),
            device,
            inode
        ));
        assert!(!names_stream(
            &format!("{}:{inode}", device + 1),
            device,
            inode
        ));
        assert!(!names_stream(&format!("{inode}"), device, inode));
        assert!(!names_stream("", device, inode));
        assert!(!names_stream("8:x", device, inode));
    }
}
