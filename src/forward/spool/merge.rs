//! `SeqMerge`: one origin's records from every shard of a store, merged by sequence. Pure
//! iterator plumbing over the store's readers; no I/O of its own.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::store::{ReadError, ShardPosition, ShardScan, StoredRecord};

/// One origin's records from every shard, merged by sequence. Each shard yields them in
/// sequence order, so one head per shard is all the buffering needed.
pub(super) struct SeqMerge {
    origin: String,
    shards: Vec<ShardScan>,
    heads: Vec<Option<StoredRecord>>,
    order: BinaryHeap<Reverse<(u64, usize)>>,
    errors: VecDeque<ReadError>,
    primed: bool,
}

impl SeqMerge {
    pub(super) fn new(origin: String, shards: Vec<ShardScan>) -> SeqMerge {
        let heads = shards.iter().map(|_| None).collect();
        SeqMerge {
            origin,
            shards,
            heads,
            order: BinaryHeap::new(),
            errors: VecDeque::new(),
            primed: false,
        }
    }

    /// Where every shard's scan stopped; once the merge has returned `None`, a follower
    /// started there reads exactly what was appended after the scan.
    pub(super) fn positions(&self) -> Vec<ShardPosition> {
        self.shards.iter().map(ShardScan::position).collect()
    }

    fn refill(&mut self, index: usize) {
        for item in self.shards[index].by_ref() {
            match item {
                Ok(stored) if *stored.record.origin == *self.origin => {
                    self.order.push(Reverse((stored.record.origin_seq, index)));
                    self.heads[index] = Some(stored);
                    return;
                }
                Ok(_) => {}
                Err(error) => self.errors.push_back(error),
            }
        }
    }
}

impl Iterator for SeqMerge {
    type Item = Result<StoredRecord, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.primed {
            self.primed = true;
            for index in 0..self.shards.len() {
                self.refill(index);
            }
        }
        if let Some(error) = self.errors.pop_front() {
            return Some(Err(error));
        }
        let Reverse((_, index)) = self.order.pop()?;
        let stored = self.heads[index].take()?;
        self.refill(index);
        Some(Ok(stored))
    }
}
