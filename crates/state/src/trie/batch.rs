//! Many keys read in one walk ([`super::Trie::visit_many`]).
//!
//! A read of one key walks from the root to its leaf. A million keys read one by one walk a
//! million times through the same upper nodes, and below a store's pinned levels each step is
//! a probe of the shared node cache, or a read of the node file and an entry into that cache
//! that evicts another. A worker's plan over a million linked patients spent most of its time
//! there, not in the nodes it needed.
//!
//! Here the keys go down together: at each branch they split by its bit, so every node on
//! their paths is visited once, left before right (in key order). Below the store's pinned
//! levels the walk reads nodes raw from the node file, through a few blocks of its own: a
//! subtree's nodes were written together (children before parents), so one block holds many
//! of the nodes a walk in key order needs next. Each node is checked against the hash its
//! parent names before the walk trusts its bits or its record, as a load does
//! ([`super::disk`]); nothing is decoded into nodes, and the shared cache is neither probed
//! nor churned.

use super::disk::{Body, MAX_BODY, NodeFile, altered};
use super::{Node, TrieError, bit_at, get_in};
use medspace_types::Hash;
use std::sync::Arc;

/// Bytes read from a node file at once.
const BLOCK: u64 = 64 << 10;
/// Blocks one walk keeps: the nodes above the one it is at lie in blocks it read before, and
/// it comes back to them when it turns right.
const BLOCKS: usize = 16;

/// The keys still looked for below a node, each with its place in the caller's list.
pub(super) type Keys<'k> = [(&'k [u8], usize)];

/// Visits `node`'s subtree for `keys`, calling `f(place, value)` for each key found.
pub(super) fn many_in<E, F>(
    node: &Node,
    keys: &mut Keys<'_>,
    f: &mut F,
    blocks: &mut Blocks,
) -> Result<(), E>
where
    E: From<TrieError>,
    F: FnMut(usize, &[u8]) -> Result<(), E>,
{
    match node {
        Node::Leaf { key, value, .. } => found(key, value, keys, f),
        Node::Branch {
            bit, left, right, ..
        } => {
            let (l, r) = split(keys, *bit);
            if !l.is_empty() {
                many_in(left, l, f, blocks)?;
            }
            if !r.is_empty() {
                many_in(right, r, f, blocks)?;
            }
            Ok(())
        }
        Node::Stub { hash, file, offset } => blocks.walk(file, *offset, hash, keys, f),
        // Another node's state: its pieces come key by key (each piece answers one key's way).
        Node::Remote(_) => {
            for (key, place) in keys.iter() {
                if let Some(value) = get_in(node, key)? {
                    f(*place, &value)?;
                }
            }
            Ok(())
        }
    }
}

/// Calls `f` for each of `keys` that is the leaf's key.
fn found<E, F>(key: &[u8], value: &[u8], keys: &Keys<'_>, f: &mut F) -> Result<(), E>
where
    F: FnMut(usize, &[u8]) -> Result<(), E>,
{
    for (k, place) in keys {
        if *k == key {
            f(*place, value)?;
        }
    }
    Ok(())
}

/// Splits `keys` in place into those whose `bit` is 0 (left) and those whose `bit` is 1.
fn split<'a, 'k>(keys: &'a mut Keys<'k>, bit: u32) -> (&'a mut Keys<'k>, &'a mut Keys<'k>) {
    let mut left = 0;
    for i in 0..keys.len() {
        if keys.get(i).is_some_and(|(k, _)| !bit_at(k, bit)) {
            keys.swap(left, i);
            left += 1;
        }
    }
    keys.split_at_mut(left)
}

/// Where the node a walk looks at lies: bytes of a held block, or read alone.
enum Current {
    Block(usize, std::ops::Range<usize>),
    Alone,
}

/// One block of a node file.
struct Block {
    file: u16,
    start: u64,
    bytes: Vec<u8>,
    used: u64,
}

/// The blocks one walk read, and the nodes it read from files (counted into each file's
/// figures when the walk ends).
pub(super) struct Blocks {
    held: Vec<Block>,
    tick: u64,
    /// Where the node being looked at lies.
    current: Current,
    /// The node being looked at when it was read alone: its length, then its body.
    node: Vec<u8>,
    /// Nodes read from `counting` not yet added to its figures.
    counting: Option<(Arc<NodeFile>, u64)>,
}

impl Blocks {
    pub(super) fn new() -> Self {
        Self {
            held: Vec::with_capacity(BLOCKS),
            tick: 0,
            current: Current::Alone,
            node: Vec::new(),
            counting: None,
        }
    }

    /// Adds the nodes read to their file's figures.
    pub(super) fn finish(&mut self) {
        if let Some((file, n)) = self.counting.take() {
            file.count_loads(n);
        }
    }

    fn count(&mut self, file: &Arc<NodeFile>) {
        match &mut self.counting {
            Some((f, n)) if Arc::ptr_eq(f, file) => *n += 1,
            _ => {
                self.finish();
                self.counting = Some((file.clone(), 1));
            }
        }
    }

    /// Finds the stored node at `offset` of `file` (length, then body): in a block, or read
    /// alone into `self.node`; [`Blocks::current`] then gives its bytes.
    fn fetch(&mut self, file: &NodeFile, offset: u64) -> Result<(), TrieError> {
        let start = offset - offset % BLOCK;
        self.tick += 1;
        let at = match self
            .held
            .iter()
            .position(|b| b.file == file.id() && b.start == start)
        {
            Some(at) => at,
            None => self.read(file, start)?,
        };
        let tick = self.tick;
        let whole = self.held.get_mut(at).and_then(|block| {
            block.used = tick;
            // INVARIANT: offset - start < BLOCK, a small number.
            let from = (offset - start) as usize;
            let len = block
                .bytes
                .get(from..from.checked_add(4)?)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| u32::from_be_bytes(b) as usize)
                .filter(|len| *len <= MAX_BODY)?;
            // INVARIANT: len <= MAX_BODY, so the sum does not overflow.
            let range = from..from + 4 + len;
            block.bytes.get(range.clone()).map(|_| range)
        });
        self.current = match whole {
            Some(range) => Current::Block(at, range),
            // A node across a block's end (or a length the file cannot hold): read it alone,
            // which checks the length.
            None => {
                self.node = file.read_node(offset)?;
                Current::Alone
            }
        };
        Ok(())
    }

    /// The stored bytes of the node [`Blocks::fetch`] found last.
    fn current(&self) -> &[u8] {
        match &self.current {
            Current::Block(at, range) => self
                .held
                .get(*at)
                .and_then(|b| b.bytes.get(range.clone()))
                .unwrap_or_default(),
            Current::Alone => &self.node,
        }
    }

    /// Reads the block at `start` into a free place, or over the least recently used block;
    /// returns its place.
    fn read(&mut self, file: &NodeFile, start: u64) -> Result<usize, TrieError> {
        let (at, mut bytes) = if self.held.len() < BLOCKS {
            (self.held.len(), Vec::new())
        } else {
            let oldest = self
                .held
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.used)
                .map_or(0, |(i, _)| i);
            let bytes = self
                .held
                .get_mut(oldest)
                .map(|b| std::mem::take(&mut b.bytes))
                .unwrap_or_default();
            (oldest, bytes)
        };
        // INVARIANT: BLOCK (64 KiB) fits usize.
        bytes.resize(BLOCK as usize, 0);
        let got = file.read_block(start, &mut bytes)?;
        bytes.truncate(got);
        let block = Block {
            file: file.id(),
            start,
            bytes,
            used: self.tick,
        };
        match self.held.get_mut(at) {
            Some(slot) => *slot = block,
            None => self.held.push(block),
        }
        Ok(at)
    }

    /// Reads the node stored at `offset` of `file`, which its parent names by `expected`, and
    /// checks it against that hash before anything in it is trusted.
    fn open(
        &mut self,
        file: &Arc<NodeFile>,
        offset: u64,
        expected: &Hash,
    ) -> Result<Body<'_>, TrieError> {
        self.fetch(file, offset)?;
        self.count(file);
        let body = self.current().get(4..).unwrap_or_default();
        let node = Body::parse(offset, body)?;
        if node.hash(body) != *expected {
            return Err(altered(offset));
        }
        Ok(node)
    }

    /// Visits the subtree stored at `offset` of `file`, which its parent names by `expected`,
    /// for `keys`.
    pub(super) fn walk<E, F>(
        &mut self,
        file: &Arc<NodeFile>,
        offset: u64,
        expected: &Hash,
        keys: &mut Keys<'_>,
        f: &mut F,
    ) -> Result<(), E>
    where
        E: From<TrieError>,
        F: FnMut(usize, &[u8]) -> Result<(), E>,
    {
        let (bit, left, right) = match self.open(file, offset, expected)? {
            Body::Leaf { key, value } => return found(key, value, keys, f),
            Body::Branch { bit, left, right } => (bit, left, right),
        };
        let (l, r) = split(keys, bit);
        if !l.is_empty() {
            self.walk(file, left.0, &left.1, l, f)?;
        }
        if !r.is_empty() {
            self.walk(file, right.0, &right.1, r, f)?;
        }
        Ok(())
    }
}

/// A subtree a [`Leaves`] walk has still to visit: a node in memory, or one stored in a node
/// file (where, and the hash its parent names it by).
enum Pending {
    Node(Arc<Node>),
    Stored(Arc<NodeFile>, u64, Hash),
}

/// Every entry of a map in key order, one at a time and on demand, reading a store's nodes
/// through [`Blocks`] as [`Trie::visit_all`](super::Trie::visit_all) does: what a checkpoint
/// being streamed out pulls, a chunk at a time, between writes of its own (an async writer
/// cannot hand a callback walk its I/O). Memory: the right siblings along one root-to-leaf
/// path, and the blocks.
pub struct Leaves {
    pending: Vec<Pending>,
    blocks: Blocks,
}

impl Leaves {
    /// A walk over the subtree of `root` (`None`: an empty map).
    pub(super) fn new(root: Option<&Arc<Node>>) -> Self {
        Self {
            pending: root.map(|r| Pending::Node(r.clone())).into_iter().collect(),
            blocks: Blocks::new(),
        }
    }

    /// Calls `f` with the next entry and returns what it returned, or `None` after the last.
    /// A node altered on disk, or another node's state (read by the piece, not whole), is an
    /// error.
    pub fn next_with<R>(
        &mut self,
        f: impl FnOnce(&[u8], &[u8]) -> R,
    ) -> Result<Option<R>, TrieError> {
        while let Some(pending) = self.pending.pop() {
            let (file, offset, hash) = match pending {
                Pending::Node(node) => match &*node {
                    Node::Leaf { key, value, .. } => return Ok(Some(f(key, value))),
                    Node::Branch { left, right, .. } => {
                        self.pending.push(Pending::Node(right.clone()));
                        self.pending.push(Pending::Node(left.clone()));
                        continue;
                    }
                    Node::Stub { hash, file, offset } => (file.clone(), *offset, *hash),
                    Node::Remote(_) => {
                        return Err(TrieError::Store(
                            "another node's state is read by the piece, not whole".into(),
                        ));
                    }
                },
                Pending::Stored(file, offset, hash) => (file, offset, hash),
            };
            match self.blocks.open(&file, offset, &hash)? {
                Body::Leaf { key, value } => return Ok(Some(f(key, value))),
                Body::Branch { left, right, .. } => {
                    self.pending
                        .push(Pending::Stored(file.clone(), right.0, right.1));
                    self.pending.push(Pending::Stored(file, left.0, left.1));
                }
            }
        }
        self.blocks.finish();
        Ok(None)
    }
}

impl Drop for Leaves {
    fn drop(&mut self) {
        self.blocks.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::super::Trie;
    use super::super::disk::NodeStore;
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn k(i: u32) -> Vec<u8> {
        let mut v = vec![5u8];
        v.extend_from_slice(&i.to_be_bytes());
        v
    }

    fn together(t: &Trie, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, TrieError> {
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let mut out = vec![None; keys.len()];
        t.visit_many(&refs, |i, v| {
            out[i] = Some(v.to_vec());
            Ok::<(), TrieError>(())
        })?;
        Ok(out)
    }

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn whole(t: &Trie) -> Result<Entries, TrieError> {
        let mut out = Vec::new();
        t.visit_all(|k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok::<(), TrieError>(())
        })?;
        Ok(out)
    }

    fn scanned(t: &Trie) -> Entries {
        let entries = t.scan_prefix(&[]).unwrap();
        entries
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    fn alone(t: &Trie, keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
        keys.iter()
            .map(|key| t.get(key).unwrap().map(|v| v.to_vec()))
            .collect()
    }

    /// A map large enough that a walk crosses blocks, drops old ones and meets nodes that lie
    /// across a block's end (values of 1 to 400 bytes, some longer than a first read).
    fn large() -> Entries {
        (0..20_000u32)
            .map(|i| (k(i * 3), vec![i as u8; 1 + (i as usize * 37) % 400]))
            .collect()
    }

    #[test]
    fn a_stored_map_read_together_reads_each_node_once_and_skips_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = NodeStore::open(dir.path(), 64 << 10).unwrap();
        let entries = large();
        let t = store
            .build(
                entries.iter().map(|(k, v)| Ok((k.clone(), v.clone()))),
                1,
                None,
            )
            .unwrap();
        assert!(store.size().file_bytes > (BLOCKS as u64 + 4) * BLOCK);
        // Every 7th key (present and absent alike), in reverse order, twice.
        let mut keys: Vec<Vec<u8>> = (0..60_000u32).rev().step_by(7).map(k).collect();
        keys.extend(keys.clone());
        let before = store.file().reads();
        let got = together(&t, &keys).unwrap();
        let after = store.file().reads();
        assert_eq!(got, alone(&t, &keys));
        assert!(got.iter().filter(|v| v.is_some()).count() > 5_000);
        // No cache probe; each node on the keys' paths read once (at most every node).
        assert_eq!(after.1, before.1, "the walk probed the cache");
        let read = after.0 - before.0;
        assert!(
            read > 0 && read < 2 * entries.len() as u64,
            "{read} nodes read"
        );
        // The whole map, as a checkpoint walks it: every node read once, the cache untouched.
        let before = store.file().reads();
        let all = whole(&t).unwrap();
        let after = store.file().reads();
        assert_eq!(all, entries);
        assert_eq!(after.1, before.1, "the walk probed the cache");
        assert!(after.0 - before.0 <= 2 * entries.len() as u64);
    }

    #[test]
    fn an_altered_node_file_read_together_gives_errors_never_wrong_records() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            (0..300u32).map(|i| (k(i), vec![i as u8; 9])).collect();
        let (mut store, _) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        let t = Trie::from_sorted(entries.clone()).unwrap();
        store.commit(&t, 1).unwrap();
        let len = store.size().file_bytes;
        drop(store);
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("nodes-"))
            .unwrap();
        let clean = std::fs::read(&path).unwrap();
        let keys: Vec<Vec<u8>> = (0..320u32).map(k).collect();
        let mut refused = 0;
        for at in (8..len as usize).step_by(41) {
            let mut bad = clean.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            let (_, Some(c)) = NodeStore::open(dir.path(), 1 << 12).unwrap() else {
                panic!("flip at {at}: the commit is gone");
            };
            match together(&c.trie, &keys) {
                Ok(got) => {
                    for (i, v) in got.iter().enumerate() {
                        let want = (i < 300).then(|| vec![i as u8; 9]);
                        assert_eq!(v, &want, "flip at {at}");
                    }
                }
                Err(TrieError::Store(_)) => refused += 1,
                Err(e) => panic!("flip at {at}: {e}"),
            }
            match whole(&c.trie) {
                Ok(all) => assert_eq!(all, entries, "flip at {at}"),
                Err(TrieError::Store(_)) => refused += 1,
                Err(e) => panic!("flip at {at}: {e}"),
            }
        }
        assert!(refused > 200, "flipped bytes were caught: {refused}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Keys read together equal each read alone: in memory, in a store (its pinned levels
        /// and the nodes below them), and with writes made on top of the stored map.
        #[test]
        fn keys_read_together_equal_each_read_alone(
            stored in proptest::collection::btree_map(0u32..3000, proptest::collection::vec(any::<u8>(), 0..300), 0..500),
            later in proptest::collection::vec((0u32..3000, proptest::option::of(any::<u8>())), 0..40),
            asked in proptest::collection::vec(0u32..3000, 0..300),
        ) {
            let entries: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().map(|(i, v)| (k(i), v)).collect();
            let keys: Vec<Vec<u8>> = asked.into_iter().map(k).collect();
            let mut memory = Trie::from_sorted(entries.clone()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (mut store, _) = NodeStore::open(dir.path(), 4 << 10).unwrap();
            let mut disk = store.commit(&memory, 1).unwrap();
            for t in [&memory, &disk] {
                prop_assert_eq!(together(t, &keys).unwrap(), alone(t, &keys));
            }
            for (i, v) in later {
                for t in [&mut memory, &mut disk] {
                    match v {
                        Some(v) => t.insert(&k(i), vec![v]).unwrap(),
                        None => { t.remove(&k(i)).unwrap(); }
                    }
                }
            }
            for t in [&memory, &disk] {
                prop_assert_eq!(together(t, &keys).unwrap(), alone(t, &keys));
                prop_assert_eq!(whole(t).unwrap(), scanned(t));
            }
        }
    }
}
