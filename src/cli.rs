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

use crate::config::{self, Config, ConfigError, ListenerEntry};
use crate::ingest::ShardBy;

#[derive(Debug, Parser)]
#[command(
    name = "starling",
    version,
    about = "A highly available syslog collector"
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
    /// Gossip listen address (`cluster.gossip`).
    #[arg(long, value_name = "ADDR")]
    pub gossip: Option<String>,
    /// Gossip address announced to others (`cluster.gossip-advertise`).
    #[arg(long, value_name = "ADDR")]
    pub gossip_advertise: Option<String>,
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
    /// `cluster.spool-max-bytes`.
    #[arg(long, value_name = "BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// `cluster.spool-retention`, e.g. `24h`.
    #[arg(long, value_name = "DURATION")]
    pub spool_retention: Option<String>,
    /// `syslog.max-message-bytes`.
    #[arg(long, value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// `syslog.pipeline-max-bytes`.
    #[arg(long, value_name = "BYTES")]
    pub pipeline_max_bytes: Option<u64>,
    /// `syslog.max-connections`.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// `syslog.idle-timeout`, e.g. `10m`.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// `syslog.udp-sockets` (0 = one per core).
    #[arg(long, value_name = "N")]
    pub udp_sockets: Option<usize>,
    /// `syslog.udp-recv-buffer-bytes`.
    #[arg(long, value_name = "BYTES")]
    pub udp_recv_buffer_bytes: Option<usize>,
    /// `syslog.rfc3164-timezone`: local, UTC or an IANA name.
    #[arg(long, value_name = "ZONE")]
    pub rfc3164_timezone: Option<String>,
    /// `syslog.shard-by`.
    #[arg(long, value_parser = shard_by_parser())]
    pub shard_by: Option<ShardBy>,
    /// `store.segment-max-bytes`.
    #[arg(long, value_name = "BYTES")]
    pub segment_max_bytes: Option<u64>,
    /// `store.segment-max-age`, e.g. `1h`.
    #[arg(long, value_name = "DURATION")]
    pub segment_max_age: Option<String>,
    /// `store.commit-max-delay`, e.g. `10ms`.
    #[arg(long, value_name = "DURATION")]
    pub commit_max_delay: Option<String>,
    /// `store.commit-max-bytes`.
    #[arg(long, value_name = "BYTES")]
    pub commit_max_bytes: Option<u64>,
    /// `store.retention.max-age`, e.g. `30days`.
    #[arg(long, value_name = "DURATION")]
    pub retention_max_age: Option<String>,
    /// `store.retention.shard-max-bytes`.
    #[arg(long, value_name = "BYTES")]
    pub retention_shard_max_bytes: Option<u64>,
    /// `store.retention.total-max-bytes`.
    #[arg(long, value_name = "BYTES")]
    pub retention_total_max_bytes: Option<u64>,
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
            // One line: clap's first line, without its own "error: " prefix.
            let text = error.to_string();
            let first = text.lines().next().unwrap_or("bad usage");
            eprintln!("starling: {}", first.trim_start_matches("error: "));
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

/// Builds the effective configuration: file (if any) under the flags, then validated.
pub fn effective_config(args: &RunArgs) -> Result<Config, Failure> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(usage)?,
        None => Config::default(),
    };
    apply_flags(&mut config, args).map_err(|message| usage(anyhow::anyhow!(message)))?;
    config.validate().map_err(usage)?;
    Ok(config)
}

/// Applies the flags to the file's values: each flag is parsed by the function that reads
/// its key in the file, so a bad value is refused with the same message.
fn apply_flags(config: &mut Config, args: &RunArgs) -> Result<(), String> {
    fn set<T: Clone>(target: &mut T, value: &Option<T>) {
        if let Some(value) = value {
            *target = value.clone();
        }
    }
    fn parsed<T>(
        target: &mut T,
        value: &Option<String>,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<(), String> {
        if let Some(text) = value {
            *target = config::parse_value(key, text, parse).map_err(|error| error.to_string())?;
        }
        Ok(())
    }
    fn duration(target: &mut Duration, value: &Option<String>) -> Result<(), String> {
        if let Some(text) = value {
            *target = crate::timespec::parse_duration(text)?;
        }
        Ok(())
    }
    fn listeners(
        target: &mut Vec<config::Listener>,
        values: &[String],
        key: &'static str,
    ) -> Result<(), String> {
        if !values.is_empty() {
            let entries: Vec<ListenerEntry> =
                values.iter().cloned().map(ListenerEntry::Address).collect();
            *target = config::parse_listeners(&entries, key).map_err(|error| error.to_string())?;
        }
        Ok(())
    }
    if let Some(data_dir) = &args.data_dir {
        config.data_dir = data_dir.clone();
    }
    if let Some(node_id) = &args.node_id {
        config.node_id = Some(node_id.clone());
    }
    listeners(&mut config.syslog.udp, &args.syslog_udp, "syslog.udp")?;
    listeners(&mut config.syslog.tcp, &args.syslog_tcp, "syslog.tcp")?;
    let cluster = &mut config.cluster;
    parsed(
        &mut cluster.gossip,
        &args.gossip,
        "cluster.gossip",
        config::parse_address,
    )?;
    parsed(
        &mut cluster.gossip_advertise,
        &args.gossip_advertise,
        "cluster.gossip-advertise",
        |text| config::parse_address(text).map(Some),
    )?;
    if !args.seed.is_empty() {
        cluster.seeds = args
            .seed
            .iter()
            .map(|seed| config::parse_value("cluster.seeds", seed, str::parse))
            .collect::<Result<_, ConfigError>>()
            .map_err(|error| error.to_string())?;
    }
    parsed(
        &mut cluster.forward,
        &args.forward,
        "cluster.forward",
        config::parse_address,
    )?;
    set(&mut cluster.cluster_id, &args.cluster_id);
    set(&mut cluster.priority, &args.priority);
    set(&mut cluster.may_be_master, &args.may_be_master);
    set(&mut cluster.spool_max_bytes, &args.spool_max_bytes);
    duration(&mut cluster.spool_retention, &args.spool_retention)?;
    parsed(
        &mut config.api.listen,
        &args.api,
        "api.listen",
        config::parse_optional_address,
    )?;
    let syslog = &mut config.syslog;
    set(&mut syslog.max_message_bytes, &args.max_message_bytes);
    set(&mut syslog.pipeline_max_bytes, &args.pipeline_max_bytes);
    set(&mut syslog.max_connections, &args.max_connections);
    duration(&mut syslog.idle_timeout, &args.idle_timeout)?;
    set(&mut syslog.udp_sockets, &args.udp_sockets);
    set(
        &mut syslog.udp_recv_buffer_bytes,
        &args.udp_recv_buffer_bytes,
    );
    parsed(
        &mut syslog.rfc3164_timezone,
        &args.rfc3164_timezone,
        "syslog.rfc3164-timezone",
        config::parse_zone,
    )?;
    set(&mut syslog.shard_by, &args.shard_by);
    let store = &mut config.store;
    set(&mut store.segment_max_bytes, &args.segment_max_bytes);
    duration(&mut store.segment_max_age, &args.segment_max_age)?;
    duration(&mut store.commit_max_delay, &args.commit_max_delay)?;
    set(&mut store.commit_max_bytes, &args.commit_max_bytes);
    if let Some(text) = &args.retention_max_age {
        store.retention.max_age = Some(crate::timespec::parse_duration(text)?);
    }
    if args.retention_shard_max_bytes.is_some() {
        store.retention.shard_max_bytes = args.retention_shard_max_bytes;
    }
    if args.retention_total_max_bytes.is_some() {
        store.retention.total_max_bytes = args.retention_total_max_bytes;
    }
    set(&mut config.log.level, &args.log_level);
    set(&mut config.log.color, &args.log_color);
    set(&mut config.log.format, &args.log_format);
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
    runtime.block_on(crate::node::run_until_signal(config))?;
    Ok(ExitCode::SUCCESS)
}

fn validate(args: ValidateArgs) -> Result<ExitCode, Failure> {
    let config = Config::load(&args.config).map_err(usage)?;
    config.validate().map_err(usage)?;
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

    /// A bad flag is refused with the message the same value gets in the file.
    #[test]
    fn bad_flags_name_their_key() {
        let cases: [(&[&str], &str); 7] = [
            (
                &["--syslog-udp", "not-an-address"],
                "invalid value for `syslog.udp`: \"not-an-address\" is not an address of the form IP:PORT",
            ),
            (
                &["--syslog-tcp", "none", "--syslog-tcp", "127.0.0.1:1"],
                "invalid value for `syslog.tcp`: `none` cannot be combined with addresses",
            ),
            (
                &["--gossip", "x"],
                "invalid value for `cluster.gossip`: \"x\" is not an address of the form IP:PORT",
            ),
            (
                &["--seed", "noport"],
                "invalid value for `cluster.seeds`: \"noport\" is not of the form HOST:PORT",
            ),
            (
                &["--api", "bad"],
                "invalid value for `api.listen`: \"bad\" is not an address of the form IP:PORT",
            ),
            (
                &["--rfc3164-timezone", "Mars/X"],
                "invalid value for `syslog.rfc3164-timezone`: unknown time zone \"Mars/X\"",
            ),
            (&["--idle-timeout", "soon"], "\"soon\" is not a duration"),
        ];
        for (flags, expected) in cases {
            let error = error_of(flags);
            assert!(error.starts_with(expected), "{flags:?}: {error:?}");
        }
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
