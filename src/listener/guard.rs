//! Who may send to a listener and how fast: its allow list (`allow`) and per-source rate
//! limit (`rate-limit`), as one [`SenderGuard`] the read paths call through small hooks.
//!
//! - TCP (and TLS): [`SenderGuard::admit_connection`] at accept, before anything is read or
//!   any handshake starts; a refused connection is closed at once and counted. After each
//!   batch read, [`SenderGuard::tcp_wait`] says how long the connection must stop reading
//!   (never drops a message: the kernel's flow control slows the sender).
//! - UDP: [`SenderGuard::admit_datagram`] per datagram (allow list, before parsing), then
//!   [`SenderGuard::take_datagram`] per message (rate limit): a datagram over the limit is
//!   dropped and counted.
//!
//! Counting goes through the listener's `ListenerMetrics`; the limiter is `ratelimit`, the
//! network matching `allow`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::allow::AllowList;
use super::metrics::ListenerMetrics;
use super::ratelimit::{RateKey, RateLimit, RateLimiter};
use crate::record::Record;

/// What the rate limit tells sources apart by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateBy {
    /// The peer's IP address.
    Address,
    /// The record's source name (`syslog.shard-by`: host name by default).
    Source,
}

/// A listener's allow list and rate limit; the default lets everyone in, unlimited.
#[derive(Debug, Default)]
pub struct SenderGuard {
    allow: AllowList,
    limit: Option<(RateLimiter, RateBy)>,
}

impl SenderGuard {
    pub fn new(allow: AllowList, limit: Option<(RateLimit, RateBy)>) -> SenderGuard {
        SenderGuard {
            allow,
            limit: limit.map(|(limit, by)| (RateLimiter::new(limit), by)),
        }
    }

    /// The accept check of a stream listener (TCP, TLS): `false` means close the connection
    /// now, unread (it is counted).
    pub fn admit_connection(&self, peer: SocketAddr, metrics: &ListenerMetrics) -> bool {
        if self.allow.permits(peer.ip()) {
            return true;
        }
        metrics.sender_refused(peer);
        false
    }

    /// The allow-list check of one datagram: `false` means drop it (it is counted).
    pub fn admit_datagram(&self, peer: Option<SocketAddr>, metrics: &ListenerMetrics) -> bool {
        match peer {
            Some(peer) => self.admit_connection(peer, metrics),
            None => true,
        }
    }

    /// True when the listener has a rate limit (UDP builds the record before asking).
    pub fn limits(&self) -> bool {
        self.limit.is_some()
    }

    fn key(by: RateBy, peer: Option<SocketAddr>, record: &Record) -> Option<RateKey> {
        match by {
            RateBy::Address => peer.map(|peer| RateKey::Address(peer.ip())),
            RateBy::Source => Some(RateKey::Source(record.source.as_ref().into())),
        }
    }

    /// The rate-limit check of one UDP message: `false` means drop it (it is counted).
    pub fn take_datagram(
        &self,
        peer: Option<SocketAddr>,
        record: &Record,
        metrics: &ListenerMetrics,
    ) -> bool {
        let Some((limiter, by)) = &self.limit else {
            return true;
        };
        let Some(key) = Self::key(*by, peer, record) else {
            return true;
        };
        let taken = limiter.try_take(&key, Instant::now());
        if taken.overflow {
            metrics.rate_limit_untracked(1);
        }
        if !taken.allowed {
            metrics.rate_limited(&key);
        }
        taken.allowed
    }

    /// Charges a batch read from a TCP connection to its sources; returns how long the
    /// connection must stop reading (zero: go on).
    pub fn tcp_wait(
        &self,
        peer: SocketAddr,
        batch: &[Record],
        metrics: &ListenerMetrics,
    ) -> Duration {
        let Some((limiter, by)) = &self.limit else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        let mut charge = |key: RateKey, count: u64| {
            let (key_wait, overflow) = limiter.charge(&key, count, now);
            if overflow {
                metrics.rate_limit_untracked(count);
            }
            wait = wait.max(key_wait);
        };
        match by {
            RateBy::Address => charge(RateKey::Address(peer.ip()), batch.len() as u64),
            RateBy::Source => {
                // A batch holds few sources, usually one: group consecutive records.
                let mut index = 0;
                while index < batch.len() {
                    let source = &batch[index].source;
                    let run = batch[index..]
                        .iter()
                        .take_while(|record| &record.source == source)
                        .count();
                    charge(RateKey::Source(source.as_ref().into()), run as u64);
                    index += run;
                }
            }
        }
        if !wait.is_zero() {
            metrics.rate_limit_wait(peer, wait);
        }
        wait
    }

    /// Sources the rate limit tracks now.
    pub fn num_tracked(&self) -> usize {
        self.limit
            .as_ref()
            .map_or(0, |(limiter, _)| limiter.num_keys())
    }
}
