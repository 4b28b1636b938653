//! The cache of decompressed signer keys: a memo of a pure function, owned by whoever checks
//! signatures (see `apply::signatures`), never part of the state or its root.

use commonware_cryptography::ed25519;
use medspace_types::PublicKey;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Decompressed signer keys, memoized: decompressing a point (a field square root) costs about
/// as much as the rest of a signature check, and the same institutions, users and patients sign
/// transaction after transaction. A pure function's memo: it cannot change any outcome, only
/// how long a check takes.
///
/// Cloning is cheap and shares the cache (a handle); [`KeyCache::new`] starts an empty one. It
/// holds at most [`KeyCache::CAPACITY`] keys: a full cache is emptied and refills with the keys
/// in use. Safe to share between threads.
#[derive(Clone)]
pub struct KeyCache {
    keys: Arc<Mutex<HashMap<PublicKey, ed25519::PublicKey>>>,
    capacity: usize,
}

impl KeyCache {
    /// The most keys a cache holds.
    pub const CAPACITY: usize = 1 << 16;

    /// An empty (cold) cache.
    pub fn new() -> Self {
        Self::bounded(Self::CAPACITY)
    }

    pub(crate) fn bounded(capacity: usize) -> Self {
        Self {
            keys: Arc::default(),
            capacity,
        }
    }

    /// The decompressed key, from the cache or decompressed and remembered; `None` if the
    /// bytes are not a valid ed25519 point (such keys are not remembered).
    pub fn verifier(&self, key: &PublicKey) -> Option<ed25519::PublicKey> {
        // A poisoned lock (a panic elsewhere while holding it) only skips the memo.
        if let Ok(map) = self.keys.lock()
            && let Some(k) = map.get(key)
        {
            return Some(k.clone());
        }
        let k = key.verifier()?;
        if let Ok(mut map) = self.keys.lock() {
            if map.len() >= self.capacity {
                map.clear();
            }
            map.insert(key.clone(), k.clone());
        }
        Some(k)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.lock().map_or(0, |map| map.len())
    }

    /// Whether the cache holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `self` and `other` are handles to the same cache.
    pub fn shares_with(&self, other: &KeyCache) -> bool {
        Arc::ptr_eq(&self.keys, &other.keys)
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `try_lock`: formatting never waits for (or deadlocks on) a verifier.
        match self.keys.try_lock() {
            Ok(map) => write!(f, "KeyCache(len={})", map.len()),
            Err(_) => f.write_str("KeyCache(busy)"),
        }
    }
}
