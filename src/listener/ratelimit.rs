//! Per-source rate limits of a listener: one token bucket per source (peer address or source
//! name), with a hard cap on the sources tracked.
//!
//! A bucket holds up to `burst` tokens and refills at `messages-per-second`. UDP takes one
//! token per datagram and drops (and counts) a datagram when there is none
//! ([`RateLimiter::try_take`]). TCP never drops: a connection hands over what it has read,
//! charges it to the bucket (which may go into debt) and does not read again until the debt is
//! paid back ([`RateLimiter::charge`] returns how long to wait), so the kernel's flow control
//! slows the sender and every message is kept.
//!
//! Bound: at most `max-keys` buckets. When a new source arrives at the cap, buckets that have
//! refilled completely are forgotten first (a full bucket is the same as a new one, so this
//! changes no limit); if none has, the new source shares one overflow bucket with every other
//! untracked source until room appears. So a flood of spoofed addresses or invented source
//! names cannot grow memory past the cap nor slip past the limit; what it can do is slow the
//! untracked sources, which share the overflow bucket's rate. Owns no socket and no metric.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a source is told apart by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// The peer's address (its port ignored).
    Address(IpAddr),
    /// The record's source name (host name, or what `shard-by` picks).
    Source(Box<str>),
}

/// Settings of one limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub messages_per_second: f64,
    pub burst: f64,
    pub max_keys: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// May be negative (a TCP connection's debt).
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, limit: &RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.messages_per_second).min(limit.burst);
        self.updated = now;
    }
}

#[derive(Debug)]
struct State {
    buckets: HashMap<RateKey, Bucket>,
    overflow: Bucket,
    /// When full buckets were last forgotten (at most once per [`SWEEP_INTERVAL`], so a
    /// flood of new sources at the cap does not scan the map for each of them).
    last_sweep: Instant,
}

/// Least time between two scans of the map for buckets to forget.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Outcome of taking tokens, with whether the overflow bucket paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// UDP: the datagram may pass. TCP: always true.
    pub allowed: bool,
    /// The source was not tracked (map at its cap) and shared the overflow bucket.
    pub overflow: bool,
}

/// A keyed token-bucket limiter with a hard cap on keys (see the module doc).
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    state: Mutex<State>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        let now = Instant::now();
        RateLimiter {
            limit,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                overflow: Bucket {
                    tokens: limit.burst,
                    updated: now,
                },
                last_sweep: now,
            }),
        }
    }

    /// Sources tracked now (at most `max_keys`).
    pub fn num_keys(&self) -> usize {
        self.lock().buckets.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on `key`'s bucket (refilled to `now`), or the overflow bucket when the map
    /// is full; returns what `f` returns and whether the overflow bucket was used.
    fn with_bucket<T>(
        &self,
        key: &RateKey,
        now: Instant,
        f: impl FnOnce(&mut Bucket) -> T,
    ) -> (T, bool) {
        let limit = &self.limit;
        let mut state = self.lock();
        if !state.buckets.contains_key(key)
            && state.buckets.len() >= limit.max_keys
            && now.saturating_duration_since(state.last_sweep) >= SWEEP_INTERVAL
        {
            state.last_sweep = now;
            state.buckets.retain(|_, bucket| {
                bucket.refill(limit, now);
                bucket.tokens < limit.burst
            });
        }
        let State {
            buckets, overflow, ..
        } = &mut *state;
        let bucket = if let Some(bucket) = buckets.get_mut(key) {
            bucket
        } else if buckets.len() < limit.max_keys {
            buckets.entry(key.clone()).or_insert(Bucket {
                tokens: limit.burst,
                updated: now,
            })
        } else {
            overflow.refill(limit, now);
            return (f(overflow), true);
        };
        bucket.refill(limit, now);
        (f(bucket), false)
    }

    /// UDP: takes one token of `key` if there is one.
    pub fn try_take(&self, key: &RateKey, now: Instant) -> Taken {
        let (allowed, overflow) = self.with_bucket(key, now, |bucket| {
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                true
            } else {
                false
            }
        });
        Taken { allowed, overflow }
    }

    /// TCP: charges `count` messages already read to `key` and returns how long the
    /// connection must wait before it reads again (zero while the bucket is not in debt),
    /// and whether the overflow bucket paid.
    pub fn charge(&self, key: &RateKey, count: u64, now: Instant) -> (Duration, bool) {
        let rate = self.limit.messages_per_second;
        self.with_bucket(key, now, |bucket| {
            bucket.tokens -= count as f64;
            if bucket.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-bucket.tokens / rate)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: f64, max_keys: usize) -> RateLimiter {
        RateLimiter::new(RateLimit {
            messages_per_second: per_second,
            burst,
            max_keys,
        })
    }

    fn addr(last: u8) -> RateKey {
        RateKey::Address(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn udp_takes_the_burst_then_the_rate() {
        let limiter = limiter(10.0, 5.0, 16);
        let start = Instant::now();
        let allowed = (0..100)
            .filter(|_| limiter.try_take(&addr(1), start).allowed)
            .count();
        assert_eq!(allowed, 5);
        // Another source has its own bucket.
        assert!(limiter.try_take(&addr(2), start).allowed);
        // One second later: ten more tokens, capped at the burst of five.
        let later = start + Duration::from_secs(1);
        let allowed = (0..100)
            .filter(|_| limiter.try_take(&addr(1), later).allowed)
            .count();
        assert_eq!(allowed, 5);
        let soon = later + Duration::from_millis(300);
        let allowed = (0..100)
            .filter(|_| limiter.try_take(&addr(1), soon).allowed)
            .count();
        assert_eq!(allowed, 3);
    }

    #[test]
    fn tcp_charges_and_waits_for_its_debt() {
        let limiter = limiter(100.0, 50.0, 16);
        let start = Instant::now();
        let key = RateKey::Source("web-1".into());
        assert_eq!(limiter.charge(&key, 50, start), (Duration::ZERO, false));
        let (wait, _) = limiter.charge(&key, 100, start);
        assert_eq!(wait, Duration::from_secs(1));
        // After the wait the debt is paid: nothing more to wait for a message.
        let (wait, _) = limiter.charge(&key, 0, start + wait);
        assert_eq!(wait, Duration::ZERO);
    }

    #[test]
    fn keys_are_capped_full_buckets_are_forgotten_and_the_rest_share_one_bucket() {
        let limiter = limiter(1.0, 2.0, 100);
        let start = Instant::now();
        for i in 0..10_000u32 {
            let key = RateKey::Source(format!("host-{i}").into());
            let taken = limiter.try_take(&key, start);
            assert_eq!(taken.overflow, i >= 100, "{i}");
            assert!(limiter.num_keys() <= 100);
        }
        // The overflow bucket had two tokens for 9,900 untracked sources.
        let overflow_allowed = (100..10_000u32)
            .filter(|i| {
                let key = RateKey::Source(format!("other-{i}").into());
                limiter.try_take(&key, start).allowed
            })
            .count();
        assert_eq!(overflow_allowed, 0);
        // Once tracked buckets have refilled they are forgotten and new sources get their own.
        let later = start + Duration::from_secs(10);
        let taken = limiter.try_take(&RateKey::Source("new".into()), later);
        assert_eq!(
            taken,
            Taken {
                allowed: true,
                overflow: false
            }
        );
        assert_eq!(limiter.num_keys(), 1);
    }
}
