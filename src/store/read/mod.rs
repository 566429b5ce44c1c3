//! The reading side: `StoreReader` (ranges of records, merged across shards by receive time),
//! `Follower` (tails a store while a writer appends) and `verify` (a full check of a data
//! directory). All of it reads with `pread` only and never writes a segment, so it runs
//! offline or next to a live writer.
//!
//! Imports `format` and the store's leaf files (`error`, `problem`), never `write` nor the
//! store root. Inside: `follower` and `verify` → `reader`.

pub(super) mod follower;
pub(super) mod reader;
pub(super) mod verify;
