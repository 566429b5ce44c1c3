//! Starling: a highly available syslog collector.
//!
//! Code map, top to bottom (a module imports only modules below it; test code aside):
//!
//! - `cli`: clap definitions and the subcommands (`run`, `read`, `verify`, `validate`,
//!   `status`); the binary's `main` only calls `cli::main`.
//! - `fuzzcheck`: the properties the fuzz targets check, shared with the regression tests.
//! - `node`: wires a running node: opens the store, starts the listeners, the pipeline, the
//!   cluster and the API, and drives shutdown; builds no metric and maps no config field.
//! - `journal_upload`, `api`: HTTP (`POST /upload`; `/metrics`, `/healthz`, `/v1/status`).
//! - `query`: reading stored records back (`GET /v1/logs` and `starling read`): one filter,
//!   one scan engine, one output writer.
//! - `input_file`: local files as an input (`[[input.file]]`): tailing with rotation and
//!   truncation, read positions recovered from the store's file records; imports
//!   `pipeline`, `config`, `store` (its reader) and `record`.
//! - `listener`: syslog over UDP (`listener::udp`) and TCP (`listener::tcp`), all of them
//!   bound and run by `listener::syslog`.
//! - `pipeline`: the one way every input's records reach the store (spool gate, append,
//!   durability tracking, counters).
//! - `forward`: node-to-node forwarding (protocol, master server, forwarder client, the
//!   forwarder's progress and its `forward.acked` file).
//! - `cluster`: chitchat membership and master election; the only user of chitchat.
//! - `tls`: the TLS server configuration from `[tls]` (rustls, `ring` only), client
//!   certificate policy and identity, the handshake with its refusals counted.
//! - `logging`, `config`: where logs go; the TOML file and flags, parsed once into typed
//!   values.
//! - `store`: preallocated, CRC-checked segment files sharded by source, in layers
//!   (`format`, `write`, `read`).
//! - `ingest`: one received message to a `Record` (parse, event time, shard key).
//! - `render`, `journal`, `parse`, `framing`: the JSON record shape, the journal export
//!   format, syslog parsing, RFC 6587 framing; none does I/O.
//! - `telemetry`: metric families shared by several subsystems, and the `/metrics` rendering.
//! - `record`, `timespec`: leaves.
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
pub mod input_file;
pub mod journal;
pub mod journal_upload;
pub mod listener;
pub mod logging;
pub mod node;
pub mod parse;
pub mod pipeline;
pub mod query;
pub mod record;
pub mod render;
pub mod store;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testutil;
pub mod timespec;
pub mod tls;
