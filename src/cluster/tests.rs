//! In-process cluster tests: real chitchat over loopback UDP, several nodes in one runtime,
//! partitions through `GossipFaults`. Each test waits with `wait_until`, never a bare sleep.

use std::time::{Duration, Instant};

use super::*;
use crate::testutil::wait_until;

struct TestNode {
    handle: Option<ClusterHandle>,
    faults: GossipFaults,
    node_id: String,
}

impl TestNode {
    fn handle(&self) -> &ClusterHandle {
        self.handle.as_ref().expect("node is running")
    }

    fn master(&self) -> Option<String> {
        self.handle().view().master
    }
}

fn config(node_id: &str, seeds: Vec<String>) -> ClusterConfig {
    ClusterConfig {
        node_id: node_id.to_string(),
        cluster_id: "test-cluster".to_string(),
        gossip_listen: "127.0.0.1:0".parse().unwrap(),
        gossip_advertise: None,
        seeds,
        priority: 0,
        may_be_master: true,
        forward_addr: "127.0.0.1:5516".parse().unwrap(),
        api_addr: "127.0.0.1:5517".parse().unwrap(),
        timing: ClusterTiming::default(),
    }
}

async fn start_node(node_id: &str, seeds: Vec<String>) -> TestNode {
    let faults = GossipFaults::new();
    let handle = start_with_faults(config(node_id, seeds), faults.clone())
        .await
        .unwrap();
    TestNode {
        handle: Some(handle),
        faults,
        node_id: node_id.to_string(),
    }
}

/// Starts `n` nodes seeded with the first one.
async fn start_cluster(n: usize) -> Vec<TestNode> {
    let first = start_node("node-0", Vec::new()).await;
    let seed = first.handle().gossip_addr().to_string();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(start_node(&format!("node-{i}"), vec![seed.clone()]).await);
    }
    nodes
}

/// The master all given nodes agree on, if they do and see every one of them alive.
fn agreed_master(nodes: &[&TestNode]) -> Option<String> {
    let first = nodes[0].master()?;
    let all_agree = nodes.iter().all(|node| {
        let view = node.handle().view();
        view.master.as_deref() == Some(first.as_str())
            && nodes
                .iter()
                .all(|other| view.member(&other.node_id).is_some_and(|m| m.alive))
    });
    all_agree.then_some(first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_node_is_its_own_master() {
    let node = start_node("alone", Vec::new()).await;
    assert!(
        wait_until(Duration::from_secs(2), || node.master().as_deref()
            == Some("alone"))
        .await
    );
    let view = node.handle().view();
    assert!(view.is_master());
    assert_eq!(
        view.master_forward_addr(),
        Some("127.0.0.1:5516".parse().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_then_fail_over_when_the_master_dies() {
    let mut nodes = start_cluster(3).await;
    let started = Instant::now();
    let all: Vec<&TestNode> = nodes.iter().collect();
    assert!(wait_until(Duration::from_secs(5), || agreed_master(&all).is_some()).await);
    let master = agreed_master(&all).unwrap();
    eprintln!("agreed on {master} after {:?}", started.elapsed());
    // The first node started first and claimed before the others joined.
    assert_eq!(master, "node-0");
    let view = nodes[1].handle().view();
    assert_eq!(view.members.len(), 3);
    assert!(view.members.iter().all(|m| m.alive && m.may_be_master));
    assert!(view.member("node-0").unwrap().claims_master);
    assert_eq!(nodes[1].handle().master_changes(), 1);
    // Published stats reach the others.
    nodes[1].handle().publish_stats(4096, 12).await;
    let seen = || {
        let view = nodes[2].handle().view();
        let member = view.member("node-1").unwrap().clone();
        member.spool_bytes == Some(4096) && member.forward_lag == Some(12)
    };
    assert!(wait_until(Duration::from_secs(5), seen).await);

    // Kill the master without a goodbye.
    let killed_at = Instant::now();
    drop(nodes[0].handle.take());
    let survivors: Vec<&TestNode> = nodes[1..].iter().collect();
    let new_master = |survivors: &[&TestNode]| {
        let first = survivors[0].master()?;
        (first != "node-0"
            && survivors
                .iter()
                .all(|n| n.master().as_deref() == Some(first.as_str())))
        .then_some(first)
    };
    assert!(wait_until(Duration::from_secs(10), || new_master(&survivors).is_some()).await);
    eprintln!(
        "failover to {:?} after {:?}",
        new_master(&survivors),
        killed_at.elapsed()
    );
    assert_eq!(new_master(&survivors).as_deref(), Some("node-1"));

    // The old master comes back (new generation): it joins as a follower, no change of master.
    let seed = nodes[1].handle().gossip_addr().to_string();
    nodes[0] = start_node("node-0", vec![seed]).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    assert!(wait_until(Duration::from_secs(5), || agreed_master(&all).is_some()).await);
    assert_eq!(agreed_master(&all).as_deref(), Some("node-1"));
    let view = nodes[2].handle().view();
    assert_eq!(
        view.members.len(),
        3,
        "a restarted node is one member: {view:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_switches_within_a_second() {
    let mut nodes = start_cluster(3).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    assert!(wait_until(Duration::from_secs(5), || agreed_master(&all).is_some()).await);
    let leaving = nodes[0].handle.take().unwrap();
    let left_at = Instant::now();
    let leave = tokio::spawn(leaving.leave());
    let survivors: Vec<&TestNode> = nodes[1..].iter().collect();
    let switched = || {
        survivors
            .iter()
            .all(|n| n.master().as_deref() == Some("node-1"))
    };
    assert!(
        wait_until(Duration::from_secs(1), switched).await,
        "switch took over 1 s"
    );
    eprintln!("switch after leave took {:?}", left_at.elapsed());
    leave.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_gives_two_masters_and_heal_gives_one() {
    let nodes = start_cluster(3).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    assert!(wait_until(Duration::from_secs(5), || agreed_master(&all).is_some()).await);
    assert_eq!(agreed_master(&all).as_deref(), Some("node-0"));

    // {node-0} | {node-1, node-2}
    let addr0 = nodes[0].handle().gossip_addr();
    nodes[0].faults.isolate();
    nodes[1].faults.cut(addr0);
    nodes[2].faults.cut(addr0);
    let majority: Vec<&TestNode> = nodes[1..].iter().collect();
    let split = || {
        nodes[0].master().as_deref() == Some("node-0")
            && majority
                .iter()
                .all(|n| n.master().as_deref() == Some("node-1"))
    };
    assert!(
        wait_until(Duration::from_secs(10), split).await,
        "no split brain while partitioned"
    );
    assert!(nodes[1].handle().view().member("node-1").is_some());

    for node in &nodes {
        node.faults.heal();
    }
    let healed = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || agreed_master(&all).is_some()).await);
    // The older claimant wins.
    assert_eq!(agreed_master(&all).as_deref(), Some("node-0"));
    eprintln!("one master again {:?} after heal", healed.elapsed());
    // Only one node still claims.
    let claims = || {
        let view = nodes[2].handle().view();
        view.members.iter().filter(|m| m.claims_master).count() == 1
    };
    assert!(wait_until(Duration::from_secs(5), claims).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_joiner_takes_over_but_equal_priority_does_not() {
    let nodes = start_cluster(2).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    assert!(wait_until(Duration::from_secs(5), || agreed_master(&all).is_some()).await);
    assert_eq!(agreed_master(&all).as_deref(), Some("node-0"));
    let mut high = config("high", vec![nodes[0].handle().gossip_addr().to_string()]);
    high.priority = 10;
    let high = TestNode {
        handle: Some(start(high).await.unwrap()),
        faults: GossipFaults::new(),
        node_id: "high".to_string(),
    };
    let all: Vec<&TestNode> = nodes.iter().chain([&high]).collect();
    assert!(
        wait_until(Duration::from_secs(5), || agreed_master(&all).as_deref()
            == Some("high"))
        .await
    );
}

#[tokio::test]
async fn unspecified_advertise_address_is_refused() {
    let mut cfg = config("a", Vec::new());
    cfg.gossip_listen = "0.0.0.0:0".parse().unwrap();
    let error = start(cfg).await.err().expect("must fail");
    assert!(error.to_string().contains("advertise"), "{error}");
}

#[test]
fn handles_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ClusterHandle>();
    assert_send_sync::<ClusterView>();
    assert_send_sync::<GossipFaults>();
}
