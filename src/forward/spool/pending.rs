//! `Pending`: the spool's buffer of records read ahead of the next sequence to hand out,
//! keyed by origin sequence. Records nearly always arrive in sequence order, so the common
//! case is a run of consecutive sequences in a `VecDeque` (an append and a pop per record);
//! only records that arrive out of order go to a `BTreeMap`. Behaves like a
//! `BTreeMap<u64, Record>` (an insert replaces the record of the same sequence). No I/O.

use std::collections::{BTreeMap, VecDeque};

use crate::record::Record;

#[derive(Default)]
pub(super) struct Pending {
    /// Records of the consecutive sequences `run_start..run_start + run.len()`.
    run: VecDeque<Record>,
    run_start: u64,
    /// Every other record. Invariant: no key inside the run's range, nor the one right after.
    rest: BTreeMap<u64, Record>,
}

impl Pending {
    pub(super) fn len(&self) -> usize {
        self.run.len() + self.rest.len()
    }

    pub(super) fn clear(&mut self) {
        self.run.clear();
        self.rest.clear();
    }

    fn run_end(&self) -> u64 {
        self.run_start + self.run.len() as u64
    }

    fn in_run(&self, seq: u64) -> bool {
        seq >= self.run_start && seq < self.run_end()
    }

    pub(super) fn contains_key(&self, seq: u64) -> bool {
        self.in_run(seq) || self.rest.contains_key(&seq)
    }

    pub(super) fn insert(&mut self, seq: u64, record: Record) {
        if self.in_run(seq) {
            self.run[(seq - self.run_start) as usize] = record;
            return;
        }
        if self.run.is_empty() {
            self.run_start = seq;
            self.rest.remove(&seq);
        } else if seq != self.run_end() {
            self.rest.insert(seq, record);
            return;
        }
        self.run.push_back(record);
        // Records that arrived early now continue the run.
        while let Some(next) = self.rest.remove(&self.run_end()) {
            self.run.push_back(next);
        }
    }

    /// The lowest sequence held.
    pub(super) fn first_seq(&self) -> Option<u64> {
        let run = (!self.run.is_empty()).then_some(self.run_start);
        let rest = self.rest.keys().next().copied();
        match (run, rest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The record of the lowest sequence, if that sequence is `seq`.
    pub(super) fn first_if(&self, seq: u64) -> Option<&Record> {
        if self.first_seq() != Some(seq) {
            return None;
        }
        if !self.run.is_empty() && self.run_start == seq {
            self.run.front()
        } else {
            self.rest.get(&seq)
        }
    }

    /// Removes and returns the record of the lowest sequence, if that sequence is `seq`.
    pub(super) fn pop_first_if(&mut self, seq: u64) -> Option<Record> {
        if self.first_seq() != Some(seq) {
            return None;
        }
        if !self.run.is_empty() && self.run_start == seq {
            self.run_start += 1;
            self.run.pop_front()
        } else {
            self.rest.remove(&seq)
        }
    }

    /// Drops every record below `seq`.
    pub(super) fn drop_below(&mut self, seq: u64) {
        self.rest = self.rest.split_off(&seq);
        while !self.run.is_empty() && self.run_start < seq {
            self.run.pop_front();
            self.run_start += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::tests::rec;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Pop,
        DropBelow(u64),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..40).prop_map(Op::Insert),
            3 => Just(Op::Pop),
            1 => (0u64..40).prop_map(Op::DropBelow),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Any sequence of operations leaves `Pending` holding exactly what a `BTreeMap` holds.
        #[test]
        fn behaves_like_a_btree_map(ops in proptest::collection::vec(op(), 0..200)) {
            let mut pending = Pending::default();
            let mut model: BTreeMap<u64, Record> = BTreeMap::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(seq) => {
                        let record = rec("h", "o", seq, i as i64, "m");
                        pending.insert(seq, record.clone());
                        model.insert(seq, record);
                    }
                    Op::Pop => {
                        let first = model.keys().next().copied();
                        prop_assert_eq!(pending.first_seq(), first);
                        if let Some(seq) = first {
                            prop_assert_eq!(pending.first_if(seq + 1).is_some(), false);
                            prop_assert_eq!(pending.first_if(seq), model.get(&seq));
                            prop_assert_eq!(pending.pop_first_if(seq), model.remove(&seq));
                        }
                    }
                    Op::DropBelow(seq) => {
                        pending.drop_below(seq);
                        model = model.split_off(&seq);
                    }
                    Op::Clear => {
                        pending.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(pending.len(), model.len());
                for seq in 0..42 {
                    prop_assert_eq!(pending.contains_key(seq), model.contains_key(&seq));
                }
            }
        }
    }
}
