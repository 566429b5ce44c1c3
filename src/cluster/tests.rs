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
        gossip_keys_file: None,
        gossip_accept_plaintext: false,
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

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HxwdHhsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

fn key_file(dir: &tempfile::TempDir, name: &str, keys: &[&str]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, keys.join("\n")).unwrap();
    path
}

async fn start_sealed(
    node_id: &str,
    seeds: Vec<String>,
    keys_file: Option<std::path::PathBuf>,
    accept_plaintext: bool,
) -> TestNode {
    let mut cfg = config(node_id, seeds);
    cfg.gossip_keys_file = keys_file;
    cfg.gossip_accept_plaintext = accept_plaintext;
    TestNode {
        handle: Some(start(cfg).await.unwrap()),
        faults: GossipFaults::new(),
        node_id: node_id.to_string(),
    }
}

fn dropped(node: &TestNode, refusal: seal::Refusal) -> u64 {
    let index = seal::Refusal::ALL
        .iter()
        .position(|r| *r == refusal)
        .unwrap();
    node.handle().seal_stats().dropped[index].load(std::sync::atomic::Ordering::Relaxed)
}

fn sees_alive(node: &TestNode, other: &str) -> bool {
    node.handle()
        .view()
        .member(other)
        .is_some_and(|member| member.alive)
}

/// chitchat fills a datagram up to 65,507 bytes (its limit, not configurable): with a state
/// far larger than one datagram it sends messages close to that limit, and the whole state
/// still arrives sealed (a sealed datagram past the limit fails with EMSGSIZE and its part of
/// the state would never arrive). How close chitchat comes depends on how well the pending
/// zstd block compresses, so a message within the seal's overhead of the limit is not forced
/// here: `seal::tests` cuts one of exactly 65,507 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_gossip_moves_a_state_larger_than_a_datagram() {
    use base64::Engine as _;
    use rand::RngCore as _;
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(&dir, "keys", &[KEY_A]);
    let a = start_sealed("a", Vec::new(), Some(keys.clone()), false).await;
    // 200 values of 1,000 base64 characters (random, so zstd cannot shrink them much):
    // about 200 KB of state, three or more full datagrams.
    let mut values = Vec::new();
    for index in 0..200 {
        let mut bytes = [0u8; 750];
        rand::thread_rng().fill_bytes(&mut bytes);
        let value = base64::engine::general_purpose::STANDARD.encode(bytes);
        a.handle().set_key(&format!("big.{index:03}"), &value).await;
        values.push(value);
    }
    let seed = a.handle().gossip_addr().to_string();
    let b = start_sealed("b", vec![seed], Some(keys), false).await;
    let mut all_arrived = false;
    for _ in 0..600 {
        let mut arrived = 0;
        for (index, value) in values.iter().enumerate() {
            if b.handle()
                .key_of("a", &format!("big.{index:03}"))
                .await
                .as_deref()
                == Some(value.as_str())
            {
                arrived += 1;
            }
        }
        if arrived == values.len() {
            all_arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = a.handle().seal_stats();
    let largest = stats
        .largest_message
        .load(std::sync::atomic::Ordering::Relaxed);
    let cut = stats.cut.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("largest chitchat message {largest} bytes, {cut} messages cut");
    assert!(all_arrived, "the state did not arrive");
    // The datagrams were filled: the state took full messages, not a trickle of small ones.
    assert!(largest > 50_000, "{largest}");
    assert!(largest <= seal::MAX_DATAGRAM as u64, "{largest}");
    for refusal in seal::Refusal::ALL {
        assert_eq!(dropped(&a, refusal), 0, "{refusal:?}");
        assert_eq!(dropped(&b, refusal), 0, "{refusal:?}");
    }
}

/// A node with another key, and a node without keys, never become members of a sealed
/// cluster; their datagrams are counted. With `accept_plaintext`, a sealed node and a
/// plaintext node see each other (turning encryption on in a running cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_and_plaintext_nodes_stay_outside_unless_plaintext_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let keys_a = key_file(&dir, "a", &[KEY_A]);
    let keys_b = key_file(&dir, "b", &[KEY_B]);
    let first = start_sealed("first", Vec::new(), Some(keys_a.clone()), false).await;
    let seed = vec![first.handle().gossip_addr().to_string()];
    let second = start_sealed("second", seed.clone(), Some(keys_a.clone()), false).await;
    let wrong = start_sealed("wrong", seed.clone(), Some(keys_b), false).await;
    let _plain = start_sealed("plain", seed.clone(), None, false).await;
    assert!(
        wait_until(Duration::from_secs(10), || sees_alive(&first, "second")
            && sees_alive(&second, "first")
            && dropped(&first, seal::Refusal::Key) > 0
            && dropped(&first, seal::Refusal::Plaintext) > 0)
        .await
    );
    // Several more gossip rounds: still outside.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for outsider in ["wrong", "plain"] {
        assert!(
            first.handle().view().member(outsider).is_none(),
            "{outsider}"
        );
        assert!(
            second.handle().view().member(outsider).is_none(),
            "{outsider}"
        );
    }
    assert!(wrong.handle().view().member("first").is_none());
    assert_eq!(first.master().as_deref(), Some("first"));

    let lenient = start_sealed("lenient", seed, Some(keys_a), true).await;
    let lenient_seed = vec![lenient.handle().gossip_addr().to_string()];
    let plain2 = start_sealed("plain2", lenient_seed, None, false).await;
    assert!(
        wait_until(Duration::from_secs(10), || sees_alive(&lenient, "plain2")
            && sees_alive(&plain2, "lenient")
            && sees_alive(&lenient, "first")
            && sees_alive(&first, "lenient"))
        .await
    );
}

/// The key file is re-read: a rotation (add a key, move it first, remove the old one) keeps
/// both nodes members, with nothing dropped; a broken file keeps the ring in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_in_place_keeps_members_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path_a = key_file(&dir, "node-a", &[KEY_A]);
    let path_b = key_file(&dir, "node-b", &[KEY_A]);
    let a = start_sealed("a", Vec::new(), Some(path_a.clone()), false).await;
    let b = start_sealed(
        "b",
        vec![a.handle().gossip_addr().to_string()],
        Some(path_b.clone()),
        false,
    )
    .await;
    let both_alive = || sees_alive(&a, "b") && sees_alive(&b, "a");
    assert!(wait_until(Duration::from_secs(10), both_alive).await);
    let reloads = |node: &TestNode| {
        node.handle()
            .seal_stats()
            .reloads_ok
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for (step, keys) in [[KEY_A, KEY_B].as_slice(), &[KEY_B, KEY_A], &[KEY_B]]
        .iter()
        .enumerate()
    {
        // One node after the other, as an operator would.
        for (node, path) in [(&a, &path_a), (&b, &path_b)] {
            std::fs::write(path, keys.join("\n")).unwrap();
            let expected = step as u64 + 1;
            assert!(wait_until(Duration::from_secs(5), || reloads(node) == expected).await);
        }
        assert!(wait_until(Duration::from_secs(5), both_alive).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(both_alive());
    for refusal in seal::Refusal::ALL {
        assert_eq!(dropped(&a, refusal), 0, "{refusal:?}");
        assert_eq!(dropped(&b, refusal), 0, "{refusal:?}");
    }
    assert_eq!(a.handle().master_changes(), 1);
    assert_eq!(b.handle().master_changes(), 1);
    // A broken file is refused; the ring in use stays.
    std::fs::write(&path_a, "not a key\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || a
            .handle()
            .seal_stats()
            .reloads_failed
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1)
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(both_alive());
    assert_eq!(dropped(&b, seal::Refusal::Key), 0);
}
