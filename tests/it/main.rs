//! The integration tests, in one binary: end-to-end tests of the real `starling` binary
//! (driven through `sandbox`), tests against real peers, the conformance corpus, the fuzz
//! regression corpus, process-level tests of the store (kill -9 loops, with and without injected
//! store failures; full disk), and where
//! the node's own logs go (files, JSON, journald).

mod api_limits;
mod cluster;
mod collector;
mod conformance_e2e;
mod conformance_parse;
mod file_input;
mod fuzz_regressions;
mod gap_marker;
mod hostile;
mod journald;
mod layering;
mod logging;
mod pipeline_bounds;
mod prometheus;
mod query;
mod reload;
mod rsyslog;
mod sandbox;
mod sender_guard;
mod shard_flood;
mod store_crash;
mod store_disk;
mod store_faults;
mod tls;
mod validate;
