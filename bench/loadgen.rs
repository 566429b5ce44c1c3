//! End-to-end load generator: sends RFC 5424 messages of about 150 bytes to a syslog
//! receiver (Starling, rsyslog, anything) over TCP or UDP, from one or several connections,
//! at a fixed rate or as fast as possible, and prints what it sent as one JSON line.
//!
//! `cargo run --release --example loadgen -- --target 127.0.0.1:5514 --transport tcp \
//!      --count 1000000 --connections 4`
//!
//! Each message carries its connection and sequence number ("conn 3 seq 00012345"), so a
//! receiver's output can be checked for loss and duplicates. `bench/compare.sh` drives it
//! against Starling and rsyslog and counts what each stored.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
struct Args {
    /// Receiver address.
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// Messages in total (split evenly across connections).
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Parallel connections (TCP) or sockets (UDP).
    #[arg(long, default_value_t = 1)]
    connections: u64,
    /// Messages per second in total; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// TCP framing.
    #[arg(long, value_enum, default_value = "octet")]
    framing: Framing,
    /// Host name written into the messages.
    #[arg(long, default_value = "loadgen-host")]
    hostname: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Transport {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Framing {
    Octet,
    Lf,
}

/// About 150 bytes: a realistic RFC 5424 line with structured data. The line is rendered
/// once per connection and only its fixed-width sequence digits change, so the sender spends
/// little CPU per message: on a small machine it shares the cores with the receiver it
/// measures, and a costly sender would cap every receiver at the same rate.
struct Message {
    line: Vec<u8>,
    /// Offset of the ten sequence digits in `line`.
    seq_at: usize,
}

impl Message {
    const SEQ_DIGITS: usize = 10;

    fn new(hostname: &str, connection: u64) -> Message {
        let head = format!(
            "<134>1 2026-11-26T10:00:00.123456Z {hostname} loadgen 4242 LOAD \
             [load@32473 conn=\"{connection}\"] conn {connection} seq "
        );
        let mut line = head.into_bytes();
        let seq_at = line.len();
        line.extend_from_slice(&[b'0'; Message::SEQ_DIGITS]);
        line.extend_from_slice(b" lorem ipsum dolor sit amet");
        Message { line, seq_at }
    }

    /// The line of message `seq` (zero-padded to ten digits, as before).
    fn render(&mut self, seq: u64) -> &[u8] {
        let mut n = seq;
        for at in (self.seq_at..self.seq_at + Message::SEQ_DIGITS).rev() {
            self.line[at] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        &self.line
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let per_connection = args.count / args.connections;
    let remainder = args.count % args.connections;
    let started = Instant::now();
    let threads: Vec<_> = (0..args.connections)
        .map(|connection| {
            let count = per_connection + u64::from(connection < remainder);
            let rate = if args.rate == 0 {
                0
            } else {
                (args.rate / args.connections).max(1)
            };
            let hostname = args.hostname.clone();
            let (target, transport, framing) = (args.target, args.transport, args.framing);
            std::thread::spawn(move || -> anyhow::Result<u64> {
                send(
                    target, transport, framing, &hostname, connection, count, rate,
                )
            })
        })
        .collect();
    let mut sent = 0;
    for thread in threads {
        sent += thread.join().expect("sender thread")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"sent\":{sent},\"seconds\":{elapsed:.3},\"per_second\":{:.0}}}",
        sent as f64 / elapsed
    );
    Ok(())
}

fn send(
    target: SocketAddr,
    transport: Transport,
    framing: Framing,
    hostname: &str,
    connection: u64,
    count: u64,
    rate: u64,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let pace = |sent: u64| {
        if rate > 0 {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    };
    let mut message = Message::new(hostname, connection);
    match transport {
        Transport::Tcp => {
            let mut stream = TcpStream::connect(target)?;
            stream.set_nodelay(false)?;
            let mut buffer = Vec::with_capacity(256 * 1024);
            let prefix = format!("{} ", message.line.len());
            for seq in 0..count {
                let line = message.render(seq);
                match framing {
                    Framing::Octet => {
                        buffer.extend_from_slice(prefix.as_bytes());
                        buffer.extend_from_slice(line);
                    }
                    Framing::Lf => {
                        buffer.extend_from_slice(line);
                        buffer.push(b'\n');
                    }
                }
                if buffer.len() >= 200 * 1024 || rate > 0 {
                    stream.write_all(&buffer)?;
                    buffer.clear();
                    pace(seq + 1);
                }
            }
            stream.write_all(&buffer)?;
            stream.shutdown(std::net::Shutdown::Write)?;
        }
        Transport::Udp => {
            let socket = UdpSocket::bind(if target.is_ipv4() {
                "127.0.0.1:0"
            } else {
                "[::1]:0"
            })?;
            socket.connect(target)?;
            for seq in 0..count {
                let line = message.render(seq);
                // A full socket buffer makes send fail with ENOBUFS on some kernels: retry.
                while let Err(error) = socket.send(line) {
                    if error.raw_os_error() != Some(libc::ENOBUFS) {
                        return Err(error.into());
                    }
                    std::thread::yield_now();
                }
                pace(seq + 1);
            }
        }
    }
    Ok(count)
}
