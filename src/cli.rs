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
    for glob in &args.file {
        let input = config::FileInput::from_glob(glob).map_err(|error| error.to_string())?;
        config.input.file.push(input);
    }
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
    if let Some(file) = &record.file {
        let mut parsed =
            crate::parse::Parsed::unparsed(String::from_utf8_lossy(&record.raw).into());
        parsed.pri = Some(file.pri);
        parsed.facility = Some(file.pri >> 3);
        parsed.severity = Some(file.pri & 7);
        parsed.hostname = Some(record.source.to_string());
        parsed.app_name = Some(file.app_name.to_string());
        return parsed;
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
