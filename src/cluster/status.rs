//! `/v1/status` data: what a node reports about itself and the cluster, as serde structs, and
//! the table `starling status` prints from it.
//!
//! Built from a `ClusterView`; serialization and formatting only, no I/O.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::view::ClusterView;

/// The node's answer to `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node_id: String,
    /// `master`, `follower`, or `electing` while no master is known.
    pub role: String,
    pub master: Option<String>,
    pub generation: u64,
    pub members: Vec<MemberStatus>,
}

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub node_id: String,
    pub generation: u64,
    pub alive: bool,
    /// The member is the master this node follows.
    pub is_master: bool,
    /// The member claims to be master itself (differs from `is_master` during a split).
    pub claims_master: bool,
    pub leaving: bool,
    pub priority: u32,
    pub may_be_master: bool,
    pub gossip_addr: String,
    pub forward_addr: Option<String>,
    pub api_addr: Option<String>,
    pub version: Option<String>,
    /// The master this member follows, as it published it.
    pub follows: Option<String>,
    pub spool_bytes: Option<u64>,
    /// Records accepted by the member and not yet acknowledged by the master.
    pub forward_lag: Option<u64>,
}

impl Status {
    /// The status of node `view.self_id` from its view; `generation` is this incarnation's.
    pub fn from_view(view: &ClusterView, generation: u64) -> Status {
        let role = match view.master.as_deref() {
            None => "electing",
            Some(master) if master == view.self_id => "master",
            Some(_) => "follower",
        };
        let members = view
            .members
            .iter()
            .map(|member| MemberStatus {
                node_id: member.node_id.clone(),
                generation: member.generation,
                alive: member.alive,
                is_master: view.master.as_deref() == Some(member.node_id.as_str()),
                claims_master: member.claims_master,
                leaving: member.leaving,
                priority: member.priority,
                may_be_master: member.may_be_master,
                gossip_addr: member.gossip_addr.to_string(),
                forward_addr: member.forward_addr.map(|addr| addr.to_string()),
                api_addr: member.api_addr.map(|addr| addr.to_string()),
                version: member.version.clone(),
                follows: member.follows.clone(),
                spool_bytes: member.spool_bytes,
                forward_lag: member.forward_lag,
            })
            .collect();
        Status {
            node_id: view.self_id.clone(),
            role: role.to_string(),
            master: view.master.clone(),
            generation,
            members,
        }
    }

    /// A human-readable table: a header line, then one line per member.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "node {} ({}), master: {}",
            self.node_id,
            self.role,
            self.master.as_deref().unwrap_or("none")
        );
        let header = [
            "NODE", "STATE", "ROLE", "GOSSIP", "FORWARD", "API", "SPOOL", "LAG",
        ];
        let rows: Vec<[String; 8]> = self
            .members
            .iter()
            .map(|member| {
                let state = if member.leaving {
                    "leaving"
                } else if member.alive {
                    "alive"
                } else {
                    "dead"
                };
                let role = match (member.is_master, member.claims_master) {
                    (true, _) => "master",
                    (false, true) => "claims-master",
                    (false, false) => "follower",
                };
                let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
                let number =
                    |value: Option<u64>| value.map_or_else(|| "-".into(), |n| n.to_string());
                [
                    member.node_id.clone(),
                    state.to_string(),
                    role.to_string(),
                    member.gossip_addr.clone(),
                    or_dash(&member.forward_addr),
                    or_dash(&member.api_addr),
                    number(member.spool_bytes),
                    number(member.forward_lag),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let mut line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            let _ = writeln!(out, "{}", padded.join("  ").trim_end());
        };
        line(header.to_vec());
        for row in &rows {
            line(row.iter().map(String::as_str).collect());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::view::Member;

    fn member(node_id: &str, alive: bool, claims_master: bool) -> Member {
        Member {
            node_id: node_id.to_string(),
            generation: 7,
            gossip_addr: "127.0.0.1:5515".parse().unwrap(),
            forward_addr: Some("127.0.0.1:5516".parse().unwrap()),
            api_addr: None,
            priority: 0,
            may_be_master: true,
            alive,
            leaving: false,
            claims_master,
            follows: Some("a".to_string()),
            version: Some("0.1.0".to_string()),
            spool_bytes: Some(1024),
            forward_lag: None,
        }
    }

    #[test]
    fn status_from_view_and_json_round_trip() {
        let view = ClusterView {
            self_id: "b".to_string(),
            members: vec![member("a", true, true), member("b", false, false)],
            master: Some("a".to_string()),
        };
        let status = Status::from_view(&view, 42);
        assert_eq!(status.role, "follower");
        assert_eq!(status.generation, 42);
        assert!(status.members[0].is_master && !status.members[1].is_master);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["members"][0]["forward_addr"], "127.0.0.1:5516");
        assert_eq!(json["members"][1]["api_addr"], serde_json::Value::Null);
        let back: Status = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn table_lists_every_member() {
        let view = ClusterView {
            self_id: "a".to_string(),
            members: vec![member("a", true, true), member("b", false, true)],
            master: Some("a".to_string()),
        };
        let table = Status::from_view(&view, 1).to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "node a (master), master: a");
        assert!(lines[1].starts_with("NODE  STATE  ROLE"), "{table}");
        assert!(lines[2].starts_with("a     alive  master"), "{table}");
        assert!(
            lines[3].starts_with("b     dead   claims-master"),
            "{table}"
        );
        assert!(lines[3].ends_with("1024   -"), "{table}");
        let electing = ClusterView {
            self_id: "a".into(),
            members: Vec::new(),
            master: None,
        };
        assert_eq!(Status::from_view(&electing, 1).role, "electing");
    }
}
