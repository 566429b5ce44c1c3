#!/usr/bin/env bash
# Runs the same load against Starling and against rsyslog (imtcp/imudp -> omfile, Debian's
# package, started here with its own config) on this machine and prints both, side by side.
#
#   bench/compare.sh [tcp1|tcp4|udp] [COUNT]
#
# tcp1: one TCP connection; tcp4: four; udp: one UDP sender at its maximum rate. For each
# collector it reports: messages sent, stored, lost, seconds from the first message to the
# last one stored, stored messages per second, and the collector's CPU seconds per million
# messages (user + system, from /proc/PID/stat). Nothing here is a test: it only measures.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-tcp1}
count=${2:-1000000}
case "$scenario" in
    tcp1) transport=tcp; connections=1 ;;
    tcp4) transport=tcp; connections=4 ;;
    udp) transport=udp; connections=1 ;;
    *) echo "usage: $0 [tcp1|tcp4|udp] [COUNT]" >&2; exit 2 ;;
esac
command -v rsyslogd >/dev/null || { echo "rsyslogd is not installed (apt-get install rsyslog)" >&2; exit 2; }

cargo build --release --quiet --bin starling --example loadgen
starling=target/release/starling
loadgen=target/release/examples/loadgen
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

# Waits until COUNT_FN reports $count, or until it stops growing for 5 s; prints the last
# value and the time (ns) it was first seen.
wait_stored() {
    local count_fn=$1 last=-1 same_since=$SECONDS changed_at now
    changed_at=$(date +%s%N)
    while :; do
        now=$($count_fn)
        if [ "$now" != "$last" ]; then last=$now; same_since=$SECONDS; changed_at=$(date +%s%N); fi
        if [ "$now" -ge "$count" ] || [ $((SECONDS - same_since)) -ge 5 ]; then
            echo "$now $changed_at"; return
        fi
        sleep 0.05
    done
}

report() { # name pid sent stored start_ns end_ns cpu_before
    local name=$1 pid=$2 sent=$3 stored=$4 start=$5 end=$6 cpu0=$7 cpu1
    cpu1=$(cpu_seconds "$pid")
    python3 - "$name" "$sent" "$stored" "$start" "$end" "$cpu0" "$cpu1" <<'PY'
import sys
name, sent, stored, start, end, cpu0, cpu1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
seconds = (end - start) / 1e9
cpu = cpu1 - cpu0
print(f"{name:9} sent {sent:>9} stored {stored:>9} lost {sent - stored:>8}  {seconds:7.2f} s  "
      f"{stored / seconds:>10,.0f} msg/s  cpu {cpu:6.2f} s = {cpu / max(stored, 1) * 1e6:5.2f} s per million")
PY
}

# --- Starling --------------------------------------------------------------------------
port=$(free_port); api=$(free_port)
$starling run --data-dir "$work/starling-data" --node-id bench --syslog-tcp "127.0.0.1:$port" \
    --syslog-udp "127.0.0.1:$port" --api "127.0.0.1:$api" --gossip "127.0.0.1:$(free_port)" \
    --forward "127.0.0.1:$(free_port)" --log-level warn >"$work/starling.out" 2>&1 &
spid=$!; pids+=("$spid")
until grep -qs 'starling: ready' "$work/starling.out"; do sleep 0.05; kill -0 "$spid"; done
starling_stored() {
    curl -s "http://127.0.0.1:$api/metrics" | awk '$1 ~ /^starling_stored_messages_total[{ ]?/ { s += $2 } END { printf "%d\n", s }'
}
cpu0=$(cpu_seconds "$spid"); start=$(date +%s%N)
$loadgen --target "127.0.0.1:$port" --transport "$transport" --connections "$connections" --count "$count" >"$work/lg.json"
read -r stored end < <(wait_stored starling_stored)
report starling "$spid" "$count" "$stored" "$start" "$end" "$cpu0"
kill -TERM "$spid"; wait "$spid" || true
on_disk=$($starling read --data-dir "$work/starling-data" --format raw | wc -l)
echo "          (starling read afterwards: $on_disk records on disk)"

# --- rsyslog ---------------------------------------------------------------------------
rport=$(free_port)
mkdir -p "$work/rsyslog"
cat >"$work/rsyslog.conf" <<CONF
global(workDirectory="$work/rsyslog")
module(load="imtcp")
module(load="imudp")
input(type="imtcp" port="$rport" address="127.0.0.1")
input(type="imudp" port="$rport" address="127.0.0.1")
*.* action(type="omfile" file="$work/rsyslog/out.log" template="RSYSLOG_FileFormat")
CONF
rsyslogd -n -f "$work/rsyslog.conf" -i "$work/rsyslog/pid" &
rpid=$!; pids+=("$rpid")
until ss -ltn | grep -q ":$rport "; do sleep 0.05; done
rsyslog_stored() { local n; n=$(grep -c ' conn [0-9]* seq ' "$work/rsyslog/out.log" 2>/dev/null) || true; echo "${n:-0}"; }
cpu0=$(cpu_seconds "$rpid"); start=$(date +%s%N)
$loadgen --target "127.0.0.1:$rport" --transport "$transport" --connections "$connections" --count "$count" >"$work/lg.json"
read -r stored end < <(wait_stored rsyslog_stored)
report rsyslog "$rpid" "$count" "$stored" "$start" "$end" "$cpu0"
