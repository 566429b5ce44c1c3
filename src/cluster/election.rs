//! Master election: a deterministic rule every node evaluates on its own live view, plus the
//! small amount of memory that makes it stable (hysteresis and start-up settling).
//!
//! The rule (`choose`): among eligible members (alive, may be master, not leaving, with a
//! forwarding address), the ones that currently *claim* to be master keep it — the best
//! claimant wins — unless some eligible member has a strictly higher priority than that
//! claimant. With no claimant, the best eligible member wins. "Best" is the highest priority,
//! then the earliest generation (start time), then the lowest node id. Claims are gossiped by
//! each node about itself, so every node converges on the same answer; a joining or restarting
//! node never claims while a live claimant exists, so it never deposes the master unless it has
//! a higher priority. After a partition heals the two claimants are compared and one steps down.
//!
//! `Elector` adds: no answer until start-up has settled (a peer was seen, or a timeout passed,
//! so a starting node does not crown itself before it heard the cluster), and a grace period
//! during which a master that stopped looking alive is kept (one missed round moves nothing).
//! A master that announced it is leaving is dropped at once. Pure: no I/O, time is passed in.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use super::view::Member;

/// Ordering key: larger is better.
fn rank(member: &Member) -> (u32, Reverse<u64>, Reverse<&str>) {
    (
        member.priority,
        Reverse(member.generation),
        Reverse(member.node_id.as_str()),
    )
}

/// The master the deterministic rule picks on this view, without memory.
pub fn choose(members: &[Member]) -> Option<&Member> {
    let eligible = || members.iter().filter(|member| member.is_eligible());
    let best_overall = eligible().max_by(|a, b| rank(a).cmp(&rank(b)))?;
    match eligible()
        .filter(|member| member.claims_master)
        .max_by(|a, b| rank(a).cmp(&rank(b)))
    {
        Some(claimant) if best_overall.priority <= claimant.priority => Some(claimant),
        _ => Some(best_overall),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionConfig {
    /// How long a master that stopped looking alive is kept before moving on.
    pub master_grace: Duration,
    /// How long a node that expects peers (it has seeds) waits to hear one before electing.
    pub settle_timeout: Duration,
    /// The node has seeds other than itself, so it should hear from a peer before electing.
    pub expects_peers: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Incumbent {
    node_id: String,
    generation: u64,
}

/// The per-node election state machine.
#[derive(Debug)]
pub struct Elector {
    config: ElectionConfig,
    started_at: Instant,
    settled: bool,
    current: Option<Incumbent>,
    /// When the current master was first seen not alive (reset when seen alive again).
    unseen_since: Option<Instant>,
}

impl Elector {
    pub fn new(config: ElectionConfig, now: Instant) -> Elector {
        Elector {
            config,
            started_at: now,
            settled: !config.expects_peers,
            current: None,
            unseen_since: None,
        }
    }

    /// The master this node follows given its view `members` at `now`.
    pub fn decide(&mut self, self_id: &str, members: &[Member], now: Instant) -> Option<String> {
        if !self.settled {
            let heard_peer = members
                .iter()
                .any(|member| member.alive && member.node_id != self_id);
            let waited =
                now.saturating_duration_since(self.started_at) >= self.config.settle_timeout;
            if !(heard_peer || waited) {
                return None;
            }
            self.settled = true;
        }
        let target = choose(members);
        if let Some(current) = &self.current {
            if target.is_some_and(|member| member.node_id == current.node_id) {
                self.unseen_since = None;
            } else {
                let incumbent = members
                    .iter()
                    .find(|member| member.node_id == current.node_id);
                let still_alive_incarnation =
                    incumbent.filter(|member| member.generation == current.generation);
                let keep = match still_alive_incarnation {
                    // Alive but no longer chosen (a better claimant or priority, or it stopped
                    // claiming), or it announced it is leaving: follow the rule at once.
                    Some(member) if member.alive || member.leaving => false,
                    _ => {
                        let since = *self.unseen_since.get_or_insert(now);
                        now.saturating_duration_since(since) < self.config.master_grace
                    }
                };
                if keep {
                    return Some(current.node_id.clone());
                }
            }
        }
        self.unseen_since = None;
        self.current = target.map(|member| Incumbent {
            node_id: member.node_id.clone(),
            generation: member.generation,
        });
        self.current
            .as_ref()
            .map(|incumbent| incumbent.node_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `spec`: "id:priority:generation:flags" with flags from
    /// `a` alive, `m` may be master, `c` claims, `l` leaving, `f` no forward address.
    fn members(specs: &[&str]) -> Vec<Member> {
        specs
            .iter()
            .map(|spec| {
                let parts: Vec<&str> = spec.split(':').collect();
                let flags = parts[3];
                Member {
                    node_id: parts[0].to_string(),
                    priority: parts[1].parse().unwrap(),
                    generation: parts[2].parse().unwrap(),
                    gossip_addr: "127.0.0.1:1".parse().unwrap(),
                    forward_addr: if flags.contains('f') {
                        None
                    } else {
                        Some("127.0.0.1:2".parse().unwrap())
                    },
                    api_addr: None,
                    may_be_master: flags.contains('m'),
                    alive: flags.contains('a'),
                    leaving: flags.contains('l'),
                    claims_master: flags.contains('c'),
                    follows: None,
                    version: None,
                    spool_bytes: None,
                    forward_lag: None,
                }
            })
            .collect()
    }

    fn check_choose(specs: &[&str], expected: Option<&str>) {
        let view = members(specs);
        assert_eq!(
            choose(&view).map(|m| m.node_id.as_str()),
            expected,
            "view {specs:?}"
        );
    }

    #[test]
    fn choose_table() {
        // Empty, nobody eligible.
        check_choose(&[], None);
        check_choose(&["a:0:1:a", "b:0:2:m"], None);
        // Highest priority, then earliest generation, then lowest id.
        check_choose(&["a:0:1:am", "b:5:9:am", "c:1:0:am"], Some("b"));
        check_choose(&["a:0:7:am", "b:0:3:am", "c:0:5:am"], Some("b"));
        check_choose(&["b:0:3:am", "a:0:3:am"], Some("a"));
        // Dead, leaving, not may-be-master, no forward address: not eligible.
        check_choose(&["a:0:1:m", "b:0:2:am"], Some("b"));
        check_choose(&["a:0:1:aml", "b:0:2:am"], Some("b"));
        check_choose(&["a:0:1:amf", "b:0:2:am"], Some("b"));
        // A claimant keeps it against earlier generations and lower ids of the same priority.
        check_choose(&["a:0:1:am", "b:0:9:amc"], Some("b"));
        // ... but not against a strictly higher priority.
        check_choose(&["a:1:1:am", "b:0:9:amc"], Some("a"));
        // Two claimants (healed partition): the best claimant wins.
        check_choose(&["a:0:5:amc", "b:0:3:amc", "c:0:1:am"], Some("b"));
        // A dead or leaving claimant does not count.
        check_choose(&["a:0:1:mc", "b:0:5:am"], Some("b"));
        check_choose(&["a:0:1:amcl", "b:0:5:am"], Some("b"));
    }

    fn config(expects_peers: bool) -> ElectionConfig {
        ElectionConfig {
            master_grace: Duration::from_secs(1),
            settle_timeout: Duration::from_secs(2),
            expects_peers,
        }
    }

    #[test]
    fn lone_node_elects_itself_at_once() {
        let now = Instant::now();
        let mut elector = Elector::new(config(false), now);
        assert_eq!(
            elector.decide("a", &members(&["a:0:1:am"]), now).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn node_with_seeds_waits_for_a_peer_or_the_timeout() {
        let start = Instant::now();
        let mut elector = Elector::new(config(true), start);
        assert_eq!(elector.decide("a", &members(&["a:0:1:am"]), start), None);
        let mut other = Elector::new(config(true), start);
        let later = start + Duration::from_millis(500);
        assert_eq!(
            other
                .decide("a", &members(&["a:0:1:am", "b:0:2:am"]), later)
                .as_deref(),
            Some("a")
        );
        let timeout = start + Duration::from_secs(2);
        assert_eq!(
            elector
                .decide("a", &members(&["a:0:1:am"]), timeout)
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn dead_master_is_kept_for_the_grace_then_replaced() {
        let start = Instant::now();
        let mut elector = Elector::new(config(false), start);
        let ms = |n| start + Duration::from_millis(n);
        assert_eq!(
            elector
                .decide("b", &members(&["a:0:1:amc", "b:0:2:am"]), ms(0))
                .as_deref(),
            Some("a")
        );
        let a_dead = members(&["a:0:1:mc", "b:0:2:am"]);
        assert_eq!(elector.decide("b", &a_dead, ms(100)).as_deref(), Some("a"));
        // Seen alive again: the grace restarts.
        assert_eq!(
            elector
                .decide("b", &members(&["a:0:1:amc", "b:0:2:am"]), ms(900))
                .as_deref(),
            Some("a")
        );
        assert_eq!(elector.decide("b", &a_dead, ms(1000)).as_deref(), Some("a"));
        assert_eq!(elector.decide("b", &a_dead, ms(1999)).as_deref(), Some("a"));
        assert_eq!(elector.decide("b", &a_dead, ms(2000)).as_deref(), Some("b"));
        // The old master comes back with a new generation: no change of master.
        let a_back = members(&["a:0:9:am", "b:0:2:amc"]);
        assert_eq!(elector.decide("b", &a_back, ms(3000)).as_deref(), Some("b"));
    }

    #[test]
    fn leaving_master_is_replaced_at_once() {
        let start = Instant::now();
        let mut elector = Elector::new(config(false), start);
        assert_eq!(
            elector
                .decide("b", &members(&["a:0:1:amc", "b:0:2:am"]), start)
                .as_deref(),
            Some("a")
        );
        let leaving = members(&["a:0:1:amcl", "b:0:2:am"]);
        assert_eq!(
            elector
                .decide("b", &leaving, start + Duration::from_millis(1))
                .as_deref(),
            Some("b")
        );
    }

    #[test]
    fn restarted_master_incarnation_is_treated_as_gone() {
        let start = Instant::now();
        let mut elector = Elector::new(config(false), start);
        assert_eq!(
            elector
                .decide("b", &members(&["a:0:1:amc", "b:0:2:am"]), start)
                .as_deref(),
            Some("a")
        );
        // a restarted before b noticed: the new incarnation does not claim; after the grace
        // b takes over (a's new generation is later than b's).
        let restarted = members(&["a:0:9:am", "b:0:2:am"]);
        assert_eq!(
            elector
                .decide("b", &restarted, start + Duration::from_millis(10))
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            elector
                .decide("b", &restarted, start + Duration::from_millis(1100))
                .as_deref(),
            Some("b")
        );
    }

    #[test]
    fn healed_partition_converges_on_the_best_claimant() {
        let start = Instant::now();
        let mut on_b = Elector::new(config(false), start);
        assert_eq!(
            on_b.decide("b", &members(&["a:0:1:mc", "b:0:2:amc"]), start)
                .as_deref(),
            Some("b")
        );
        let healed = members(&["a:0:1:amc", "b:0:2:amc"]);
        assert_eq!(
            on_b.decide("b", &healed, start + Duration::from_millis(1))
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn joining_higher_priority_node_takes_over() {
        let start = Instant::now();
        let mut elector = Elector::new(config(false), start);
        assert_eq!(
            elector
                .decide("a", &members(&["a:0:1:amc"]), start)
                .as_deref(),
            Some("a")
        );
        let joined = members(&["a:0:1:amc", "z:3:9:am"]);
        assert_eq!(
            elector
                .decide("a", &joined, start + Duration::from_millis(1))
                .as_deref(),
            Some("z")
        );
    }
}
