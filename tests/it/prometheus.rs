//! `/metrics` checked by Prometheus's own tools: `promtool check metrics` lints a live node's
//! exposition, and a real `prometheus` server (its own temporary config and data directory,
//! scrape interval 1 s) scrapes a node under load and answers queries about it through its
//! HTTP API. Both skip when the tool is missing (and fail under `STARLING_REQUIRE_PEERS=1`).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sandbox::{have_program, http_get, metric_value, wait_until, Node};

const WAIT: Duration = Duration::from_secs(30);

/// Sends `count` messages over UDP and over TCP (one of each kind a listener counts: plain,
/// unparsed, truncated).
fn send_some(node: &Node, count: usize) {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut tcp = TcpStream::connect(node.tcp.unwrap()).unwrap();
    for i in 0..count {
        let line = format!("<14>1 - prom-host app - - - message {i}");
        udp.send_to(line.as_bytes(), node.udp.unwrap()).unwrap();
        writeln!(tcp, "{line}").unwrap();
    }
    udp.send_to(b"not syslog at all", node.udp.unwrap())
        .unwrap();
    writeln!(tcp, "<14>1 - prom-host app - - - {}", "x".repeat(4096)).unwrap();
    tcp.flush().unwrap();
}

#[test]
fn promtool_accepts_a_live_nodes_metrics() {
    let test = "promtool_accepts_a_live_nodes_metrics";
    if !have_program("promtool", test) {
        return;
    }
    let node = Node::start(&["--max-message-bytes", "1024"]);
    send_some(&node, 20);
    assert!(
        wait_until(WAIT, || {
            let metrics = node.metrics();
            metric_value(&metrics, "starling_store_appended_records_total") >= 42.0
                && metric_value(&metrics, "starling_store_commits_total") >= 1.0
        }),
        "records stored; metrics:\n{}",
        node.metrics()
    );
    let body = node.metrics();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {} said:\n{said}\nfor the body:\n{body}",
        output.status
    );
}

/// A `prometheus` server with its own configuration and data directory, killed on drop.
struct Prometheus {
    child: Child,
    address: SocketAddr,
    work: tempfile::TempDir,
}

/// A port that was free a moment ago (bound on 127.0.0.1:0 and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    /// Starts a server scraping `target`'s `/metrics` every second. Prometheus takes no
    /// port 0, so a free port is chosen; if another process takes it first, it tries again.
    fn start(target: SocketAddr) -> Prometheus {
        let mut work = tempfile::tempdir().unwrap();
        let config = work.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: starling\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        for _attempt in 0..5 {
            let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let log = std::fs::File::create(work.path().join("prometheus.log")).unwrap();
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    work.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={address}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start prometheus");
            let mut server = Prometheus {
                child,
                address,
                work,
            };
            let ready = wait_until(WAIT, || server.exited() || server.is_ready());
            if ready && !server.exited() {
                return server;
            }
            let log = server.log();
            assert!(
                log.contains("address already in use"),
                "prometheus did not start:\n{log}"
            );
            // The port was taken between the probe and the bind: try another.
            work = server.stop();
        }
        panic!("prometheus found no free port in 5 attempts");
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    fn is_ready(&self) -> bool {
        ureq::get(&format!("http://{}/-/ready", self.address))
            .call()
            .is_ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Kills the server and hands its working directory back.
    fn stop(mut self) -> tempfile::TempDir {
        self.kill();
        let work = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.work, work)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The instant vector `expr` evaluates to: each series' labels and value.
    fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let body = ureq::get(&format!("http://{}/api/v1/query", self.address))
            .query("query", expr)
            .call()
            .and_then(|mut response| response.body_mut().read_to_string())
            .unwrap_or_else(|error| panic!("query {expr}: {error}"));
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["status"], "success", "query {expr}: {body}");
        answer["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("query {expr}: {body}"))
            .iter()
            .map(|series| {
                let value = series["value"][1].as_str().unwrap().parse().unwrap();
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// The single value of `expr`, if it has one.
    fn value(&self, expr: &str) -> Option<f64> {
        match self.query(expr).as_slice() {
            [(_, value)] => Some(*value),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends to the node over UDP and TCP until stopped (at most `limit`, so it ends by itself).
fn load(node: &Node, stop: Arc<AtomicBool>, limit: Duration) -> std::thread::JoinHandle<u64> {
    let (udp_target, tcp_target) = (node.udp.unwrap(), node.tcp.unwrap());
    std::thread::spawn(move || {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut tcp = TcpStream::connect(tcp_target).unwrap();
        let started = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
            for _ in 0..100 {
                let line = format!("<14>1 - load-host app - - - load {sent}");
                let _ = udp.send_to(line.as_bytes(), udp_target);
                writeln!(tcp, "{line}").unwrap();
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    })
}

#[test]
fn a_real_prometheus_scrapes_a_node_under_load() {
    let test = "a_real_prometheus_scrapes_a_node_under_load";
    if !have_program("prometheus", test) {
        return;
    }
    let node = Node::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = load(&node, stop.clone(), Duration::from_secs(60));
    let prometheus = Prometheus::start(node.api.unwrap());
    let scraped = wait_until(WAIT, || {
        prometheus.value("up") == Some(1.0)
            && prometheus
                .value("sum(starling_store_appended_records_total)")
                .is_some_and(|appended| appended > 0.0)
    });
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert!(
        scraped,
        "prometheus reads up = 1 and appended records > 0 (sent {sent}); up: {:?}, \
         appended: {:?}, targets: {}\nlog:\n{}",
        prometheus.query("up"),
        prometheus.query("starling_store_appended_records_total"),
        http_get(prometheus.address, "/api/v1/targets"),
        prometheus.log()
    );
    // Every listener's series and the node-wide ones came through the same scrape.
    for (expr, at_least) in [
        ("starling_received_messages_total{transport=\"udp\"}", 1.0),
        ("starling_received_messages_total{transport=\"tcp\"}", 1.0),
        ("sum(starling_stored_messages_total)", 1.0),
        ("sum(starling_pipeline_dropped_messages_total)", 0.0),
        ("starling_cluster_members{state=\"alive\"}", 1.0),
        ("starling_store_commits_total", 1.0),
        // The commit latency is a histogram Prometheus can take quantiles of.
        ("starling_store_commit_latency_seconds_count", 1.0),
        (
            "histogram_quantile(0.99, starling_store_commit_latency_seconds_bucket)",
            0.0,
        ),
    ] {
        assert!(
            wait_until(WAIT, || prometheus
                .value(expr)
                .is_some_and(|value| value >= at_least)),
            "{expr} >= {at_least}: {:?}",
            prometheus.query(expr)
        );
    }
}
