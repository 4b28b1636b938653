//! The mempool: transactions admitted by [`crate::Application::check_tx`] waiting to be proposed.
//!
//! Bounded in count and bytes, deduplicated by tx id, first-in first-out. Transactions leave the
//! pool when a block containing them is finalized (or when the proposer finds them refused).

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// Mempool limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Maximum number of pending transactions.
    pub max_txs: usize,
    /// Maximum total bytes of pending transactions.
    pub max_bytes: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        Self {
            max_txs: 200_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Why a transaction was not added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// Already pending.
    #[error("transaction already pending: id={0}")]
    Duplicate(String),
    /// The pool is full.
    #[error("mempool full: pending_txs={txs} pending_bytes={bytes}")]
    Full {
        /// Pending count.
        txs: usize,
        /// Pending bytes.
        bytes: usize,
    },
}

/// Pending transactions in arrival order.
#[derive(Debug, Default)]
pub struct Mempool {
    limits: MempoolLimits,
    order: VecDeque<[u8; 32]>,
    txs: HashMap<[u8; 32], Bytes>,
    bytes: usize,
}

impl Mempool {
    /// An empty pool with `limits`.
    pub fn new(limits: MempoolLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Adds an admitted transaction under its id.
    pub fn insert(&mut self, id: [u8; 32], tx: Bytes) -> Result<(), MempoolError> {
        if self.txs.contains_key(&id) {
            return Err(MempoolError::Duplicate(hex::encode(id)));
        }
        if self.txs.len() >= self.limits.max_txs
            || self.bytes.saturating_add(tx.len()) > self.limits.max_bytes
        {
            return Err(MempoolError::Full {
                txs: self.txs.len(),
                bytes: self.bytes,
            });
        }
        self.bytes += tx.len();
        self.order.push_back(id);
        self.txs.insert(id, tx);
        Ok(())
    }

    /// Whether `id` is pending.
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.txs.contains_key(id)
    }

    /// Removes `id` (no-op when absent).
    pub fn remove(&mut self, id: &[u8; 32]) {
        if let Some(tx) = self.txs.remove(id) {
            self.bytes -= tx.len();
        }
        // Compact the order queue lazily: drop leading ids that are gone.
        while let Some(front) = self.order.front() {
            if self.txs.contains_key(front) {
                break;
            }
            self.order.pop_front();
        }
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Oldest-first selection of at most `max_txs` transactions totalling at most `max_bytes`,
    /// skipping ids for which `skip` is true (e.g. already in a pending ancestor block).
    pub fn select(
        &self,
        max_txs: usize,
        max_bytes: usize,
        skip: impl Fn(&[u8; 32]) -> bool,
    ) -> Vec<([u8; 32], Bytes)> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for id in &self.order {
            if out.len() >= max_txs {
                break;
            }
            let Some(tx) = self.txs.get(id) else { continue };
            if skip(id) {
                continue;
            }
            if bytes.saturating_add(tx.len()) > max_bytes {
                break;
            }
            bytes += tx.len();
            out.push((*id, tx.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn dedup_limits_and_order() {
        let mut m = Mempool::new(MempoolLimits {
            max_txs: 3,
            max_bytes: 10,
        });
        m.insert(id(1), Bytes::from_static(b"aaa")).unwrap();
        assert!(matches!(
            m.insert(id(1), Bytes::from_static(b"aaa")),
            Err(MempoolError::Duplicate(_))
        ));
        m.insert(id(2), Bytes::from_static(b"bbb")).unwrap();
        m.insert(id(3), Bytes::from_static(b"ccc")).unwrap();
        assert!(matches!(
            m.insert(id(4), Bytes::from_static(b"d")),
            Err(MempoolError::Full { .. })
        ));
        let sel = m.select(10, 100, |i| *i == id(2));
        assert_eq!(
            sel.iter().map(|(i, _)| i[0]).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(m.select(10, 5, |_| false).len(), 1);
        m.remove(&id(1));
        assert_eq!(m.len(), 2);
        assert!(!m.contains(&id(1)));
        m.insert(id(4), Bytes::from_static(b"d")).unwrap();
        let sel = m.select(2, 100, |_| false);
        assert_eq!(
            sel.iter().map(|(i, _)| i[0]).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn byte_limit() {
        let mut m = Mempool::new(MempoolLimits {
            max_txs: 10,
            max_bytes: 4,
        });
        m.insert(id(1), Bytes::from_static(b"aaa")).unwrap();
        assert!(m.insert(id(2), Bytes::from_static(b"bb")).is_err());
        m.remove(&id(1));
        assert!(m.insert(id(2), Bytes::from_static(b"bb")).is_ok());
        assert!(!m.is_empty());
    }
}
