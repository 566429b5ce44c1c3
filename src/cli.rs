//! The command line: clap definitions of the five subcommands (`run`, `read`, `verify`,
//! `validate`, `status`), a contract other tools drive the binary through (README, the man
//! pages generated from these definitions).
//!
//! `run` turns flags and the optional TOML file into a validated `Config` (flag > file >
//! default) and hands it to `node`; `read`, `verify` and `validate` work offline on files;
//! `status` asks a running node's API. Errors end here: printed once with their causes,
//! mapped to exit codes (2 for bad usage or configuration, 1 for everything else). Nothing
//! below this module prints to stdout except through the values it returns.

use std::io::{self, BufWriter, Write};
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
    Read(ReadArgs),
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
    #[arg(long, value_name = "DIR", default_value = "./starling-data")]
    pub data_dir: PathBuf,
    /// Only this source (shard), as shown by `verify`.
    #[arg(long, value_name = "HOST")]
    pub source: Option<String>,
    /// Records received at or after T (RFC 3339, or relative: 15m, 1h, 2days).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Records received before T (RFC 3339, or relative).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Keep printing records as they become durable.
    #[arg(long)]
    pub follow: bool,
    #[arg(long, value_enum, default_value = "raw")]
    pub format: ReadFormat,
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
        Command::Read(args) => read(args),
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

fn read(args: ReadArgs) -> Result<ExitCode, Failure> {
    let now = chrono::Utc::now();
    let since = args
        .since
        .as_deref()
        .map(|text| crate::timespec::parse_time(text, now))
        .transpose()
        .map_err(|message| usage(anyhow::anyhow!("--since: {message}")))?;
    let until = args
        .until
        .as_deref()
        .map(|text| crate::timespec::parse_time(text, now))
        .transpose()
        .map_err(|message| usage(anyhow::anyhow!("--until: {message}")))?;
    if !args.data_dir.is_dir() {
        return Err(usage(anyhow::anyhow!(
            "data directory {} does not exist",
            args.data_dir.display()
        )));
    }
    let options = crate::store::ReadOptions {
        source: args.source.clone(),
        since_micros: since,
        until_micros: until,
    };
    let reader = crate::store::StoreReader::open(&args.data_dir)
        .with_context(|| format!("cannot open data directory {}", args.data_dir.display()))?;
    if let Some(source) = &args.source {
        if !args.follow && !reader.shards().iter().any(|shard| &shard.source == source) {
            return Err(usage(anyhow::anyhow!(
                "no source named {source:?} in {}",
                args.data_dir.display()
            )));
        }
    }
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout.lock());
    let mut skipped = Skipped::default();
    let outcome = (|| -> io::Result<()> {
        if args.follow {
            let mut follower = reader.follow(&options);
            loop {
                let items = follower.poll();
                if items.is_empty() {
                    out.flush()?;
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                for item in items {
                    print_item(&mut out, item, args.format, &mut skipped)?;
                }
            }
        }
        for item in reader.read(&options) {
            print_item(&mut out, item, args.format, &mut skipped)?;
        }
        out.flush()
    })();
    match outcome {
        Ok(()) => {}
        // A closed pipe (`starling read | head`) is a normal way to stop reading.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context("cannot write to stdout")
                .into())
        }
    }
    if skipped.corrupt > 0 {
        eprintln!(
            "starling: {} corrupt frame(s) skipped; run `starling verify`",
            skipped.corrupt
        );
    }
    if skipped.unreadable > 0 {
        eprintln!(
            "starling: {} segment file(s) or shard(s) could not be read (I/O errors above)",
            skipped.unreadable
        );
    }
    if skipped.corrupt + skipped.unreadable > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `read` skipped: corrupt frames, and files it could not open or read (an I/O error
/// is not damage: the data may be fine, e.g. after EMFILE or EACCES).
#[derive(Debug, Default)]
struct Skipped {
    corrupt: u64,
    unreadable: u64,
}

fn print_item(
    out: &mut impl Write,
    item: Result<crate::store::StoredRecord, crate::store::ReadError>,
    format: ReadFormat,
    skipped: &mut Skipped,
) -> io::Result<()> {
    match item {
        Ok(stored) => match format {
            ReadFormat::Raw => {
                out.write_all(&stored.record.raw)?;
                out.write_all(b"\n")
            }
            ReadFormat::Json => {
                let parsed = parsed_fields(&stored.record);
                let value = crate::render::record_json(stored.shard_seq, &stored.record, &parsed);
                serde_json::to_writer(&mut *out, &value).map_err(io::Error::other)?;
                out.write_all(b"\n")
            }
        },
        Err(error) => {
            match error {
                crate::store::ReadError::Corrupt { .. } => skipped.corrupt += 1,
                crate::store::ReadError::Io { .. } => skipped.unreadable += 1,
            }
            eprintln!("starling: {error}");
            Ok(())
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
fn parsed_fields(record: &crate::record::Record) -> crate::parse::Parsed {
    if record.parse == crate::record::ParseStatus::Journal {
        return crate::journal::to_parsed(&record.raw);
    }
    let received_at =
        chrono::DateTime::from_timestamp_micros(record.received_at_micros).unwrap_or_default();
    let context = crate::parse::ParseContext {
        received_at,
        rfc3164_zone: crate::parse::Zone::Utc,
    };
    crate::parse::parse(&record.raw, &context)
}

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
