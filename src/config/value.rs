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
        let (address, zone) = match entry {
            ListenerEntry::Address(address) => (address.as_str(), None),
            ListenerEntry::Table(table) => {
                (table.address.as_str(), table.rfc3164_timezone.as_deref())
            }
        };
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
        let rfc3164_timezone = zone
            .map(|zone| parse_value(key, zone, parse_zone))
            .transpose()?;
        if listeners.iter().any(|listener| listener.address == address) {
            return Err(invalid(key, format!("address {address} is listed twice")));
        }
        listeners.push(Listener {
            address,
            rfc3164_timezone,
        });
    }
    Ok(listeners)
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
