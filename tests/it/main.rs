//! The integration tests, in one binary: end-to-end tests of the real `starling` binary
//! (driven through `sandbox`) and process-level tests of the library.

mod collector;
mod conformance_e2e;
mod journald;
mod rsyslog;
mod sandbox;
