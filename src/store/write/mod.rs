//! The writing side, owned by the writer thread: the thread itself (`writer`), each shard's
//! state and directory (`shard`), its open segment (`active`), sealing (`seal`), recovery of a
//! shard at open and after a failure (`recover`), retention (`retention`), and the
//! file-operations seam tests inject failures through (`fileops`).

pub(super) mod active;
pub mod fileops;
pub(super) mod recover;
pub(super) mod retention;
pub(super) mod seal;
pub(super) mod shard;
pub(super) mod writer;
