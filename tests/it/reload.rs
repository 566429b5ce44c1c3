//! SIGHUP reloads the configuration (issue 19): the real binary under a TCP sender that
//! keeps one connection open across several HUPs — a changed log level applies at once, a
//! broken file keeps the running configuration, a key that needs a restart is named in one
//! warning — and the node neither dies (it exited 129 before) nor drops the connection nor
//! loses a record.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sandbox::{count_records, send_signal, starling_bin, wait_until};

fn write_config(path: &Path, data_dir: &Path, extra: &str) {
    let text = format!(
        "node-id = \"reload\"\ndata-dir = {data_dir:?}\n{extra}\n[syslog]\nudp = [\"none\"]\n\
         tcp = [\"127.0.0.1:0\"]\n[cluster]\ngossip = \"127.0.0.1:0\"\nforward = \"127.0.0.1:0\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n",
        data_dir = data_dir.display().to_string()
    );
    std::fs::write(path, text).unwrap();
}

#[test]
fn sighup_reloads_without_dropping_a_connection_or_a_record() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let config = work.path().join("starling.toml");
    write_config(&config, &data_dir, "[log]\nlevel = \"warn\"");
    let mut child = Command::new(starling_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr_text = Arc::new(Mutex::new(String::new()));
    {
        let (lines, stdout) = (stdout_lines.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let (text, mut stderr) = (stderr_text.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stderr.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });
    }
    let stderr = || stderr_text.lock().unwrap().clone();
    assert!(
        wait_until(Duration::from_secs(20), || stdout_lines
            .lock()
            .unwrap()
            .iter()
            .any(|line| line == "starling: ready")),
        "not ready: {}",
        stderr()
    );
    let tcp: SocketAddr = stdout_lines
        .lock()
        .unwrap()
        .iter()
        .find_map(|line| {
            line.strip_prefix("starling: listening syslog-tcp ")?
                .parse()
                .ok()
        })
        .unwrap();
    // At `warn`, the start's INFO lines were not written.
    assert!(!stderr().contains(" INFO "), "{}", stderr());

    // One connection, kept open and sending until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut stream = TcpStream::connect(tcp)?;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..50 {
                    let index = sent.load(Ordering::Relaxed);
                    let line =
                        format!("<14>1 2026-12-04T00:00:00Z sender app - - - reload {index}\n");
                    stream.write_all(line.as_bytes())?;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            stream.flush()?;
            stream.shutdown(std::net::Shutdown::Write)?;
            // The node closes its side only once it has read everything.
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest)?;
            Ok(())
        })
    };
    let pid = child.id();
    let hup_and_wait = |expect: &str, times: usize| {
        send_signal(pid, libc::SIGHUP);
        assert!(
            wait_until(Duration::from_secs(10), || stderr().matches(expect).count()
                >= times),
            "no {expect:?} after SIGHUP: {}",
            stderr()
        );
    };

    // 1. A new level applies at once: INFO lines appear.
    write_config(&config, &data_dir, "[log]\nlevel = \"info\"");
    hup_and_wait("SIGHUP: configuration reloaded", 1);
    assert!(stderr().contains(" INFO "), "{}", stderr());
    // 2. A broken file: refused with its key and line, the running configuration stays.
    write_config(&config, &data_dir, "[log]\nlevel = \"warning\"");
    hup_and_wait(
        "the configuration was not reloaded; the running one stays",
        1,
    );
    assert!(
        stderr().contains("line 4: invalid value for `log.level`"),
        "{}",
        stderr()
    );
    // 3. A key that needs a restart is named in one warning; the rest reloads.
    write_config(
        &config,
        &data_dir,
        "[log]\nlevel = \"info\"\n[store]\ncommit-max-bytes = \"1MiB\"",
    );
    hup_and_wait("SIGHUP: configuration reloaded", 2);
    assert!(
        stderr().contains("applied only at the next start") && stderr().contains("[store]"),
        "{}",
        stderr()
    );
    // 4. Once more with nothing changed.
    hup_and_wait("SIGHUP: configuration reloaded", 3);

    stop.store(true, Ordering::Relaxed);
    // The node closes the connection only at shutdown, so stop it and then join the sender.
    let total = sent.load(Ordering::Relaxed);
    assert!(total > 0);
    assert!(
        wait_until(Duration::from_secs(30), || count_records(&data_dir)
            >= sent.load(Ordering::Relaxed)),
        "stored {} of {}",
        count_records(&data_dir),
        sent.load(Ordering::Relaxed)
    );
    send_signal(pid, libc::SIGTERM);
    let status = child.wait().unwrap();
    sender
        .join()
        .unwrap()
        .expect("the connection stayed up through every SIGHUP");
    assert_eq!(status.code(), Some(0), "{}", stderr());
    assert_eq!(count_records(&data_dir), sent.load(Ordering::Relaxed));
}
