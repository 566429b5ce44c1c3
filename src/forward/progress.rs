//! The forwarder's progress, and the one place it is kept: the acknowledged mark (the highest
//! of this node's sequences the current master holds, from its handshake and its `Ack`s),
//! whether this node is the master itself (then nothing is forwarded and nothing held back),
//! and the highest sequence a master acknowledged receiving from this data directory (saved
//! in `forward.acked`, `acked_mark`).
//!
//! The forwarder moves the mark (`handshake`, `acknowledged`) and `outbound` follows the
//! cluster view into `set_master`; every change is pushed through a `watch` channel to its
//! readers the moment it happens: the spool gate (`pipeline::gate`), the store's retention
//! (`tell_retention`) and the saved file (`acked_mark::AckedMarkFile`). Nobody polls it to
//! learn a change. This file does not talk to the network and reads no spool.

use tokio::sync::watch;

use crate::store::StoreHandle;

/// A snapshot of the forwarder's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// This node is the master: it has nothing to forward.
    pub is_master: bool,
    /// Highest sequence of this origin the current master acknowledged (or reported in its
    /// handshake). Forward lag = the spool's highest sequence minus this.
    pub acked: u64,
    /// Highest sequence this spool sent and a master acknowledged, in this process or (read
    /// from `forward.acked` at start) an earlier one on the same data directory: a master's
    /// records of this origin up to it came from this data directory.
    pub sent_acked: u64,
}

impl Progress {
    /// What retention keeps: this node's records numbered above `Some(seq)` have not reached
    /// a master; `None` while this node is the master (nothing to keep for forwarding).
    pub fn unforwarded_after(&self) -> Option<u64> {
        (!self.is_master).then_some(self.acked)
    }

    /// Records of this node up to `local_hwm` that the master does not hold (0 while master).
    pub fn lag(&self, local_hwm: u64) -> u64 {
        if self.is_master {
            0
        } else {
            local_hwm.saturating_sub(self.acked)
        }
    }
}

/// The forwarder's progress, shared by the forwarder (which moves it) and its readers (which
/// subscribe).
#[derive(Debug)]
pub struct ForwardProgress {
    tx: watch::Sender<Progress>,
}

impl Default for ForwardProgress {
    fn default() -> Self {
        ForwardProgress::resumed(None, 0)
    }
}

impl ForwardProgress {
    /// Progress of a node whose data directory saved `saved` as acknowledged by a master
    /// before a restart (`acked_mark`), and whose store holds this origin up to `local_hwm`:
    /// those records count as forwarded until a master's handshake says otherwise.
    pub fn resumed(saved: Option<u64>, local_hwm: u64) -> ForwardProgress {
        let mut progress = Progress::default();
        if let Some(acknowledged) = saved {
            progress.sent_acked = acknowledged;
            progress.acked = acknowledged.min(local_hwm);
            tracing::info!(acknowledged, "acknowledged by a master before the restart");
        }
        ForwardProgress {
            tx: watch::channel(progress).0,
        }
    }

    pub fn get(&self) -> Progress {
        *self.tx.borrow()
    }

    /// Highest sequence of this origin the current master acknowledged.
    pub fn acked_seq(&self) -> u64 {
        self.tx.borrow().acked
    }

    /// A receiver that sees every change from now on (and the current value).
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.tx.subscribe()
    }

    /// A master answered the handshake with `high_water_mark`: it holds exactly that much of
    /// this origin, whatever an earlier master acknowledged.
    pub(super) fn handshake(&self, high_water_mark: u64) {
        self.tx.send_if_modified(|progress| {
            let changed = progress.acked != high_water_mark;
            progress.acked = high_water_mark;
            changed
        });
    }

    /// The master acknowledged a batch ending at `last_seq`, its high-water mark now at
    /// `high_water_mark`.
    pub(super) fn acknowledged(&self, last_seq: u64, high_water_mark: u64) {
        self.tx.send_if_modified(|progress| {
            let before = *progress;
            progress.acked = progress.acked.max(high_water_mark.max(last_seq));
            progress.sent_acked = progress.sent_acked.max(last_seq);
            *progress != before
        });
    }

    /// Whether this node is the master, as the cluster view says.
    pub(super) fn set_master(&self, is_master: bool) {
        self.tx.send_if_modified(|progress| {
            let changed = progress.is_master != is_master;
            progress.is_master = is_master;
            changed
        });
    }
}

/// Tells the store's retention which of this node's records a master holds, at once on every
/// change, until the progress is gone.
pub async fn tell_retention(mut progress: watch::Receiver<Progress>, store: StoreHandle) {
    loop {
        let current = *progress.borrow_and_update();
        store.set_unforwarded_after(current.unforwarded_after());
        if progress.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_move_of_the_mark_reaches_a_subscriber_and_repeats_do_not() {
        let progress = ForwardProgress::resumed(Some(500), 300);
        assert_eq!(
            progress.get(),
            Progress {
                is_master: false,
                acked: 300,
                sent_acked: 500
            },
            "never more acknowledged than the store holds"
        );
        let mut rx = progress.subscribe();
        rx.borrow_and_update();
        progress.handshake(300);
        assert!(!rx.has_changed().unwrap(), "same mark, no change");
        progress.handshake(200);
        assert!(rx.has_changed().unwrap());
        assert_eq!(
            rx.borrow_and_update().acked,
            200,
            "a handshake may lower it"
        );
        progress.acknowledged(250, 240);
        let seen = *rx.borrow_and_update();
        assert_eq!((seen.acked, seen.sent_acked), (250, 500));
        progress.acknowledged(600, 700);
        let seen = *rx.borrow_and_update();
        assert_eq!((seen.acked, seen.sent_acked), (700, 600));
        assert_eq!(seen.lag(710), 10);
        assert_eq!(seen.unforwarded_after(), Some(700));
        progress.set_master(true);
        let seen = *rx.borrow_and_update();
        assert_eq!((seen.lag(710), seen.unforwarded_after()), (0, None));
        progress.set_master(true);
        assert!(!rx.has_changed().unwrap());
    }
}
