//! Property checks shared by the fuzz targets and the tests: each takes arbitrary bytes and
//! panics only when a property is violated (never on bad input itself).

pub mod forward;
pub mod segment;
