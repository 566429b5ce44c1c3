#!/usr/bin/env bash
# Peak memory of a node during a disk-full stall while 4 TCP senders push 64 KiB messages
# (issue #12's target: RSS < 512 MiB during a 60 s stall).
#
#   bench/disk_full_rss.sh [SECONDS]     (default 60; needs root: it mounts a tmpfs)
#
# Runs the e2e test `disk_full_stall_with_64k_tcp_messages_keeps_rss_under_512_mib` (in
# tests/it/pipeline_bounds.rs) with its stall stretched to SECONDS: the data directory is a
# 1 GiB tmpfs filled up to 32 MiB, the senders push until the store reports the disk full,
# then for SECONDS the node's VmRSS is polled and its VmHWM (peak) read at the end; space is
# freed and every message the senders wrote must be stored. Prints the measured line
# ("disk-full stall: ...") and fails if the peak is over 512 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
export STARLING_STALL_SECS="${1:-60}" STARLING_REQUIRE_PEERS=1
exec cargo test --test it disk_full_stall_with_64k_tcp_messages_keeps_rss_under_512_mib \
  -- --nocapture
