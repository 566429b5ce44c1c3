#!/usr/bin/env bash
# Issue #12's source flood: SOURCES distinct spoofed HOSTNAMEs over UDP at RATE datagrams/s
# into one node with default settings (max-open-shards 1024). Target: < 1,200 open files,
# < 2 GiB reserved on disk beyond the data, and every datagram stored or counted.
#
#   bench/shard_flood.sh [SOURCES]     (default 100000; env RATE=20000, DRAIN_SECONDS=600,
#                                       STARLING=path of the binary, else a release build)
#
# One datagram per source (`<13>1 … flood-N app - - - message N`), paced at RATE from one
# socket. While the node works, its descriptors (/proc/PID/fd) are sampled every 20 ms;
# the peak is reported. After the flood the script waits (at most DRAIN_SECONDS) until
# sent = stored + pipeline drops + kernel drops (from /metrics), then reports the disk: the
# sum of st_blocks × 512 over the data directory's files less the bytes of records the
# store appended (starling_store_appended_bytes_total) is what is reserved beyond the data.
# It also reports how many shards exist by then: the rate new shards were created at. `starling read` must then find exactly the
# stored count. Exits 1 if a bound is missed or the datagrams do not add up. The test
# tests/it/shard_flood.rs runs the same shape at 500 sources.
set -euo pipefail
cd "$(dirname "$0")/.."
sources=${1:-100000}
rate=${RATE:-20000}
drain=${DRAIN_SECONDS:-600}
if [[ -z ${STARLING:-} ]]; then
    cargo build --release --quiet --bin starling
    STARLING=$PWD/target/release/starling
fi
work=$(mktemp -d)
trap 'kill "$node_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$STARLING" run --data-dir "$work/data" --node-id flood --syslog-udp 127.0.0.1:0 \
    --syslog-tcp none --api 127.0.0.1:0 --gossip 127.0.0.1:0 --forward 127.0.0.1:0 \
    >"$work/out" 2>"$work/err" &
node_pid=$!
for _ in $(seq 200); do grep -q '^starling: ready' "$work/out" && break; sleep 0.1; done
grep -q '^starling: ready' "$work/out" || { cat "$work/err" >&2; exit 1; }
udp=$(sed -n 's/^starling: listening syslog-udp //p' "$work/out")
api=$(sed -n 's/^starling: listening api //p' "$work/out")

python3 - "$node_pid" "$udp" "$api" "$sources" "$rate" "$drain" "$work/data" <<'EOF'
import os, socket, sys, threading, time, urllib.request
pid, udp, api, sources, rate, drain, data = sys.argv[1:]
sources, rate, drain = int(sources), int(rate), int(drain)
host, port = udp.rsplit(':', 1)
def metric(text, name):
    return sum(float(l.split()[-1]) for l in text.splitlines()
               if l.startswith(name) and (l[len(name)] in ' {'))
def scrape():
    t = urllib.request.urlopen(f'http://{api}/metrics').read().decode()
    return (metric(t, 'starling_stored_messages_total'),
            metric(t, 'starling_pipeline_dropped_messages_total'),
            metric(t, 'starling_udp_kernel_drops_total'),
            metric(t, 'starling_received_messages_total'),
            metric(t, 'starling_store_appended_bytes_total'))
peak = [0, 0]
done = False
def sample():
    while not done:
        try:
            fds = os.listdir(f'/proc/{pid}/fd')
        except OSError:
            break
        segs = 0
        for fd in fds:
            try:
                segs += os.readlink(f'/proc/{pid}/fd/{fd}').endswith('.seg')
            except OSError:
                pass
        peak[0] = max(peak[0], len(fds)); peak[1] = max(peak[1], segs)
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.monotonic()
for i in range(sources):
    ahead = i / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
    s.sendto(f'<13>1 2026-12-04T00:00:00Z flood-{i} app - - - message {i}'.encode(), (host, int(port)))
sent_for = time.monotonic() - start
deadline = time.monotonic() + drain
while True:
    stored, dropped, kernel, received, appended = scrape()
    if stored + dropped + kernel == sources or time.monotonic() > deadline:
        break
    time.sleep(0.5)
drained_for = time.monotonic() - start
done = True
alloc = 0
for root, dirs, files in os.walk(data):
    for f in files:
        try:
            st = os.stat(os.path.join(root, f))
        except OSError:
            continue
        alloc += st.st_blocks * 512
reserved = alloc - appended
print(f'sent {sources} in {sent_for:.1f}s ({sources / sent_for:.0f}/s); after {drained_for:.1f}s: '
      f'received {received:.0f}, stored {stored:.0f}, pipeline drops {dropped:.0f}, kernel drops {kernel:.0f}')
print(f'peak open descriptors {peak[0]} (segment files {peak[1]}); reserved beyond the data '
      f'{reserved / 2**20:.1f} MiB ({alloc / 2**20:.1f} MiB allocated, {appended / 2**20:.1f} MiB of records)')
ok = stored + dropped + kernel == sources and peak[0] < 1200 and reserved < 2 * 2**30
print('stored/shards:', int(stored), len([d for d in os.listdir(data) if os.path.isdir(os.path.join(data, d))]))
sys.exit(0 if ok else 1)
EOF
stored=$(curl -s "http://$api/metrics" | awk '/^starling_stored_messages_total/ {s += $2} END {print s}')
read_count=$("$STARLING" read --format raw --data-dir "$work/data" | wc -l)
echo "starling read finds $read_count records; metrics say $stored stored"
[[ $read_count == "$stored" ]]
