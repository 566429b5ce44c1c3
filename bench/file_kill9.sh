#!/usr/bin/env bash
# Issue #16's long kill -9 loop: the tailed-file tests of tests/it/file_input.rs with KILLS
# kills (the test suite runs 25). A writer appends 10,000 numbered lines/s to app.log, the
# real logrotate rotates it every 2 s (by rename with compress + delaycompress, then with
# copytruncate), and the node tailing it is SIGKILLed at random points KILLS times.
# Rename: 0 missing, 0 duplicates or it fails. copytruncate: 0 duplicates, and the lines lost
# (appended between logrotate's copy and its truncation) are printed.
#
#   bench/file_kill9.sh [KILLS]        (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-200}
command -v logrotate >/dev/null || { echo "logrotate is not installed" >&2; exit 1; }
STARLING_FILE_KILLS=$kills STARLING_REQUIRE_PEERS=1 cargo test --test it file_input::kill9_loop \
    -- --nocapture --test-threads 1 2>&1 | grep -E "^(rename|copytruncate):|test result|panicked|missing"
