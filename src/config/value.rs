//! Parsing one configuration value from its text, shared by the file and the flags: the
//! `parse_*` functions (each names nothing but its value; [`parse_value`] adds the key) and
//! the `deserialize_with` functions of the keys read from text (`de`), which parse while the
//! file is read and name their key when they refuse a value.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

use super::{ConfigError, HostPort, Listener, ListenerEntry};
use crate::parse::Zone;

pub(super) fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

/// Parses the text of `key`'s value with `parse`; the error names the key (as
/// [`ConfigError::Invalid`]). The config file and the command-line flags both go through it.
pub fn parse_value<T>(
    key: &'static str,
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(text).map_err(|message| invalid(key, message))
}

/// Parses a list of listeners (`syslog.udp` or `syslog.tcp`, named by `key`): `none` alone
/// means no listener, an address may be listed once, a table's zone must be known.
pub fn parse_listeners(
    entries: &[ListenerEntry],
    key: &'static str,
) -> Result<Vec<Listener>, ConfigError> {
    let mut listeners: Vec<Listener> = Vec::new();
    for entry in entries {
        let (address, zone, allow, rate_limit) = match entry {
            ListenerEntry::Address(address) => (address.as_str(), None, &[][..], None),
            ListenerEntry::Table(table) => (
                table.address.as_str(),
                table.rfc3164_timezone.as_deref(),
                table.allow.as_slice(),
                table.rate_limit,
            ),
        };
        let allow = allow
            .iter()
            .map(|network| parse_value(key, network, parse_network))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(limit) = &rate_limit {
            if limit.messages_per_second == 0 || limit.burst == Some(0) || limit.max_keys == 0 {
                return Err(invalid(
                    key,
                    "rate-limit: messages-per-second, burst and max-keys must be at least 1".into(),
                ));
            }
        }
        if address == "none" {
            if entries.len() > 1 {
                return Err(invalid(
                    key,
                    "`none` cannot be combined with addresses".into(),
                ));
            }
            continue;
        }
        let address = parse_value(key, address, parse_address)?;
        let zone_key = match key {
            "syslog.udp" => "syslog.udp.rfc3164-timezone",
            "syslog.tcp" => "syslog.tcp.rfc3164-timezone",
            other => other,
        };
        let rfc3164_timezone = zone
            .map(|zone| parse_value(zone_key, zone, parse_zone))
            .transpose()?;
        if listeners.iter().any(|listener| listener.address == address) {
            return Err(invalid(key, format!("address {address} is listed twice")));
        }
        listeners.push(Listener {
            address,
            rfc3164_timezone,
            allow,
            rate_limit,
        });
    }
    Ok(listeners)
}

/// Parses a CIDR network (`10.0.0.0/8`, `fd00::/8`) or a single address (`192.0.2.7`, taken
/// as `/32` or `/128`).
pub fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not a network (10.0.0.0/8) or an address"))
}

/// Parses `ip:port` (a socket address; host names are not resolved for listen addresses).
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .map_err(|_| format!("{text:?} is not an address of the form IP:PORT"))
}

/// [`parse_address`], or `None` for `none` (the listener is off).
pub fn parse_optional_address(text: &str) -> Result<Option<SocketAddr>, String> {
    match text {
        "none" => Ok(None),
        _ => parse_address(text).map(Some),
    }
}

/// `local`, `UTC`, an IANA zone name such as `Europe/Berlin`, or an offset like `+02:00`.
pub fn parse_zone(zone: &str) -> Result<Zone, String> {
    zone.parse::<Zone>().map_err(|error| error.to_string())
}

/// Node ids travel in gossip and in every record: printable, no spaces, at most 128 bytes.
pub fn validate_node_id(node_id: &str) -> Result<(), String> {
    if node_id.is_empty() || node_id.len() > 128 {
        return Err(format!("{node_id:?} must be 1 to 128 bytes long"));
    }
    if let Some(bad) = node_id
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("{node_id:?} contains the character {bad:?}"));
    }
    Ok(())
}

/// The `deserialize_with` functions of the keys read from text: each parses its value once,
/// with the function the flags use, and names its key when it refuses one.
pub(super) mod de {
    use super::*;

    fn keyed<'de, D: Deserializer<'de>, T>(
        deserializer: D,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_value(key, &text, parse).map_err(serde::de::Error::custom)
    }

    fn listeners<'de, D: Deserializer<'de>>(
        deserializer: D,
        key: &'static str,
    ) -> Result<Vec<Listener>, D::Error> {
        let entries = Vec::<ListenerEntry>::deserialize(deserializer)?;
        parse_listeners(&entries, key).map_err(serde::de::Error::custom)
    }

    pub fn udp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Listener>, D::Error> {
        listeners(deserializer, "syslog.udp")
    }

    pub fn tcp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Listener>, D::Error> {
        listeners(deserializer, "syslog.tcp")
    }

    pub fn tls<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Listener>, D::Error> {
        listeners(deserializer, "syslog.tls")
    }

    pub fn fingerprints<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| {
                crate::config::parse_fingerprint(text)
                    .map_err(|message| format!("tls.fingerprints: {message}"))
            })
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }

    pub fn rfc3164_timezone<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Zone, D::Error> {
        keyed(deserializer, "syslog.rfc3164-timezone", parse_zone)
    }

    pub fn gossip<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        keyed(deserializer, "cluster.gossip", parse_address)
    }

    pub fn gossip_advertise<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        keyed(deserializer, "cluster.gossip-advertise", parse_address).map(Some)
    }

    pub fn seeds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<HostPort>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|seed| parse_value("cluster.seeds", seed, str::parse))
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }

    pub fn forward<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        keyed(deserializer, "cluster.forward", parse_address)
    }

    pub fn api_listen<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        keyed(deserializer, "api.listen", parse_optional_address)
    }
}

/// What a size key accepts, in the words of the error messages.
pub const SIZE_FORM: &str = "a size like 64KiB, 1GiB or a number of bytes";

/// Parses a size: a number of bytes (`65536`), or a number with a unit: `KiB`, `MiB`, `GiB`,
/// `TiB` (powers of 1024; `K`, `M`, `G`, `T` mean the same, as in systemd and rsyslog) or
/// `kB`, `MB`, `GB`, `TB` (powers of 1000). Units ignore case; a space may precede them; a
/// fraction is allowed with a unit (`1.5GiB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let refuse = || format!("{text:?} is not {SIZE_FORM}");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(refuse()),
    };
    if number.is_empty() {
        return Err(refuse());
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| format!("{text:?} is too large"));
    }
    match number.parse::<f64>() {
        Ok(fraction) if multiplier > 1 && fraction.is_finite() => {
            let bytes = (fraction * multiplier as f64).round();
            if bytes >= u64::MAX as f64 {
                Err(format!("{text:?} is too large"))
            } else {
                Ok(bytes as u64)
            }
        }
        _ => Err(refuse()),
    }
}

/// A byte count as people read it: `512 B`, `64 KiB`, `1.5 GiB` (binary units, at most one
/// decimal; exact values print without one).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let exact = bytes % (1u64 << (10 * (unit + 1))) == 0;
    if exact {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The levels `log.level` knows, in increasing detail.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `log.level` value: a level (`warn`), or comma-separated `TARGET=LEVEL`
/// directives with an optional bare level (`info,starling::cluster=debug`). A word that is
/// no level (`warning`, `verbose`) is refused: tracing would take it for a target name and
/// silence every log line.
pub fn parse_log_level(text: &str) -> Result<(), String> {
    let expected = "expected a level (error, warn, info, debug, trace or off) or TARGET=LEVEL \
                    directives such as info,starling::cluster=debug";
    if text.trim().is_empty() {
        return Err(format!("the level is empty: {expected}"));
    }
    for directive in text.split(',') {
        let directive = directive.trim();
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        let known = LOG_LEVELS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(level.trim()));
        if !known {
            return Err(format!("{level:?} is not a log level: {expected}"));
        }
        if let Some(target) = target {
            let target_ok = !target.is_empty()
                && target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            if !target_ok {
                return Err(format!("{target:?} is not a target name: {expected}"));
            }
        }
    }
    Ok(())
}

/// Rewrites serde's account of a value of the wrong type (`invalid type: string "64k",
/// expected usize`) in an operator's words (`"64k" is not a whole number`). Other
/// messages are returned as they are.
pub fn operator_words(message: &str) -> String {
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    let Some((found, expected)) = rest.and_then(|rest| rest.rsplit_once(", expected ")) else {
        return message.to_string();
    };
    // `integer `-5``, `floating point `1.5``, `string "64k"`: the value as it was written;
    // `sequence`, `map`: what kind of value it was.
    let found = match found.find(['`', '"']) {
        Some(start) if found[start..].starts_with('`') => found[start..].trim_matches('`'),
        Some(start) => &found[start..],
        None => match found {
            "sequence" => "a list",
            "map" => "a table",
            other => other,
        },
    };
    let expected = match expected {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "usize" | "u64" => "a whole number of 0 or more",
        "i64" | "i32" => "a whole number",
        "f64" | "f32" => "a number",
        "a boolean" => "true or false",
        "a string" => "a quoted string",
        "a sequence" => "a list in brackets, like [\"a\", \"b\"]",
        other => other,
    };
    format!("{found} is not {expected}")
}
