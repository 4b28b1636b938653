//! Request rates: a token bucket for a whole route set, and one per caller key.

use medspace_types::PublicKey;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Most keys a [`KeyLimiter`] tracks; beyond it, idle keys are forgotten first.
pub const MAX_TRACKED_KEYS: usize = 100_000;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Clone, Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    /// Takes one token at `now`, if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Whether the bucket has been full since `now` (its key may be forgotten).
    fn idle(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate
            >= self.burst
    }
}

/// One token bucket per caller key, so that one key cannot use up a node for everyone.
pub struct KeyLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<PublicKey, Bucket>>,
}

impl KeyLimiter {
    /// `rate` requests a second per key, bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one of `key`'s tokens at `now`, if it has one.
    pub fn take(&self, key: &PublicKey, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, b| !b.idle(now));
            if buckets.len() >= MAX_TRACKED_KEYS {
                return false;
            }
        }
        buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::new(self.rate, self.burst))
            .take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medspace_types::Keypair;
    use std::time::Duration;

    #[test]
    fn each_key_has_its_own_budget() {
        let l = KeyLimiter::new(10, 3);
        let (a, b) = (
            Keypair::from_seed(1).public(),
            Keypair::from_seed(2).public(),
        );
        let t = Instant::now();
        assert!((0..3).all(|_| l.take(&a, t)));
        assert!(!l.take(&a, t), "the burst is spent");
        assert!(l.take(&b, t), "another key is not held up");
        assert!(
            l.take(&a, t + Duration::from_millis(100)),
            "one token back after 0.1 s"
        );
        assert!(!l.take(&a, t + Duration::from_millis(100)));
    }
}
