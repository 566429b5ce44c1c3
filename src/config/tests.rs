//! Tests of the configuration: the file's shape and defaults, load-time refusals with key,
//! value and line, range checks, and the typed values handed to the subsystems.

use super::*;

fn check_error(toml_text: &str, expected: &str) {
    let error = match Config::parse_toml(toml_text) {
        Err(message) => message,
        Ok(config) => match config.validate() {
            Err(error) => error.to_string(),
            Ok(()) => panic!("{toml_text:?} was accepted"),
        },
    };
    assert!(
        error.contains(expected),
        "{toml_text:?}: {error:?} lacks {expected:?}"
    );
}

#[test]
fn empty_file_is_the_default_single_node() {
    let config = Config::parse_toml("").unwrap();
    assert_eq!(config, Config::default());
    config.validate().unwrap();
    assert_eq!(config.udp_listeners()[0].address.port(), 5514);
    assert_eq!(config.tcp_listeners()[0].address.port(), 5514);
    assert_eq!(config.api_address().unwrap().port(), 5517);
}

#[test]
fn full_file_parses() {
    let config = Config::parse_toml(
        r#"
        node-id = "web-1"
        data-dir = "/var/lib/starling"
        [syslog]
        udp = ["0.0.0.0:514", { address = "127.0.0.1:1514", rfc3164-timezone = "UTC" }]
        tcp = ["none"]
        max-message-bytes = 1048576
        idle-timeout = "30s"
        rfc3164-timezone = "Europe/Berlin"
        shard-by = "app-name"
        [store]
        commit-max-delay = "5ms"
        [store.retention]
        max-age = "30days"
        total-max-bytes = 1000000000
        [cluster]
        seeds = ["node-2.example:5515"]
        priority = 3
        [api]
        listen = "none"
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    let udp = config.udp_listeners();
    assert_eq!(udp.len(), 2);
    assert_eq!(udp[0].rfc3164_timezone.to_string(), "Europe/Berlin");
    assert_eq!(udp[1].rfc3164_timezone.to_string(), "UTC");
    assert!(config.tcp_listeners().is_empty());
    assert_eq!(config.syslog.shard_by, ShardBy::AppName);
    assert_eq!(
        config.store.retention.max_age,
        Some(Duration::from_secs(30 * 86400))
    );
    assert_eq!(config.api_address(), None);
}

#[test]
fn upload_limits_parse_and_name_their_key_when_wrong() {
    let config =
        Config::parse_toml("[api]\nupload-max-entry-bytes = 1048576\nupload-max-journals = 10\n")
            .unwrap();
    config.validate().unwrap();
    assert_eq!(
        (
            config.api.upload_max_entry_bytes,
            config.api.upload_max_journals
        ),
        (1 << 20, 10)
    );
    let defaults = ApiSection::default();
    assert_eq!(
        (
            defaults.upload_max_entry_bytes,
            defaults.upload_max_journals
        ),
        (1 << 30, 4096)
    );
    check_error(
        "[api]\nupload-max-entry-bytes = 0\n",
        "`api.upload-max-entry-bytes`: must be at least 1",
    );
    check_error(
        "[api]\nupload-max-journals = 0\n",
        "`api.upload-max-journals`: must be at least 1",
    );
}

#[test]
fn api_limits_parse_and_name_their_key_when_wrong() {
    let config = Config::parse_toml(
        "[api]\nmax-connections = 8\nheader-timeout = \"2s\"\nbody-timeout = \"5m\"\n",
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.api.max_connections, 8);
    assert_eq!(config.api.header_timeout, Duration::from_secs(2));
    assert_eq!(config.api.body_timeout, Duration::from_secs(300));
    let defaults = ApiSection::default();
    assert_eq!(
        (
            defaults.max_connections,
            defaults.header_timeout,
            defaults.body_timeout
        ),
        (256, Duration::from_secs(30), Duration::from_secs(60))
    );
    check_error(
        "[api]\nmax-connections = 0\n",
        "`api.max-connections`: must be at least 1",
    );
    check_error(
        "[api]\nheader-timeout = \"0s\"\n",
        "`api.header-timeout`: must be greater",
    );
    check_error(
        "[api]\nbody-timeout = \"0s\"\n",
        "`api.body-timeout`: must be greater",
    );
    check_error("[api]\nheader-timeout = \"soon\"\n", "not a duration");
    check_error(
        "[api]\nmax-conections = 1\n",
        "unknown field `max-conections`",
    );
}

#[test]
fn errors_name_the_key_and_line() {
    check_error(
        "node-id = \"a\"\nbogus = 1\n",
        "line 2: unknown field `bogus`",
    );
    check_error(
        "[syslog]\nmax-mesage-bytes = 5\n",
        "unknown field `max-mesage-bytes`",
    );
    check_error(
        "[syslog]\nmax-message-bytes = 5\n",
        "syslog.max-message-bytes",
    );
    check_error("[syslog]\nudp = [\"nowhere\"]\n", "syslog.udp");
    check_error(
        "[syslog]\ntcp = [\"none\", \"127.0.0.1:1\"]\n",
        "cannot be combined",
    );
    check_error(
        "[syslog]\nrfc3164-timezone = \"Mars/Olympus\"\n",
        "unknown time zone",
    );
    check_error("[syslog]\nidle-timeout = \"soon\"\n", "not a duration");
    check_error(
        "[syslog]\nshard-by = \"color\"\n",
        "unknown variant `color`",
    );
    check_error("node-id = \"has space\"\n", "node-id");
    check_error("[cluster]\nseeds = [\"no-port\"]\n", "cluster.seeds");
    check_error(
        "[store]\nsegment-max-bytes = 10\n",
        "store.segment-max-bytes",
    );
}

#[test]
fn log_keys_take_their_values_and_name_themselves_when_wrong() {
    let config = Config::parse_toml("[log]\ncolor = \"never\"\nformat = \"json\"\n").unwrap();
    assert_eq!(config.log.color, LogColor::Never);
    assert_eq!(config.log.format, LogFormat::Json);
    let defaults = Config::parse_toml("[log]\nlevel = \"debug\"\n").unwrap();
    assert_eq!(defaults.log.color, LogColor::Auto);
    assert_eq!(defaults.log.format, LogFormat::Text);
    for (text, color) in [
        ("auto", LogColor::Auto),
        ("always", LogColor::Always),
        ("never", LogColor::Never),
    ] {
        assert_eq!(text.parse::<LogColor>(), Ok(color));
    }
    check_error(
        "[log]\ncolor = \"blue\"\n",
        "line 2: invalid value for `log.color`: \"blue\" is not auto, always or never",
    );
    check_error(
        "[log]\nformat = \"xml\"\n",
        "line 2: invalid value for `log.format`: \"xml\" is not text or json",
    );
    check_error("[log]\ncolour = \"never\"\n", "unknown field `colour`");
}

/// Addresses, seeds and zones are parsed with the file: a bad one is refused at load with
/// its key, its value and its line.
#[test]
fn bad_values_are_refused_at_load_with_key_value_and_line() {
    let cases = [
        (
            "[syslog]\nudp = [\"nowhere\"]\n",
            "line 2: invalid value for `syslog.udp`: \"nowhere\" is not an address of the form IP:PORT",
        ),
        (
            "[syslog]\ntcp = [\"127.0.0.1:1\", { address = \"127.0.0.1:2\", rfc3164-timezone = \"Nope\" }]\n",
            "line 2: invalid value for `syslog.tcp.rfc3164-timezone`: unknown time zone \"Nope\"",
        ),
        (
            "[syslog]\nudp = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
            "line 2: invalid value for `syslog.udp`: address 127.0.0.1:1 is listed twice",
        ),
        (
            "[syslog]\n\nrfc3164-timezone = \"Mars/Olympus\"\n",
            "line 3: invalid value for `syslog.rfc3164-timezone`: unknown time zone \"Mars/Olympus\"",
        ),
        (
            "[cluster]\ngossip = \"x\"\n",
            "line 2: invalid value for `cluster.gossip`: \"x\" is not an address of the form IP:PORT",
        ),
        (
            "[cluster]\ngossip-advertise = \"host:1\"\n",
            "line 2: invalid value for `cluster.gossip-advertise`: \"host:1\" is not an address",
        ),
        (
            "[cluster]\nseeds = [\"a:1\", \"no-port\"]\n",
            "line 2: invalid value for `cluster.seeds`: \"no-port\" is not of the form HOST:PORT",
        ),
        (
            "[cluster]\nforward = \"127.0.0.1\"\n",
            "line 2: invalid value for `cluster.forward`: \"127.0.0.1\" is not an address",
        ),
        (
            "[api]\nlisten = \"bad\"\n",
            "line 2: invalid value for `api.listen`: \"bad\" is not an address of the form IP:PORT",
        ),
        (
            "[store.retention]\nmax-age = \"soon\"\n",
            "line 2: invalid value for `store.retention.max-age`: \"soon\" is not a duration like",
        ),
    ];
    for (text, expected) in cases {
        let error = Config::parse_toml(text).unwrap_err();
        assert!(
            error.contains(expected),
            "{text:?}: {error:?} lacks {expected:?}"
        );
    }
}

/// What the node is handed: parsed values, each listener's zone resolved, the spool's
/// retention in the store's configuration.
#[test]
fn subsystems_get_typed_values() {
    let config = Config::parse_toml(
        r#"
        [syslog]
        udp = [{ address = "127.0.0.1:1514", rfc3164-timezone = "+02:00" }, "[::1]:1514"]
        rfc3164-timezone = "UTC"
        shard-by = "peer"
        [store]
        segment-max-bytes = 1048576
        [store.retention]
        shard-max-bytes = 5000000
        [cluster]
        gossip = "0.0.0.0:7000"
        gossip-advertise = "192.0.2.1:7000"
        seeds = ["node-2.example:7000"]
        spool-retention = "2h"
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    let udp = config.udp_listeners();
    assert_eq!(udp[0].address, "127.0.0.1:1514".parse().unwrap());
    assert_eq!(udp[0].rfc3164_timezone, parse_zone("+02:00").unwrap());
    assert_eq!(udp[1].address, "[::1]:1514".parse().unwrap());
    assert_eq!(udp[1].rfc3164_timezone, Zone::Utc);
    assert_eq!(
        udp[1].ingest_config("node-a"),
        IngestConfig {
            origin: "node-a".into(),
            shard_by: ShardBy::Peer,
            rfc3164_zone: Zone::Utc,
        }
    );
    let store = config.store_config();
    assert_eq!(store.segment_max_bytes, 1048576);
    assert_eq!(store.commit_max_bytes, 4 * 1024 * 1024);
    assert_eq!(store.retention.shard_max_bytes, Some(5000000));
    assert_eq!(
        store.retention.spool_retention,
        Some(Duration::from_secs(7200))
    );
    assert_eq!(config.cluster.gossip, "0.0.0.0:7000".parse().unwrap());
    assert_eq!(
        config.cluster.gossip_advertise,
        Some("192.0.2.1:7000".parse().unwrap())
    );
    assert_eq!(config.cluster.seeds[0].as_str(), "node-2.example:7000");
    assert_eq!(
        config.api_address(),
        Some("127.0.0.1:5517".parse().unwrap())
    );
}

/// The message an operator sees for `text` as a file: parse, validate, located as `run` and
/// `validate` locate it (without the file's path).
fn refusal(text: &str) -> String {
    let (config, lines) = match file::parse(text) {
        Ok(parsed) => parsed,
        Err(message) => return message,
    };
    let origins = Origins {
        file: Some(PathBuf::from("f.toml")),
        lines,
        flags: Vec::new(),
    };
    match config.validate() {
        Ok(()) => panic!("{text:?} was accepted"),
        Err(error) => {
            let message = origins.locate(error).to_string();
            message
                .strip_prefix("invalid config file f.toml: ")
                .unwrap_or(&message)
                .to_string()
        }
    }
}

/// Every refusal names the key, the line, and what was expected, in an operator's words
/// (issue 19's "Why": type errors spoke Rust and value errors had no line).
#[test]
fn every_refusal_names_key_line_and_form() {
    let cases = [
        ("[syslog\n", "line 1: "),
        (
            "[syslog]\nmax-message-bytes = \"64x\"\n",
            "line 2: invalid value for `syslog.max-message-bytes`: \"64x\" is not a size like \
             64KiB, 1GiB or a number of bytes",
        ),
        (
            "[syslog]\nmax-message-bytes = 100\n",
            "line 2: invalid value for `syslog.max-message-bytes`: 100 bytes is outside 480 \
             bytes to 16 MiB",
        ),
        (
            "[syslog]\nmax-message-bytes = 1.5\n",
            "line 2: invalid value for `syslog.max-message-bytes`: 1.5 is not a whole number",
        ),
        (
            "[syslog]\nmax-message-bytes = \"64KiB\"\npipeline-max-bytes = \"32KiB\"\n",
            "line 3: invalid value for `syslog.pipeline-max-bytes`: 32768 bytes (32 KiB) is \
             less than syslog.max-message-bytes (65536 bytes (64 KiB))",
        ),
        (
            "[cluster]\n\npriority = -5\n",
            "line 3: invalid value for `cluster.priority`: -5 is not a whole number from 0 to \
             4294967295",
        ),
        (
            "[cluster]\nmay-be-master = \"yes\"\n",
            "line 2: invalid value for `cluster.may-be-master`: \"yes\" is not true or false",
        ),
        (
            "[syslog]\nidle-timeout = 30\n",
            "line 2: invalid value for `syslog.idle-timeout`: 30 is not a duration like \"30s\", \
             \"10m\" or \"7days\"",
        ),
        (
            "[syslog]\nidle-timeout = \"0s\"\n",
            "line 2: invalid value for `syslog.idle-timeout`: must be greater than zero",
        ),
        (
            "[store]\ncommit-max-delay = \"11s\"\n",
            "line 2: invalid value for `store.commit-max-delay`: 11s is above the maximum of 10s",
        ),
        (
            "[store]\nsegment-max-bytes = \"1KiB\"\n",
            "line 2: invalid value for `store.segment-max-bytes`: 1024 bytes (1 KiB) is below \
             the minimum of 64 KiB",
        ),
        (
            "[store.retention]\ntotal-max-bytes = \"lots\"\n",
            "line 2: invalid value for `store.retention.total-max-bytes`: \"lots\" is not a size",
        ),
        (
            "[log]\nlevel = \"verbose!!\"\n",
            "line 2: invalid value for `log.level`: \"verbose!!\" is not a log level: expected a \
             level (error, warn, info, debug, trace or off)",
        ),
        (
            "[log]\nlevel = \"warning\"\n",
            "line 2: invalid value for `log.level`: \"warning\" is not a log level",
        ),
        (
            "[log]\ncolor = \"blue\"\n",
            "line 2: invalid value for `log.color`: \"blue\" is not auto, always or never",
        ),
        (
            "[cluster]\ngossip = \"0.0.0.0:5515\"\n",
            "line 2: invalid value for `cluster.gossip`: gossip listens on 0.0.0.0:5515, an \
             address peers cannot reach: set cluster.gossip-advertise",
        ),
        (
            "[cluster]\ngossip = \"0.0.0.0:5515\"\ngossip-advertise = \"0.0.0.0:5515\"\n",
            "line 3: invalid value for `cluster.gossip-advertise`: gossip is 0.0.0.0:5515",
        ),
        (
            "[syslog]\ntcp = [\"127.0.0.1:7000\"]\n[cluster]\nforward = \"127.0.0.1:7000\"\n",
            "line 4: invalid value for `cluster.forward`: 127.0.0.1:7000 (TCP) is also \
             syslog.tcp's address (127.0.0.1:7000)",
        ),
        (
            "[syslog]\nudp = [\"127.0.0.1:1\", \
             { address = \"127.0.0.1:2\", rfc3164-timezone = \"Mars/X\" }]\n",
            "line 2: invalid value for `syslog.udp.rfc3164-timezone`: unknown time zone \"Mars/X\"",
        ),
        (
            "[cluster]\nbogus = 1\n",
            "line 2: in [cluster]: unknown field `bogus`",
        ),
        (
            "node-id = 5\n",
            "line 1: invalid value for `node-id`: 5 is not a quoted string",
        ),
    ];
    for (text, expected) in cases {
        let message = refusal(text);
        assert!(
            message.starts_with(expected),
            "{text:?}:\n got {message:?}\nwant {expected:?}"
        );
        assert!(!message.contains('\n'), "{text:?}: {message:?}");
    }
}

/// A value left at its default that fails a cross-key check is named without a line.
#[test]
fn a_default_value_is_named_without_a_line() {
    assert_eq!(
        refusal("[syslog]\nudp = [\"127.0.0.1:5515\"]\n"),
        "invalid value for `cluster.gossip`: 127.0.0.1:5515 (UDP) is also syslog.udp's address \
         (127.0.0.1:5515): give each listener its own port"
    );
}

#[test]
fn sizes_take_units() {
    let check = |text: &str, bytes: u64| assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
    check("65536", 65536);
    check("64KiB", 64 * 1024);
    check("64k", 64 * 1024);
    check("64 KiB", 64 * 1024);
    check("1GiB", 1 << 30);
    check("1gib", 1 << 30);
    check("1.5GiB", 3 << 29);
    check("2MB", 2_000_000);
    check("1kB", 1000);
    check("10B", 10);
    for bad in [
        "",
        "k",
        "64x",
        "-1",
        "1.5",
        "1e3",
        "64 KiBs",
        "99999999999TiB",
    ] {
        assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
    }
    let config = Config::parse_toml(
        "[syslog]\nmax-message-bytes = \"64KiB\"\npipeline-max-bytes = \"1GiB\"\n\
         [store]\nsegment-max-bytes = \"16MiB\" # a comment stays a comment\n\
         [store.retention]\ntotal-max-bytes = \"2GB\"\n[cluster]\nspool-max-bytes = 4096\n",
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.syslog.max_message_bytes, 65536);
    assert_eq!(config.syslog.pipeline_max_bytes, 1 << 30);
    assert_eq!(config.store.segment_max_bytes, 16 << 20);
    assert_eq!(config.store.retention.total_max_bytes, Some(2_000_000_000));
    assert_eq!(config.cluster.spool_max_bytes, 4096);
}

#[test]
fn sizes_print_for_people() {
    for (bytes, text) in [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (64 << 20, "64 MiB"),
        ((1 << 30) + (1 << 29), "1.5 GiB"),
    ] {
        assert_eq!(format_size(bytes), text);
    }
}

/// `--log-level warning` (rsyslog's spelling) was accepted and silenced every line: tracing
/// read it as a target name. Only levels and TARGET=LEVEL directives pass.
#[test]
fn log_levels_are_levels() {
    for good in [
        "info",
        "WARN",
        "off",
        "info,starling::cluster=debug",
        "starling=trace",
        "error, starling::store=debug",
    ] {
        assert_eq!(parse_log_level(good), Ok(()), "{good:?}");
    }
    for bad in [
        "warning",
        "verbose!!",
        "",
        "starling=loud",
        "=debug",
        "info,bad target=debug",
    ] {
        assert!(parse_log_level(bad).is_err(), "{bad:?} was accepted");
    }
}

/// A flag's value that validation refuses names the flag.
#[test]
fn a_value_set_by_a_flag_names_the_flag() {
    let mut origins = Origins::default();
    origins.set_by_flag("log.level", "--log-level");
    let error = origins.locate(ConfigError::Invalid {
        key: "log.level",
        message: "no".into(),
    });
    assert_eq!(
        error.to_string(),
        "invalid value for `log.level` (set by --log-level): no"
    );
}
