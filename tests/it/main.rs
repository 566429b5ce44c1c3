//! The single integration-test binary: one `mod` per area.

mod conformance_parse;
mod fuzz_regressions;
