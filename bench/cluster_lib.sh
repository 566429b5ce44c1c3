# Sourced by bench/failover.sh and bench/forward.sh, never run on its own: starts real
# `starling` nodes on loopback (every socket on 127.0.0.1, ports chosen by the kernel except
# the gossip port, which seeds must know), each with its own data directory under $work, and
# reads their API (/v1/status, /metrics) with curl. Every wait here is bounded and ends the
# script with a message naming what did not happen. It measures and checks nothing itself.
#
# The caller sets: $work (a temporary directory it removes), $starling (the binary).

declare -a node_pid node_api node_tcp

# Prints the message and the end of every node's stderr, then exits 1.
fail() {
    echo "FAILED: $*" >&2
    local err
    for err in "$work"/node-*/err; do
        [ -f "$err" ] || continue
        echo "--- $(basename "$(dirname "$err")") stderr (last 15 lines) ---" >&2
        tail -n 15 "$err" >&2
    done
    exit 1
}

free_udp_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

now_ns() { date +%s%N; }

# start_node INDEX [ARGS...]: starts (or restarts) node-INDEX on $work/node-INDEX/data, waits
# at most 30 s for `starling: ready`, and records its pid, API and syslog TCP addresses.
start_node() {
    local i=$1 dir=$work/node-$1 deadline=$((SECONDS + 30))
    shift
    mkdir -p "$dir"
    : >"$dir/out"
    "$starling" run --data-dir "$dir/data" --node-id "node-$i" --syslog-tcp 127.0.0.1:0 \
        --syslog-udp 127.0.0.1:0 --api 127.0.0.1:0 --forward 127.0.0.1:0 "$@" \
        >"$dir/out" 2>>"$dir/err" &
    node_pid[i]=$!
    # Reaped by the shell without a "Killed" job notice; waits below poll the pid instead.
    disown "${node_pid[i]}"
    until grep -qs '^starling: ready$' "$dir/out"; do
        kill -0 "${node_pid[i]}" 2>/dev/null || fail "node-$i exited during start-up"
        [ "$SECONDS" -lt "$deadline" ] || fail "node-$i not ready within 30 s"
        sleep 0.05
    done
    node_api[i]=$(sed -n 's/^starling: listening api //p' "$dir/out")
    node_tcp[i]=$(sed -n 's/^starling: listening syslog-tcp //p' "$dir/out")
}

# stop_node INDEX SIGNAL: signals node-INDEX and waits until it is gone (SIGKILL after 15 s).
stop_node() {
    local i=$1 pid=${node_pid[$1]} deadline=$((SECONDS + 15))
    [ -n "$pid" ] || return 0
    kill -s "$2" "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "node-$i did not exit within 15 s of SIG$2: killed" >&2
            kill -9 "$pid" 2>/dev/null || true
        fi
        sleep 0.02
    done
    node_pid[i]=
}

stop_all_nodes() {
    local i
    for i in "${!node_pid[@]}"; do
        [ -z "${node_pid[i]}" ] || kill -9 "${node_pid[i]}" 2>/dev/null || true
    done
}

# The body of GET PATH on node-INDEX's API, empty if it does not answer within 1 s.
api_get() { curl -sf --max-time 1 "http://${node_api[$1]}$2" || true; }

# metric INDEX NAME: the sum of every sample of NAME (all label sets); -1 if no answer.
metric() {
    local body
    body=$(api_get "$1" /metrics)
    [ -n "$body" ] || { echo -1; return; }
    awk -v name="$2" '$1 == name || index($1, name "{") == 1 { s += $2 } END { printf "%d\n", s }' <<<"$body"
}

# The master node-INDEX names in /v1/status (empty: none, or no answer).
master_of() { api_get "$1" /v1/status | sed -n 's/.*"master":"\([^"]*\)".*/\1/p'; }

# How many members node-INDEX sees alive.
alive_members() { api_get "$1" /v1/status | grep -o '"alive":true' | wc -l; }

# agreed_master INDEX...: the master every listed node names, if they all name the same one.
agreed_master() {
    local first i m
    first=$(master_of "$1")
    [ -n "$first" ] || return 0
    for i in "${@:2}"; do
        m=$(master_of "$i")
        [ "$m" = "$first" ] || return 0
    done
    echo "$first"
}

# wait_stable SECONDS INDEX...: waits until the listed nodes agree on one master and each
# sees all of them alive; sets $stable_master.
wait_stable() {
    local timeout=$1 deadline=$((SECONDS + $1)) i ok
    shift
    while :; do
        stable_master=$(agreed_master "$@")
        if [ -n "$stable_master" ]; then
            ok=1
            for i in "$@"; do
                [ "$(alive_members "$i")" -eq $# ] || ok=
            done
            [ -z "$ok" ] || return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "nodes $* did not agree on one master with all alive within $timeout s"
        sleep 0.05
    done
}

# wait_drained SECONDS INDEX...: waits until no listed node has records it has not had
# acknowledged by the master (starling_forward_lag_records = 0 on each).
wait_drained() {
    local timeout=$1 deadline=$((SECONDS + $1)) i ok
    shift
    while :; do
        ok=1
        for i in "$@"; do
            [ "$(metric "$i" starling_forward_lag_records)" -eq 0 ] || ok=
        done
        [ -z "$ok" ] || return 0
        [ "$SECONDS" -lt "$deadline" ] || fail "forwarding did not drain within $timeout s (nodes $*)"
        sleep 0.1
    done
}
