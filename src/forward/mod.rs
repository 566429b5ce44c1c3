//! Node-to-node forwarding: the wire protocol (`protocol`, no I/O), the master's `server`, and
//! the forwarder `client` that ships this node's spool (`source`, `spool`) to the master.

pub mod client;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod source;
pub mod spool;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod gap_tests;
#[cfg(test)]
mod renumber_tests;
#[cfg(test)]
mod tests;
