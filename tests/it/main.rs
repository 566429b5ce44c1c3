//! The single integration-test binary: one module per area.

mod store_crash;
mod store_disk;
