//! The authenticated map behind the state root: a persistent binary Patricia (crit-bit) Merkle
//! trie over raw keys, held in memory or paged from an on-disk node store ([`disk`]).
//!
//! Why our own: the ledger needs, in one structure, (1) a root that commits to every record,
//! (2) inclusion proofs checked with the root alone, (3) O(1) snapshots so that a block can be
//! executed speculatively on top of an unfinalized parent and a refused transaction can be
//! dropped without an undo log, and (4) ordered prefix scans for the ledger's queries.
//! commonware-storage's QMDB is an asynchronous database whose root commits to an operation log
//! (a fit for a key-value store, not for a synchronous `apply` that needs ordered scans and
//! cheap snapshots of unfinalized blocks), and its stateless `bmt` rebuilds from all leaves;
//! the Merkle crates on crates.io either hash the key path (losing order) or rebuild on update.
//!
//! Nodes are immutable and shared through `Arc`: an update copies only the path from the root
//! to the changed leaf, so a clone is a pointer copy and old versions stay valid. Node hashes are
//! computed lazily and memoized, so hashing a block's writes costs one pass over the new nodes.
//!
//! A subtree may be a *stub*: its hash and where it lies in a node file. Reads load stubs on
//! the way down (through the file's bounded cache) and check each loaded node against the hash
//! its parent names, so a torn or altered file is an error, never a wrong answer. Writes copy
//! the path as before and leave the untouched siblings as stubs. [`disk::NodeStore::commit`]
//! writes a trie's new nodes and hands back the same map as one stub: the memory a stored
//! trie holds is the cache plus what blocks wrote since their last commit.
//!
//! Keys must be prefix-free (no key is a proper prefix of another); the state layer builds every
//! key from a table tag and fixed-size or length-prefixed parts, which guarantees it.
//!
//! Hashes (SHA-256): `leaf = H(0x00 | len(key) u32 | key | value)`,
//! `branch = H(0x01 | bit u32 | left | right)`, the empty map is `H("medspace/trie/empty")`.

mod batch;
pub mod disk;
pub use batch::Leaves;
pub mod remote;

use disk::NodeFile;
use medspace_types::Hash;
use remote::{Locate, RemoteNodes, RemoteStub, Want};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// An error of the trie.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrieError {
    /// Two different keys where one is a prefix of the other.
    #[error("key conflict: one key is a prefix of another (len={len})")]
    PrefixConflict {
        /// Length of the key being written.
        len: usize,
    },
    /// Entries given as sorted that are not in strictly increasing, prefix-free key order.
    #[error("entries out of order: a key is not above the one before it (len={len})")]
    OutOfOrder {
        /// Length of the offending key.
        len: usize,
    },
    /// A stored node could not be read, or is not the node its parent names.
    #[error("state store: {0}")]
    Store(String),
    /// An entry given to a build could not be had (its stream failed).
    #[error("entries: {0}")]
    Input(String),
    /// Entries built into a store do not hash to the root they were to have (nothing was
    /// committed).
    #[error("built root {computed} is not the expected {expected}")]
    RootMismatch {
        /// The root the entries were to have.
        expected: Hash,
        /// Their root.
        computed: Hash,
    },
}

/// Where a node lies in a node file: the file's process-local id in the top 16 bits, the byte
/// offset in the low 48; 0 while the node is in no file (offset 0 is the file's magic).
#[derive(Default)]
struct Stored(AtomicU64);

impl Stored {
    fn at(file: &NodeFile, offset: u64) -> Self {
        Self(AtomicU64::new(disk::pack(file.id(), offset)))
    }

    /// The offset of this node in `file`, if it was written there.
    fn offset_in(&self, file: &NodeFile) -> Option<u64> {
        disk::unpack(self.0.load(Ordering::Acquire), file.id())
    }

    fn set(&self, file: &NodeFile, offset: u64) {
        self.0
            .store(disk::pack(file.id(), offset), Ordering::Release);
    }
}

enum Node {
    Leaf {
        key: Box<[u8]>,
        value: Arc<[u8]>,
        hash: OnceLock<Hash>,
        stored: Stored,
    },
    Branch {
        bit: u32,
        left: Arc<Node>,
        right: Arc<Node>,
        hash: OnceLock<Hash>,
        stored: Stored,
    },
    /// A subtree in a node file, not loaded.
    Stub {
        hash: Hash,
        file: Arc<NodeFile>,
        offset: u64,
    },
    /// A subtree of another node's state, not loaded ([`remote`]).
    Remote(Box<RemoteStub>),
}

fn bit_at(key: &[u8], bit: u32) -> bool {
    let byte = (bit / 8) as usize;
    // INVARIANT: bit % 8 <= 7.
    key.get(byte)
        .is_some_and(|b| (b >> (7 - (bit % 8))) & 1 == 1)
}

/// The first bit where `a` and `b` differ (shorter key padded with zeros); `None` if equal
/// under padding.
fn crit_bit(a: &[u8], b: &[u8]) -> Option<u32> {
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        if x != y {
            let diff = x ^ y;
            // INVARIANT: i is a position in a key, and keys (a table tag and a few bounded
            // parts) are far shorter than 2^29 bytes, so the bit index fits u32.
            return Some(i as u32 * 8 + diff.leading_zeros());
        }
    }
    None
}

fn leaf_hash(key: &[u8], value: &[u8]) -> Hash {
    // INVARIANT: keys are far shorter than 2^32 bytes, so the length fits u32.
    Hash::of(&[&[0u8], &(key.len() as u32).to_be_bytes(), key, value])
}

fn branch_hash(bit: u32, left: &Hash, right: &Hash) -> Hash {
    Hash::of(&[&[1u8], &bit.to_be_bytes(), &left.0, &right.0])
}

impl Node {
    fn hash(&self) -> Hash {
        match self {
            Node::Leaf {
                key, value, hash, ..
            } => *hash.get_or_init(|| leaf_hash(key, value)),
            Node::Branch {
                bit,
                left,
                right,
                hash,
                ..
            } => *hash.get_or_init(|| branch_hash(*bit, &left.hash(), &right.hash())),
            Node::Stub { hash, .. } => *hash,
            Node::Remote(stub) => stub.hash,
        }
    }

    fn leaf(key: &[u8], value: Arc<[u8]>) -> Arc<Node> {
        Arc::new(Node::Leaf {
            key: key.into(),
            value,
            hash: OnceLock::new(),
            stored: Stored::default(),
        })
    }

    fn branch(bit: u32, left: Arc<Node>, right: Arc<Node>) -> Arc<Node> {
        Arc::new(Node::Branch {
            bit,
            left,
            right,
            hash: OnceLock::new(),
            stored: Stored::default(),
        })
    }

    /// This node with its contents at hand: itself, or what its stub names, loaded (a remote
    /// stub loads what `want` needs below it).
    fn open(node: &Arc<Node>, want: Want<'_>) -> Result<Arc<Node>, TrieError> {
        match &**node {
            Node::Stub { hash, file, offset } => file.load(*offset, hash),
            Node::Remote(stub) => stub.load(want),
            _ => Ok(node.clone()),
        }
    }

    /// Any leaf key below `node` (the smallest).
    fn first_key(node: &Arc<Node>) -> Result<Box<[u8]>, TrieError> {
        let mut node = Node::open(node, Want::First)?;
        loop {
            let next = match &*node {
                Node::Branch { left, .. } => Node::open(left, Want::First)?,
                Node::Leaf { key, .. } => return Ok(key.clone()),
                Node::Stub { .. } | Node::Remote(_) => return Err(stub_in_place_of_node()),
            };
            node = next;
        }
    }
}

/// One entry of a map, as a scan lists it: the key and its value.
pub type Entry = (Box<[u8]>, Arc<[u8]>);

/// The hash of the empty map.
pub fn empty_root() -> Hash {
    Hash::of(&[b"medspace/trie/empty"])
}

/// A persistent authenticated map from byte keys to byte values.
#[derive(Clone, Default)]
pub struct Trie {
    root: Option<Arc<Node>>,
    len: usize,
    /// The source of a remote trie's pieces, kept alive by the tries that read it (its stubs
    /// name it weakly, so the pieces it caches do not keep it alive in a cycle).
    remote: Option<Arc<RemoteNodes>>,
}

impl std::fmt::Debug for Trie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trie(len={}, root={})", self.len, self.root_hash())
    }
}

impl Trie {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root hash committing to every entry.
    pub fn root_hash(&self) -> Hash {
        self.root.as_ref().map_or_else(empty_root, |n| n.hash())
    }

    /// The map holding `entries`, given in strictly increasing key order (as
    /// [`Trie::scan_prefix`] lists them), built bottom-up in one pass: the crit-bit trie of a
    /// sorted list is the tree of its neighbours' first differing bits, smallest bit at the top,
    /// so each leaf is pushed once and each branch made once. Out-of-order, repeated or
    /// prefix-related keys are refused.
    pub fn from_sorted<K, V>(entries: impl IntoIterator<Item = (K, V)>) -> Result<Self, TrieError>
    where
        K: AsRef<[u8]>,
        V: Into<Arc<[u8]>>,
    {
        // Branches whose right side is still being built: their bit and their (finished) left
        // side.
        let mut spine: Vec<(u32, Arc<Node>)> = Vec::new();
        // The previous leaf, and its key (the greatest so far).
        let mut last: Option<Arc<Node>> = None;
        let mut len = 0usize;
        for (key, value) in entries {
            let key = key.as_ref();
            let leaf = Node::leaf(key, value.into());
            let Some(mut done) = last.take() else {
                last = Some(leaf);
                len = 1;
                continue;
            };
            let Node::Leaf { key: prev, .. } = &*done else {
                return Err(TrieError::OutOfOrder { len: key.len() });
            };
            let prev: &[u8] = prev;
            let ordered = prev < key;
            let bit = crit_bit(prev, key)
                .filter(|_| ordered && !key.starts_with(prev) && !prev.starts_with(key))
                .ok_or(TrieError::OutOfOrder { len: key.len() })?;
            while let Some((b, _)) = spine.last()
                && *b > bit
            {
                if let Some((b, left)) = spine.pop() {
                    done = Node::branch(b, left, done);
                }
            }
            spine.push((bit, done));
            last = Some(leaf);
            // INVARIANT: len counts leaves, below usize::MAX.
            len += 1;
        }
        let mut root = last;
        while let Some((b, left)) = spine.pop() {
            root = root.map(|right| Node::branch(b, left, right));
        }
        Ok(Self {
            root,
            len,
            remote: None,
        })
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, TrieError> {
        self.root
            .as_deref()
            .map_or(Ok(None), |root| get_in(root, key))
    }

    /// Calls `f(i, value)` for every `keys[i]` present, in key order, in one walk that splits
    /// the keys at each branch: each node on their paths is read once, not once per key from
    /// the root, and nodes in a store are read from its file without going through its cache
    /// ([`batch`]). For many keys at once; any order of `keys` is read the same way.
    pub fn visit_many<E: From<TrieError>>(
        &self,
        keys: &[&[u8]],
        mut f: impl FnMut(usize, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(root) = self.root.as_deref() else {
            return Ok(());
        };
        let mut keys: Vec<(&[u8], usize)> = keys.iter().copied().zip(0..).collect();
        let mut blocks = batch::Blocks::new();
        let walked = batch::many_in(root, &mut keys, &mut f, &mut blocks);
        blocks.finish();
        walked
    }

    /// Calls `f` with every entry, in key order, reading a store's nodes from its file without
    /// going through its cache (a checkpoint's walk over the whole map, [`batch`]). A remote
    /// map is read piece by piece, as [`Trie::visit_prefix`] does.
    pub fn visit_all<E: From<TrieError>>(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.remote.is_some() {
            return self.visit_prefix(&[], |k, v| f(k, v));
        }
        let mut leaves = self.leaves();
        while let Some(visited) = leaves.next_with(&mut f)? {
            visited?;
        }
        Ok(())
    }

    /// Every entry in key order, pulled one at a time ([`Leaves`]); the walk holds this map's
    /// nodes as they are now, whatever is committed after. Another node's state (a remote map)
    /// is read by the piece with [`Trie::visit_prefix`], not this way.
    pub fn leaves(&self) -> Leaves {
        Leaves::new(self.root.as_ref())
    }

    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), TrieError> {
        let value: Arc<[u8]> = value.into();
        let Some(root) = self.root.clone() else {
            self.root = Some(Node::leaf(key, value));
            self.len = 1;
            return Ok(());
        };
        // Most writes update an existing record: one walk that copies the path on the way back.
        let crit = match replace(&root, key, &value)? {
            Replaced::Done(new_root) => {
                self.root = Some(new_root);
                return Ok(());
            }
            Replaced::Absent(crit) => crit,
        };
        match crit {
            None => Err(TrieError::PrefixConflict { len: key.len() }),
            Some(crit) => {
                let leaf = Node::leaf(key, value);
                self.root = Some(insert_at(&root, key, leaf, crit)?);
                // INVARIANT: len counts the leaves, below usize::MAX.
                self.len += 1;
                Ok(())
            }
        }
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&mut self, key: &[u8]) -> Result<bool, TrieError> {
        let Some(root) = self.root.clone() else {
            return Ok(false);
        };
        Ok(match remove_at(&root, key)? {
            Removal::NotFound => false,
            Removal::Gone(rest) => {
                self.root = rest;
                // INVARIANT: a leaf was found and removed, so len >= 1.
                self.len -= 1;
                true
            }
        })
    }

    /// Calls `f` with every entry whose key starts with `prefix`, in key order; stops at the
    /// first error `f` returns.
    pub fn visit_prefix<E: From<TrieError>>(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &Arc<[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(root) = &self.root else {
            return Ok(());
        };
        let mut node = Node::open(root, Want::Prefix(prefix))?;
        // INVARIANT: prefixes are key prefixes, far shorter than 2^29 bytes.
        let prefix_bits = prefix.len() as u32 * 8;
        // Descend while the branch point lies inside the prefix.
        loop {
            let next = match &*node {
                Node::Branch {
                    bit, left, right, ..
                } if *bit < prefix_bits => Node::open(
                    if bit_at(prefix, *bit) { right } else { left },
                    Want::Prefix(prefix),
                )?,
                _ => break,
            };
            node = next;
        }
        if !Node::first_key(&node)?.starts_with(prefix) {
            return Ok(());
        }
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            match &*Node::open(&n, Want::Whole)? {
                Node::Leaf { key, value, .. } => f(key, value)?,
                Node::Branch { left, right, .. } => {
                    stack.push(right.clone());
                    stack.push(left.clone());
                }
                Node::Stub { .. } | Node::Remote(_) => {
                    return Err(stub_in_place_of_node().into());
                }
            }
        }
        Ok(())
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, TrieError> {
        let mut out = Vec::new();
        self.visit_prefix(prefix, |k, v| {
            out.push((Box::from(k), v.clone()));
            Ok::<(), TrieError>(())
        })?;
        Ok(out)
    }

    /// The map whose root is `root` (of `len` entries), loaded piece by piece from `nodes` as
    /// reads and writes reach it, each piece checked against the hash its parent names
    /// ([`remote`]). `len` is only reported, never trusted.
    pub fn remote(root: Hash, len: usize, nodes: &Arc<RemoteNodes>) -> Self {
        if root == empty_root() {
            return Self::new();
        }
        Self {
            root: Some(nodes.root(root)),
            len,
            remote: Some(nodes.clone()),
        }
    }

    /// Where a remote map's pieces come from (`None` for a map held here or in a store).
    pub fn source(&self) -> Option<&Arc<RemoteNodes>> {
        self.remote.as_ref()
    }

    /// The piece of this map that `at` names, in the wire form [`remote`] reads (what a node
    /// serves to a client reading its state through [`Trie::remote`]).
    pub fn piece(&self, at: Locate<'_>) -> Result<Vec<u8>, TrieError> {
        remote::encode_subtree(self.root.as_ref(), at, remote::WHOLE_BUDGET)
    }

    /// An inclusion proof for `key`, if present.
    pub fn prove(&self, key: &[u8]) -> Result<Option<Proof>, TrieError> {
        let mut path = Vec::new();
        let found = match self.root.as_deref() {
            Some(root) => prove_in(root, key, &mut path)?,
            None => false,
        };
        Ok(found.then_some(Proof { path }))
    }
}

/// The error of finding a stub where a loaded node was expected (a node file naming a stub as
/// a node cannot be written, so this is a bug, reported rather than trusted).
fn stub_in_place_of_node() -> TrieError {
    TrieError::Store("a stub where a loaded node was expected".into())
}

/// Walks borrowed nodes down to `key`, loading (and recursing) only at stubs.
fn get_in(mut node: &Node, key: &[u8]) -> Result<Option<Arc<[u8]>>, TrieError> {
    loop {
        match node {
            Node::Leaf { key: k, value, .. } => return Ok((&**k == key).then(|| value.clone())),
            Node::Branch {
                bit, left, right, ..
            } => node = if bit_at(key, *bit) { right } else { left },
            Node::Stub { hash, file, offset } => return get_in(&*file.load(*offset, hash)?, key),
            Node::Remote(stub) => return get_in(&*stub.load(Want::Key(key))?, key),
        }
    }
}

/// Like [`get_in`], pushing each branch's bit and the other side's hash on `path`; whether
/// `key` is there.
fn prove_in(mut node: &Node, key: &[u8], path: &mut Vec<ProofStep>) -> Result<bool, TrieError> {
    loop {
        match node {
            Node::Leaf { key: k, .. } => return Ok(&**k == key),
            Node::Branch {
                bit, left, right, ..
            } => {
                let (to, other) = if bit_at(key, *bit) {
                    (right, left)
                } else {
                    (left, right)
                };
                path.push(ProofStep {
                    bit: *bit,
                    sibling: other.hash(),
                });
                node = to;
            }
            Node::Stub { hash, file, offset } => {
                return prove_in(&*file.load(*offset, hash)?, key, path);
            }
            Node::Remote(stub) => return prove_in(&*stub.load(Want::Key(key))?, key, path),
        }
    }
}

enum Replaced {
    /// The key was present: the new root.
    Done(Arc<Node>),
    /// The key was absent: the first bit where it differs from the closest existing key, where
    /// the new leaf branches off (`None`: one key is a prefix of the other).
    Absent(Option<u32>),
}

fn replace(node: &Arc<Node>, key: &[u8], value: &Arc<[u8]>) -> Result<Replaced, TrieError> {
    let node = Node::open(node, Want::Key(key))?;
    Ok(match &*node {
        Node::Leaf { key: k, .. } => {
            if &**k == key {
                Replaced::Done(Node::leaf(key, value.clone()))
            } else {
                Replaced::Absent(crit_bit(key, k))
            }
        }
        Node::Branch {
            bit, left, right, ..
        } => {
            let go_right = bit_at(key, *bit);
            let child = if go_right { right } else { left };
            match replace(child, key, value)? {
                Replaced::Done(new_child) => Replaced::Done(if go_right {
                    Node::branch(*bit, left.clone(), new_child)
                } else {
                    Node::branch(*bit, new_child, right.clone())
                }),
                absent => absent,
            }
        }
        Node::Stub { .. } | Node::Remote(_) => return Err(stub_in_place_of_node()),
    })
}

fn insert_at(
    node: &Arc<Node>,
    key: &[u8],
    leaf: Arc<Node>,
    crit: u32,
) -> Result<Arc<Node>, TrieError> {
    let open = Node::open(node, Want::Key(key))?;
    if let Node::Branch {
        bit, left, right, ..
    } = &*open
        && *bit < crit
    {
        return Ok(if bit_at(key, *bit) {
            Node::branch(*bit, left.clone(), insert_at(right, key, leaf, crit)?)
        } else {
            Node::branch(*bit, insert_at(left, key, leaf, crit)?, right.clone())
        });
    }
    // The new leaf branches off above `node`, which stays as it was (a stub stays a stub).
    Ok(if bit_at(key, crit) {
        Node::branch(crit, node.clone(), leaf)
    } else {
        Node::branch(crit, leaf, node.clone())
    })
}

enum Removal {
    NotFound,
    Gone(Option<Arc<Node>>),
}

fn remove_at(node: &Arc<Node>, key: &[u8]) -> Result<Removal, TrieError> {
    let node = Node::open(node, Want::Key(key))?;
    Ok(match &*node {
        Node::Leaf { key: k, .. } => {
            if &**k == key {
                Removal::Gone(None)
            } else {
                Removal::NotFound
            }
        }
        Node::Branch {
            bit, left, right, ..
        } => {
            let go_right = bit_at(key, *bit);
            let (child, other) = if go_right {
                (right, left)
            } else {
                (left, right)
            };
            match remove_at(child, key)? {
                Removal::NotFound => Removal::NotFound,
                Removal::Gone(None) => Removal::Gone(Some(other.clone())),
                Removal::Gone(Some(new_child)) => Removal::Gone(Some(if go_right {
                    Node::branch(*bit, left.clone(), new_child)
                } else {
                    Node::branch(*bit, new_child, right.clone())
                })),
            }
        }
        Node::Stub { .. } | Node::Remote(_) => return Err(stub_in_place_of_node()),
    })
}

/// One level of an inclusion proof: the branch bit and the other side's hash.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProofStep {
    /// The bit the branch splits on.
    pub bit: u32,
    /// The hash of the subtree on the other side.
    pub sibling: Hash,
}

/// An inclusion proof: the path from the root to one leaf.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Proof {
    /// Steps from the root down.
    pub path: Vec<ProofStep>,
}

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Branch bits must strictly increase from the root down.
    #[error("malformed proof: branch bits not increasing at step={step}")]
    Malformed {
        /// The offending step.
        step: usize,
    },
    /// The recomputed root differs.
    #[error("proof does not match root: expected={expected} computed={computed}")]
    RootMismatch {
        /// The trusted root.
        expected: Hash,
        /// What the proof gives.
        computed: Hash,
    },
}

impl Proof {
    /// Checks that `key` holds `value` in the map whose root is `root`.
    pub fn verify(&self, root: &Hash, key: &[u8], value: &[u8]) -> Result<(), ProofError> {
        for (i, pair) in self.path.windows(2).enumerate() {
            if let [a, b] = pair
                && a.bit >= b.bit
            {
                // INVARIANT: i < path.len(), so i + 1 does not overflow.
                return Err(ProofError::Malformed { step: i + 1 });
            }
        }
        let mut h = leaf_hash(key, value);
        for step in self.path.iter().rev() {
            h = if bit_at(key, step.bit) {
                branch_hash(step.bit, &step.sibling, &h)
            } else {
                branch_hash(step.bit, &h, &step.sibling)
            };
        }
        if h == *root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch {
                expected: *root,
                computed: h,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn k(i: u32) -> Vec<u8> {
        let mut v = vec![7u8];
        v.extend_from_slice(&i.to_be_bytes());
        v
    }

    #[test]
    fn insert_get_remove_and_proofs() {
        let mut t = Trie::new();
        assert_eq!(t.root_hash(), empty_root());
        for i in 0..200 {
            t.insert(&k(i), vec![i as u8; 3]).unwrap();
        }
        assert_eq!(t.len(), 200);
        let root = t.root_hash();
        for i in 0..200 {
            assert_eq!(t.get(&k(i)).unwrap().as_deref(), Some(&[i as u8; 3][..]));
            let p = t.prove(&k(i)).unwrap().unwrap();
            p.verify(&root, &k(i), &[i as u8; 3]).unwrap();
            assert!(p.verify(&root, &k(i), &[i as u8 ^ 1; 3]).is_err());
        }
        assert!(t.prove(&k(500)).unwrap().is_none());
        let snapshot = t.clone();
        assert!(t.remove(&k(5)).unwrap());
        assert!(!t.remove(&k(5)).unwrap());
        assert_ne!(t.root_hash(), root);
        assert_eq!(snapshot.root_hash(), root, "snapshots are unaffected");
        t.insert(&k(5), vec![5; 3]).unwrap();
        assert_eq!(t.root_hash(), root, "the root depends on content only");
    }

    #[test]
    fn prefix_conflicts_are_refused() {
        let mut t = Trie::new();
        t.insert(b"ab", vec![1]).unwrap();
        assert!(t.insert(b"ab\0", vec![1]).is_err());
    }

    #[test]
    fn proof_against_another_root_fails() {
        let mut t = Trie::new();
        t.insert(&k(1), vec![1]).unwrap();
        t.insert(&k(2), vec![2]).unwrap();
        let p = t.prove(&k(1)).unwrap().unwrap();
        let mut t2 = t.clone();
        t2.insert(&k(3), vec![3]).unwrap();
        assert!(p.verify(&t2.root_hash(), &k(1), &[1]).is_err());
        assert!(p.verify(&t.root_hash(), &k(1), &[1]).is_ok());
    }

    proptest! {
        #[test]
        fn behaves_like_a_btreemap(ops in proptest::collection::vec((0u32..64, proptest::option::of(any::<u8>())), 1..200)) {
            let mut t = Trie::new();
            let mut m = BTreeMap::new();
            for (key, val) in ops {
                match val {
                    Some(v) => { t.insert(&k(key), vec![v]).unwrap(); m.insert(k(key), vec![v]); }
                    None => { prop_assert_eq!(t.remove(&k(key)).unwrap(), m.remove(&k(key)).is_some()); }
                }
            }
            prop_assert_eq!(t.len(), m.len());
            let scanned: Vec<(Vec<u8>, Vec<u8>)> = t.scan_prefix(&[7]).unwrap().into_iter().map(|(a, b)| (a.to_vec(), b.to_vec())).collect();
            let expected: Vec<(Vec<u8>, Vec<u8>)> = m.clone().into_iter().collect();
            prop_assert_eq!(scanned, expected);
            // Same content, built in key order, gives the same root.
            let mut t2 = Trie::new();
            for (a, b) in &m { t2.insert(a, b.clone()).unwrap(); }
            prop_assert_eq!(t.root_hash(), t2.root_hash());
        }

        #[test]
        fn built_from_sorted_entries_equals_built_by_inserts(
            entries in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 1..6), proptest::collection::vec(any::<u8>(), 0..4), 0..120)
        ) {
            // Keep the keys prefix-free, as the state's keys are: drop any key that is a prefix
            // of a later one or has an earlier one as its prefix.
            let mut kept: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for (key, value) in entries {
                if kept.iter().all(|(k0, _)| !key.starts_with(k0) && !k0.starts_with(&key)) {
                    kept.push((key, value));
                }
            }
            let mut by_insert = Trie::new();
            for (key, value) in &kept { by_insert.insert(key, value.clone()).unwrap(); }
            let built = Trie::from_sorted(kept.iter().map(|(a, b)| (a.clone(), b.clone()))).unwrap();
            prop_assert_eq!(built.root_hash(), by_insert.root_hash());
            prop_assert_eq!(built.len(), kept.len());
            for (key, value) in &kept {
                let got = built.get(key).unwrap();
                prop_assert_eq!(got.as_deref(), Some(&value[..]));
            }
            // Any two entries swapped, repeated or prefix-related are refused.
            if kept.len() >= 2 {
                let mut swapped = kept.clone();
                swapped.swap(0, 1);
                prop_assert!(Trie::from_sorted(swapped).is_err());
                let mut repeated = kept.clone();
                repeated.insert(1, kept[0].clone());
                prop_assert!(Trie::from_sorted(repeated).is_err());
            }
        }
    }

    #[test]
    fn sorted_build_refuses_a_key_that_extends_the_one_before() {
        let entries = vec![(vec![1u8, 2], vec![0u8]), (vec![1u8, 2, 3], vec![0u8])];
        assert!(matches!(
            Trie::from_sorted(entries),
            Err(TrieError::OutOfOrder { len: 3 })
        ));
    }
}
