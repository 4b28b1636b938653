//! A bounded map of the most recent entries keyed by transaction id: a node's transaction
//! statuses, a validator's ids of signatures checked at admission, a follower's outcomes. What
//! a node remembers per transaction is bounded by a count, not by the chain's length.

use std::collections::{HashMap, VecDeque};

/// The most recent entries keyed by transaction id (the oldest is forgotten first).
#[derive(Debug)]
pub struct Recent<V> {
    map: HashMap<[u8; 32], V>,
    order: VecDeque<[u8; 32]>,
    keep: usize,
}

impl<V> Recent<V> {
    /// Keeps at most `keep` entries.
    pub fn new(keep: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            keep,
        }
    }

    /// Inserts or updates an entry (an update keeps its place).
    pub fn insert(&mut self, id: [u8; 32], value: V) {
        if self.map.insert(id, value).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.keep {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    /// The entry of `id`, if still remembered.
    pub fn get(&self, id: &[u8; 32]) -> Option<&V> {
        self.map.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_first() {
        let mut r = Recent::new(2);
        r.insert([1; 32], 'a');
        r.insert([2; 32], 'b');
        r.insert([1; 32], 'c'); // an update keeps its place
        r.insert([3; 32], 'd');
        assert_eq!(r.get(&[1; 32]), None);
        assert_eq!((r.get(&[2; 32]), r.get(&[3; 32])), (Some(&'b'), Some(&'d')));
    }
}
