//! The command line: clap definitions of the five subcommands (`run`, `read`, `verify`,
//! `validate`, `status`), a contract other tools drive the binary through (README, the man
//! pages generated from these definitions).
//!
//! `run` turns flags and the optional TOML file into a validated `Config` (flag > file >
//! default) and hands it to `node`; `read`, `verify` and `validate` work offline on files;
//! `status` asks a running node's API. Errors end here: printed once with their causes,
//! mapped to exit codes (2 for bad usage or configuration, 1 for everything else). Nothing
//! below this module prints to stdout except through the values it returns.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config, ConfigError, ListenerEntry, Origins};
use crate::ingest::ShardBy;

#[derive(Debug, Parser)]
#[command(
    name = "starling",
    version,
    about = "A highly available syslog collector",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: accept syslog, join the cluster, store (as master) or forward.
    Run(Box<RunArgs>),
    /// Print stored records.
    Read(Box<ReadArgs>),
    /// Check every segment of a data directory; exit 1 if anything is corrupt.
    Verify(VerifyArgs),
    /// Check a configuration file; exit 2 with the reason if it is invalid.
    Validate(ValidateArgs),
    /// Show a running node's view of the cluster.
    Status(StatusArgs),
}

/// Flags of `starling run`. Each overrides the same key of the config file.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (`data-dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Node id (`node-id`); the host name by default.
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// UDP syslog listener (repeatable; `none` turns UDP off).
    #[arg(long, value_name = "ADDR")]
    pub syslog_udp: Vec<String>,
    /// TCP syslog listener (repeatable; `none` turns TCP off).
    #[arg(long, value_name = "ADDR")]
    pub syslog_tcp: Vec<String>,
    /// Syslog over TLS listener (repeatable; `syslog.tls`), with the `[tls]` certificates.
    #[arg(long, value_name = "ADDR")]
    pub syslog_tls: Vec<String>,
    /// Gossip listen address (`cluster.gossip`).
    #[arg(long, value_name = "ADDR")]
    pub gossip: Option<String>,
    /// Gossip address announced to others (`cluster.gossip-advertise`).
    #[arg(long, value_name = "ADDR")]
    pub gossip_advertise: Option<String>,
    /// A local file to tail, as an absolute glob (repeatable; one `[[input.file]]` table
    /// with its defaults each).
    #[arg(long, value_name = "GLOB")]
    pub file: Vec<String>,
    /// Seed node gossip address, HOST:PORT (repeatable; `cluster.seeds`).
    #[arg(long, value_name = "ADDR")]
    pub seed: Vec<String>,
    /// Node-to-node forwarding listen address (`cluster.forward`).
    #[arg(long, value_name = "ADDR")]
    pub forward: Option<String>,
    /// HTTP API address (`api.listen`; `none` turns it off).
    #[arg(long, value_name = "ADDR")]
    pub api: Option<String>,
    /// `cluster.cluster-id`.
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// `cluster.priority`: a higher priority wins the election.
    #[arg(long, value_name = "N")]
    pub priority: Option<u32>,
    /// `cluster.may-be-master`.
    #[arg(long, value_name = "BOOL")]
    pub may_be_master: Option<bool>,
    /// `cluster.spool-max-bytes`: a size such as 64KiB, 1GiB or a number of bytes.
    #[arg(long, value_name = "SIZE")]
    pub spool_max_bytes: Option<String>,
    /// `cluster.spool-retention`, e.g. `24h`.
    #[arg(long, value_name = "DURATION")]
    pub spool_retention: Option<String>,
    /// `syslog.max-message-bytes`: a size such as 64KiB, 1GiB or a number of bytes.
    #[arg(long, value_name = "SIZE")]
    pub max_message_bytes: Option<String>,
    /// `syslog.pipeline-max-bytes`: a size such as 64KiB, 1GiB or a number of bytes.
    #[arg(long, value_name = "SIZE")]
    pub pipeline_max_bytes: Option<String>,
    /// `syslog.max-connections`.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// `syslog.idle-timeout`, e.g. `10m`.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// `syslog.udp-sockets` (0 = one per core).
    #[arg(long, value_name = "N")]
    pub udp_sockets: Option<usize>,
    /// `syslog.udp-recv-buffer-bytes`: a size such as 64KiB, 1GiB or a number of bytes.
    #[arg(long, value_name = "SIZE")]
    pub udp_recv_buffer_bytes: Option<String>,
    /// `syslog.rfc3164-timezone`: local, UTC or an IANA name.
    #[arg(long, value_name = "ZONE")]
    pub rfc3164_timezone: Option<String>,
    /// `syslog.shard-by`.
    #[arg(long, value_parser = shard_by_parser())]
    pub shard_by: Option<ShardBy>,
    /// `store.segment-max-bytes`: a size such as 64KiB, 1GiB or a number of bytes.
    #[arg(long, value_name = "SIZE")]
    pub segment_max_bytes: Option<String>,
    /// `store.segment-max-age`, e.g. `1h`.
    #[arg(long, value_name = "DURATION")]
    pub segment_max_age: Option<String>,
    /// `store.commit-max-delay`, e.g. `10ms`.
    #[arg(long, value_name = "DURATION")]
    pub commit_max_delay: Option<String>,
    /// `store.commit-max-bytes`: a size such as 64KiB, 1GiB or a number of bytes.
    #[arg(long, value_name = "SIZE")]
    pub commit_max_bytes: Option<String>,
    /// `store.retention.max-age`, e.g. `30days`.
    #[arg(long, value_name = "DURATION")]
    pub retention_max_age: Option<String>,
    /// `store.retention.shard-max-bytes`: a size such as 64KiB, 1GiB or a number of bytes.
    #[arg(long, value_name = "SIZE")]
    pub retention_shard_max_bytes: Option<String>,
    /// `store.retention.total-max-bytes`: a size such as 64KiB, 1GiB or a number of bytes.
    #[arg(long, value_name = "SIZE")]
    pub retention_total_max_bytes: Option<String>,
    /// `log.level`, a tracing filter such as `info` or `starling=debug`.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// `log.color`: auto (on a terminal only), always or never.
    #[arg(long, value_name = "WHEN")]
    pub log_color: Option<crate::config::LogColor>,
    /// `log.format`: text (native entries under journald) or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<crate::config::LogFormat>,
}

/// `--shard-by`: `ingest::ShardBy`'s names as the possible values (listed by `--help`).
fn shard_by_parser() -> impl TypedValueParser<Value = ShardBy> {
    PossibleValuesParser::new(ShardBy::ALL.map(ShardBy::as_str)).try_map(|text| text.parse())
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Data directory; by default the one of `--config`, else of the packaged
    /// /etc/starling/starling.toml if it exists, else ./starling-data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file whose `data-dir` to read.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only sources (shards) matching this glob, as shown by `verify` (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub source: Vec<String>,
    /// Records received at or after T (RFC 3339, relative: 15m, 1h, 2days, or `now`).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Records received before T (RFC 3339, relative, or `now`).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Only records whose raw message contains TEXT.
    #[arg(long, visible_alias = "grep", value_name = "TEXT")]
    pub contains: Option<String>,
    /// `--contains` ignores case.
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Only records whose raw message matches this regular expression (linear-time engine).
    #[arg(long, value_name = "RE")]
    pub regex: Option<String>,
    /// Only records of this severity or more severe (`err`, `3`), or in a range (`warning..err`).
    #[arg(long, value_name = "SEV")]
    pub severity: Option<String>,
    /// Only records whose APP-NAME matches this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub app: Vec<String>,
    /// Only records received over this transport: udp, tcp or journal (repeatable).
    #[arg(long, value_name = "T")]
    pub transport: Vec<String>,
    /// Print at most N records (0: all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: u64,
    /// Newest first.
    #[arg(long)]
    pub reverse: bool,
    /// Keep printing records as they become durable: first the newest `-n` records (or,
    /// with `--since`, the history from then), then new ones; stops at a future `--until`.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// With `--follow` and no `--since`: how many of the newest records to print first.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
    pub lines: u64,
    /// `raw`: the message, one line per record (control characters escaped as rsyslog does,
    /// `#012` for a newline); `json`: the documented record shape.
    #[arg(long, value_enum, default_value = "raw")]
    pub format: ReadFormat,
    /// With `--format raw`: the stored bytes exactly, unescaped.
    #[arg(long)]
    pub exact: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadFormat {
    Raw,
    Json,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long, value_name = "DIR", default_value = "./starling-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5517")]
    pub api: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

/// A failure with its exit code: 2 for bad usage or configuration, 1 otherwise.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { code: 1, error }
    }
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = error.print();
                return ExitCode::SUCCESS;
            }
            // The whole message: usage, missing arguments, allowed values, "did you mean".
            // A bare `starling` is such an error too (help, on stderr, exit 2).
            let _ = error.print();
            return ExitCode::from(2);
        }
    };
    let log_control = crate::logging::init();
    let result = match cli.command {
        Command::Run(args) => run(*args, &log_control),
        Command::Read(args) => read(*args),
        Command::Verify(args) => verify(args),
        Command::Validate(args) => validate(args),
        Command::Status(args) => status(args),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("starling: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

/// The configuration `run` starts with, and the one `validate` checks: the file (if any)
/// under the flags, validated, each refusal pointing at the file line or the flag that set
/// the value. `run` and `validate` both go through here, so they refuse the same things.
pub fn effective_config(args: &RunArgs) -> Result<Config, Failure> {
    let (mut config, mut origins) = match &args.config {
        Some(path) => Config::load_with_origins(path).map_err(usage)?,
        None => (Config::default(), Origins::default()),
    };
    apply_flags(&mut config, &mut origins, args).map_err(usage)?;
    config
        .validate()
        .map_err(|error| usage(origins.locate(error)))?;
    if config.tls_in_use() {
        crate::tls::check(&config.tls).map_err(usage)?;
    }
    Ok(config)
}

/// Applies the flags to the file's values: each flag is parsed by the function that reads
/// its key in the file, so a bad value is refused with the same message (and the flag).
fn apply_flags(
    config: &mut Config,
    origins: &mut Origins,
    args: &RunArgs,
) -> Result<(), ConfigError> {
    /// Sets `target` from `value` with `parse`; the error names the key and the flag.
    struct Flags<'a> {
        origins: &'a mut Origins,
    }
    impl Flags<'_> {
        fn parsed<T>(
            &mut self,
            target: &mut T,
            value: &Option<String>,
            (key, flag): (&'static str, &'static str),
            parse: impl FnOnce(&str) -> Result<T, String>,
        ) -> Result<(), ConfigError> {
            if let Some(text) = value {
                *target =
                    parse(text).map_err(|message| ConfigError::Flag { flag, key, message })?;
                self.origins.set_by_flag(key, flag);
            }
            Ok(())
        }
        fn set<T: Clone>(
            &mut self,
            target: &mut T,
            value: &Option<T>,
            (key, flag): (&'static str, &'static str),
        ) {
            if let Some(value) = value {
                *target = value.clone();
                self.origins.set_by_flag(key, flag);
            }
        }
        fn listeners(
            &mut self,
            target: &mut Vec<config::Listener>,
            values: &[String],
            (key, flag): (&'static str, &'static str),
        ) -> Result<(), ConfigError> {
            if !values.is_empty() {
                let entries: Vec<ListenerEntry> =
                    values.iter().cloned().map(ListenerEntry::Address).collect();
                *target = config::parse_listeners(&entries, key).map_err(|error| match error {
                    ConfigError::Invalid { key, message } => {
                        ConfigError::Flag { flag, key, message }
                    }
                    other => other,
                })?;
                self.origins.set_by_flag(key, flag);
            }
            Ok(())
        }
    }
    let size = |text: &str| config::parse_size(text);
    let size_usize = |text: &str| {
        config::parse_size(text)
            .and_then(|bytes| usize::try_from(bytes).map_err(|_| format!("{text:?} is too large")))
    };
    let duration = crate::timespec::parse_duration;
    let mut flags = Flags { origins };
    let f = &mut flags;
    f.set(
        &mut config.data_dir,
        &args.data_dir,
        ("data-dir", "--data-dir"),
    );
    f.set(
        &mut config.node_id,
        &args.node_id.clone().map(Some),
        ("node-id", "--node-id"),
    );
    f.listeners(
        &mut config.syslog.udp,
        &args.syslog_udp,
        ("syslog.udp", "--syslog-udp"),
    )?;
    f.listeners(
        &mut config.syslog.tcp,
        &args.syslog_tcp,
        ("syslog.tcp", "--syslog-tcp"),
    )?;
    f.listeners(
        &mut config.syslog.tls,
        &args.syslog_tls,
        ("syslog.tls", "--syslog-tls"),
    )?;
    for glob in &args.file {
        let input = config::FileInput::from_glob(glob)?;
        config.input.file.push(input);
    }
    let cluster = &mut config.cluster;
    f.parsed(
        &mut cluster.gossip,
        &args.gossip,
        ("cluster.gossip", "--gossip"),
        config::parse_address,
    )?;
    f.parsed(
        &mut cluster.gossip_advertise,
        &args.gossip_advertise,
        ("cluster.gossip-advertise", "--gossip-advertise"),
        |text| config::parse_address(text).map(Some),
    )?;
    if !args.seed.is_empty() {
        cluster.seeds = args
            .seed
            .iter()
            .map(|seed| {
                seed.parse().map_err(|message| ConfigError::Flag {
                    flag: "--seed",
                    key: "cluster.seeds",
                    message,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        f.origins.set_by_flag("cluster.seeds", "--seed");
    }
    f.parsed(
        &mut cluster.forward,
        &args.forward,
        ("cluster.forward", "--forward"),
        config::parse_address,
    )?;
    f.set(
        &mut cluster.cluster_id,
        &args.cluster_id,
        ("cluster.cluster-id", "--cluster-id"),
    );
    f.set(
        &mut cluster.priority,
        &args.priority,
        ("cluster.priority", "--priority"),
    );
    f.set(
        &mut cluster.may_be_master,
        &args.may_be_master,
        ("cluster.may-be-master", "--may-be-master"),
    );
    f.parsed(
        &mut cluster.spool_max_bytes,
        &args.spool_max_bytes,
        ("cluster.spool-max-bytes", "--spool-max-bytes"),
        size,
    )?;
    f.parsed(
        &mut cluster.spool_retention,
        &args.spool_retention,
        ("cluster.spool-retention", "--spool-retention"),
        duration,
    )?;
    f.parsed(
        &mut config.api.listen,
        &args.api,
        ("api.listen", "--api"),
        config::parse_optional_address,
    )?;
    let syslog = &mut config.syslog;
    f.parsed(
        &mut syslog.max_message_bytes,
        &args.max_message_bytes,
        ("syslog.max-message-bytes", "--max-message-bytes"),
        size_usize,
    )?;
    f.parsed(
        &mut syslog.pipeline_max_bytes,
        &args.pipeline_max_bytes,
        ("syslog.pipeline-max-bytes", "--pipeline-max-bytes"),
        size,
    )?;
    f.set(
        &mut syslog.max_connections,
        &args.max_connections,
        ("syslog.max-connections", "--max-connections"),
    );
    f.parsed(
        &mut syslog.idle_timeout,
        &args.idle_timeout,
        ("syslog.idle-timeout", "--idle-timeout"),
        duration,
    )?;
    f.set(
        &mut syslog.udp_sockets,
        &args.udp_sockets,
        ("syslog.udp-sockets", "--udp-sockets"),
    );
    f.parsed(
        &mut syslog.udp_recv_buffer_bytes,
        &args.udp_recv_buffer_bytes,
        ("syslog.udp-recv-buffer-bytes", "--udp-recv-buffer-bytes"),
        size_usize,
    )?;
    f.parsed(
        &mut syslog.rfc3164_timezone,
        &args.rfc3164_timezone,
        ("syslog.rfc3164-timezone", "--rfc3164-timezone"),
        config::parse_zone,
    )?;
    f.set(
        &mut syslog.shard_by,
        &args.shard_by,
        ("syslog.shard-by", "--shard-by"),
    );
    let store = &mut config.store;
    f.parsed(
        &mut store.segment_max_bytes,
        &args.segment_max_bytes,
        ("store.segment-max-bytes", "--segment-max-bytes"),
        size,
    )?;
    f.parsed(
        &mut store.segment_max_age,
        &args.segment_max_age,
        ("store.segment-max-age", "--segment-max-age"),
        duration,
    )?;
    f.parsed(
        &mut store.commit_max_delay,
        &args.commit_max_delay,
        ("store.commit-max-delay", "--commit-max-delay"),
        duration,
    )?;
    f.parsed(
        &mut store.commit_max_bytes,
        &args.commit_max_bytes,
        ("store.commit-max-bytes", "--commit-max-bytes"),
        size,
    )?;
    let retention = &mut store.retention;
    f.parsed(
        &mut retention.max_age,
        &args.retention_max_age,
        ("store.retention.max-age", "--retention-max-age"),
        |text| duration(text).map(Some),
    )?;
    f.parsed(
        &mut retention.shard_max_bytes,
        &args.retention_shard_max_bytes,
        (
            "store.retention.shard-max-bytes",
            "--retention-shard-max-bytes",
        ),
        |text| size(text).map(Some),
    )?;
    f.parsed(
        &mut retention.total_max_bytes,
        &args.retention_total_max_bytes,
        (
            "store.retention.total-max-bytes",
            "--retention-total-max-bytes",
        ),
        |text| size(text).map(Some),
    )?;
    f.set(
        &mut config.log.level,
        &args.log_level,
        ("log.level", "--log-level"),
    );
    f.set(
        &mut config.log.color,
        &args.log_color,
        ("log.color", "--log-color"),
    );
    f.set(
        &mut config.log.format,
        &args.log_format,
        ("log.format", "--log-format"),
    );
    Ok(())
}

fn run(args: RunArgs, log_control: &crate::logging::LogControl) -> Result<ExitCode, Failure> {
    let config = effective_config(&args)?;
    log_control.apply(&config.log).map_err(usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("starling")
        .build()
        .context("cannot start the async runtime")?;
    // SIGHUP builds the configuration the way the start did: the file under the flags.
    let reload = crate::node::Reload {
        load: Box::new(|| {
            effective_config(&args).map_err(|failure| format!("{:#}", failure.error))
        }),
        log: log_control,
    };
    runtime.block_on(crate::node::run_until_signal(config, reload))?;
    Ok(ExitCode::SUCCESS)
}

/// `validate --config F` checks exactly what `run --config F` checks before it binds.
fn validate(args: ValidateArgs) -> Result<ExitCode, Failure> {
    let run_args = RunArgs {
        config: Some(args.config.clone()),
        ..RunArgs::default()
    };
    effective_config(&run_args)?;
    println!("{}: valid", args.config.display());
    Ok(ExitCode::SUCCESS)
}

/// The packaged configuration file, read by `starling read` when neither `--data-dir` nor
/// `--config` is given.
pub const PACKAGED_CONFIG: &str = "/etc/starling/starling.toml";

/// The data directory `read` reads: `--data-dir`, else `--config`'s, else the packaged
/// configuration's if it exists, else ./starling-data.
fn read_data_dir(args: &ReadArgs) -> Result<PathBuf, Failure> {
    if let Some(dir) = &args.data_dir {
        return Ok(dir.clone());
    }
    let packaged = std::path::Path::new(PACKAGED_CONFIG);
    let config = match &args.config {
        Some(path) => Some(path.as_path()),
        None => packaged.exists().then_some(packaged),
    };
    match config {
        Some(path) => Ok(Config::load(path).map_err(usage)?.data_dir),
        None => Ok(PathBuf::from("./starling-data")),
    }
}

/// `read`'s flags as the query parameters of `GET /v1/logs`: one parser for both.
fn read_params(args: &ReadArgs) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut push = |name: &str, value: &str| pairs.push((name.to_string(), value.to_string()));
    for (name, value) in [
        ("since", &args.since),
        ("until", &args.until),
        ("contains", &args.contains),
        ("regex", &args.regex),
        ("severity", &args.severity),
    ] {
        if let Some(value) = value {
            push(name, value);
        }
    }
    if args.ignore_case {
        push("case-sensitive", "false");
    }
    for (name, values) in [
        ("source", &args.source),
        ("app", &args.app),
        ("transport", &args.transport),
    ] {
        for value in values {
            push(name, value);
        }
    }
    push("limit", &args.limit.to_string());
    push("order", if args.reverse { "desc" } else { "asc" });
    push(
        "format",
        match args.format {
            ReadFormat::Raw => "raw",
            ReadFormat::Json => "json",
        },
    );
    if args.exact {
        push("exact", "true");
    }
    pairs
}

fn read(args: ReadArgs) -> Result<ExitCode, Failure> {
    let now = chrono::Utc::now();
    let request = crate::query::parse_request(&read_params(&args), &[], now)
        .map_err(|error| usage(anyhow::anyhow!("--{error}")))?;
    let data_dir = read_data_dir(&args)?;
    if !data_dir.is_dir() {
        return Err(usage(anyhow::anyhow!(
            "data directory {} does not exist",
            data_dir.display()
        )));
    }
    let reader = crate::store::StoreReader::open(&data_dir)
        .with_context(|| format!("cannot open data directory {}", data_dir.display()))?;
    let filter = &request.query.filter;
    if !args.source.is_empty()
        && !args.follow
        && !reader
            .shards()
            .iter()
            .any(|shard| filter.source_matches(&shard.source))
    {
        return Err(usage(anyhow::anyhow!(
            "no source named {} in {}",
            args.source.join(" or "),
            data_dir.display()
        )));
    }
    let mut printer = Printer {
        out: io::stdout().lock(),
        buffer: Vec::with_capacity(256 * 1024),
        format: request.format,
        broken: None,
    };
    let now_micros = now.timestamp_micros();
    let follow = args.follow && filter.until.is_none_or(|until| until > now_micros);
    let summary = if follow {
        read_follow(&reader, &args, request.query, now_micros, &mut printer)
    } else {
        let summary = crate::query::run(&reader, &request.query, &|| false, &mut |hit| {
            printer.print(hit)
        });
        printer.flush();
        summary
    };
    match printer.broken {
        None => {}
        // A closed pipe (`starling read | head`) is a normal way to stop reading.
        Some(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Some(error) => {
            return Err(anyhow::Error::new(error)
                .context("cannot write to stdout")
                .into())
        }
    }
    for problem in &summary.problems {
        eprintln!("starling: {problem}");
    }
    if summary.corrupt > 0 {
        eprintln!(
            "starling: {} corrupt frame(s) skipped; run `starling verify`",
            summary.corrupt
        );
    }
    if summary.unreadable > 0 {
        eprintln!(
            "starling: {} segment file(s) or shard(s) could not be read",
            summary.unreadable
        );
    }
    if summary.returned == 0 && !follow {
        eprintln!(
            "starling: no records {} in {}",
            describe_range(&args),
            data_dir.display()
        );
    }
    if summary.corrupt + summary.unreadable > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// "received since 1h and matching the filters", for the empty-result message.
fn describe_range(args: &ReadArgs) -> String {
    let mut text = match (&args.since, &args.until) {
        (None, None) => "stored".to_string(),
        (Some(since), None) => format!("received since {since}"),
        (None, Some(until)) => format!("received before {until}"),
        (Some(since), Some(until)) => format!("received between {since} and {until}"),
    };
    let filtered = args.contains.is_some()
        || args.regex.is_some()
        || args.severity.is_some()
        || !args.app.is_empty()
        || !args.transport.is_empty()
        || !args.source.is_empty();
    if filtered {
        text.push_str(" match the filters");
    }
    text
}

/// `read --follow`: the history (with `--since`) or the newest `-n` records, both received
/// before `start`, then every record received from `start` on as it becomes durable (the
/// split by receive time means none is printed twice), until a future `--until` passes.
fn read_follow(
    reader: &crate::store::StoreReader,
    args: &ReadArgs,
    mut query: crate::query::Query,
    start: i64,
    printer: &mut Printer<impl Write>,
) -> crate::query::Summary {
    let until = query.filter.until;
    let mut history = query.clone();
    history.filter.until = Some(until.map_or(start, |until| until.min(start)));
    let summary = if args.since.is_some() {
        crate::query::run(reader, &history, &|| false, &mut |hit| printer.print(hit))
    } else {
        history.order = crate::query::Order::Desc;
        history.limit = args.lines;
        let mut newest = Vec::new();
        let summary = if args.lines > 0 {
            crate::query::run(reader, &history, &|| false, &mut |hit| {
                newest.push(hit.clone());
                true
            })
        } else {
            crate::query::Summary::default()
        };
        for hit in newest.iter().rev() {
            if !printer.print(hit) {
                break;
            }
        }
        summary
    };
    printer.flush();
    query.filter.since = Some(start);
    let options = crate::store::ReadOptions {
        source: None,
        since_micros: Some(start),
        until_micros: until,
    };
    let mut follower = reader.follow(&options);
    let mut items = Vec::new();
    let mut printed = summary.returned;
    // A record received just before `--until` may become durable a little later.
    const COMMIT_GRACE_MICROS: i64 = 2_000_000;
    while printer.broken.is_none() {
        items.clear();
        follower.poll_into(&mut items);
        if items.is_empty() {
            printer.flush();
            if until.is_some_and(|until| {
                chrono::Utc::now().timestamp_micros() > until + COMMIT_GRACE_MICROS
            }) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        for item in items.drain(..) {
            match item {
                Ok(stored) => {
                    if let Some(hit) = query.filter.check(stored) {
                        if query.limit > 0 && printed >= query.limit {
                            return summary;
                        }
                        printer.print(&hit);
                        printed += 1;
                    }
                }
                Err(error) => eprintln!("starling: {error}"),
            }
        }
    }
    summary
}

/// Writes records to stdout in `read`'s format, buffered; remembers a write error (and
/// then refuses more, which stops the scan).
struct Printer<W: Write> {
    out: W,
    buffer: Vec<u8>,
    format: crate::query::Format,
    broken: Option<io::Error>,
}

impl<W: Write> Printer<W> {
    fn print(&mut self, hit: &crate::query::Hit) -> bool {
        crate::query::output::write_hit(&mut self.buffer, hit, self.format);
        if self.buffer.len() >= 128 * 1024 {
            self.flush();
        }
        self.broken.is_none()
    }

    fn flush(&mut self) {
        if self.broken.is_some() {
            return;
        }
        let result = self
            .out
            .write_all(&self.buffer)
            .and_then(|()| self.out.flush());
        self.buffer.clear();
        if let Err(error) = result {
            self.broken = Some(error);
        }
    }
}

fn verify(args: VerifyArgs) -> Result<ExitCode, Failure> {
    if !args.data_dir.is_dir() {
        return Err(usage(anyhow::anyhow!(
            "data directory {} does not exist",
            args.data_dir.display()
        )));
    }
    let report = crate::store::verify(&args.data_dir)
        .with_context(|| format!("cannot verify {}", args.data_dir.display()))?;
    print!("{report}");
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn status(args: StatusArgs) -> Result<ExitCode, Failure> {
    let url = format!("http://{}/v1/status", args.api);
    let body = ureq::get(&url)
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .with_context(|| format!("cannot get {url}"))?;
    let status: crate::cluster::status::Status = serde_json::from_str(&body)
        .with_context(|| format!("{url} did not return a status: {body:?}"))?;
    match args.format {
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&status).unwrap_or(body)),
        StatusFormat::Table => print!("{}", status.to_table()),
    }
    Ok(ExitCode::SUCCESS)
}

/// A stored record's fields, re-derived from its raw bytes: journal entries by the export
/// format, syslog by the parser. The event time printed is the one resolved at receive time
/// and stored with the record, so the zone given to the parser here does not matter.
#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(flags: &[&str]) -> RunArgs {
        let mut argv = vec!["starling", "run"];
        argv.extend_from_slice(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => *args,
            other => panic!("parsed as {other:?}"),
        }
    }

    fn error_of(flags: &[&str]) -> String {
        match effective_config(&run_args(flags)) {
            Ok(config) => panic!("{flags:?} gave {config:?}"),
            Err(failure) => {
                assert_eq!(failure.code, 2, "{flags:?}");
                format!("{:#}", failure.error)
            }
        }
    }

    /// Flags are parsed into the config's types by the functions that read the file.
    #[test]
    fn flags_override_the_file_with_typed_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("starling.toml");
        std::fs::write(
            &path,
            "[syslog]\nudp = [\"127.0.0.1:1514\"]\nshard-by = \"peer\"\n[cluster]\npriority = 2\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let config = effective_config(&run_args(&[
            "--config",
            path,
            "--syslog-tcp",
            "none",
            "--gossip",
            "127.0.0.1:0",
            "--seed",
            "node-2.example:5515",
            "--api",
            "none",
            "--rfc3164-timezone",
            "Europe/Berlin",
            "--shard-by",
            "app-name",
            "--retention-max-age",
            "30days",
        ]))
        .unwrap();
        let udp = config.udp_listeners();
        assert_eq!(udp.len(), 1);
        assert_eq!(udp[0].address, "127.0.0.1:1514".parse().unwrap());
        assert_eq!(udp[0].rfc3164_timezone.to_string(), "Europe/Berlin");
        assert_eq!(udp[0].shard_by, ShardBy::AppName);
        assert!(config.tcp_listeners().is_empty());
        assert_eq!(config.cluster.gossip, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.cluster.seeds[0].as_str(), "node-2.example:5515");
        assert_eq!(config.cluster.priority, 2);
        assert_eq!(config.api_address(), None);
        assert_eq!(
            config.store.retention.max_age,
            Some(Duration::from_secs(30 * 86400))
        );
    }

    /// A bad flag is refused with the message the same value gets in the file, and the flag.
    #[test]
    fn bad_flags_name_their_key_and_flag() {
        let cases: [(&[&str], &str); 11] = [
            (
                &["--syslog-udp", "not-an-address"],
                "invalid value for `syslog.udp` (set by --syslog-udp): \"not-an-address\" is not an address of the form IP:PORT",
            ),
            (
                &["--syslog-tcp", "none", "--syslog-tcp", "127.0.0.1:1"],
                "invalid value for `syslog.tcp` (set by --syslog-tcp): `none` cannot be combined with addresses",
            ),
            (
                &["--gossip", "x"],
                "invalid value for `cluster.gossip` (set by --gossip): \"x\" is not an address of the form IP:PORT",
            ),
            (
                &["--seed", "noport"],
                "invalid value for `cluster.seeds` (set by --seed): \"noport\" is not of the form HOST:PORT",
            ),
            (
                &["--api", "bad"],
                "invalid value for `api.listen` (set by --api): \"bad\" is not an address of the form IP:PORT",
            ),
            (
                &["--rfc3164-timezone", "Mars/X"],
                "invalid value for `syslog.rfc3164-timezone` (set by --rfc3164-timezone): unknown time zone \"Mars/X\"",
            ),
            (
                &["--idle-timeout", "soon"],
                "invalid value for `syslog.idle-timeout` (set by --idle-timeout): \"soon\" is not a duration like",
            ),
            (
                &["--max-message-bytes", "64x"],
                "invalid value for `syslog.max-message-bytes` (set by --max-message-bytes): \"64x\" is not a size like 64KiB",
            ),
            (
                &["--max-message-bytes", "100"],
                "invalid value for `syslog.max-message-bytes` (set by --max-message-bytes): 100 bytes is outside",
            ),
            // rsyslog's spelling: it was accepted and silenced the node.
            (
                &["--log-level", "warning"],
                "invalid value for `log.level` (set by --log-level): \"warning\" is not a log level",
            ),
            (
                &["--gossip", "0.0.0.0:5515"],
                "invalid value for `cluster.gossip` (set by --gossip): gossip listens on 0.0.0.0:5515, an address peers cannot reach",
            ),
        ];
        for (flags, expected) in cases {
            let error = error_of(flags);
            assert!(error.starts_with(expected), "{flags:?}: {error:?}");
        }
    }

    #[test]
    fn size_flags_take_units() {
        let config = effective_config(&run_args(&[
            "--max-message-bytes",
            "64KiB",
            "--spool-max-bytes",
            "2GiB",
            "--retention-total-max-bytes",
            "1TB",
        ]))
        .unwrap();
        assert_eq!(config.syslog.max_message_bytes, 64 * 1024);
        assert_eq!(config.cluster.spool_max_bytes, 2 << 30);
        assert_eq!(
            config.store.retention.total_max_bytes,
            Some(1_000_000_000_000)
        );
    }

    #[test]
    fn shard_by_flag_takes_the_config_names() {
        for shard_by in ShardBy::ALL {
            assert_eq!(
                run_args(&["--shard-by", shard_by.as_str()]).shard_by,
                Some(shard_by)
            );
        }
        let error = Cli::try_parse_from(["starling", "run", "--shard-by", "color"]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("[possible values: hostname, peer, app-name]"),
            "{error}"
        );
    }
}
