//! The integration tests, in one binary: end-to-end tests of the real `starling` binary
//! (driven through `sandbox`), tests against real peers, the conformance corpus, and
//! process-level tests of the library.

mod collector;
mod conformance_e2e;
mod conformance_parse;
mod journald;
mod rsyslog;
mod sandbox;
mod fuzz_regressions;
