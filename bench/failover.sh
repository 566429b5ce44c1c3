#!/usr/bin/env bash
# Failover time of a three-node cluster with default settings, over KILLS kill -9s of the
# master (issue #4's benchmark; target: median <= 5 s).
#
#   bench/failover.sh [KILLS]          (default 10; env RATE=20000 msg/s, ROUND_SECONDS=8)
#
# GOSSIP_KEYS=1 seals gossip (a cluster.gossip-keys-file with one key, issue 14) to compare
# failover with and without it; PROFILE=debug uses the debug build instead of release.
#
# Three `starling` nodes on loopback, each with its own data directory in a temporary
# directory, gossip on fixed free ports and seed each other; everything else is default. In
# each round a loadgen sender (`--rate RATE` for ROUND_SECONDS, one TCP connection, host
# name `round-N`) writes into the follower that will not be the next master (the newest
# generation: the election prefers the earliest), and once it has stored a second of load
# the master is killed with SIGKILL. Measured from the kill: when both survivors name the
# same new master ("elected"), and when the new master's count of stored forwarded records
# (starling_forward_in_records_stored_total, counted after fdatasync) grows again
# ("storing"); both polled every ~20 ms. Then the sender finishes, the killed node restarts
# on the same id and data directory (it must come back as a follower: a changed master is
# reported), the cluster settles (one master, three live members, no forward lag), and the
# next round starts. At the end every node is stopped and `starling read --format json` on
# the final master's data directory must hold every sent message exactly once, by
# (origin, seq) and by content (host, conn, seq). Exits 1 on loss, duplicates, a moved
# master or any wait that runs out. Nothing here is a test: it measures (and checks).
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-10}
rate=${RATE:-20000}
round_seconds=${ROUND_SECONDS:-8}
for value in "$kills" "$rate" "$round_seconds"; do
    [[ $value =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [KILLS] (env RATE, ROUND_SECONDS: positive integers)" >&2; exit 2; }
done
for tool in curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 2; }
done

if [ "${PROFILE:-release}" = debug ]; then
    cargo build --quiet --bin starling --example loadgen
    target=$PWD/target/debug
else
    cargo build --release --quiet --bin starling --example loadgen
    target=$PWD/target/release
fi
starling=$target/starling
loadgen=$target/examples/loadgen
work=$(mktemp -d)
lg_pid=
# shellcheck source=bench/cluster_lib.sh
source bench/cluster_lib.sh
cleanup() {
    [ -z "$lg_pid" ] || kill "$lg_pid" 2>/dev/null || true
    stop_all_nodes
    if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

gossip=("$(free_udp_port)" "$(free_udp_port)" "$(free_udp_port)")
cluster_args() { # INDEX: the gossip address and the two other nodes as seeds
    local j
    echo "--gossip 127.0.0.1:${gossip[$1]}"
    for j in 0 1 2; do [ "$j" = "$1" ] || echo "--seed 127.0.0.1:${gossip[j]}"; done
    [ -z "${GOSSIP_KEYS:-}" ] || echo "--config $work/gossip.toml"
}
if [ -n "${GOSSIP_KEYS:-}" ]; then
    (umask 077; head -c 32 /dev/urandom | base64 >"$work/gossip.keys")
    printf '[cluster]\ngossip-keys-file = "%s"\n' "$work/gossip.keys" >"$work/gossip.toml"
fi
for i in 0 1 2; do
    # shellcheck disable=SC2046 # word splitting of the flags is wanted
    start_node "$i" $(cluster_args "$i")
done
wait_stable 60 0 1 2
echo "3 nodes up, master $stable_master; $kills kills, sender $rate msg/s for $round_seconds s per round"

index_of() { echo "${1#node-}"; }
elapsed_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

rounds=()      # "host origin sent" per round, for the final check
storing=()     # seconds from kill to the new master storing forwarded records
elected_at=()  # seconds from kill to an agreed new master
anomalies=0
for ((round = 1; round <= kills; round++)); do
    old=$stable_master
    m=$(index_of "$old")
    # The follower with the newest generation sends; the other one is the expected successor.
    read -r sender successor < <(api_get "$m" /v1/status | python3 -c '
import json, sys
status = json.load(sys.stdin)
followers = sorted((m for m in status["members"] if m["node_id"] != status["master"]),
                   key=lambda m: m["generation"])
print(followers[-1]["node_id"][5:], followers[0]["node_id"][5:])') || true
    [ -n "${successor:-}" ] || fail "round $round: no two followers in $old's /v1/status"
    host=round-$round
    before=$(metric "$sender" starling_stored_messages_total)
    "$loadgen" --target "${node_tcp[sender]}" --rate "$rate" --count $((rate * round_seconds)) \
        --hostname "$host" >"$work/$host.json" 2>"$work/$host.err" &
    lg_pid=$!
    deadline=$((SECONDS + 30))
    until [ "$(metric "$sender" starling_stored_messages_total)" -ge $((before + rate)) ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "round $round: node-$sender did not store a second of load within 30 s"
        sleep 0.05
    done
    base_successor=$(metric "$successor" starling_forward_in_records_stored_total)

    killed=$(now_ns)
    kill -9 "${node_pid[m]}"
    new= elected= resumed= note=
    deadline=$((SECONDS + 60))
    while [ -z "$resumed" ]; do
        if [ -z "$new" ]; then
            candidate=$(agreed_master "$successor" "$sender")
            if [ -n "$candidate" ] && [ "$candidate" != "$old" ]; then
                new=$candidate
                elected=$(now_ns)
            fi
        fi
        if [ -n "$new" ]; then
            n=$(index_of "$new")
            if [ "$n" = "$sender" ]; then
                # The sender's own node is master: its records are stored as they arrive.
                resumed=$elected note=" (the sender's node was elected: not counted below)"
            elif [ "$(metric "$n" starling_forward_in_records_stored_total)" -gt "$base_successor" ]; then
                resumed=$(now_ns)
            fi
        fi
        [ -n "$resumed" ] && break
        [ "$SECONDS" -lt "$deadline" ] || fail "round $round: no new master storing forwarded records within 60 s of killing $old (agreed master: ${new:-none})"
        sleep 0.02
    done
    stop_node "$m" KILL # already killed: waits until it is gone
    elected_at+=("$(elapsed_s "$killed" "$elected")")
    [ -n "$note" ] || storing+=("$(elapsed_s "$killed" "$resumed")")
    printf 'kill %2d: %s killed; %s elected after %5s s, storing forwarded records after %5s s%s\n' \
        "$round" "$old" "$new" "${elected_at[-1]}" "$(elapsed_s "$killed" "$resumed")" "$note"

    deadline=$((SECONDS + round_seconds * 3 + 60))
    while kill -0 "$lg_pid" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || fail "round $round: the sender did not finish"
        sleep 0.1
    done
    wait "$lg_pid" || fail "round $round: loadgen failed: $(cat "$work/$host.err")"
    lg_pid=
    sent=$(sed -n 's/.*"sent":\([0-9]*\).*/\1/p' "$work/$host.json")
    rounds+=("$host node-$sender $sent")

    # shellcheck disable=SC2046
    start_node "$m" $(cluster_args "$m")
    wait_stable 60 0 1 2
    if [ "$stable_master" != "$new" ]; then
        echo "round $round: the restart of $old moved the master from $new to $stable_master" >&2
        anomalies=$((anomalies + 1))
    fi
    followers=()
    for i in 0 1 2; do [ "node-$i" = "$stable_master" ] || followers+=("$i"); done
    wait_drained 120 "${followers[@]}"
done

summary() { # LABEL VALUES...
    local label=$1
    shift
    [ $# -gt 0 ] || return 0
    printf '%s\n' "$@" | sort -n | awk -v label="$label" '
        { v[NR] = $1 }
        END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%-44s min %5.2f s  median %5.2f s  max %5.2f s  (%d kills)\n", label, v[1], m, v[NR], NR }'
}
echo
summary "kill -9 -> new master agreed by survivors:" "${elected_at[@]}"
summary "kill -9 -> new master storing forwarded:" "${storing[@]}"

# Exactly once: stop the followers, then the master, and read the master's store.
final=$(index_of "$stable_master")
for i in 0 1 2; do [ "$i" = "$final" ] || stop_node "$i" TERM; done
stop_node "$final" TERM
checker=$(cat <<'PY'
import json, re, sys
rounds = {}
for entry in sys.argv[1:]:
    host, origin, sent = entry.split()
    rounds[host] = (origin, int(sent))
seen = {host: bytearray(sent) for host, (_, sent) in rounds.items()}
identities = {}
pattern = re.compile(r"conn 0 seq (\d{10}) lorem ipsum dolor sit amet$")
total = duplicates = duplicate_ids = unexpected = wrong_origin = 0
for line in sys.stdin.buffer:
    record = json.loads(line)
    host = record["hostname"]
    if host not in rounds:
        continue
    total += 1
    origin, seq = record["origin"], record["seq"]
    marks = identities.setdefault(origin, bytearray())
    if seq >= len(marks):
        marks.extend(bytes(seq + 1 - len(marks) + 100_000))
    if marks[seq]:
        duplicate_ids += 1
    marks[seq] = 1
    match = pattern.search(record["message"] or "")
    if not match or int(match.group(1)) >= rounds[host][1]:
        unexpected += 1
        continue
    if origin != rounds[host][0]:
        wrong_origin += 1
    n = int(match.group(1))
    if seen[host][n]:
        duplicates += 1
    seen[host][n] = 1
sent = sum(sent for _, sent in rounds.values())
lost = sum(marks.count(0) for marks in seen.values())
print(f"exactly once: sent {sent}, stored {total}, lost {lost}, duplicates {duplicates} by content, "
      f"{duplicate_ids} by (origin, seq), unexpected {unexpected}, wrong origin {wrong_origin}")
sys.exit(1 if lost or duplicates or duplicate_ids or unexpected or wrong_origin else 0)
PY
)
timeout 600 "$starling" read --format json --data-dir "$work/node-$final/data" \
    | timeout 600 python3 -c "$checker" "${rounds[@]}" || anomalies=$((anomalies + 1))
if [ "$anomalies" -gt 0 ]; then
    echo "FAILED: $anomalies problem(s) above" >&2
    exit 1
fi
