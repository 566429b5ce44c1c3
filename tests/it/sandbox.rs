//! The integration-test sandbox: runs the real `starling` binary with every socket on
//! 127.0.0.1:0, its own data directory inside its own temporary working directory, learns the
//! bound addresses from the start-up lines the node prints, and offers `wait_until` instead of
//! sleeps, SIGTERM / SIGKILL, `read --format json` and `/metrics`.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn starling_bin() -> &'static str {
    env!("CARGO_BIN_EXE_starling")
}

/// Polls `predicate` until it holds or `timeout` passes; returns whether it held (the one
/// `wait_until` of the integration tests). The predicate is checked once more after the
/// deadline. Polls start at 2 ms and back off to 20 ms: a quick condition is seen at once
/// (the kill -9 loop kills soon after progress), and a predicate that runs `starling read`
/// or scrapes `/metrics` is not run in a tight loop.
///
/// Callers assert the result with a message showing the state they waited on, e.g.
/// `assert!(wait_until(WAIT, || count() == 10), "{} records", count())`.
pub fn wait_until(timeout: Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if predicate() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// A test that cannot run here (a peer program is missing, or it needs root): fails the
/// test when `STARLING_REQUIRE_PEERS` is set (as `.ci/run` does, after installing every
/// peer, as root), else prints `SKIPPED test: reason` where `cargo test` shows it. The
/// harness captures `println!`/`eprintln!` of a passing test and never shows them, so this
/// writes to the process's stderr directly. The caller returns right after.
pub fn skip_or_fail(test: &str, reason: &str) {
    use std::io::Write as _;
    assert!(
        std::env::var_os("STARLING_REQUIRE_PEERS").is_none(),
        "{test} cannot run ({reason}) but STARLING_REQUIRE_PEERS is set"
    );
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}

/// Whether the test runs as root (mounts, namespaces); `skip_or_fail`s otherwise.
pub fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip_or_fail(test, "needs root");
    }
    root
}

/// Whether an external program is on PATH (or at an absolute path); `skip_or_fail`s
/// otherwise.
pub fn have_program(program: &str, test: &str) -> bool {
    let found = if program.starts_with('/') {
        Path::new(program).exists()
    } else {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).exists()))
            .unwrap_or(false)
    };
    if !found {
        skip_or_fail(
            test,
            &format!("`{program}` is not installed (.ci/run installs it)"),
        );
    }
    found
}

/// One running node.
pub struct Node {
    child: Option<Child>,
    /// Temporary working directory; the data directory is `work_dir/data`.
    pub work: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
    pub gossip: Option<SocketAddr>,
    pub forward: Option<SocketAddr>,
    pub extra_args: Vec<String>,
    /// Environment variables set for the process.
    pub extra_env: Vec<(String, String)>,
    stdout_lines: Arc<Mutex<Vec<String>>>,
    stderr_text: Arc<Mutex<String>>,
    /// The syslog listeners come from the config file: no `--syslog-udp`/`--syslog-tcp`
    /// defaults (a flag would replace the file's listener list).
    listeners_from_config: bool,
}

impl Node {
    /// Starts a single node with UDP, TCP and the API on 127.0.0.1:0 plus `args`.
    pub fn start(args: &[&str]) -> Node {
        Node::start_with_env(args, &[])
    }

    /// Like `start`, with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut node = Node::unstarted(args, env);
        node.spawn();
        node
    }

    fn unstarted(args: &[&str], env: &[(&str, &str)]) -> Node {
        let work = tempfile::tempdir().expect("temp dir");
        let data_dir = work.path().join("data");
        Node {
            child: None,
            work,
            data_dir,
            udp: None,
            tcp: None,
            api: None,
            gossip: None,
            forward: None,
            extra_args: args.iter().map(|arg| arg.to_string()).collect(),
            extra_env: env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            stdout_lines: Arc::default(),
            stderr_text: Arc::default(),
            listeners_from_config: false,
        }
    }

    /// Starts a node with `config` (TOML) as its config file, whose `[syslog]` section lists
    /// the listeners, plus `args`.
    #[allow(dead_code, reason = "used by some test modules only")]
    pub fn start_with_config(config: &str, args: &[&str]) -> Node {
        let mut node = Node::unstarted(args, &[]);
        let config_path = node.work.path().join("starling.toml");
        std::fs::write(&config_path, config).unwrap();
        node.extra_args.extend([
            "--config".to_string(),
            config_path.to_str().unwrap().to_string(),
        ]);
        node.listeners_from_config = true;
        node.spawn();
        node
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.extra_args.iter().any(|arg| arg == flag)
    }

    /// (Re)starts the process on the same data directory. Ports are chosen anew unless the
    /// extra arguments fix them.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "node already running");
        let mut command = Command::new(starling_bin());
        command
            .current_dir(self.work.path())
            .arg("run")
            .arg("--data-dir")
            .arg(&self.data_dir);
        command.env("RUST_LOG", "info");
        command.envs(self.extra_env.iter().map(|(key, value)| (key, value)));
        for (flag, default) in [
            ("--node-id", "test-node"),
            ("--syslog-udp", "127.0.0.1:0"),
            ("--syslog-tcp", "127.0.0.1:0"),
            ("--api", "127.0.0.1:0"),
            ("--gossip", "127.0.0.1:0"),
            ("--forward", "127.0.0.1:0"),
        ] {
            let from_config = self.listeners_from_config && flag.starts_with("--syslog-");
            if !self.has_flag(flag) && !from_config {
                command.args([flag, default]);
            }
        }
        command.args(&self.extra_args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start starling");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        self.stdout_lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        let stderr_text = Arc::new(Mutex::new(String::new()));
        self.stderr_text = stderr_text.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buffer = [0u8; 8192];
            while let Ok(read) = reader.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                stderr_text
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });
        self.child = Some(child);
        let ready = wait_until(Duration::from_secs(20), || {
            self.stdout_lines
                .lock()
                .unwrap()
                .iter()
                .any(|line| line == "starling: ready")
                || self.exited()
        });
        assert!(
            ready && !self.exited(),
            "node did not become ready; stdout: {:?}\nstderr: {}",
            self.stdout_lines.lock().unwrap(),
            self.stderr()
        );
        let lines = self.stdout_lines.lock().unwrap().clone();
        let find = |what: &str| {
            let prefix = format!("starling: listening {what} ");
            lines
                .iter()
                .find_map(|line| line.strip_prefix(&prefix)?.parse::<SocketAddr>().ok())
        };
        self.udp = find("syslog-udp");
        self.tcp = find("syslog-tcp");
        self.api = find("api");
        self.gossip = find("gossip");
        self.forward = find("forward");
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    #[allow(dead_code, reason = "for debugging a failing test")]
    pub fn stdout(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr_text.lock().unwrap().clone()
    }

    /// Resident memory of the node process in bytes (from /proc).
    pub fn rss_bytes(&self) -> u64 {
        proc_memory(self.child.as_ref().expect("node running").id()).0
    }

    pub fn is_running(&mut self) -> bool {
        !self.exited()
    }

    /// The running process's id.
    #[allow(dead_code, reason = "used by some test modules only")]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node running").id()
    }

    /// SIGTERM, then waits (at most `timeout`) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        send_signal(self.pid(), libc::SIGTERM);
        self.wait_exit(timeout)
    }

    /// Waits (at most `timeout`) for the process to exit on its own; kills it past that.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("node running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "node did not exit within {timeout:?}; stderr: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `starling read --format json` on this node's data directory.
    pub fn read_json(&self, extra: &[&str]) -> Vec<Value> {
        read_json(&self.data_dir, extra)
    }

    /// The body of `GET /metrics`.
    pub fn metrics(&self) -> String {
        http_get(self.api.expect("api address"), "/metrics")
    }

    /// The body of `GET /v1/status`, parsed.
    #[allow(dead_code, reason = "used by some test modules only")]
    pub fn status(&self) -> Value {
        let body = http_get(self.api.expect("api address"), "/v1/status");
        serde_json::from_str(&body).unwrap_or_else(|error| panic!("status {body:?}: {error}"))
    }

    /// The value of a series in `/metrics` (see [`metric_value`]); panics if it is absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

pub fn read_json(data_dir: &Path, extra: &[&str]) -> Vec<Value> {
    let output = Command::new(starling_bin())
        .args(["read", "--format", "json", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .output()
        .expect("run starling read");
    assert!(
        output.status.success(),
        "starling read failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
        .stdout
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("read prints JSON lines"))
        .collect()
}

/// Number of records `starling read` currently returns (for `wait_until`).
pub fn count_records(data_dir: &Path) -> usize {
    if !data_dir.exists() {
        return 0;
    }
    let output = Command::new(starling_bin())
        .args(["read", "--format", "raw", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run starling read");
    output.stdout.iter().filter(|byte| **byte == b'\n').count()
}

pub fn http_get(address: SocketAddr, path: &str) -> String {
    ureq::get(&format!("http://{address}{path}"))
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

/// The sum of the samples of `series` in a Prometheus text or OpenMetrics exposition:
/// `name{label="value",...}` matches that exact label set in any order, a bare `name` every
/// label set of the metric. Panics when no sample matches, naming the series and listing
/// the metric names scraped: an absent series is a failure, never a 0 that `== 0` would
/// accept.
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    let (name, labels) = match parse_series(series) {
        Some((name, labels, "")) => (name, labels),
        _ => panic!("bad series {series:?}"),
    };
    let samples: Vec<Sample> = metrics.lines().filter_map(parse_sample).collect();
    let matching: Vec<f64> = samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| !series.contains('{') || sample.labels == labels)
        .map(|sample| sample.value)
        .collect();
    if matching.is_empty() {
        let mut names: Vec<&str> = samples.iter().map(|sample| sample.name).collect();
        names.sort_unstable();
        names.dedup();
        let same_name: Vec<&Labels> = samples
            .iter()
            .filter(|sample| sample.name == name)
            .map(|sample| &sample.labels)
            .collect();
        panic!(
            "series {series} is absent from /metrics (label sets of {name}: {same_name:?}); \
             names scraped: {names:?}"
        );
    }
    matching.iter().sum()
}

/// Label pairs, sorted by name.
type Labels = Vec<(String, String)>;

/// One sample line of an exposition.
struct Sample<'a> {
    name: &'a str,
    labels: Labels,
    value: f64,
}

/// A sample line (`name{labels} value [timestamp]`), or `None` for comments (`# HELP`,
/// `# TYPE`, `# EOF`), blank lines and anything unparsable.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    if line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = parse_series(line)?;
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Splits `name{a="x",b="y"} rest` into the name, the label pairs sorted by name (values
/// unescaped) and what follows; `None` if it is not a series.
fn parse_series(text: &str) -> Option<(&str, Labels, &str)> {
    let text = text.trim();
    let name_end = text
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(text.len());
    let name = &text[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &text[name_end..];
    let mut labels = Vec::new();
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            inside = inside.trim_start_matches([',', ' ']);
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = inside.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (at, '"') => break at,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (_, other) => value.push(other),
                }
            };
            labels.push((label.trim().to_string(), value));
            inside = &after[end + 1..];
        }
    }
    labels.sort();
    Some((name, labels, rest.trim()))
}

/// The exact bytes of a record printed by `read --format json` (`raw_base64` when the raw
/// bytes are not valid UTF-8, else `raw`).
pub fn raw_bytes(record: &Value) -> Vec<u8> {
    use base64::Engine as _;
    match record["raw_base64"].as_str() {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
        None => record["raw"].as_str().unwrap().as_bytes().to_vec(),
    }
}

/// The node's working directory holds nothing but its data directory.
pub fn assert_nothing_outside_data_dir(node: &Node) {
    let entries: Vec<_> = std::fs::read_dir(node.work.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        entries,
        vec!["data".to_string()],
        "files outside the data directory"
    );
}

#[test]
fn metric_value_reads_text_and_openmetrics_in_any_label_order() {
    let text = "# HELP starling_x_total X.\n# TYPE starling_x_total counter\n\
                starling_x_total{listener=\"udp:a\",transport=\"udp\"} 2\n\
                starling_x_total{listener=\"tcp:a\",transport=\"tcp\"} 3\n\
                starling_up 1\n";
    let openmetrics = "# TYPE starling_x counter\n\
                       starling_x_total{transport=\"udp\",listener=\"udp:a\"} 2\n\
                       starling_x_total{transport=\"tcp\",listener=\"tcp:a\"} 3\n\
                       # TYPE starling_up gauge\nstarling_up 1\n# EOF\n";
    for metrics in [text, openmetrics] {
        assert_eq!(metric_value(metrics, "starling_x_total"), 5.0);
        assert_eq!(
            metric_value(
                metrics,
                "starling_x_total{listener=\"tcp:a\",transport=\"tcp\"}"
            ),
            3.0
        );
        assert_eq!(
            metric_value(
                metrics,
                "starling_x_total{transport=\"udp\",listener=\"udp:a\"}"
            ),
            2.0
        );
        assert_eq!(metric_value(metrics, "starling_up"), 1.0);
    }
    assert_eq!(
        metric_value(
            "m{path=\"a \\\"b\\\"\",x=\"}\"} 4 1700000000\n",
            "m{x=\"}\",path=\"a \\\"b\\\"\"}"
        ),
        4.0
    );
}

#[test]
#[should_panic(expected = "series starling_x_total{transport=\"tls\"} is absent")]
fn metric_value_fails_on_an_absent_label_set() {
    metric_value(
        "starling_x_total{transport=\"udp\"} 0\n",
        "starling_x_total{transport=\"tls\"}",
    );
}

#[test]
#[should_panic(expected = "series starling_gone_total is absent")]
fn metric_value_fails_on_an_absent_metric() {
    metric_value("starling_up 1\n# EOF\n", "starling_gone_total");
}

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes, from `/proc/PID/status` (0 if absent).
pub fn proc_memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let bytes = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    (bytes("VmRSS:"), bytes("VmHWM:"))
}

/// A tmpfs mounted by a test (root only); lazily unmounted when dropped.
pub struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a tmpfs of `size` (as `mount -o size=` takes it) on `dir`.
pub fn mount_tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !status.success() {
        return Err(format!("mount -t tmpfs failed: {status}"));
    }
    Ok(Mount(dir.to_path_buf()))
}
