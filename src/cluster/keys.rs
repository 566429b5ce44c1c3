//! Gossip key names: every key Starling publishes in its chitchat node state, in one place.
//!
//! Values are short strings (chitchat values are `String`); keep them tiny so a node's whole
//! state fits one delta. This module only names keys and encodes their values; it does no I/O.

/// Prefix shared by every Starling key, so foreign keys are easy to ignore.
pub const PREFIX: &str = "starling.";
/// `ip:port` of the node's forwarding (TCP) listener.
pub const FORWARD_ADDR: &str = "starling.forward_addr";
/// `ip:port` of the node's HTTP API.
pub const API_ADDR: &str = "starling.api_addr";
/// Election priority, a decimal `u32`; higher wins.
pub const PRIORITY: &str = "starling.priority";
/// `"true"` when the node may be elected master.
pub const MAY_BE_MASTER: &str = "starling.may_be_master";
/// The Starling version the node runs.
pub const VERSION: &str = "starling.version";
/// `"master"` while the node believes it is the master (its claim), else `"follower"`.
pub const ROLE: &str = "starling.role";
/// The node id this node currently follows as master (empty when it knows of none).
pub const MASTER: &str = "starling.master";
/// Set to `"true"` by a node that is shutting down cleanly: peers stop electing it at once.
pub const LEAVING: &str = "starling.leaving";
/// Bytes held in the node's spool (published periodically, for status).
pub const SPOOL_BYTES: &str = "starling.spool_bytes";
/// Records accepted by the node but not yet acknowledged by the master (for status).
pub const FORWARD_LAG: &str = "starling.forward_lag";

pub const ROLE_MASTER: &str = "master";
pub const ROLE_FOLLOWER: &str = "follower";

/// Encodes a boolean value the way every boolean key is written.
pub fn encode_bool(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

/// Decodes a boolean key; anything but `"true"` is false.
pub fn decode_bool(value: Option<&str>) -> bool {
    value == Some("true")
}
