//! The store's bytes: frames and their CRCs (`frame`), the record encoding (`codec`), the
//! segment header, footer, trailer and file names (`segment`), the sparse time index
//! (`index`), shard directory names and `shard.meta` (`shardname`), and the frame scanner
//! that verifies a segment through positional reads (`scan`). See `docs/format.md`.
//!
//! The bottom layer: it imports nothing of the store but `sys`, and it never writes a segment
//! or decides policy. Its only file I/O is reading (`scan`, `shardname::read_meta`,
//! `segment::list_segments`) and the derived index file (`index`).

pub(super) mod codec;
pub(super) mod frame;
pub(super) mod index;
pub(super) mod scan;
pub(super) mod segment;
pub mod shardname;
