//! Starling: a highly available syslog collector.
//!
//! Code map, top to bottom (a module imports only modules below it):
//!
//! - `cli`       — clap definitions and the subcommands (`run`, `read`, `verify`, `validate`,
//!   `status`); the binary's `main` only calls `cli::main`.
//! - `node`      — wires a running node: binds sockets, opens the store, starts listeners, the
//!   ingest pipeline and the API, and drives shutdown.
//! - `api`       — HTTP: `/metrics`, `/healthz`, `/v1/status`.
//! - `listener`  — syslog over UDP (`listener::udp`) and TCP (`listener::tcp`).
//! - `ingest`    — the pipeline stage between listeners and the store: parse, shard, append.
//! - `store`     — memory-mapped, CRC-checked segment files sharded by source.
//! - `parse`     — syslog parsing (RFC 5424, RFC 3164) on top of `syslog_loose`; no I/O.
//! - `framing`   — RFC 6587 TCP framing (octet counting and non-transparent); no I/O.
//! - `config`, `record`, `telemetry`, `timespec` — leaves that import nothing of ours above.
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
pub mod record;
pub mod render;
pub mod store;
pub mod telemetry;
pub mod timespec;
