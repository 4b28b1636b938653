//! A small but real application for tests and benchmarks: signed key-value counters.
//!
//! A transaction is `[version=1][chain id: u16 len + bytes][signer: 32][nonce: u64 BE]
//! [key: u16 len + bytes][delta: i64 BE][ed25519 signature: 64 over everything before it]`.
//! Each `(signer, nonce)` may be used once (replay protection); the delta is added to the
//! counter `key`. The state root is SHA-256 of an order-independent sum of SHA-256 hashes of all
//! entries, maintained incrementally so committing a block costs O(block), not O(state).

pub mod sim;

use crate::Application;
use bytes::Bytes;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

const VERSION: u8 = 1;
const MAX_KEY: usize = 256;

/// A decoded counter transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterTx {
    /// Chain id the transaction is meant for.
    pub chain_id: String,
    /// Signer's ed25519 public key.
    pub signer: [u8; 32],
    /// Nonce, unique per signer.
    pub nonce: u64,
    /// Counter name.
    pub key: String,
    /// Amount added.
    pub delta: i64,
}

fn body(chain_id: &str, signer: &[u8; 32], nonce: u64, key: &str, delta: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + chain_id.len() + key.len());
    out.push(VERSION);
    out.extend_from_slice(&(chain_id.len() as u16).to_be_bytes());
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(signer);
    out.extend_from_slice(&nonce.to_be_bytes());
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&delta.to_be_bytes());
    out
}

/// Builds a signed counter transaction.
pub fn sign_tx(key: &SigningKey, chain_id: &str, nonce: u64, counter: &str, delta: i64) -> Bytes {
    let signer = key.verifying_key().to_bytes();
    let mut out = body(chain_id, &signer, nonce, counter, delta);
    let sig = key.sign(&out);
    out.extend_from_slice(&sig.to_bytes());
    Bytes::from(out)
}

struct Cursor<'a>(&'a [u8]);
impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "transaction truncated: need={n} have={}",
                self.0.len()
            ));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn string(&mut self) -> Result<String, String> {
        let len = u16::from_be_bytes(self.arr::<2>()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "string is not utf-8".to_string())
    }
}

/// Decodes and verifies the signature of a counter transaction (no state checks).
pub fn decode_tx(tx: &[u8]) -> Result<CounterTx, String> {
    let (decoded, signed_len, sig) = parse_tx(tx)?;
    let vk = VerifyingKey::from_bytes(&decoded.signer)
        .map_err(|_| "bad signer public key".to_string())?;
    let msg = tx
        .get(..signed_len)
        .ok_or_else(|| "transaction truncated".to_string())?;
    vk.verify_strict(msg, &Signature::from_bytes(&sig))
        .map_err(|_| "bad signature".to_string())?;
    Ok(decoded)
}

/// Decodes a counter transaction without checking its signature: the transaction, the length
/// of the signed prefix and the signature.
fn parse_tx(tx: &[u8]) -> Result<(CounterTx, usize, [u8; 64]), String> {
    let mut c = Cursor(tx);
    let version = c.arr::<1>()?[0];
    if version != VERSION {
        return Err(format!("unknown transaction version: version={version}"));
    }
    let chain_id = c.string()?;
    let signer = c.arr::<32>()?;
    let nonce = u64::from_be_bytes(c.arr::<8>()?);
    let key = c.string()?;
    if key.len() > MAX_KEY {
        return Err(format!("counter key too long: len={}", key.len()));
    }
    let delta = i64::from_be_bytes(c.arr::<8>()?);
    let signed_len = tx.len().saturating_sub(c.0.len());
    let sig = c.arr::<64>()?;
    if !c.0.is_empty() {
        return Err(format!(
            "trailing bytes after transaction: len={}",
            c.0.len()
        ));
    }
    let decoded = CounterTx {
        chain_id,
        signer,
        nonce,
        key,
        delta,
    };
    Ok((decoded, signed_len, sig))
}

/// The writes of one block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterDiff {
    counters: BTreeMap<String, i64>,
    used: HashSet<([u8; 32], u64)>,
}

#[derive(Debug, Default)]
struct State {
    counters: HashMap<String, i64>,
    used: HashSet<([u8; 32], u64)>,
    acc: [u64; 4],
}

fn entry_hash(tag: u8, a: &[u8], b: &[u8]) -> [u64; 4] {
    let mut h = Sha256::new();
    h.update([tag]);
    h.update((a.len() as u64).to_be_bytes());
    h.update(a);
    h.update(b);
    let d: [u8; 32] = h.finalize().into();
    let mut out = [0u64; 4];
    for (lane, word) in out.iter_mut().zip(d.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        *lane = u64::from_be_bytes(w);
    }
    out
}

fn acc_add(acc: &mut [u64; 4], h: [u64; 4]) {
    for (a, b) in acc.iter_mut().zip(h) {
        *a = a.wrapping_add(b);
    }
}
fn acc_sub(acc: &mut [u64; 4], h: [u64; 4]) {
    for (a, b) in acc.iter_mut().zip(h) {
        *a = a.wrapping_sub(b);
    }
}
fn acc_root(acc: &[u64; 4]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"medspace-counter-root");
    for lane in acc {
        h.update(lane.to_be_bytes());
    }
    h.finalize().into()
}

/// Signed key-value counter application.
#[derive(Clone, Debug)]
pub struct CounterApp {
    chain_id: String,
    state: Arc<parking_lot_free::RwLock<State>>,
}

/// `std::sync::RwLock` wrapper that never panics on poisoning (the state is only mutated in
/// `commit`, which cannot panic midway).
mod parking_lot_free {
    pub struct RwLock<T>(std::sync::RwLock<T>);
    impl<T: std::fmt::Debug> std::fmt::Debug for RwLock<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("RwLock")
        }
    }
    impl<T> RwLock<T> {
        pub fn new(t: T) -> Self {
            Self(std::sync::RwLock::new(t))
        }
        pub fn read(&self) -> std::sync::RwLockReadGuard<'_, T> {
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
        pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, T> {
            self.0
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

impl CounterApp {
    /// Fresh state for `chain_id`.
    pub fn new(chain_id: &str) -> Self {
        Self {
            chain_id: chain_id.to_string(),
            state: Arc::new(parking_lot_free::RwLock::new(State::default())),
        }
    }

    /// Committed value of counter `key`.
    pub fn counter(&self, key: &str) -> Option<i64> {
        self.state.read().counters.get(key).copied()
    }

    /// Number of used `(signer, nonce)` pairs in committed state (= applied transactions).
    pub fn applied_txs(&self) -> usize {
        self.state.read().used.len()
    }

    /// Independent copy of the committed state (clones of `CounterApp` share state).
    pub fn fork(&self) -> Self {
        let s = self.state.read();
        Self {
            chain_id: self.chain_id.clone(),
            state: Arc::new(parking_lot_free::RwLock::new(State {
                counters: s.counters.clone(),
                used: s.used.clone(),
                acc: s.acc,
            })),
        }
    }
}

impl Application for CounterApp {
    type Diff = CounterDiff;
    type Refusal = String;

    fn precheck(&self, txs: &[Bytes]) -> Vec<Result<(), String>> {
        txs.iter().map(|tx| decode_tx(tx).map(|_| ())).collect()
    }

    fn check_prechecked(&self, tx: &[u8]) -> Result<[u8; 32], String> {
        let (t, _, _) = parse_tx(tx)?;
        if t.chain_id != self.chain_id {
            return Err(format!(
                "wrong chain id: expected={} got={}",
                self.chain_id, t.chain_id
            ));
        }
        if self.state.read().used.contains(&(t.signer, t.nonce)) {
            return Err(format!("nonce already used: nonce={}", t.nonce));
        }
        Ok(Sha256::digest(tx).into())
    }

    fn execute(
        &self,
        pending: &[&CounterDiff],
        _height: u64,
        _time_ms: u64,
        txs: &[Bytes],
    ) -> (CounterDiff, [u8; 32], Vec<Result<(), String>>) {
        let state = self.state.read();
        let mut diff = CounterDiff::default();
        let mut outcomes = Vec::with_capacity(txs.len());
        let used = |diff: &CounterDiff, k: &([u8; 32], u64)| {
            diff.used.contains(k)
                || pending.iter().any(|p| p.used.contains(k))
                || state.used.contains(k)
        };
        let value = |diff: &CounterDiff, key: &str| -> i64 {
            if let Some(v) = diff.counters.get(key) {
                return *v;
            }
            for p in pending.iter().rev() {
                if let Some(v) = p.counters.get(key) {
                    return *v;
                }
            }
            state.counters.get(key).copied().unwrap_or(0)
        };
        for tx in txs {
            let outcome = (|| {
                let t = decode_tx(tx)?;
                if t.chain_id != self.chain_id {
                    return Err(format!("wrong chain id: got={}", t.chain_id));
                }
                let k = (t.signer, t.nonce);
                if used(&diff, &k) {
                    return Err(format!("nonce already used: nonce={}", t.nonce));
                }
                let new = value(&diff, &t.key)
                    .checked_add(t.delta)
                    .ok_or_else(|| format!("counter overflow: key={}", t.key))?;
                diff.used.insert(k);
                diff.counters.insert(t.key, new);
                Ok(())
            })();
            outcomes.push(outcome);
        }
        // Root after the block: committed accumulator updated by pending diffs and this one.
        let mut acc = state.acc;
        let mut current: HashMap<&str, i64> = HashMap::new();
        for d in pending.iter().copied().chain(std::iter::once(&diff)) {
            for (k, v) in &d.counters {
                let old = current
                    .get(k.as_str())
                    .copied()
                    .or_else(|| state.counters.get(k).copied());
                if let Some(old) = old {
                    acc_sub(&mut acc, entry_hash(0, k.as_bytes(), &old.to_be_bytes()));
                }
                acc_add(&mut acc, entry_hash(0, k.as_bytes(), &v.to_be_bytes()));
                current.insert(k.as_str(), *v);
            }
            for (s, n) in &d.used {
                acc_add(&mut acc, entry_hash(1, s, &n.to_be_bytes()));
            }
        }
        (diff, acc_root(&acc), outcomes)
    }

    fn commit(&mut self, _height: u64, diff: &CounterDiff) -> [u8; 32] {
        let mut state = self.state.write();
        for (k, v) in &diff.counters {
            if let Some(old) = state.counters.insert(k.clone(), *v) {
                acc_sub(
                    &mut state.acc,
                    entry_hash(0, k.as_bytes(), &old.to_be_bytes()),
                );
            }
            acc_add(
                &mut state.acc,
                entry_hash(0, k.as_bytes(), &v.to_be_bytes()),
            );
        }
        for u in &diff.used {
            if state.used.insert(*u) {
                acc_add(&mut state.acc, entry_hash(1, &u.0, &u.1.to_be_bytes()));
            }
        }
        acc_root(&state.acc)
    }

    fn root(&self) -> [u8; 32] {
        acc_root(&self.state.read().acc)
    }
}

/// Deterministic signing key from a seed (tests, benchmarks).
pub fn test_key(seed: u64) -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    bytes[8] = 0x5a;
    SigningKey::from_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_commit_and_refusals() {
        let mut app = CounterApp::new("c");
        let k = test_key(1);
        let t1 = sign_tx(&k, "c", 1, "x", 5);
        let t2 = sign_tx(&k, "c", 2, "x", 7);
        let replay = t1.clone();
        let wrong = sign_tx(&k, "other", 3, "x", 1);
        let mut bad = t2.to_vec();
        bad[20] ^= 1;
        let txs = vec![
            t1.clone(),
            t2.clone(),
            replay,
            wrong,
            Bytes::from(bad),
            Bytes::from_static(b"zz"),
        ];
        let (diff, root, outcomes) = app.execute(&[], 1, 0, &txs);
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 2);
        assert!(outcomes[2].as_ref().unwrap_err().contains("nonce"));
        assert!(outcomes[3].as_ref().unwrap_err().contains("chain id"));
        assert!(outcomes[4].is_err());
        assert!(outcomes[5].is_err());
        // Same input, same output.
        assert_eq!(app.execute(&[], 1, 0, &txs).1, root);
        // Pending diff is seen by the next block.
        let t3 = sign_tx(&k, "c", 3, "x", 1);
        let (diff2, root2, o2) = app.execute(&[&diff], 2, 0, &[t3, t1.clone()]);
        assert!(o2[0].is_ok() && o2[1].is_err());
        assert_eq!(app.commit(1, &diff), root);
        assert_eq!(app.counter("x"), Some(12));
        assert!(app.check_tx(&t1).is_err());
        assert_eq!(app.commit(2, &diff2), root2);
        assert_eq!(app.counter("x"), Some(13));
        assert_eq!(app.root(), root2);
    }

    #[test]
    fn root_independent_of_block_split() {
        let k = test_key(2);
        let txs: Vec<Bytes> = (0..6)
            .map(|n| sign_tx(&k, "c", n, &format!("k{}", n % 2), 3))
            .collect();
        let mut a = CounterApp::new("c");
        let (d, _, _) = a.execute(&[], 1, 0, &txs);
        let ra = a.commit(1, &d);
        let mut b = CounterApp::new("c");
        let (d1, _, _) = b.execute(&[], 1, 0, &txs[..2]);
        let (d2, r2, _) = b.execute(&[&d1], 2, 0, &txs[2..]);
        b.commit(1, &d1);
        assert_eq!(b.commit(2, &d2), r2);
        assert_eq!(ra, r2);
    }
}
