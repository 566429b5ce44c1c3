//! Starling: a highly available syslog collector.
//!
//! Code map, top to bottom (a module imports only modules below it):
//!
//! - `cli`: clap definitions and the subcommands (`run`, `read`, `verify`, `validate`,
//!   `status`); the binary's `main` only calls `cli::main`.
//! - `node`: wires a running node: opens the store, binds every socket, starts listeners,
//!   the ingest pipeline, the cluster and the API, and drives shutdown.
//! - `pipeline`: the one way every input's records reach the store (spool gate, append,
//!   durability tracking, counters).
//! - `api`, `journal_upload`: HTTP (`/metrics`, `/healthz`, `/v1/status`, `POST /upload`).
//! - `listener`: syslog over UDP (`listener::udp`) and TCP (`listener::tcp`).
//! - `forward`: node-to-node forwarding (protocol, master server, forwarder client).
//! - `cluster`: chitchat membership and master election; the only user of chitchat.
//! - `store`: preallocated, CRC-checked segment files sharded by source.
//! - `ingest`: one received message to a `Record` (parse, event time, shard key).
//! - `parse`, `journal`, `framing`, `render`: syslog parsing, the journal export format,
//!   RFC 6587 framing, the JSON record shape; none does I/O.
//! - `config`, `record`, `telemetry`, `timespec`, `logging`: leaves.
//! - `fuzzcheck`: the properties the fuzz targets check, shared with the regression tests.
//!
//! See `ARCHITECTURE.md` for the invariants.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod forward;
pub mod framing;
#[doc(hidden)]
pub mod fuzzcheck;
pub mod ingest;
pub mod journal;
pub mod journal_upload;
pub mod listener;
pub mod logging;
pub mod node;
pub mod parse;
pub mod pipeline;
pub mod record;
pub mod render;
pub mod store;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testutil;
pub mod timespec;
