//! End-to-end tests of a three-node cluster: real `starling` processes on loopback, each with
//! its own data directory, gossiping on fixed free ports and seeding each other. They check
//! the election (`/v1/status`), exactly-once storage on the master (by `(origin, seq)` and by
//! message content, read back with `starling read`), failover after kill -9, a restarted old
//! master, a graceful hand-over, and a forwarder restarted mid-stream. The cluster tests run
//! one at a time (a lock) so their timings are not distorted by each other.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sandbox::{read_json, starling_bin, wait_until, Node};

/// Generous bound for anything that should happen in well under it.
const WAIT: Duration = Duration::from_secs(60);
const NUM_NODES: usize = 3;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A UDP port that was free a moment ago (bound to port 0, then released).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node_id(index: usize) -> String {
    format!("node-{index}")
}

/// Three nodes, each gossiping on a fixed port and seeding the two others, started in order
/// (so node-0 has the earliest generation).
struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with_env(&[])
    }

    fn start_with_env(env: &[(&str, &str)]) -> Cluster {
        Cluster::start_with(env, |_| Vec::new())
    }

    /// Like `start_with_env`, with extra arguments per node (by index).
    fn start_with(env: &[(&str, &str)], extra: impl Fn(usize) -> Vec<String>) -> Cluster {
        let ports: Vec<u16> = (0..NUM_NODES).map(|_| free_udp_port()).collect();
        let nodes = (0..NUM_NODES)
            .map(|index| {
                let mut args = extra(index);
                args.extend([
                    "--node-id".to_string(),
                    node_id(index),
                    "--gossip".to_string(),
                    format!("127.0.0.1:{}", ports[index]),
                ]);
                for (other, port) in ports.iter().enumerate() {
                    if other != index {
                        args.push("--seed".to_string());
                        args.push(format!("127.0.0.1:{port}"));
                    }
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Node::start_with_env(&args, env)
            })
            .collect();
        Cluster { nodes }
    }

    fn index_of(&self, node_id: &str) -> usize {
        (0..NUM_NODES)
            .find(|index| self::node_id(*index) == node_id)
            .expect("a known node id")
    }

    /// The master every running node among `indexes` names, once they all name the same one.
    fn agreed_master(&self, indexes: &[usize]) -> Option<String> {
        let mut masters = indexes.iter().map(|index| master_of(&self.nodes[*index]));
        let first = masters.next()??;
        masters
            .all(|master| master.as_deref() == Some(first.as_str()))
            .then_some(first)
    }

    fn wait_for_master(&self, indexes: &[usize], timeout: Duration) -> Option<String> {
        let mut agreed = None;
        wait_until(timeout, || {
            agreed = self.agreed_master(indexes);
            agreed.is_some()
        });
        agreed
    }

    /// Waits until the nodes `indexes` agree on a master other than `old`.
    fn wait_for_new_master(&self, indexes: &[usize], old: &str) -> Option<String> {
        let mut agreed = None;
        wait_until(WAIT, || {
            agreed = self.agreed_master(indexes).filter(|master| master != old);
            agreed.is_some()
        });
        agreed
    }

    fn all(&self) -> Vec<usize> {
        (0..NUM_NODES).collect()
    }

    fn stderr_dump(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(index, node)| format!("--- node-{index} stderr ---\n{}", node.stderr()))
            .collect()
    }
}

fn master_of(node: &Node) -> Option<String> {
    let api = node.api?;
    let body = ureq::get(&format!("http://{api}/v1/status"))
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .ok()?;
    let status: Value = serde_json::from_str(&body).ok()?;
    status["master"].as_str().map(str::to_string)
}

fn message(tag: &str, host: &str, index: usize) -> String {
    format!("<134>1 2026-11-26T10:00:00.000Z {host} cluster-test - - - {tag} {host} {index:08}")
}

fn send_tcp(address: SocketAddr, lines: impl Iterator<Item = String>) {
    let mut stream = BufWriter::new(TcpStream::connect(address).expect("connect"));
    for line in lines {
        stream.write_all(line.as_bytes()).unwrap();
        stream.write_all(b"\n").unwrap();
    }
    stream.flush().unwrap();
}

fn send_udp(address: SocketAddr, lines: impl Iterator<Item = String>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for line in lines {
        socket.send_to(line.as_bytes(), address).unwrap();
    }
}

/// A TCP sender in its own thread: `rate` messages per second (paced against the clock; 0 =
/// as fast as possible) until `total` are written or the connection breaks.
struct Sender {
    sent: Arc<AtomicU64>,
    thread: JoinHandle<u64>,
}

impl Sender {
    fn start(address: SocketAddr, tag: String, host: String, total: usize, rate: u64) -> Sender {
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut stream = BufWriter::new(TcpStream::connect(address).expect("connect"));
                let started = Instant::now();
                let mut written = 0u64;
                for index in 0..total {
                    let line = message(&tag, &host, index) + "\n";
                    if stream.write_all(line.as_bytes()).is_err() {
                        break;
                    }
                    written += 1;
                    let num_sent = written;
                    if num_sent % 500 == 0 {
                        if stream.flush().is_err() {
                            break;
                        }
                        sent.store(num_sent, Ordering::Relaxed);
                        if rate > 0 {
                            // Pacing, not waiting for a condition: stay at `rate` on average.
                            let due = Duration::from_secs_f64(num_sent as f64 / rate as f64);
                            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                                std::thread::sleep(ahead);
                            }
                        }
                    }
                }
                if stream.flush().is_ok() {
                    sent.store(written, Ordering::Relaxed);
                }
                sent.load(Ordering::Relaxed)
            })
        };
        Sender { sent, thread }
    }

    fn num_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn finish(self) -> u64 {
        self.thread.join().expect("sender thread")
    }
}

/// The records in `node`'s store whose message starts with `tag`, and how many of them repeat
/// an `(origin, seq)` identity seen before.
fn tagged_records(node: &Node, tag: &str) -> (Vec<Value>, usize) {
    let records: Vec<Value> = read_json(&node.data_dir, &[])
        .into_iter()
        .filter(|record| {
            record["message"]
                .as_str()
                .is_some_and(|text| text.starts_with(tag))
        })
        .collect();
    let mut identities = HashMap::new();
    let mut duplicate_identities = 0;
    for record in &records {
        let identity = (
            record["origin"].to_string(),
            record["seq"].as_u64().unwrap_or(0),
        );
        if identities.insert(identity, ()).is_some() {
            duplicate_identities += 1;
        }
    }
    (records, duplicate_identities)
}

/// Asserts `node`'s store holds each of `expected` (message → origin) exactly once, with no
/// other record of `tag` and no identity twice.
fn assert_exactly_once(node: &Node, tag: &str, expected: &BTreeMap<String, String>) {
    let (records, duplicate_identities) = tagged_records(node, tag);
    assert_eq!(
        duplicate_identities, 0,
        "records stored twice under one (origin, seq)"
    );
    let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for record in &records {
        let text = record["message"].as_str().unwrap().to_string();
        let origin = record["origin"].as_str().unwrap().to_string();
        seen.entry(text).or_insert((origin, 0)).1 += 1;
    }
    let missing: Vec<&String> = expected
        .keys()
        .filter(|text| !seen.contains_key(*text))
        .collect();
    let duplicated: Vec<&String> = seen
        .iter()
        .filter(|(_, (_, count))| *count > 1)
        .map(|(text, _)| text)
        .collect();
    let unexpected: Vec<&String> = seen
        .keys()
        .filter(|text| !expected.contains_key(*text))
        .collect();
    assert!(
        missing.is_empty() && duplicated.is_empty() && unexpected.is_empty(),
        "{} missing (first {:?}), {} duplicated (first {:?}), {} unexpected",
        missing.len(),
        missing.first(),
        duplicated.len(),
        duplicated.first(),
        unexpected.len()
    );
    for (text, origin) in expected {
        assert_eq!(&seen[text].0, origin, "origin of {text:?}");
    }
}

/// Message → sequence of records.
fn seqs_by_message(records: &[Value]) -> BTreeMap<String, u64> {
    records
        .iter()
        .map(|record| {
            let text = record["message"].as_str().unwrap_or_default().to_string();
            (text, record["seq"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// How many stored records of `tag` `node` has (a `starling read` per call).
fn count_tagged(node: &Node, tag: &str) -> usize {
    let output = Command::new(starling_bin())
        .args(["read", "--format", "raw", "--data-dir"])
        .arg(&node.data_dir)
        .output()
        .expect("run starling read");
    let needle = format!(" {tag} ");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(&needle))
        .count()
}

fn expect_messages(
    expected: &mut BTreeMap<String, String>,
    tag: &str,
    origin: usize,
    range: std::ops::Range<usize>,
) {
    for index in range {
        expected.insert(
            format!("{tag} {} {index:08}", host(origin)),
            node_id(origin),
        );
    }
}

fn host(origin: usize) -> String {
    format!("host-{origin}")
}

#[test]
fn three_nodes_elect_one_master_and_store_every_record_once() {
    let _serial = serial();
    let started = Instant::now();
    let cluster = Cluster::start();
    let all_started = started.elapsed();
    let master = cluster.wait_for_master(&cluster.all(), Duration::from_secs(5));
    let elected = started.elapsed();
    let master = master.unwrap_or_else(|| {
        panic!(
            "no agreed master within 5 s of the last start\n{}",
            cluster.stderr_dump()
        )
    });
    println!("nodes started in {all_started:?}; one master ({master}) agreed after {elected:?}");
    // Every node sees every member alive, with its addresses.
    let complete = |node: &Node| {
        let status = node.status();
        let members = status["members"].as_array().cloned().unwrap_or_default();
        members.len() == NUM_NODES
            && members.iter().all(|member| {
                member["alive"] == true
                    && member["forward_addr"].is_string()
                    && member["api_addr"].is_string()
                    && member["generation"]
                        .as_u64()
                        .is_some_and(|generation| generation > 0)
            })
    };
    assert!(
        wait_until(Duration::from_secs(5), || cluster
            .nodes
            .iter()
            .all(complete)),
        "members not all alive in every view: {:?}",
        cluster.nodes.iter().map(Node::status).collect::<Vec<_>>()
    );
    println!(
        "every node sees three live members after {:?}",
        started.elapsed()
    );

    let tag = "exactly-once";
    let mut expected = BTreeMap::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        send_tcp(
            node.tcp.unwrap(),
            (0..300).map(|i| message(tag, &host(index), i)),
        );
        send_udp(
            node.udp.unwrap(),
            (300..400).map(|i| message(tag, &host(index), i)),
        );
        expect_messages(&mut expected, tag, index, 0..400);
    }
    let master_node = &cluster.nodes[cluster.index_of(&master)];
    assert!(
        wait_until(WAIT, || count_tagged(master_node, tag) >= expected.len()),
        "the master did not receive every record\n{}",
        cluster.stderr_dump()
    );
    assert_exactly_once(master_node, tag, &expected);

    let output = Command::new(starling_bin())
        .args(["status", "--api", &master_node.api.unwrap().to_string()])
        .output()
        .expect("run starling status");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    assert!(
        table.starts_with(&format!("node {master} (master), master: {master}")),
        "{table}"
    );
    for index in 0..NUM_NODES {
        assert!(table.contains(&node_id(index)), "{table}");
    }
    let output = Command::new(starling_bin())
        .args([
            "status",
            "--format",
            "json",
            "--api",
            &master_node.api.unwrap().to_string(),
        ])
        .output()
        .expect("run starling status --format json");
    assert!(output.status.success());
    let json: Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    assert_eq!(
        (json["role"].as_str(), json["master"].as_str()),
        (Some("master"), Some(master.as_str()))
    );
    assert_eq!(json["members"].as_array().map(Vec::len), Some(NUM_NODES));
}

/// The non-master started last: after the master dies, the other survivor (started earlier)
/// becomes master, so this node's records travel over the network.
fn latest_follower(master: &str) -> usize {
    (0..NUM_NODES)
        .rev()
        .find(|index| node_id(*index) != master)
        .unwrap()
}

#[test]
fn master_killed_under_load_loses_nothing_and_comes_back_as_follower() {
    let _serial = serial();
    let mut cluster = Cluster::start();
    let old_master = cluster
        .wait_for_master(&cluster.all(), WAIT)
        .unwrap_or_else(|| panic!("no master\n{}", cluster.stderr_dump()));
    let old = cluster.index_of(&old_master);
    let sender_node = latest_follower(&old_master);
    let survivors: Vec<usize> = (0..NUM_NODES).filter(|index| *index != old).collect();

    // Records the master accepted itself: never forwarded while it was master.
    let own_tag = "old-master-own";
    send_tcp(
        cluster.nodes[old].tcp.unwrap(),
        (0..1000).map(|i| message(own_tag, &host(old), i)),
    );
    assert!(wait_until(WAIT, || count_tagged(
        &cluster.nodes[old],
        own_tag
    ) == 1000));

    let tag = "failover-load";
    let total = 80_000;
    let sender = Sender::start(
        cluster.nodes[sender_node].tcp.unwrap(),
        tag.into(),
        host(sender_node),
        total,
        20_000,
    );
    assert!(
        wait_until(WAIT, || sender.num_sent() >= 20_000),
        "the sender is not sending"
    );
    let baseline: HashMap<usize, f64> = survivors
        .iter()
        .map(|index| {
            (
                *index,
                cluster.nodes[*index].metric("starling_forward_in_records_stored_total"),
            )
        })
        .collect();
    cluster.nodes[old].kill();
    let killed = Instant::now();
    let new_master = cluster
        .wait_for_new_master(&survivors, &old_master)
        .unwrap_or_else(|| panic!("no new master after kill -9\n{}", cluster.stderr_dump()));
    let elected_after = killed.elapsed();
    let new = cluster.index_of(&new_master);
    let resumed_after = if new == sender_node {
        // The sender's own node is master: its records are in the master's store as they come.
        elected_after
    } else {
        let new_node = &cluster.nodes[new];
        assert!(
            wait_until(WAIT, || {
                new_node.metric("starling_forward_in_records_stored_total") > baseline[&new]
            }),
            "the new master stores nothing forwarded\n{}",
            cluster.stderr_dump()
        );
        killed.elapsed()
    };
    println!(
        "kill -9 of {old_master}: {new_master} elected after {elected_after:?}, \
         storing forwarded records again after {resumed_after:?}"
    );

    let num_sent = sender.finish() as usize;
    assert_eq!(num_sent, total, "the sender could not write everything");
    let mut expected = BTreeMap::new();
    expect_messages(&mut expected, tag, sender_node, 0..total);
    let new_node = &cluster.nodes[new];
    assert!(
        wait_until(WAIT, || count_tagged(new_node, tag) >= total),
        "the new master did not get every record: {} of {total}\n{}",
        count_tagged(new_node, tag),
        cluster.stderr_dump()
    );
    assert_exactly_once(new_node, tag, &expected);

    // The old master restarts: it follows the new master and forwards its own records.
    let changes_before = new_node.metric("starling_cluster_master_changes_total");
    cluster.nodes[old].spawn();
    let follows = wait_until(WAIT, || {
        master_of(&cluster.nodes[old]).as_deref() == Some(&new_master)
    });
    assert!(
        follows,
        "the restarted node does not follow {new_master}\n{}",
        cluster.stderr_dump()
    );
    let new_node = &cluster.nodes[new];
    assert!(
        wait_until(WAIT, || count_tagged(new_node, own_tag) >= 1000),
        "the old master's own records did not arrive\n{}",
        cluster.stderr_dump()
    );
    let mut own_expected = BTreeMap::new();
    expect_messages(&mut own_expected, own_tag, old, 0..1000);
    assert_exactly_once(new_node, own_tag, &own_expected);
    assert_eq!(
        cluster.agreed_master(&cluster.all()).as_deref(),
        Some(new_master.as_str())
    );
    assert_eq!(
        new_node.metric("starling_cluster_master_changes_total"),
        changes_before,
        "the restart moved the master"
    );
}

#[test]
fn graceful_stop_of_the_master_hands_over_within_a_second() {
    let _serial = serial();
    let mut cluster = Cluster::start();
    let old_master = cluster
        .wait_for_master(&cluster.all(), WAIT)
        .unwrap_or_else(|| panic!("no master\n{}", cluster.stderr_dump()));
    let old = cluster.index_of(&old_master);
    let sender_node = latest_follower(&old_master);
    let survivors: Vec<usize> = (0..NUM_NODES).filter(|index| *index != old).collect();

    let tag = "graceful-load";
    let total = 40_000;
    let sender = Sender::start(
        cluster.nodes[sender_node].tcp.unwrap(),
        tag.into(),
        host(sender_node),
        total,
        20_000,
    );
    assert!(
        wait_until(WAIT, || sender.num_sent() >= 10_000),
        "the sender is not sending"
    );
    crate::sandbox::send_signal(cluster.nodes[old].pid(), libc::SIGTERM);
    let stopping = Instant::now();
    let new_master = cluster.wait_for_new_master(&survivors, &old_master);
    let switched_after = stopping.elapsed();
    let new_master = new_master
        .unwrap_or_else(|| panic!("no new master after SIGTERM\n{}", cluster.stderr_dump()));
    let status = cluster.nodes[old].wait_exit(Duration::from_secs(10));
    let stopped_after = stopping.elapsed();
    println!(
        "SIGTERM to {old_master}: {new_master} agreed by the survivors after {switched_after:?}; \
         the old master exited after {stopped_after:?}"
    );
    assert!(status.success(), "{status:?}");
    assert!(
        switched_after < Duration::from_secs(1),
        "switch took {switched_after:?}"
    );
    assert!(
        stopped_after < Duration::from_secs(5),
        "shutdown took {stopped_after:?}"
    );

    assert_eq!(
        sender.finish() as usize,
        total,
        "the sender could not write everything"
    );
    let mut expected = BTreeMap::new();
    expect_messages(&mut expected, tag, sender_node, 0..total);
    let new_node = &cluster.nodes[cluster.index_of(&new_master)];
    assert!(
        wait_until(WAIT, || count_tagged(new_node, tag) >= total),
        "the new master did not get every record\n{}",
        cluster.stderr_dump()
    );
    assert_exactly_once(new_node, tag, &expected);
}

#[test]
fn forwarder_restarted_mid_stream_resumes_without_loss_or_duplicates() {
    let _serial = serial();
    let mut cluster = Cluster::start();
    let master = cluster
        .wait_for_master(&cluster.all(), WAIT)
        .unwrap_or_else(|| panic!("no master\n{}", cluster.stderr_dump()));
    let master_index = cluster.index_of(&master);
    let forwarder = latest_follower(&master);
    let tag = "forwarder-restart";
    let (first, total) = (2_000, 32_000);
    send_tcp(
        cluster.nodes[forwarder].tcp.unwrap(),
        (0..first).map(|i| message(tag, &host(forwarder), i)),
    );
    assert!(
        wait_until(WAIT, || count_tagged(&cluster.nodes[master_index], tag)
            >= first),
        "nothing forwarded\n{}",
        cluster.stderr_dump()
    );

    // Freeze the master (briefly: well under failure detection) so the forwarder has batches
    // in flight and a backlog when it is killed.
    let master_pid = cluster.nodes[master_index].pid();
    crate::sandbox::send_signal(master_pid, libc::SIGSTOP);
    let frozen = Instant::now();
    send_tcp(
        cluster.nodes[forwarder].tcp.unwrap(),
        (first..total).map(|i| message(tag, &host(forwarder), i)),
    );
    let spooled = wait_until(WAIT, || {
        count_tagged(&cluster.nodes[forwarder], tag) >= total
    });
    cluster.nodes[forwarder].kill();
    crate::sandbox::send_signal(master_pid, libc::SIGCONT);
    println!(
        "master frozen for {:?} while the forwarder spooled and was killed",
        frozen.elapsed()
    );
    assert!(spooled, "the forwarder did not spool every record");
    let spool_seqs = seqs_by_message(&tagged_records(&cluster.nodes[forwarder], tag).0);
    assert_eq!(spool_seqs.len(), total);
    cluster.nodes[forwarder].spawn();

    let mut expected = BTreeMap::new();
    expect_messages(&mut expected, tag, forwarder, 0..total);
    // Whoever is master now (normally still the same node) ends up with every record once.
    let master = cluster
        .wait_for_master(&cluster.all(), WAIT)
        .unwrap_or_else(|| panic!("no master\n{}", cluster.stderr_dump()));
    let master_node = &cluster.nodes[cluster.index_of(&master)];
    assert!(
        wait_until(WAIT, || count_tagged(master_node, tag) >= total),
        "the master did not get the forwarder's spool\n{}",
        cluster.stderr_dump()
    );
    assert_exactly_once(master_node, tag, &expected);
    let master_seqs = seqs_by_message(&tagged_records(master_node, tag).0);
    assert!(
        master_seqs == spool_seqs,
        "the master stored other sequences than the spool holds"
    );
    let forwarder_node = &cluster.nodes[forwarder];
    assert!(wait_until(WAIT, || forwarder_node
        .metric("starling_forward_lag_records")
        == 0.0));
    assert!(forwarder_node.metric("starling_forward_sessions_total") >= 1.0);
}

/// Asks node `index` to drop all of its gossip (`isolate`) or none (`heal`).
fn gossip_fault(node: &Node, fault: &str) {
    let url = format!("http://{}/debug/gossip-faults", node.api.unwrap());
    let response = ureq::post(&url)
        .send(fault)
        .unwrap_or_else(|error| panic!("POST {url}: {error}"));
    assert_eq!(response.status(), 200);
}

#[test]
fn partition_keeps_both_sides_storing_and_heals_into_one_union() {
    let _serial = serial();
    let cluster = Cluster::start_with_env(&[("STARLING_FAULT_INJECTION", "1")]);
    let old_master = cluster
        .wait_for_master(&cluster.all(), WAIT)
        .unwrap_or_else(|| panic!("no master\n{}", cluster.stderr_dump()));
    let alone = cluster.index_of(&old_master);
    let others: Vec<usize> = (0..NUM_NODES).filter(|index| *index != alone).collect();

    // {master} | {the two others}: the majority side elects its own master.
    gossip_fault(&cluster.nodes[alone], "isolate");
    let isolated = Instant::now();
    let other_master = cluster
        .wait_for_new_master(&others, &old_master)
        .unwrap_or_else(|| panic!("the majority elected no master\n{}", cluster.stderr_dump()));
    println!(
        "partition: {other_master} elected on the majority side after {:?}",
        isolated.elapsed()
    );
    assert_eq!(
        master_of(&cluster.nodes[alone]).as_deref(),
        Some(old_master.as_str())
    );

    // Senders on both sides; each side's master stores them.
    let tag = "partition";
    let follower = *others
        .iter()
        .find(|index| node_id(**index) != other_master)
        .unwrap();
    let mut expected = BTreeMap::new();
    for index in [alone, follower] {
        send_tcp(
            cluster.nodes[index].tcp.unwrap(),
            (0..2000).map(|i| message(tag, &host(index), i)),
        );
        expect_messages(&mut expected, tag, index, 0..2000);
    }
    let other_master_node = &cluster.nodes[cluster.index_of(&other_master)];
    assert!(wait_until(WAIT, || count_tagged(
        &cluster.nodes[alone],
        tag
    ) >= 2000));
    assert!(
        wait_until(WAIT, || count_tagged(other_master_node, tag) >= 2000),
        "the majority side's master does not store\n{}",
        cluster.stderr_dump()
    );

    gossip_fault(&cluster.nodes[alone], "heal");
    let healed = Instant::now();
    let mut master = None;
    wait_until(WAIT, || {
        master = cluster.agreed_master(&cluster.all());
        master.is_some()
    });
    let master =
        master.unwrap_or_else(|| panic!("no single master after heal\n{}", cluster.stderr_dump()));
    println!("healed: one master ({master}) after {:?}", healed.elapsed());
    let master_node = &cluster.nodes[cluster.index_of(&master)];
    assert!(
        wait_until(WAIT, || count_tagged(master_node, tag) >= expected.len()),
        "the surviving master did not get the union\n{}",
        cluster.stderr_dump()
    );
    assert_exactly_once(master_node, tag, &expected);
}

#[test]
fn full_spool_pushes_tcp_back_until_a_master_drains_it_and_retention_keeps_it() {
    let _serial = serial();
    // A node that may not be master and has none: nothing leaves its spool. Its retention
    // would keep only 200 kB, but it must not delete what no master has.
    let spooler_id = node_id(1);
    let spooler = Node::start(&[
        "--node-id",
        &spooler_id,
        "--may-be-master",
        "false",
        "--spool-max-bytes",
        "1000000",
        "--segment-max-bytes",
        "65536",
        "--retention-total-max-bytes",
        "200000",
    ]);
    assert_eq!(spooler.status()["role"], "electing");
    let tag = "spool-full";
    let total = 100_000;
    let sender = Sender::start(spooler.tcp.unwrap(), tag.into(), host(1), total, 0);
    assert!(
        wait_until(WAIT, || spooler.metric("starling_spool_full") == 1.0),
        "the spool gate never closed\n{}",
        spooler.stderr()
    );
    let held_back = count_tagged(&spooler, tag);
    assert!(held_back < total, "everything was stored despite the bound");
    assert!(wait_until(WAIT, || spooler
        .metric("starling_forward_lag_records")
        > 0.0));
    assert!(
        wait_until(WAIT, || spooler.metric("starling_store_retention_held")
            == 1.0),
        "retention never reported holding unforwarded segments\n{}",
        spooler.stderr()
    );
    assert_eq!(spooler.metric("starling_store_segments_deleted_total"), 0.0);
    assert!(
        count_tagged(&spooler, tag) >= held_back,
        "retention deleted spooled records"
    );

    // A master appears: the backlog drains, the gate opens, and every record arrives once.
    let gossip = spooler.gossip.unwrap().to_string();
    let master = Node::start(&["--node-id", &node_id(0), "--seed", &gossip]);
    let master_id = node_id(0);
    assert!(
        wait_until(WAIT, || {
            master_of(&spooler).as_deref() == Some(&master_id)
                && master_of(&master).as_deref() == Some(&master_id)
        }),
        "no master\n{}\n{}",
        spooler.stderr(),
        master.stderr()
    );
    assert_eq!(
        sender.finish() as usize,
        total,
        "the sender could not write everything"
    );
    assert!(
        wait_until(WAIT, || count_tagged(&master, tag) >= total),
        "the master did not get the spool\n{}",
        spooler.stderr()
    );
    println!("spool gate closed with {held_back} of {total} records stored; all arrived after");
    let mut expected = BTreeMap::new();
    expect_messages(&mut expected, tag, 1, 0..total);
    assert_exactly_once(&master, tag, &expected);
    assert!(wait_until(WAIT, || spooler.metric("starling_spool_full") == 0.0));
    assert!(spooler.metric("starling_spool_full_events_total") >= 1.0);
    // Acknowledged, the spooled records are no longer held: retention brings the spool down.
    assert!(
        wait_until(WAIT, || spooler.metric("starling_store_retention_held")
            == 0.0
            && spooler.metric("starling_store_segments_deleted_total") > 0.0),
        "retention did not resume after the master acknowledged the spool\n{}",
        spooler.metrics()
    );

    // Restarted while no master is reachable, the node remembers what was acknowledged: its
    // 100,000 forwarded records do not count as a backlog, so it accepts at once.
    assert!(wait_until(WAIT, || spooler
        .metric("starling_forward_lag_records")
        == 0.0));
    drop(master);
    let mut spooler = spooler;
    spooler.terminate(WAIT);
    spooler.spawn();
    let tag = "after-restart";
    send_tcp(
        spooler.tcp.unwrap(),
        (0..1_000).map(|i| message(tag, &host(1), i)),
    );
    assert!(
        wait_until(WAIT, || count_tagged(&spooler, tag) == 1_000),
        "the restarted node held ingest back\n{}",
        spooler.metrics()
    );
    assert_eq!(spooler.metric("starling_spool_full"), 0.0);
    assert!(
        wait_until(WAIT, || spooler.metric("starling_forward_lag_records")
            == 1_000.0),
        "forward lag {} after the restart, not the 1,000 new records",
        spooler.metric("starling_forward_lag_records")
    );
}

#[test]
fn a_node_that_lost_its_newest_segment_forwards_new_records_once() {
    let _serial = serial();
    let master_id = node_id(0);
    let master = Node::start(&["--node-id", &master_id]);
    let gossip = master.gossip.unwrap().to_string();
    let mut follower = Node::start(&[
        "--node-id",
        &node_id(1),
        "--may-be-master",
        "false",
        "--seed",
        &gossip,
        "--segment-max-bytes",
        "65536",
    ]);
    assert!(
        wait_until(WAIT, || master_of(&follower).as_deref() == Some(&master_id)),
        "no master\n{}",
        follower.stderr()
    );
    let (tag, first, more) = ("lost-segment", 3_000, 100);
    send_tcp(
        follower.tcp.unwrap(),
        (0..first).map(|i| message(tag, &host(1), i)),
    );
    assert!(
        wait_until(WAIT, || count_tagged(&master, tag) >= first),
        "not forwarded\n{}",
        follower.stderr()
    );

    // The follower stops and its newest segment is lost (disk damage, say): the master holds
    // sequences of it that its store no longer does.
    follower.terminate(WAIT);
    let shard = follower.data_dir.join("s-host-1");
    let newest = std::fs::read_dir(&shard)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .max()
        .expect("a segment");
    let stem = newest.file_stem().unwrap().to_owned();
    for entry in std::fs::read_dir(&shard).unwrap().flatten() {
        if entry.path().file_stem() == Some(stem.as_os_str()) {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let kept = count_tagged(&follower, tag);
    assert!(kept < first, "the segment held records");

    // Restarted, it forwards only its new records: its old ones are the master's already.
    follower.spawn();
    send_tcp(
        follower.tcp.unwrap(),
        (first..first + more).map(|i| message(tag, &host(1), i)),
    );
    assert!(
        wait_until(WAIT, || count_tagged(&master, tag) >= first + more),
        "the new records did not arrive\n{}",
        follower.stderr()
    );
    assert!(wait_until(WAIT, || follower
        .metric("starling_forward_lag_records")
        == 0.0));
    println!("{kept} of {first} records left on the follower after losing its newest segment");
    let mut expected = BTreeMap::new();
    expect_messages(&mut expected, tag, 1, 0..first + more);
    assert_exactly_once(&master, tag, &expected);
    // New records numbered among the master's seqs before the first handshake (normally all
    // of them: the handshake waits for gossip) were renumbered past them; old ones were not.
    let renumbered = follower.metric("starling_forward_renumbered_records_total");
    println!("{renumbered} new records renumbered");
    assert!(
        renumbered <= more.min(first - kept) as f64,
        "{renumbered} renumbered"
    );
}

/// The fsyncgate case end to end: every node runs with injected EIO at two range
/// `fdatasync`s (and a failed range is zeroed, as pages the kernel dropped would be). The
/// master's failure refuses the forwarded batches its commit held, cuts its shards back to
/// the last good point and lowers the forwarders' marks; they resend and the master ends up
/// with exactly what each follower's spool holds, each record once, and a store that
/// verifies. (A follower's own failure cuts its spool: those records are lost and counted
/// there, and a gap marker takes their sequences; the comparison is with what it kept.)
#[test]
fn a_failed_sync_on_the_master_refuses_the_forwarded_batches_and_their_resend_is_stored_once() {
    let _serial = serial();
    let cluster = Cluster::start_with_env(&[("STARLING_STORE_FAULTS", "sync:60:2")]);
    let master = cluster
        .wait_for_master(&cluster.all(), WAIT)
        .unwrap_or_else(|| panic!("no master\n{}", cluster.stderr_dump()));
    let master_node = &cluster.nodes[cluster.index_of(&master)];
    let followers: Vec<usize> = cluster
        .all()
        .into_iter()
        .filter(|index| node_id(*index) != master)
        .collect();
    let tag = "master-sync-failure";
    let total = 12_000;
    let senders: Vec<Sender> = followers
        .iter()
        .map(|&f| {
            Sender::start(
                cluster.nodes[f].tcp.unwrap(),
                tag.to_string(),
                host(f),
                total,
                3_000,
            )
        })
        .collect();
    for sender in senders {
        assert_eq!(sender.finish(), total as u64);
    }
    let sync_errors = |node: &Node| node.metric("starling_store_errors_total{kind=\"sync\"}");
    assert!(
        wait_until(WAIT, || sync_errors(master_node) >= 1.0),
        "the injected fault did not happen on the master\n{}",
        cluster.stderr_dump()
    );
    for &f in &followers {
        let node = &cluster.nodes[f];
        assert!(
            wait_until(WAIT, || node.metric("starling_forward_lag_records") == 0.0),
            "node-{f} did not catch up\n{}",
            cluster.stderr_dump()
        );
    }
    let refused: f64 = followers
        .iter()
        .map(|&f| cluster.nodes[f].metric("starling_forward_batches_refused_total"))
        .sum();
    assert!(refused >= 1.0, "no forwarded batch was refused");

    let (at_master, duplicate_identities) = tagged_records(master_node, tag);
    assert_eq!(duplicate_identities, 0, "an (origin, seq) stored twice");
    for &f in &followers {
        let spool = seqs_by_message(&tagged_records(&cluster.nodes[f], tag).0);
        let origin = node_id(f);
        let mine: Vec<Value> = at_master
            .iter()
            .filter(|r| r["origin"] == origin.as_str())
            .cloned()
            .collect();
        let stored = seqs_by_message(&mine);
        assert_eq!(stored.len(), mine.len(), "node-{f}'s records stored twice");
        assert!(
            stored == spool,
            "the master holds {} records of node-{f}, its spool {} (sync errors there: {})",
            stored.len(),
            spool.len(),
            sync_errors(&cluster.nodes[f])
        );
    }
    let verify = Command::new(starling_bin())
        .args(["verify", "--data-dir"])
        .arg(&master_node.data_dir)
        .output()
        .expect("run starling verify");
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

const GOSSIP_KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const GOSSIP_KEY_B: &str = "HxwdHhsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
const GOSSIP_KEY_C: &str = "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";

/// Writes `keys` to `path` the way an operator's tool should (a new file renamed over the
/// old), so a reload never reads half a file.
fn write_keys(path: &std::path::Path, keys: &[&str]) {
    let staging = path.with_extension("new");
    std::fs::write(
        &staging,
        format!("# gossip keys, first seals\n{}\n", keys.join("\n")),
    )
    .unwrap();
    std::fs::rename(&staging, path).unwrap();
}

/// A config file naming a gossip key file, in `dir`.
fn gossip_key_config(
    dir: &std::path::Path,
    name: &str,
    keys: &[&str],
) -> (String, std::path::PathBuf) {
    let key_path = dir.join(format!("{name}.keys"));
    write_keys(&key_path, keys);
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config_path,
        format!(
            "[cluster]\ngossip-keys-file = {:?}\n",
            key_path.to_str().unwrap()
        ),
    )
    .unwrap();
    (config_path.to_str().unwrap().to_string(), key_path)
}

fn members_alive(node: &Node) -> Vec<String> {
    let status = node.status();
    let mut alive: Vec<String> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|member| member["alive"] == true)
        .map(|member| member["node_id"].as_str().unwrap().to_string())
        .collect();
    alive.sort();
    alive
}

/// Item 5 of issue 14, end to end: three real nodes gossip sealed under a keyring file; a
/// node with another key stays outside (never a member, its datagrams counted); the keys
/// rotate in place (add a key, make it first, remove the old one; each step written to each
/// node's file in turn and picked up by the file poll, no restart) with three live members,
/// the same master and no datagram dropped throughout.
#[test]
fn gossip_keys_rotate_in_place_and_a_node_with_a_wrong_key_stays_outside() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, std::path::PathBuf)> = (0..NUM_NODES)
        .map(|index| gossip_key_config(dir.path(), &node_id(index), &[GOSSIP_KEY_A]))
        .collect();
    let cluster = Cluster::start_with(&[], |index| {
        vec!["--config".to_string(), files[index].0.clone()]
    });
    let master = cluster
        .wait_for_master(&cluster.all(), WAIT)
        .unwrap_or_else(|| panic!("no master\n{}", cluster.stderr_dump()));
    let everyone: Vec<String> = (0..NUM_NODES).map(node_id).collect();
    assert!(wait_until(WAIT, || cluster
        .nodes
        .iter()
        .all(|node| members_alive(node) == everyone)));
    let changes: Vec<f64> = cluster
        .nodes
        .iter()
        .map(|node| node.metric("starling_cluster_master_changes_total"))
        .collect();
    for node in &cluster.nodes {
        assert_eq!(node.metric("starling_gossip_keys"), 1.0);
        // The key never shows in the status or the logs.
        let status = node.status().to_string();
        assert!(!status.contains(GOSSIP_KEY_A) && !node.stderr().contains(GOSSIP_KEY_A));
    }

    // An intruder with another key, seeded with every node: it stays outside.
    let (intruder_config, _) = gossip_key_config(dir.path(), "intruder", &[GOSSIP_KEY_C]);
    let mut intruder_args = vec!["--node-id", "intruder", "--config", &intruder_config];
    let seeds: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.gossip.unwrap().to_string())
        .collect();
    for seed in &seeds {
        intruder_args.extend(["--seed", seed]);
    }
    let mut intruder = Node::start(&intruder_args);
    assert!(
        wait_until(WAIT, || cluster.nodes.iter().all(|node| node
            .metric("starling_gossip_dropped_total{reason=\"key\"}")
            >= 3.0)),
        "the intruder's datagrams were not counted"
    );
    let intruder_seen = || {
        cluster.nodes.iter().any(|node| {
            node.status()["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|member| member["node_id"] == "intruder")
        })
    };
    // Well over the time a node takes to join (about one second): still outside.
    assert!(!wait_until(Duration::from_secs(5), intruder_seen));
    assert_eq!(members_alive(&intruder), vec!["intruder".to_string()]);
    intruder.kill();
    let dropped_key: Vec<f64> = cluster
        .nodes
        .iter()
        .map(|node| node.metric("starling_gossip_dropped_total{reason=\"key\"}"))
        .collect();

    // Rotation in place: add, promote, remove; one node after the other at each step.
    for (step, keys) in [
        [GOSSIP_KEY_A, GOSSIP_KEY_B].as_slice(),
        &[GOSSIP_KEY_B, GOSSIP_KEY_A],
        &[GOSSIP_KEY_B],
    ]
    .iter()
    .enumerate()
    {
        for (index, node) in cluster.nodes.iter().enumerate() {
            write_keys(&files[index].1, keys);
            let reloaded = (step + 1) as f64;
            assert!(
                wait_until(WAIT, || node
                    .metric("starling_gossip_key_reloads_total{result=\"ok\"}")
                    == reloaded),
                "node-{index} did not reload step {step}"
            );
            assert_eq!(node.metric("starling_gossip_keys"), keys.len() as f64);
            assert_eq!(members_alive(node), everyone, "node-{index} step {step}");
        }
    }
    // A few gossip rounds under the new key alone.
    assert!(!wait_until(Duration::from_secs(3), || cluster
        .nodes
        .iter()
        .any(|node| members_alive(node) != everyone)));
    for (index, node) in cluster.nodes.iter().enumerate() {
        assert_eq!(master_of(node).as_deref(), Some(master.as_str()));
        assert_eq!(
            node.metric("starling_cluster_master_changes_total"),
            changes[index],
            "node-{index}: the master changed during the rotation"
        );
        assert_eq!(
            node.metric("starling_gossip_dropped_total{reason=\"key\"}"),
            dropped_key[index],
            "node-{index} dropped datagrams during the rotation"
        );
        for reason in ["plaintext", "stale", "malformed"] {
            let series = format!("starling_gossip_dropped_total{{reason=\"{reason}\"}}");
            assert_eq!(node.metric(&series), 0.0, "node-{index} {reason}");
        }
    }
    // A node that has only the retired key is now outside too.
    let (stale_config, _) = gossip_key_config(dir.path(), "retired", &[GOSSIP_KEY_A]);
    let mut retired_args = vec!["--node-id", "retired", "--config", &stale_config];
    for seed in &seeds {
        retired_args.extend(["--seed", seed]);
    }
    let retired = Node::start(&retired_args);
    assert!(wait_until(WAIT, || cluster
        .nodes
        .iter()
        .enumerate()
        .all(|(index, node)| node
            .metric("starling_gossip_dropped_total{reason=\"key\"}")
            > dropped_key[index])));
    assert!(!wait_until(Duration::from_secs(3), || members_alive(
        &retired
    )
    .len()
        > 1));
    assert!(cluster
        .nodes
        .iter()
        .all(|node| members_alive(node) == everyone));
}
