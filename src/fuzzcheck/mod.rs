//! Property checks behind the cargo-fuzz targets in `fuzz/`, kept in the library so that the
//! committed regression inputs (`fuzz/regressions/TARGET/`) replay under a plain stable
//! `cargo test`. Each `check` panics when a property fails; nothing here does I/O.

pub mod framing;
pub mod parse;
