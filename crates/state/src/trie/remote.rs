//! A trie paged from another node's state: what a light client reads and executes blocks on.
//!
//! A client that trusts only a certified state root holds the map as one *remote stub* (that
//! root) and loads subtrees from a node as its reads reach them, the way a stored trie loads
//! them from its file ([`super::disk`]). Each answer is a piece of the trie in the pre-order
//! form of [`encode_subtree`]: the nodes toward one key (or a whole subtree, up to a budget),
//! with every subtree left out given by its hash. The client rebuilds the piece, hashes it and
//! keeps it only if it hashes to the stub it replaces, whose hash its parent (and so the
//! certified root) names: a node cannot answer a wrong record, only refuse to answer.
//!
//! Where a stub lies is given by a *locator*: a byte path whose bits at the branch points
//! above the stub lead there, and the depth (the bit) below which the walk stops. The serving
//! node walks its own copy of the same state along it, so a stub can be loaded whatever the
//! client has written above it since.
//!
//! Wire form (all integers big-endian): a version byte `1`, then one node in pre-order:
//! `0x00 | len u32 | key | len u32 | value` (a leaf), `0x01 | bit u32 | left | right` (a
//! branch), `0x02 | hash` (a subtree left out).

use super::{Node, Stored, TrieError};
use lru::LruCache;
use medspace_types::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

const VERSION: u8 = 1;
const LEAF: u8 = 0;
const BRANCH: u8 = 1;
const HASH: u8 = 2;

/// How deep a served piece may nest: far more than any key of the state has bits.
const MAX_DEPTH: usize = 4096;

/// The most nodes a whole-subtree answer holds (the rest as hashes, loaded by the next ask).
pub const WHOLE_BUDGET: usize = 16_384;

/// Where a subtree lies in the state a node serves, and what of it to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Locate<'a> {
    /// The walk from the root takes, at each branch above `depth`, the side this path's bit
    /// names.
    pub path: &'a [u8],
    /// The walk stops at the first node that is not a branch on a bit below this.
    pub depth: u32,
    /// From there, the nodes toward this key, with the subtrees off the way as hashes...
    pub toward: &'a [u8],
    /// ...down to the first branch on this bit or a later one, sent whole (up to
    /// [`WHOLE_BUDGET`] nodes): `0` sends the located subtree whole, `u32::MAX` only the way.
    pub whole_from: u32,
}

/// Where the pieces come from: a node's API in a client, the state itself in tests.
pub trait NodeSource: Send + Sync {
    /// The piece `at` names, in the wire form of [`encode_subtree`].
    fn fetch(&self, at: Locate<'_>) -> Result<Vec<u8>, String>;
}

/// The served pieces a client holds, by hash, and where to ask for more.
pub struct RemoteNodes {
    source: Box<dyn NodeSource>,
    cache: Mutex<LruCache<Hash, Arc<Node>>>,
    fetches: AtomicU64,
    bytes: AtomicU64,
}

impl std::fmt::Debug for RemoteNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteNodes(fetches={})", self.fetches())
    }
}

/// A subtree not loaded yet: its hash, where to ask for it (weakly: the tries reading it
/// keep the source alive, and the source's cache holds stubs) and its locator.
pub(super) struct RemoteStub {
    pub(super) hash: Hash,
    nodes: Weak<RemoteNodes>,
    path: Box<[u8]>,
    depth: u32,
}

impl RemoteNodes {
    /// Pieces from `source`, keeping up to `cache_pieces` of them.
    pub fn new(source: impl NodeSource + 'static, cache_pieces: usize) -> Arc<Self> {
        let capacity = NonZeroUsize::new(cache_pieces.max(1)).unwrap_or(NonZeroUsize::MIN);
        Arc::new(Self {
            source: Box::new(source),
            cache: Mutex::new(LruCache::new(capacity)),
            fetches: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// How many pieces were fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// How many bytes they held.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The root stub of the state whose root is `root`.
    pub(super) fn root(self: &Arc<Self>, root: Hash) -> Arc<Node> {
        Arc::new(Node::Remote(Box::new(RemoteStub {
            hash: root,
            nodes: Arc::downgrade(self),
            path: Box::default(),
            depth: 0,
        })))
    }
}

/// What a read wants below a stub.
#[derive(Clone, Copy)]
pub(super) enum Want<'a> {
    /// The nodes toward this key.
    Key(&'a [u8]),
    /// Every entry under this key prefix.
    Prefix(&'a [u8]),
    /// The leftmost leaf.
    First,
    /// Everything.
    Whole,
}

impl RemoteStub {
    /// The subtree this stub names, from the cache or fetched and checked against its hash.
    pub(super) fn load(&self, want: Want<'_>) -> Result<Arc<Node>, TrieError> {
        let nodes = &self.nodes.upgrade().ok_or_else(|| {
            TrieError::Store("the source of this state's pieces is gone (no trie reads it)".into())
        })?;
        if let Some(n) = nodes
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.hash)
            .cloned()
        {
            return Ok(n);
        }
        // INVARIANT: prefixes are key prefixes, far shorter than 2^29 bytes.
        let (toward, whole_from) = match want {
            Want::Key(k) => (k, u32::MAX),
            Want::Prefix(p) => (p, p.len() as u32 * 8),
            // Below the stub its path has only zero bits: toward it is the leftmost leaf.
            Want::First => (&*self.path, u32::MAX),
            Want::Whole => (&*self.path, 0),
        };
        let bytes = nodes
            .source
            .fetch(Locate {
                path: &self.path,
                depth: self.depth,
                toward,
                whole_from,
            })
            .map_err(|e| TrieError::Store(format!("fetching state nodes: {e}")))?;
        nodes.fetches.fetch_add(1, Ordering::Relaxed);
        nodes.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let node = decode_piece(&bytes, &self.path, self.depth, nodes)?;
        if node.hash() != self.hash {
            return Err(TrieError::Store(
                "a node served state that does not match the hash its parent names".into(),
            ));
        }
        nodes
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(self.hash, node.clone());
        Ok(node)
    }
}

fn set_bit(path: &mut Vec<u8>, bit: u32, on: bool) {
    let byte = (bit / 8) as usize;
    if path.len() <= byte {
        path.resize(byte + 1, 0);
    }
    let mask = 1u8 << (7 - (bit % 8));
    if let Some(b) = path.get_mut(byte) {
        if on {
            *b |= mask;
        } else {
            *b &= !mask;
        }
    }
}

/// The piece of `root`'s map that `at` names, in the wire form: found by walking `at.path`
/// down to `at.depth`, then the nodes toward `at.toward` and the whole subtree from
/// `at.whole_from` (at most `budget` nodes, the rest as hashes). An empty map has no pieces.
pub(super) fn encode_subtree(
    root: Option<&Arc<Node>>,
    at: Locate<'_>,
    budget: usize,
) -> Result<Vec<u8>, TrieError> {
    let root = root.ok_or_else(|| TrieError::Input("the map is empty".into()))?;
    let mut node = Node::open(root, Want::Key(at.path))?;
    loop {
        let next = match &*node {
            Node::Branch {
                bit, left, right, ..
            } if *bit < at.depth => Node::open(
                if super::bit_at(at.path, *bit) {
                    right
                } else {
                    left
                },
                Want::Key(at.path),
            )?,
            _ => break,
        };
        node = next;
    }
    let mut out = vec![VERSION];
    encode_toward(&node, at.toward, at.whole_from, budget, &mut out)?;
    Ok(out)
}

fn put_leaf(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.push(LEAF);
    // INVARIANT: keys and values are far shorter than 2^32 bytes (a transaction bounds them).
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

fn put_hash(out: &mut Vec<u8>, h: &Hash) {
    out.push(HASH);
    out.extend_from_slice(&h.0);
}

fn encode_toward(
    node: &Arc<Node>,
    key: &[u8],
    whole_from: u32,
    budget: usize,
    out: &mut Vec<u8>,
) -> Result<(), TrieError> {
    // Right siblings come after the whole left subtree in pre-order: held until the end.
    let mut after = Vec::new();
    let mut node = Node::open(node, Want::Key(key))?;
    loop {
        let next = match &*node {
            Node::Branch { bit, .. } if *bit >= whole_from => {
                encode_whole(&node, budget, out)?;
                break;
            }
            Node::Leaf { key, value, .. } => {
                put_leaf(out, key, value);
                break;
            }
            Node::Branch {
                bit, left, right, ..
            } => {
                out.push(BRANCH);
                out.extend_from_slice(&bit.to_be_bytes());
                if super::bit_at(key, *bit) {
                    put_hash(out, &left.hash());
                    right
                } else {
                    after.push(right.hash());
                    left
                }
            }
            Node::Stub { .. } | Node::Remote(_) => return Err(super::stub_in_place_of_node()),
        };
        node = Node::open(next, Want::Key(key))?;
    }
    for h in after.iter().rev() {
        put_hash(out, h);
    }
    Ok(())
}

fn encode_whole(node: &Arc<Node>, budget: usize, out: &mut Vec<u8>) -> Result<(), TrieError> {
    let mut stack = vec![node.clone()];
    let mut spent = 0usize;
    while let Some(n) = stack.pop() {
        if spent >= budget {
            put_hash(out, &n.hash());
            continue;
        }
        spent += 1;
        match &*Node::open(&n, Want::Whole)? {
            Node::Leaf { key, value, .. } => put_leaf(out, key, value),
            Node::Branch {
                bit, left, right, ..
            } => {
                out.push(BRANCH);
                out.extend_from_slice(&bit.to_be_bytes());
                stack.push(right.clone());
                stack.push(left.clone());
            }
            Node::Stub { .. } | Node::Remote(_) => return Err(super::stub_in_place_of_node()),
        }
    }
    Ok(())
}

/// Reads a served piece back into nodes; the hashes left out become remote stubs whose
/// locators extend `path` by the branch bits above them. Malformed input is an error.
fn decode_piece(
    bytes: &[u8],
    path: &[u8],
    depth: u32,
    nodes: &Arc<RemoteNodes>,
) -> Result<Arc<Node>, TrieError> {
    let bad = |why: &str| TrieError::Store(format!("malformed state nodes: {why}"));
    let (&version, body) = bytes.split_first().ok_or_else(|| bad("empty"))?;
    if version != VERSION {
        return Err(bad("unknown version"));
    }
    let mut cursor = Cursor { bytes: body, at: 0 };
    let mut path = path.to_vec();
    let node = decode_node(&mut cursor, &mut path, depth, nodes, 0)?;
    if cursor.at != body.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(node)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TrieError> {
        let cut = || TrieError::Store("malformed state nodes: cut short".into());
        let end = self.at.checked_add(n).ok_or_else(cut)?;
        let out = self.bytes.get(self.at..end).ok_or_else(cut)?;
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, TrieError> {
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| TrieError::Store("malformed state nodes: cut short".into()))?;
        Ok(u32::from_be_bytes(b))
    }
}

fn decode_node(
    c: &mut Cursor<'_>,
    path: &mut Vec<u8>,
    depth: u32,
    nodes: &Arc<RemoteNodes>,
    level: usize,
) -> Result<Arc<Node>, TrieError> {
    if level > MAX_DEPTH {
        return Err(TrieError::Store(
            "malformed state nodes: nested too deep".into(),
        ));
    }
    let &[tag] = c.take(1)? else {
        return Err(TrieError::Store("malformed state nodes: cut short".into()));
    };
    match tag {
        LEAF => {
            let n = c.u32()? as usize;
            let key = c.take(n)?;
            let n = c.u32()? as usize;
            let value = c.take(n)?;
            Ok(Node::leaf(key, value.into()))
        }
        BRANCH => {
            let bit = c.u32()?;
            if bit < depth {
                return Err(TrieError::Store(
                    "malformed state nodes: branch bits must grow downwards".into(),
                ));
            }
            let next = bit
                .checked_add(1)
                .ok_or_else(|| TrieError::Store("malformed state nodes: bit".into()))?;
            set_bit(path, bit, false);
            let left = decode_node(c, path, next, nodes, level + 1)?;
            set_bit(path, bit, true);
            let right = decode_node(c, path, next, nodes, level + 1)?;
            set_bit(path, bit, false);
            Ok(Arc::new(Node::Branch {
                bit,
                left,
                right,
                hash: OnceLock::new(),
                stored: Stored::default(),
            }))
        }
        HASH => {
            let h = c.take(32)?;
            let mut hash = [0u8; 32];
            hash.copy_from_slice(h);
            Ok(Arc::new(Node::Remote(Box::new(RemoteStub {
                hash: Hash(hash),
                nodes: Arc::downgrade(nodes),
                path: path.clone().into_boxed_slice(),
                depth,
            }))))
        }
        _ => Err(TrieError::Store(
            "malformed state nodes: unknown tag".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Trie;
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A source that serves a trie in process (what a node's API does over HTTP), and can be
    /// made to lie.
    struct Serve {
        trie: Trie,
        tamper: Option<fn(&mut Vec<u8>)>,
        asked: Arc<AtomicU64>,
    }

    impl NodeSource for Serve {
        fn fetch(&self, at: Locate<'_>) -> Result<Vec<u8>, String> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            let mut out = self.trie.piece(at).map_err(|e| e.to_string())?;
            if let Some(t) = self.tamper {
                t(&mut out);
            }
            Ok(out)
        }
    }

    fn k(i: u32) -> Vec<u8> {
        let mut v = vec![3u8];
        v.extend_from_slice(&i.to_be_bytes());
        v
    }

    fn served(trie: &Trie, tamper: Option<fn(&mut Vec<u8>)>) -> (Trie, Arc<AtomicU64>) {
        let asked = Arc::new(AtomicU64::new(0));
        let nodes = RemoteNodes::new(
            Serve {
                trie: trie.clone(),
                tamper,
                asked: asked.clone(),
            },
            1024,
        );
        (Trie::remote(trie.root_hash(), trie.len(), &nodes), asked)
    }

    fn sample(n: u32) -> Trie {
        Trie::from_sorted((0..n).map(|i| (k(i), vec![i as u8; 1 + (i % 7) as usize]))).unwrap()
    }

    #[test]
    fn reads_proofs_and_scans_match_the_served_map() {
        let trie = sample(500);
        let (light, asked) = served(&trie, None);
        assert_eq!(light.root_hash(), trie.root_hash());
        for i in [0, 1, 77, 250, 499, 500, 1000] {
            assert_eq!(light.get(&k(i)).unwrap(), trie.get(&k(i)).unwrap());
            assert_eq!(light.prove(&k(i)).unwrap(), trie.prove(&k(i)).unwrap());
        }
        // One fetch per uncached lookup, not one per level.
        assert!(asked.load(Ordering::Relaxed) <= 7, "{asked:?}");
        assert_eq!(
            light.scan_prefix(&[3u8]).unwrap(),
            trie.scan_prefix(&[3u8]).unwrap()
        );
        assert_eq!(
            light.scan_prefix(&[3u8, 0, 0, 1]).unwrap(),
            trie.scan_prefix(&[3u8, 0, 0, 1]).unwrap()
        );
        assert!(light.scan_prefix(&[4u8]).unwrap().is_empty());
        // Many keys read together, as each alone.
        let keys: Vec<Vec<u8>> = [3, 499, 700, 12, 12].map(k).to_vec();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let mut together = vec![None; keys.len()];
        light
            .visit_many(&refs, |i, v| {
                together[i] = Some(v.to_vec());
                Ok::<(), TrieError>(())
            })
            .unwrap();
        let alone: Vec<_> = keys
            .iter()
            .map(|key| trie.get(key).unwrap().map(|v| v.to_vec()))
            .collect();
        assert_eq!(together, alone);
    }

    #[test]
    fn a_scan_larger_than_one_answer_loads_the_rest() {
        let trie = sample(20_000);
        let (light, asked) = served(&trie, None);
        assert_eq!(light.scan_prefix(&[3u8]).unwrap().len(), 20_000);
        assert!(asked.load(Ordering::Relaxed) > 1);
    }

    #[test]
    fn writes_on_a_served_map_give_the_roots_of_local_writes() {
        let trie = sample(300);
        let (mut light, _) = served(&trie, None);
        let mut local = trie.clone();
        for (i, t) in [(5u32, 1u8), (299, 2), (301, 3), (1000, 4)] {
            light.insert(&k(i), vec![t]).unwrap();
            local.insert(&k(i), vec![t]).unwrap();
        }
        for i in [0u32, 7, 150, 298] {
            assert_eq!(light.remove(&k(i)).unwrap(), local.remove(&k(i)).unwrap());
        }
        assert_eq!(light.root_hash(), local.root_hash());
        // A stub whose sibling above was removed still loads from its own locator.
        for i in 0..310 {
            assert_eq!(light.get(&k(i)).unwrap(), local.get(&k(i)).unwrap(), "{i}");
        }
    }

    #[test]
    fn altered_answers_give_errors_never_wrong_records() {
        fn flip_value(b: &mut [u8]) {
            if let Some(last) = b.last_mut() {
                *last ^= 1;
            }
        }
        fn cut(b: &mut Vec<u8>) {
            b.truncate(b.len() / 2);
        }
        fn extend(b: &mut Vec<u8>) {
            b.push(0);
        }
        fn version(b: &mut [u8]) {
            b[0] = 9;
        }
        let trie = sample(200);
        let tampers: [fn(&mut Vec<u8>); 4] = [|b| flip_value(b), cut, extend, |b| version(b)];
        for tamper in tampers {
            let (light, _) = served(&trie, Some(tamper));
            assert!(light.get(&k(17)).is_err());
            assert!(light.scan_prefix(&[3u8]).is_err());
        }
        // Another map's pieces do not pass for this one.
        let other = sample(201);
        let nodes = RemoteNodes::new(
            Serve {
                trie: other,
                tamper: None,
                asked: Arc::default(),
            },
            16,
        );
        let light = Trie::remote(trie.root_hash(), trie.len(), &nodes);
        assert!(light.get(&k(17)).is_err());
    }

    #[test]
    fn the_source_lives_as_long_as_a_trie_reads_it() {
        let trie = sample(300);
        let (light, asked) = served(&trie, None);
        assert!(light.get(&k(3)).unwrap().is_some());
        let nodes = Arc::downgrade(light.source().unwrap());
        let copy = light.clone();
        drop(light);
        assert!(nodes.upgrade().is_some(), "a clone still reads it");
        assert!(copy.get(&k(200)).unwrap().is_some());
        drop(copy);
        // Its cache holds pieces whose stubs name it: no cycle keeps it (and its HTTP reader).
        assert!(nodes.upgrade().is_none());
        assert!(asked.load(Ordering::Relaxed) >= 2);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let nodes = RemoteNodes::new(
            Serve {
                trie: Trie::new(),
                tamper: None,
                asked: Arc::default(),
            },
            4,
        );
        for bytes in [
            vec![],
            vec![1],
            vec![1, 1, 0, 0, 0, 5],
            vec![1, 0, 255, 255, 255, 255],
            vec![1, 7],
            [vec![1], vec![1; 20_000]].concat(),
        ] {
            assert!(decode_piece(&bytes, &[], 0, &nodes).is_err());
        }
        // Branch bits that do not grow downwards.
        let mut b = vec![1, BRANCH, 0, 0, 0, 9, BRANCH, 0, 0, 0, 3];
        b.extend_from_slice(&[HASH; 33]);
        b.extend_from_slice(&[HASH; 33]);
        b.extend_from_slice(&[HASH; 33]);
        assert!(decode_piece(&b, &[], 0, &nodes).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any mix of reads and writes on a served map behaves like a `BTreeMap`, with the
        /// root of the same writes made locally.
        #[test]
        fn a_served_map_behaves_like_the_map(
            start in proptest::collection::btree_set(0u32..400, 0..120),
            ops in proptest::collection::vec((0u32..400, proptest::option::of(any::<u8>())), 0..60),
        ) {
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> =
                start.iter().map(|i| (k(*i), vec![*i as u8])).collect();
            let trie = Trie::from_sorted(model.clone()).unwrap();
            let (mut light, _) = served(&trie, None);
            let mut local = trie.clone();
            for (i, op) in ops {
                match op {
                    Some(v) => {
                        light.insert(&k(i), vec![v]).unwrap();
                        local.insert(&k(i), vec![v]).unwrap();
                        model.insert(k(i), vec![v]);
                    }
                    None => {
                        prop_assert_eq!(light.remove(&k(i)).unwrap(), model.remove(&k(i)).is_some());
                        local.remove(&k(i)).unwrap();
                    }
                }
                prop_assert_eq!(light.get(&k(i)).unwrap().map(|v| v.to_vec()), model.get(&k(i)).cloned());
            }
            prop_assert_eq!(light.root_hash(), local.root_hash());
            let scanned: Vec<(Vec<u8>, Vec<u8>)> = light
                .scan_prefix(&[3u8])
                .unwrap()
                .into_iter()
                .map(|(a, b)| (a.to_vec(), b.to_vec()))
                .collect();
            prop_assert_eq!(scanned, model.into_iter().collect::<Vec<_>>());
        }
    }
}
