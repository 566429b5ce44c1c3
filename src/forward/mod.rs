//! Node-to-node forwarding: the wire protocol (`protocol`, no I/O), the master's `server`, the
//! forwarder `client` that ships this node's spool (`source`, `spool`) to the master, and the
//! forwarder's `progress` (the acknowledged mark, pushed to its readers; saved across restarts
//! by `acked_mark`), and `outbound`, which starts and stops this node's side as one piece.

pub mod acked_mark;
pub mod client;
pub mod metrics;
pub mod outbound;
pub mod progress;
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
#[cfg(test)]
mod unsendable_tests;
