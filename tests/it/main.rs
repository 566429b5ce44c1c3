//! The single integration-test binary: one `mod` per area.

mod conformance_parse;
