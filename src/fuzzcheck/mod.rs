//! Property checks behind the cargo-fuzz targets in `fuzz/`, kept in the library so that the
//! committed regression inputs (`fuzz/regressions/TARGET/`) replay under a plain stable
//! `cargo test`. Each `check` panics only when a property is violated (never on bad input
//! itself).

pub mod framing;
pub mod parse;
pub mod segment;
