//! Property checks behind the cargo-fuzz targets in `fuzz/`, kept in the library so that the
//! committed seeds and regression inputs (`fuzz/seeds/TARGET/`, `fuzz/regressions/TARGET/`)
//! replay under a plain stable `cargo test`. Each check takes arbitrary bytes and panics only
//! when a property is violated (never on bad input itself).

pub mod forward;
pub mod framing;
pub mod journal;
pub mod parse;
pub mod segment;
