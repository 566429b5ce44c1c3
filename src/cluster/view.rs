//! The typed cluster view the rest of Starling sees: members keyed by node id, and the master.
//!
//! `members_from_nodes` turns raw gossip node states (one per chitchat incarnation) into one
//! `Member` per node id, keeping only the highest generation, so a restarted node is one member.
//! Pure: no chitchat types, no I/O, no clocks.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::keys;

/// One incarnation of a node as gossip knows it (input of `members_from_nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSnapshot {
    pub node_id: String,
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    /// The failure detector considers this incarnation alive (self is always alive).
    pub alive: bool,
    /// The node's Starling keys (`keys::*`).
    pub keys: BTreeMap<String, String>,
}

/// One cluster member: the newest known incarnation of a node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_id: String,
    /// Start time of this incarnation (Unix nanoseconds); a restart gets a larger one.
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    pub forward_addr: Option<SocketAddr>,
    pub api_addr: Option<SocketAddr>,
    pub priority: u32,
    pub may_be_master: bool,
    pub alive: bool,
    /// The node announced a clean shutdown.
    pub leaving: bool,
    /// The node claims to be the master (its own election result).
    pub claims_master: bool,
    /// The master this node follows, as it published it.
    pub follows: Option<String>,
    pub version: Option<String>,
    pub spool_bytes: Option<u64>,
    pub forward_lag: Option<u64>,
}

impl Member {
    /// Alive, allowed to be master, not leaving, and reachable for forwarding.
    pub fn is_eligible(&self) -> bool {
        self.alive && self.may_be_master && !self.leaving && self.forward_addr.is_some()
    }
}

/// What this node knows about the cluster at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub self_id: String,
    /// Sorted by node id.
    pub members: Vec<Member>,
    /// The node id of the master this node follows, if any is known yet.
    pub master: Option<String>,
}

impl ClusterView {
    pub fn member(&self, node_id: &str) -> Option<&Member> {
        self.members.iter().find(|member| member.node_id == node_id)
    }

    /// The master's member entry, if a master is known.
    pub fn master_member(&self) -> Option<&Member> {
        self.member(self.master.as_deref()?)
    }

    /// The master's forwarding address, if a master is known and published one.
    pub fn master_forward_addr(&self) -> Option<SocketAddr> {
        self.master_member()?.forward_addr
    }

    pub fn is_master(&self) -> bool {
        self.master.as_deref() == Some(self.self_id.as_str())
    }

    pub fn num_alive(&self) -> usize {
        self.members.iter().filter(|member| member.alive).count()
    }
}

/// One member per node id, from the highest generation; sorted by node id.
pub fn members_from_nodes(nodes: impl IntoIterator<Item = NodeSnapshot>) -> Vec<Member> {
    let mut newest: BTreeMap<String, NodeSnapshot> = BTreeMap::new();
    for node in nodes {
        match newest.get(&node.node_id) {
            Some(known) if known.generation >= node.generation => {}
            _ => {
                newest.insert(node.node_id.clone(), node);
            }
        }
    }
    newest.into_values().map(member_from_node).collect()
}

fn member_from_node(node: NodeSnapshot) -> Member {
    let get = |key: &str| node.keys.get(key).map(String::as_str);
    let addr = |key: &str| get(key).and_then(|value| value.parse::<SocketAddr>().ok());
    let number = |key: &str| get(key).and_then(|value| value.parse::<u64>().ok());
    Member {
        forward_addr: addr(keys::FORWARD_ADDR),
        api_addr: addr(keys::API_ADDR),
        priority: get(keys::PRIORITY)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0),
        may_be_master: keys::decode_bool(get(keys::MAY_BE_MASTER)),
        leaving: keys::decode_bool(get(keys::LEAVING)),
        claims_master: get(keys::ROLE) == Some(keys::ROLE_MASTER),
        follows: get(keys::MASTER)
            .filter(|value| !value.is_empty())
            .map(str::to_string),
        version: get(keys::VERSION).map(str::to_string),
        spool_bytes: number(keys::SPOOL_BYTES),
        forward_lag: number(keys::FORWARD_LAG),
        alive: node.alive,
        gossip_addr: node.gossip_addr,
        generation: node.generation,
        node_id: node.node_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(node_id: &str, generation: u64, alive: bool, pairs: &[(&str, &str)]) -> NodeSnapshot {
        NodeSnapshot {
            node_id: node_id.to_string(),
            generation,
            gossip_addr: "127.0.0.1:5515".parse().unwrap(),
            alive,
            keys: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn highest_generation_wins_even_when_older_is_alive() {
        let members = members_from_nodes(vec![
            node("a", 10, true, &[(keys::PRIORITY, "1")]),
            node("a", 20, false, &[(keys::PRIORITY, "2")]),
            node("b", 5, true, &[]),
        ]);
        let summary: Vec<_> = members
            .iter()
            .map(|m| (m.node_id.as_str(), m.generation, m.alive, m.priority))
            .collect();
        assert_eq!(summary, vec![("a", 20, false, 2), ("b", 5, true, 0)]);
    }

    #[test]
    fn keys_are_decoded_and_bad_values_ignored() {
        let members = members_from_nodes(vec![node(
            "a",
            1,
            true,
            &[
                (keys::FORWARD_ADDR, "10.0.0.1:5516"),
                (keys::API_ADDR, "not an address"),
                (keys::PRIORITY, "-3"),
                (keys::MAY_BE_MASTER, "true"),
                (keys::ROLE, keys::ROLE_MASTER),
                (keys::MASTER, ""),
                (keys::SPOOL_BYTES, "42"),
            ],
        )]);
        let member = &members[0];
        assert_eq!(member.forward_addr, Some("10.0.0.1:5516".parse().unwrap()));
        assert_eq!(member.api_addr, None);
        assert_eq!(member.priority, 0);
        assert!(member.may_be_master && member.claims_master && !member.leaving);
        assert_eq!(member.follows, None);
        assert_eq!(member.spool_bytes, Some(42));
        assert!(member.is_eligible());
    }

    #[test]
    fn member_without_forward_addr_is_not_eligible() {
        let members =
            members_from_nodes(vec![node("a", 1, true, &[(keys::MAY_BE_MASTER, "true")])]);
        assert!(!members[0].is_eligible());
    }
}
