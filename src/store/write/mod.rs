//! The writing side, owned by the writer thread: the thread itself (`writer`), the queue it
//! takes batches from (`queue`), its configuration (`config`), each shard's state and
//! directory (`shard`), its open segment (`active`), sealing (`seal`), recovery of a shard at
//! open and after a failure (`recover`), retention (`retention`), and the file-operations
//! seam tests inject failures through (`fileops`).
//!
//! Imports `format` and the store's leaf files (`sys`, `error`, `problem`, `stats`), never
//! `read` nor the store root. Inside: `writer` → `recover`, `retention` → `shard` → `active`
//! → `seal` → `fileops`.

mod active;
pub(super) mod config;
pub mod fileops;
pub(super) mod queue;
pub(super) mod recover;
pub(super) mod retention;
mod seal;
pub(super) mod shard;
pub(super) mod writer;
