//! Process-wide tracing set-up. Logging starts before the configuration is read (so
//! configuration errors are logged), with `RUST_LOG` or `info`; `run` then applies the
//! configured filter through a reload handle unless `RUST_LOG` is set. Logs go to stderr;
//! stdout is reserved for command output and the start-up lines tests read.

use tracing_subscriber::{reload, EnvFilter, Registry};

pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    from_environment: bool,
}

/// Installs the global subscriber. Call once, first thing.
pub fn init() -> LogControl {
    use tracing_subscriber::prelude::*;
    let from_environment = std::env::var_os("RUST_LOG").is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second init (e.g. in tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
    LogControl {
        handle,
        from_environment,
    }
}

impl LogControl {
    /// Applies the configured `log.level`, unless `RUST_LOG` chose one.
    pub fn set_filter(&self, directives: &str) -> anyhow::Result<()> {
        if self.from_environment {
            return Ok(());
        }
        let filter = EnvFilter::try_new(directives)
            .map_err(|error| anyhow::anyhow!("invalid log.level {directives:?}: {error}"))?;
        self.handle
            .reload(filter)
            .map_err(|error| anyhow::anyhow!("cannot apply log.level: {error}"))
    }
}
