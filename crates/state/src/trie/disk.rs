//! The trie's on-disk node store: a directory holding one append-only node file and a `HEAD`
//! naming the committed root in it.
//!
//! ```text
//! nodes-<generation>.bin   "MSNODES1" | node*          node = len u32 | body
//!     leaf   body: 0x00 | key_len u32 | key | value
//!     branch body: 0x01 | bit u32 | left_hash [32] | left_offset u64 | right_hash [32] | right_offset u64
//! HEAD                     "MSHEAD01" | generation u64 | file_len u64 | base_len u64
//!                          | root_offset u64 | root_hash [32] | records u64 | height u64
//!                          | SHA-256 of everything before it [32]
//! ```
//!
//! A commit appends the nodes the trie holds in memory (children before parents, so every
//! offset a node names is already written), syncs the file, then replaces `HEAD` atomically
//! (write a temporary file, sync it, rename it over, sync the directory). A process killed at
//! any point leaves the old `HEAD` or the new one, and a node file at least as long as the
//! `HEAD` it has; [`NodeStore::open`] cuts whatever lies past `file_len` (the torn tail of an
//! unfinished commit). Every loaded node is checked against the hash its parent names, so a
//! file altered behind the store's back gives an error, never a wrong record.
//!
//! Memory: a committed trie keeps its top levels in memory (as many as a quarter of
//! [`NodeStore::open`]'s `cache_bytes` holds) and stubs below them; reads below load nodes
//! through a bounded least-recently-used cache (the other three quarters) shared by every
//! snapshot of the file. What else a node keeps is what its blocks wrote since their commit.
//! Reads of many keys at once and walks over the whole map read the file through blocks of
//! their own instead, checking every node the same way ([`super::batch`]).
//!
//! Old versions of a record stay in the file until it is compacted ([`NodeStore::compact`],
//! done by `open` when the file has grown past [`COMPACT_GROWTH`] times its size after the last
//! build or compaction): a copy of the live trie into a new generation, then `HEAD` moves to it.
//!
//! Written here rather than taken from a crate: the store's unit is this trie's node, whose
//! hash the parent names (see the module above for why the trie is our own); a general
//! key-value store under it would hash and index every node a second time.

use super::{Node, Stored, Trie, TrieError};
use lru::LruCache;
use medspace_types::Hash;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

const FILE_MAGIC: &[u8; 8] = b"MSNODES1";
const HEAD_MAGIC: &[u8; 8] = b"MSHEAD01";
const HEAD_NAME: &str = "HEAD";
const HEAD_LEN: usize = 8 + 8 * 4 + 32 + 8 + 8 + 32;
/// Offsets use the low 48 bits of a packed location.
const OFFSET_BITS: u32 = 48;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// A stored branch's body: tag, bit, two (hash, offset) pairs.
const BRANCH_BODY: usize = 1 + 4 + 2 * (32 + 8);
/// Bytes read at once when loading a node: a whole branch, and most leaves.
const READ_AHEAD: usize = 4 + 160;
/// The longest node body a file may hold (a key and a record of at most 1 MiB).
pub(super) const MAX_BODY: usize = (1 << 20) + (1 << 12) + 16;
/// Cache shards (each its own lock).
const SHARDS: usize = 16;
/// What one cached node costs, roughly: the node, its key and value or its two stubs, the
/// cache's entry, the allocator's rounding (measured: `bench state --cache-mib 2048` peaked at
/// about twice the setting with 256 here).
const CACHED_NODE_BYTES: usize = 512;
/// Written nodes are handed to the file in pieces of this size.
const WRITE_CHUNK: usize = 1 << 20;
/// `open` compacts a node file that has grown past this many times its size after the last
/// build or compaction.
pub const COMPACT_GROWTH: u64 = 4;
/// What one pinned node costs in memory, roughly (a loaded branch with its two stubs, or a leaf
/// with its key and value).
const PINNED_NODE_BYTES: usize = 384;
/// The most levels a store pins.
const MAX_PINNED_LEVELS: u32 = 24;

/// The levels of a committed trie kept in memory: as many as a quarter of the cache setting
/// holds when full (2^levels nodes).
fn pinned_levels(cache_bytes: usize) -> u32 {
    let nodes = cache_bytes / 4 / PINNED_NODE_BYTES;
    (usize::BITS - nodes.leading_zeros())
        .saturating_sub(1)
        .min(MAX_PINNED_LEVELS)
}

/// The part of the cache setting left to the node cache (the pinned levels take a quarter).
fn cache_share(cache_bytes: usize) -> usize {
    cache_bytes - cache_bytes / 4
}

/// Process-local ids of node files (so a node knows which file it was written to).
static NEXT_FILE_ID: AtomicU16 = AtomicU16::new(1);

pub(super) fn pack(file: u16, offset: u64) -> u64 {
    (u64::from(file) << OFFSET_BITS) | (offset & OFFSET_MASK)
}

pub(super) fn unpack(packed: u64, file: u16) -> Option<u64> {
    (packed != 0 && (packed >> OFFSET_BITS) == u64::from(file)).then_some(packed & OFFSET_MASK)
}

/// A light client's map holds other nodes' subtrees by hash only: it has nothing to store.
fn remote_in_store() -> TrieError {
    store_error("a subtree of another node's state cannot be written to a store")
}

fn store_error(what: impl std::fmt::Display) -> TrieError {
    TrieError::Store(what.to_string())
}

/// One node file open for reading, with its cache of loaded nodes. Shared (through `Arc`) by
/// every stub that points into it, so a file stays readable while any snapshot uses it.
pub struct NodeFile {
    id: u16,
    file: File,
    cache: Vec<Mutex<LruCache<u64, Arc<Node>>>>,
    /// Set once the file's store has moved on (a compaction) or closed: nothing more is
    /// cached ([`NodeFile::retire`]).
    retired: std::sync::atomic::AtomicBool,
    loads: AtomicU64,
    hits: AtomicU64,
}

impl std::fmt::Debug for NodeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeFile(id={})", self.id)
    }
}

impl NodeFile {
    fn new(file: File, cache_bytes: usize) -> Self {
        let per_shard = (cache_bytes / CACHED_NODE_BYTES / SHARDS).max(16);
        let capacity = NonZeroUsize::new(per_shard).unwrap_or(NonZeroUsize::MIN);
        Self {
            id: NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed),
            file,
            cache: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(capacity)))
                .collect(),
            retired: std::sync::atomic::AtomicBool::new(false),
            loads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    pub(super) fn id(&self) -> u16 {
        self.id
    }

    fn shard(&self, offset: u64) -> Option<&Mutex<LruCache<u64, Arc<Node>>>> {
        // INVARIANT: the product's top bits pick one of SHARDS (16) shards.
        let i = (offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize;
        self.cache.get(i % SHARDS)
    }

    /// (nodes read from the file, nodes found in the cache) since the file was opened.
    pub fn reads(&self) -> (u64, u64) {
        (
            self.loads.load(Ordering::Relaxed),
            self.hits.load(Ordering::Relaxed),
        )
    }

    /// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read
    /// (a batch read's block, [`super::batch`]).
    pub(super) fn read_block(&self, offset: u64, buf: &mut [u8]) -> Result<usize, TrieError> {
        read_some(&self.file, offset, buf)
    }

    /// Counts `n` nodes read from the file outside the cache (a batch read's).
    pub(super) fn count_loads(&self, n: u64) {
        self.loads.fetch_add(n, Ordering::Relaxed);
    }

    /// The node at `offset`, which its parent names by `expected`.
    pub(super) fn load(
        self: &Arc<Self>,
        offset: u64,
        expected: &Hash,
    ) -> Result<Arc<Node>, TrieError> {
        let shard = self.shard(offset);
        if let Some(node) = shard.and_then(|s| {
            s.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&offset)
                .cloned()
        }) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(node);
        }
        let node = Arc::new(self.read(offset)?);
        if node.hash() != *expected {
            return Err(altered(offset));
        }
        self.loads.fetch_add(1, Ordering::Relaxed);
        if let Some(shard) = shard {
            let mut cache = shard.lock().unwrap_or_else(PoisonError::into_inner);
            // Read under the shard's lock, so a retirement's clearing cannot miss this entry.
            if !self.retired.load(Ordering::SeqCst) {
                cache.put(offset, node.clone());
            }
        }
        Ok(node)
    }

    /// Empties the cache and caches nothing more. A cached branch holds this file through its
    /// children's stubs, so a cache left full would keep the file — its memory, and its disk
    /// space once a compaction removed it — alive as long as the process; retired, the file
    /// closes when the last trie reading it is dropped. Tries still reading it read from the
    /// file, uncached.
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        for shard in &self.cache {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    fn read(self: &Arc<Self>, offset: u64) -> Result<Node, TrieError> {
        let buf = self.read_node(offset)?;
        self.decode(offset, buf.get(4..).unwrap_or_default())
    }

    /// The stored bytes of the node at `offset`: its length, then its body.
    pub(super) fn read_node(&self, offset: u64) -> Result<Vec<u8>, TrieError> {
        let mut buf = vec![0u8; READ_AHEAD];
        let got = read_some(&self.file, offset, &mut buf)?;
        let len = buf
            .get(..4)
            .filter(|_| got >= 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
            .ok_or_else(|| {
                store_error(format_args!(
                    "node at offset {offset} lies past the file's end"
                ))
            })?;
        if len > MAX_BODY {
            return Err(store_error(format_args!(
                "node at offset {offset} claims {len} bytes"
            )));
        }
        // INVARIANT: len <= MAX_BODY, so 4 + len does not overflow.
        buf.resize(4 + len, 0);
        if got < 4 + len {
            let tail = buf.get_mut(got..).unwrap_or_default();
            // INVARIANT: got is at most READ_AHEAD, which fits u64.
            let n = read_some(&self.file, offset + got as u64, tail)?;
            if got + n < 4 + len {
                return Err(store_error(format_args!(
                    "node at offset {offset} is cut short"
                )));
            }
        }
        Ok(buf)
    }

    fn decode(self: &Arc<Self>, offset: u64, body: &[u8]) -> Result<Node, TrieError> {
        let stored = Stored::at(self, offset);
        let stub = |(offset, hash): (u64, Hash)| {
            Arc::new(Node::Stub {
                hash,
                file: self.clone(),
                offset,
            })
        };
        Ok(match Body::parse(offset, body)? {
            Body::Leaf { key, value } => Node::Leaf {
                key: key.into(),
                value: value.into(),
                hash: Default::default(),
                stored,
            },
            Body::Branch { bit, left, right } => Node::Branch {
                bit,
                left: stub(left),
                right: stub(right),
                hash: Default::default(),
                stored,
            },
        })
    }
}

/// A stored node's body (the bytes after its length), read in place.
pub(super) enum Body<'a> {
    /// `0x00 | key length u32 | key | value`.
    Leaf { key: &'a [u8], value: &'a [u8] },
    /// `0x01 | bit u32 | left hash | left offset u64 | right hash | right offset u64`: the bit
    /// and each child's (offset, hash).
    Branch {
        bit: u32,
        left: (u64, Hash),
        right: (u64, Hash),
    },
}

impl<'a> Body<'a> {
    /// The body of the node at `offset`, or why it is not one.
    pub(super) fn parse(offset: u64, body: &'a [u8]) -> Result<Self, TrieError> {
        let bad = || store_error(format_args!("node at offset {offset} is malformed"));
        let child = |bytes: &[u8; 40]| {
            let (hash, at) = bytes.split_at(32);
            Some((
                u64::from_be_bytes(at.try_into().ok()?),
                Hash(hash.try_into().ok()?),
            ))
        };
        match body.split_first() {
            Some((0, rest)) => {
                let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
                let (key, value) = rest
                    .split_at_checked(u32::from_be_bytes(*len) as usize)
                    .ok_or_else(bad)?;
                Ok(Body::Leaf { key, value })
            }
            Some((1, rest)) if body.len() == BRANCH_BODY => {
                let (bit, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
                let (left, rest) = rest.split_first_chunk::<40>().ok_or_else(bad)?;
                let (right, _) = rest.split_first_chunk::<40>().ok_or_else(bad)?;
                Ok(Body::Branch {
                    bit: u32::from_be_bytes(*bit),
                    left: child(left).ok_or_else(bad)?,
                    right: child(right).ok_or_else(bad)?,
                })
            }
            _ => Err(bad()),
        }
    }

    /// The node's hash: a leaf's is that of its body as stored, a branch's that of its bit and
    /// its children's hashes (the trie's rule, [`super::leaf_hash`], [`super::branch_hash`]).
    pub(super) fn hash(&self, body: &[u8]) -> Hash {
        match self {
            Body::Leaf { .. } => Hash::of(&[body]),
            Body::Branch { bit, left, right } => super::branch_hash(*bit, &left.1, &right.1),
        }
    }
}

/// The error of a node that is not the one its parent names.
pub(super) fn altered(offset: u64) -> TrieError {
    store_error(format_args!(
        "node at offset {offset} does not match the hash its parent names (torn or altered file)"
    ))
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
fn read_some(file: &File, offset: u64, buf: &mut [u8]) -> Result<usize, TrieError> {
    let mut got = 0;
    while got < buf.len() {
        let rest = buf.get_mut(got..).unwrap_or_default();
        // INVARIANT: got < buf.len(), far below u64::MAX.
        match file.read_at(rest, offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(store_error(format_args!("reading the node file: {e}"))),
        }
    }
    Ok(got)
}

/// What `HEAD` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    generation: u64,
    file_len: u64,
    base_len: u64,
    root_offset: u64,
    root: Hash,
    records: u64,
    height: u64,
}

impl Head {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_LEN);
        out.extend_from_slice(HEAD_MAGIC);
        for v in [
            self.generation,
            self.file_len,
            self.base_len,
            self.root_offset,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.root.0);
        out.extend_from_slice(&self.records.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
        let sum = Hash::of(&[&out]);
        out.extend_from_slice(&sum.0);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, TrieError> {
        let bad = |what: &str| store_error(format_args!("HEAD: {what}"));
        if bytes.len() != HEAD_LEN {
            return Err(bad("wrong length"));
        }
        let (body, sum) = bytes.split_at(HEAD_LEN - 32);
        if Hash::of(&[body]).0 != sum {
            return Err(bad("checksum does not match (torn or altered)"));
        }
        let (magic, rest) = body.split_first_chunk::<8>().ok_or_else(|| bad("short"))?;
        if magic != HEAD_MAGIC {
            return Err(bad("not a node store head"));
        }
        let mut rest = rest;
        let mut u64_next = || -> Result<u64, TrieError> {
            let (v, r) = rest.split_first_chunk::<8>().ok_or_else(|| bad("short"))?;
            rest = r;
            Ok(u64::from_be_bytes(*v))
        };
        let (generation, file_len, base_len, root_offset) =
            (u64_next()?, u64_next()?, u64_next()?, u64_next()?);
        let (root, r) = rest.split_first_chunk::<32>().ok_or_else(|| bad("short"))?;
        let root = Hash(*root);
        rest = r;
        let mut u64_next = || -> Result<u64, TrieError> {
            let (v, r) = rest.split_first_chunk::<8>().ok_or_else(|| bad("short"))?;
            rest = r;
            Ok(u64::from_be_bytes(*v))
        };
        Ok(Self {
            generation,
            file_len,
            base_len,
            root_offset,
            root,
            records: u64_next()?,
            height: u64_next()?,
        })
    }
}

/// What a store held when it was opened: the committed trie and the height it was committed at.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The height given to the commit that wrote it.
    pub height: u64,
    /// The map, as one stub (nothing loaded yet).
    pub trie: Trie,
}

/// Sizes of a store, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreSize {
    /// Bytes of the node file (what `HEAD` covers).
    pub file_bytes: u64,
    /// Bytes of the node file right after its last build or compaction.
    pub base_bytes: u64,
}

/// The writer of a node store directory. One per directory and process; its tries may be
/// cloned and read from any thread.
pub struct NodeStore {
    dir: PathBuf,
    file: Arc<NodeFile>,
    out: File,
    cache_bytes: usize,
    /// The levels of a committed trie kept in memory (the rest is read through the cache).
    pinned: u32,
    head: Head,
    /// Set when a write failed part-way: the file's tail is then unknown, so the store refuses
    /// further commits (the last good `HEAD` stays what a restart opens).
    poisoned: bool,
}

impl std::fmt::Debug for NodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStore")
            .field("dir", &self.dir)
            .field("head", &self.head)
            .finish()
    }
}

impl Drop for NodeStore {
    /// The store's file caches nothing once the store is gone ([`NodeFile::retire`]): its
    /// tries may still read it, and it closes with the last of them.
    fn drop(&mut self) {
        self.file.retire();
    }
}

fn node_file_name(generation: u64) -> String {
    format!("nodes-{generation:08}.bin")
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> TrieError {
    move |e| store_error(format_args!("{what}: {e}"))
}

impl NodeStore {
    /// Opens (or creates) the store in `dir`, with a node cache of about `cache_bytes`.
    /// Returns the store and what it had committed, if anything. A torn tail left by a crash
    /// is cut; a node file grown past [`COMPACT_GROWTH`] times its base is compacted first.
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<(Self, Option<Committed>), TrieError> {
        fs::create_dir_all(dir).map_err(io("creating the store directory"))?;
        let head = match fs::read(dir.join(HEAD_NAME)) {
            Ok(bytes) => Some(Head::decode(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("reading HEAD")(e)),
        };
        let generation = head.map_or(0, |h| h.generation);
        let path = dir.join(node_file_name(generation));
        let mut out = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("opening the node file"))?;
        // One writer per store: a second process (or a second open in this one) is refused
        // before it could cut or clear what the first is writing. The lock goes with the file.
        out.try_lock().map_err(|e| {
            store_error(format_args!(
                "the store is open elsewhere (its node file is locked): {e}"
            ))
        })?;
        let on_disk = out
            .metadata()
            .map_err(io("reading the node file's size"))?
            .len();
        let head = match head {
            Some(head) => {
                if on_disk < head.file_len {
                    return Err(store_error(format_args!(
                        "the node file has {on_disk} bytes, HEAD names {}",
                        head.file_len
                    )));
                }
                if on_disk > head.file_len {
                    out.set_len(head.file_len)
                        .map_err(io("cutting the torn tail"))?;
                    out.sync_all().map_err(io("syncing the node file"))?;
                }
                head
            }
            None => {
                out.set_len(0).map_err(io("clearing the node file"))?;
                out.write_all(FILE_MAGIC)
                    .map_err(io("writing the node file"))?;
                out.sync_all().map_err(io("syncing the node file"))?;
                Head {
                    generation,
                    file_len: FILE_MAGIC.len() as u64,
                    base_len: FILE_MAGIC.len() as u64,
                    root_offset: 0,
                    root: super::empty_root(),
                    records: 0,
                    height: 0,
                }
            }
        };
        remove_other_generations(dir, generation);
        let read = File::open(&path).map_err(io("opening the node file"))?;
        let mut store = Self {
            dir: dir.to_path_buf(),
            file: Arc::new(NodeFile::new(read, cache_share(cache_bytes))),
            out,
            cache_bytes,
            pinned: pinned_levels(cache_bytes),
            head,
            poisoned: false,
        };
        if head.root_offset == 0 {
            return Ok((store, None));
        }
        if head.file_len > head.base_len.saturating_mul(COMPACT_GROWTH) {
            store.compact()?;
        }
        let committed = Committed {
            height: store.head.height,
            trie: store.committed_trie(),
        };
        Ok((store, Some(committed)))
    }

    /// What the store last committed, if anything (as [`NodeStore::open`] gives it).
    pub fn committed(&self) -> Option<Committed> {
        (self.head.root_offset != 0).then(|| Committed {
            height: self.head.height,
            trie: self.committed_trie(),
        })
    }

    fn committed_trie(&self) -> Trie {
        let head = &self.head;
        Trie {
            root: (head.root_offset != 0).then(|| {
                Arc::new(Node::Stub {
                    hash: head.root,
                    file: self.file.clone(),
                    offset: head.root_offset,
                })
            }),
            // INVARIANT: the records of a map held by this process fit usize.
            len: usize::try_from(head.records).unwrap_or(usize::MAX),
            remote: None,
        }
    }

    /// The file the store's tries read from (its cache statistics).
    pub fn file(&self) -> &Arc<NodeFile> {
        &self.file
    }

    /// The node file's sizes.
    pub fn size(&self) -> StoreSize {
        StoreSize {
            file_bytes: self.head.file_len,
            base_bytes: self.head.base_len,
        }
    }

    /// The height of the last commit (0 before any).
    pub fn height(&self) -> u64 {
        self.head.height
    }

    /// Writes what `trie` holds in memory, makes it the store's committed map at `height`, and
    /// returns the same map as one stub into the file (its memory is then the cache's). Nodes
    /// written by an earlier commit are not written again.
    pub fn commit(&mut self, trie: &Trie, height: u64) -> Result<Trie, TrieError> {
        let written = self.writer().and_then(|mut writer| {
            let root = match &trie.root {
                Some(root) => Some((writer.write(root)?, root.hash())),
                None => None,
            };
            writer.flush()?;
            Ok(root)
        });
        let root = self.poison_on_error(written)?;
        // The first commit into a store is its base size.
        let rebase = self.head.root_offset == 0;
        let stub = self.publish(root, trie.len, height, rebase)?;
        self.pin(trie, stub)
    }

    /// `trie` (just committed) with its top [`NodeStore::pinned`] levels in memory and stubs
    /// below: reads then walk the top without the cache's lock, and memory stays bounded. On
    /// any error the stub alone, which is always right.
    fn pin(&self, trie: &Trie, stub: Trie) -> Result<Trie, TrieError> {
        let Some(root) = &trie.root else {
            return Ok(stub);
        };
        Ok(match self.pin_node(root, 0) {
            Ok(root) => Trie {
                root: Some(root),
                len: stub.len,
                remote: None,
            },
            Err(_) => stub,
        })
    }

    fn pin_node(&self, node: &Arc<Node>, depth: u32) -> Result<Arc<Node>, TrieError> {
        if depth >= self.pinned {
            return self.stub_of(node);
        }
        match &**node {
            Node::Stub { hash, file, offset } => {
                let loaded = file.load(*offset, hash)?;
                self.pin_node(&loaded, depth)
            }
            Node::Remote(_) => Err(remote_in_store()),
            Node::Leaf { .. } => Ok(node.clone()),
            Node::Branch {
                bit,
                left,
                right,
                stored,
                ..
            } => {
                // INVARIANT: depth < pinned <= MAX_PINNED_LEVELS.
                let l = self.pin_node(left, depth + 1)?;
                let r = self.pin_node(right, depth + 1)?;
                if Arc::ptr_eq(&l, left) && Arc::ptr_eq(&r, right) {
                    return Ok(node.clone());
                }
                let offset = stored
                    .offset_in(&self.file)
                    .ok_or_else(|| store_error("pinning a branch that was not written"))?;
                Ok(Arc::new(Node::Branch {
                    bit: *bit,
                    left: l,
                    right: r,
                    hash: OnceLock::from(node.hash()),
                    stored: Stored::at(&self.file, offset),
                }))
            }
        }
    }

    /// A stub for `node`, which is in this store's file.
    fn stub_of(&self, node: &Arc<Node>) -> Result<Arc<Node>, TrieError> {
        let stored = match &**node {
            Node::Stub { .. } => return Ok(node.clone()),
            Node::Remote(_) => return Err(remote_in_store()),
            Node::Leaf { stored, .. } | Node::Branch { stored, .. } => stored,
        };
        let offset = stored
            .offset_in(&self.file)
            .ok_or_else(|| store_error("a node below the pinned levels that was not written"))?;
        Ok(Arc::new(Node::Stub {
            hash: node.hash(),
            file: self.file.clone(),
            offset,
        }))
    }

    /// The map holding `entries` (strictly increasing keys), built in one pass straight into
    /// the store and committed at `height`: each finished subtree is written as the build
    /// moves past it, so memory stays that of one root-to-leaf path. Entries may fail (a
    /// stream being read); the first failure, or a root other than `expect`, ends the build
    /// with nothing committed.
    pub fn build<K, V>(
        &mut self,
        entries: impl IntoIterator<Item = Result<(K, V), TrieError>>,
        height: u64,
        expect: Option<Hash>,
    ) -> Result<Trie, TrieError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut build = self.begin_build()?;
        for entry in entries {
            let pushed = entry.and_then(|(k, v)| build.push(self, k.as_ref(), v.as_ref()));
            if let Err(e) = pushed {
                build.abandon(self);
                return Err(e);
            }
        }
        build.finish(self, height, expect)
    }

    /// Starts a map built from entries pushed one at a time ([`Build`]), for a caller that
    /// receives them in pieces (a checkpoint arriving over the network or from an async
    /// blob). Nothing is committed until [`Build::finish`].
    pub fn begin_build(&mut self) -> Result<Build, TrieError> {
        if self.poisoned {
            return Err(store_error("an earlier write failed; reopen the store"));
        }
        Ok(Build {
            spine: Vec::new(),
            last: None,
            len: 0,
            file_len: self.head.file_len,
            base: self.head,
            buf: Vec::with_capacity(WRITE_CHUNK),
        })
    }

    /// Cuts what an unfinished build appended, so the next write starts where `HEAD` ends (a
    /// store that cannot cut refuses further writes).
    fn cut_to_head(&mut self) {
        let cut = self.out.set_len(self.head.file_len);
        self.poisoned |= cut.is_err();
    }

    fn poison_on_error<T>(&mut self, result: Result<T, TrieError>) -> Result<T, TrieError> {
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Copies the committed map into a new node file holding only its live nodes, then moves
    /// `HEAD` to it. Tries that still point into the old file keep reading it (it is removed
    /// from the directory, and freed when the last of them is dropped).
    pub fn compact(&mut self) -> Result<(), TrieError> {
        let live = self.committed_trie();
        let generation = self.head.generation.wrapping_add(1);
        let path = self.dir.join(node_file_name(generation));
        let mut out = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("creating the compacted node file"))?;
        out.try_lock()
            .map_err(|e| store_error(format_args!("the compacted node file is locked: {e}")))?;
        out.set_len(0)
            .map_err(io("clearing the compacted node file"))?;
        out.write_all(FILE_MAGIC)
            .map_err(io("writing the compacted node file"))?;
        let read = File::open(&path).map_err(io("opening the compacted node file"))?;
        let file = Arc::new(NodeFile::new(read, cache_share(self.cache_bytes)));
        let mut writer = Writer {
            file: &file,
            out: &mut out,
            len: FILE_MAGIC.len() as u64,
            buf: Vec::with_capacity(WRITE_CHUNK),
        };
        let root = match &live.root {
            Some(root) => {
                let offset = writer.write(root)?;
                Some((offset, root.hash()))
            }
            None => None,
        };
        writer.flush()?;
        let file_len = writer.len;
        out.sync_all()
            .map_err(io("syncing the compacted node file"))?;
        let (root_offset, root_hash) = root.unwrap_or((0, super::empty_root()));
        let head = Head {
            generation,
            file_len,
            base_len: file_len,
            root_offset,
            root: root_hash,
            records: self.head.records,
            height: self.head.height,
        };
        self.write_head(&head)?;
        self.head = head;
        let old = std::mem::replace(&mut self.file, file);
        old.retire();
        self.out = out;
        remove_other_generations(&self.dir, generation);
        Ok(())
    }

    fn writer(&mut self) -> Result<Writer<'_>, TrieError> {
        if self.poisoned {
            return Err(store_error("an earlier write failed; reopen the store"));
        }
        Ok(Writer {
            file: &self.file,
            out: &mut self.out,
            len: self.head.file_len,
            buf: Vec::with_capacity(WRITE_CHUNK),
        })
    }

    /// Syncs what the writer appended and points `HEAD` at `root`.
    fn publish(
        &mut self,
        root: Option<(u64, Hash)>,
        records: usize,
        height: u64,
        rebase: bool,
    ) -> Result<Trie, TrieError> {
        let synced = self
            .out
            .metadata()
            .map(|m| m.len())
            .and_then(|len| self.out.sync_data().map(|()| len));
        let file_len = match synced {
            Ok(len) => len,
            Err(e) => {
                self.poisoned = true;
                return Err(io("syncing the node file")(e));
            }
        };
        let (root_offset, root_hash) = root.unwrap_or((0, super::empty_root()));
        let head = Head {
            generation: self.head.generation,
            file_len,
            base_len: if rebase { file_len } else { self.head.base_len },
            root_offset,
            root: root_hash,
            // INVARIANT: usize fits u64 on every supported target.
            records: records as u64,
            height,
        };
        self.write_head(&head)?;
        self.head = head;
        Ok(self.committed_trie())
    }

    fn write_head(&self, head: &Head) -> Result<(), TrieError> {
        let tmp = self.dir.join("HEAD.tmp");
        let mut f = File::create(&tmp).map_err(io("creating HEAD.tmp"))?;
        f.write_all(&head.encode())
            .map_err(io("writing HEAD.tmp"))?;
        f.sync_all().map_err(io("syncing HEAD.tmp"))?;
        fs::rename(&tmp, self.dir.join(HEAD_NAME)).map_err(io("renaming HEAD.tmp"))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the store directory"))
    }
}

fn remove_other_generations(dir: &Path, keep: u64) {
    let keep = node_file_name(keep);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("nodes-") && name.ends_with(".bin") && name != keep {
            // A leftover of an interrupted compaction, or the file a compaction replaced.
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A map being built into a store from entries pushed in strictly increasing, prefix-free key
/// order ([`NodeStore::begin_build`]): the nodes [`Trie::from_sorted`] would build, written in
/// the order a commit of that trie writes them (children first, each finished subtree as the
/// build moves past it), without making a node of each (a build or a state sync writes tens of
/// millions). Memory: one root-to-leaf path and the previous key.
///
/// Each push takes the store, so a caller holding it behind a lock locks it per push; a store
/// that committed anything since the build began refuses the build. An abandoned build — an
/// error, a refused checkpoint, or one dropped unfinished and then [`Build::abandon`]ed or
/// cut by the next [`NodeStore::open`] — commits nothing.
#[derive(Debug)]
pub struct Build {
    /// Branches whose right side is still being built: their bit and their written left side.
    spine: Vec<(u32, (u64, Hash))>,
    /// The previous entry's key (the greatest so far) and its written leaf.
    last: Option<(Vec<u8>, (u64, Hash))>,
    len: usize,
    /// The file's length counting what is buffered.
    file_len: u64,
    /// `HEAD` when the build began.
    base: Head,
    buf: Vec<u8>,
}

impl Build {
    /// Entries pushed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn writer<'a>(&mut self, store: &'a mut NodeStore) -> Result<Writer<'a>, TrieError> {
        if store.poisoned || store.head != self.base {
            return Err(store_error(
                "the store committed something else while a build was under way",
            ));
        }
        Ok(Writer {
            file: &store.file,
            out: &mut store.out,
            len: self.file_len,
            buf: std::mem::take(&mut self.buf),
        })
    }

    fn keep(&mut self, writer: Writer<'_>) {
        self.file_len = writer.len;
        self.buf = writer.buf;
    }

    /// Adds the entry after the last one pushed; refused unless its key is greater and neither
    /// key is a prefix of the other.
    pub fn push(
        &mut self,
        store: &mut NodeStore,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), TrieError> {
        let mut writer = self.writer(store)?;
        let pushed = self.push_with(&mut writer, key, value);
        self.keep(writer);
        pushed
    }

    fn push_with(
        &mut self,
        writer: &mut Writer<'_>,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), TrieError> {
        if let Some((prev, leaf)) = &self.last {
            let p = prev.as_slice();
            let bit = super::crit_bit(p, key)
                .filter(|_| p < key && !key.starts_with(p) && !p.starts_with(key))
                .ok_or(TrieError::OutOfOrder { len: key.len() })?;
            let mut done = *leaf;
            while let Some((b, _)) = self.spine.last()
                && *b > bit
            {
                if let Some((b, left)) = self.spine.pop() {
                    done = writer.branch(b, left, done)?;
                }
            }
            self.spine.push((bit, done));
        }
        let leaf = writer.leaf(key, value)?;
        match &mut self.last {
            Some((prev, at)) => {
                prev.clear();
                prev.extend_from_slice(key);
                *at = leaf;
            }
            None => self.last = Some((key.to_vec(), leaf)),
        }
        // INVARIANT: len counts entries, below usize::MAX.
        self.len += 1;
        Ok(())
    }

    /// Writes the branches left on the spine and commits the map at `height` — unless its root
    /// is not `expect`, which commits nothing. Returns the committed map.
    pub fn finish(
        mut self,
        store: &mut NodeStore,
        height: u64,
        expect: Option<Hash>,
    ) -> Result<Trie, TrieError> {
        let rebase = self.base.root_offset == 0;
        let written = self.writer(store).and_then(|mut writer| {
            let mut root = self.last.take().map(|(_, leaf)| leaf);
            while let Some((b, left)) = self.spine.pop() {
                if let Some(right) = root {
                    root = Some(writer.branch(b, left, right)?);
                }
            }
            writer.flush()?;
            Ok(root)
        });
        let checked = written.and_then(|root| {
            let computed = root.map_or_else(super::empty_root, |(_, h)| h);
            match expect {
                Some(expected) if expected != computed => {
                    Err(TrieError::RootMismatch { expected, computed })
                }
                _ => Ok(root),
            }
        });
        let root = match checked {
            Ok(root) => root,
            Err(e) => {
                if store.head == self.base {
                    store.cut_to_head();
                }
                return Err(e);
            }
        };
        // A build into an empty store is its base size.
        let stub = store.publish(root, self.len, height, rebase)?;
        store.pin(&stub.clone(), stub)
    }

    /// Gives the build up: what it appended is cut (when the store is still where the build
    /// began), and nothing is committed.
    pub fn abandon(self, store: &mut NodeStore) {
        if store.head == self.base {
            store.cut_to_head();
        }
    }
}

/// Appends nodes to a node file, children first.
struct Writer<'a> {
    file: &'a NodeFile,
    out: &'a mut File,
    /// The file's length counting what is buffered.
    len: u64,
    buf: Vec<u8>,
}

impl Writer<'_> {
    /// Writes `node` and whatever below it is not in this file yet; returns its offset.
    fn write(&mut self, node: &Arc<Node>) -> Result<u64, TrieError> {
        match &**node {
            Node::Stub { file, offset, .. } if file.id() == self.file.id() => Ok(*offset),
            Node::Stub { hash, file, offset } => {
                // A subtree of another file (a compaction): copy it node by node.
                let loaded = file.load(*offset, hash)?;
                self.write(&loaded)
            }
            Node::Remote(_) => Err(remote_in_store()),
            Node::Leaf {
                key,
                value,
                hash,
                stored,
            } => {
                if let Some(offset) = stored.offset_in(self.file) {
                    return Ok(offset);
                }
                let (offset, h) = self.leaf(key, value)?;
                hash.get_or_init(|| h);
                stored.set(self.file, offset);
                Ok(offset)
            }
            Node::Branch {
                bit,
                left,
                right,
                hash,
                stored,
            } => {
                if let Some(offset) = stored.offset_in(self.file) {
                    return Ok(offset);
                }
                let l = self.write(left)?;
                let r = self.write(right)?;
                let (offset, h) = self.branch(*bit, (l, left.hash()), (r, right.hash()))?;
                hash.get_or_init(|| h);
                stored.set(self.file, offset);
                Ok(offset)
            }
        }
    }

    /// Appends a leaf; returns its offset and hash (that of its body).
    fn leaf(&mut self, key: &[u8], value: &[u8]) -> Result<(u64, Hash), TrieError> {
        let len = 1 + 4 + key.len() + value.len();
        let offset = self.start(len)?;
        let from = self.buf.len();
        self.buf.push(0u8);
        // INVARIANT: keys are far shorter than 2^32 bytes.
        self.buf
            .extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
        let hash = Hash::of(&[self.buf.get(from..).unwrap_or_default()]);
        self.end(len)?;
        Ok((offset, hash))
    }

    /// Appends a branch over two written children (offset, hash); returns its offset and hash.
    fn branch(
        &mut self,
        bit: u32,
        left: (u64, Hash),
        right: (u64, Hash),
    ) -> Result<(u64, Hash), TrieError> {
        let offset = self.start(BRANCH_BODY)?;
        self.buf.push(1u8);
        self.buf.extend_from_slice(&bit.to_be_bytes());
        self.buf.extend_from_slice(&left.1.0);
        self.buf.extend_from_slice(&left.0.to_be_bytes());
        self.buf.extend_from_slice(&right.1.0);
        self.buf.extend_from_slice(&right.0.to_be_bytes());
        self.end(BRANCH_BODY)?;
        Ok((offset, super::branch_hash(bit, &left.1, &right.1)))
    }

    /// Checks that a body of `len` bytes may be written and appends its length; returns
    /// where the node starts.
    fn start(&mut self, len: usize) -> Result<u64, TrieError> {
        if len > MAX_BODY {
            return Err(store_error(format_args!("a node of {len} bytes")));
        }
        let offset = self.len;
        if offset > OFFSET_MASK {
            return Err(store_error("the node file is full (2^48 bytes)"));
        }
        // INVARIANT: len <= MAX_BODY fits u32.
        self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        Ok(offset)
    }

    /// Counts the node just appended (its `len` bytes of body) and hands full chunks to the
    /// file.
    fn end(&mut self, len: usize) -> Result<(), TrieError> {
        // INVARIANT: the file stays below 2^48 bytes (checked by `start`).
        self.len += 4 + len as u64;
        if self.buf.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TrieError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.out
            .write_all(&self.buf)
            .map_err(io("appending to the node file"))?;
        self.buf.clear();
        Ok(())
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

    fn contents(t: &Trie) -> Vec<(Vec<u8>, Vec<u8>)> {
        t.scan_prefix(&[])
            .unwrap()
            .into_iter()
            .map(|(a, b)| (a.to_vec(), b.to_vec()))
            .collect()
    }

    /// The nodes a trie holds in memory (not stubs).
    fn resident(t: &Trie) -> usize {
        fn count(n: &Node) -> usize {
            match n {
                Node::Stub { .. } | Node::Remote(_) => 0,
                Node::Leaf { .. } => 1,
                Node::Branch { left, right, .. } => 1 + count(left) + count(right),
            }
        }
        t.root.as_deref().map_or(0, count)
    }

    #[test]
    fn memory_stays_within_the_pinned_levels_however_large_the_map() {
        let dir = tempfile::tempdir().unwrap();
        // 16 KiB: a few pinned levels, at most 2^(levels+1) - 1 resident nodes.
        let (mut store, _) = NodeStore::open(dir.path(), 16 << 10).unwrap();
        let levels = pinned_levels(16 << 10);
        assert!((2..6).contains(&levels), "{levels}");
        let most = (1usize << (levels + 1)) - 1;
        let mut t = store.commit(&filled(3000), 1).unwrap();
        assert!(resident(&t) <= most, "{}", resident(&t));
        for round in 0..5u8 {
            for i in (0..3000).step_by(7) {
                t.insert(&k(i), vec![round; 5]).unwrap();
            }
            assert!(
                resident(&t) > most,
                "the block's writes are in memory until committed"
            );
            t = store.commit(&t, 2 + u64::from(round)).unwrap();
            assert!(resident(&t) <= most, "{}", resident(&t));
        }
        for i in 0..3000 {
            let want = if i % 7 == 0 { [4u8; 5] } else { [i as u8; 5] };
            assert_eq!(t.get(&k(i)).unwrap().as_deref(), Some(&want[..]));
        }
    }

    fn filled(n: u32) -> Trie {
        let mut t = Trie::new();
        for i in 0..n {
            t.insert(&k(i), vec![i as u8; 5]).unwrap();
        }
        t
    }

    #[test]
    fn a_committed_trie_reopens_with_the_same_root_records_and_proofs() {
        let dir = tempfile::tempdir().unwrap();
        let t = filled(500);
        let (mut store, nothing) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        assert!(nothing.is_none());
        let stored = store.commit(&t, 9).unwrap();
        let levels = pinned_levels(1 << 20);
        assert!(levels >= 8, "{levels}");
        assert!(resident(&stored) < 1 << (levels + 1));
        assert_eq!(stored.root_hash(), t.root_hash());
        drop((store, stored));
        let (store, committed) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        let committed = committed.unwrap();
        assert_eq!(committed.height, 9);
        let r = committed.trie;
        assert_eq!((r.root_hash(), r.len()), (t.root_hash(), 500));
        assert_eq!(contents(&r), contents(&t));
        for i in (0..500).step_by(37) {
            let p = r.prove(&k(i)).unwrap().unwrap();
            p.verify(&t.root_hash(), &k(i), &[i as u8; 5]).unwrap();
            assert_eq!(p, t.prove(&k(i)).unwrap().unwrap());
        }
        assert_eq!(r.get(&k(1000)).unwrap(), None);
        assert!(store.file().reads().0 > 0, "reads went to the file");
    }

    #[test]
    fn a_commit_writes_only_what_changed_and_snapshots_stay_valid() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        let stored = store.commit(&filled(1000), 1).unwrap();
        let after_first = store.size().file_bytes;
        let mut next = stored.clone();
        next.insert(&k(5), vec![1, 2, 3]).unwrap();
        assert!(next.remove(&k(6)).unwrap());
        let kept = next.clone();
        let stored2 = store.commit(&next, 2).unwrap();
        let grew = store.size().file_bytes - after_first;
        assert!(grew < 2_000, "two paths, not the map: {grew} bytes");
        // Committing the same map again writes nothing.
        let before = store.size().file_bytes;
        store.commit(&kept, 3).unwrap();
        assert_eq!(store.size().file_bytes, before);
        // Every version still reads.
        assert_eq!(stored.get(&k(5)).unwrap().as_deref(), Some(&[5u8; 5][..]));
        assert_eq!(
            stored2.get(&k(5)).unwrap().as_deref(),
            Some(&[1u8, 2, 3][..])
        );
        assert_eq!(stored2.get(&k(6)).unwrap(), None);
        assert_eq!(stored2.root_hash(), kept.root_hash());
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (mut first, _) = NodeStore::open(dir.path(), 1 << 16).unwrap();
        first.commit(&filled(10), 1).unwrap();
        let refused = NodeStore::open(dir.path(), 1 << 16).unwrap_err();
        assert!(refused.to_string().contains("open elsewhere"), "{refused}");
        // Nothing was cut or cleared by the refused open.
        first.commit(&filled(20), 2).unwrap();
        drop(first);
        let (_, c) = NodeStore::open(dir.path(), 1 << 16).unwrap();
        assert_eq!(c.unwrap().trie.root_hash(), filled(20).root_hash());
    }

    #[test]
    fn a_crash_before_head_moves_leaves_the_previous_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        let first = filled(300);
        store.commit(&first, 1).unwrap();
        let head = fs::read(dir.path().join(HEAD_NAME)).unwrap();
        let len = store.size().file_bytes;
        let mut second = first.clone();
        second.insert(&k(9999), vec![9]).unwrap();
        store.commit(&second, 2).unwrap();
        drop(store);
        // As if killed after the nodes were appended, before the new HEAD was renamed in; and
        // with half a node of a third commit after them.
        fs::write(dir.path().join(HEAD_NAME), &head).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(node_file_name(0)))
            .unwrap();
        f.write_all(&[0, 0, 1, 0, 1, 2]).unwrap();
        drop(f);
        let (store, committed) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        let committed = committed.unwrap();
        assert_eq!(committed.height, 1);
        assert_eq!(committed.trie.root_hash(), first.root_hash());
        assert_eq!(contents(&committed.trie), contents(&first));
        assert_eq!(store.size().file_bytes, len, "the torn tail is cut");
        // A torn HEAD is refused, not guessed at.
        fs::write(dir.path().join(HEAD_NAME), &head[..HEAD_LEN - 1]).unwrap();
        assert!(NodeStore::open(dir.path(), 1 << 20).is_err());
    }

    #[test]
    fn an_altered_node_file_gives_errors_never_wrong_records() {
        let dir = tempfile::tempdir().unwrap();
        let t = filled(200);
        let (mut store, _) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        store.commit(&t, 1).unwrap();
        let len = store.size().file_bytes;
        drop(store);
        let path = dir.path().join(node_file_name(0));
        let clean = fs::read(&path).unwrap();
        let mut refused = 0;
        for at in (8..len as usize).step_by(53) {
            let mut bad = clean.clone();
            bad[at] ^= 0x04;
            fs::write(&path, &bad).unwrap();
            let (_, Some(c)) = NodeStore::open(dir.path(), 1 << 20).unwrap() else {
                panic!("flip at {at}: the commit is gone");
            };
            for i in 0..200 {
                match c.trie.get(&k(i)) {
                    Ok(v) => assert_eq!(v.as_deref(), Some(&[i as u8; 5][..]), "flip at {at}"),
                    Err(TrieError::Store(_)) => refused += 1,
                    Err(e) => panic!("flip at {at}: {e}"),
                }
            }
        }
        assert!(refused > 100, "flipped bytes were caught: {refused}");
    }

    #[test]
    fn a_build_streams_into_the_store_and_equals_the_in_memory_build() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            (0..5000).map(|i| (k(i), vec![i as u8; 3])).collect();
        let (mut store, _) = NodeStore::open(dir.path(), 64 << 10).unwrap();
        let built = store
            .build(entries.clone().into_iter().map(Ok), 4, None)
            .unwrap();
        let memory = Trie::from_sorted(entries.clone()).unwrap();
        assert_eq!(built.root_hash(), memory.root_hash());
        assert_eq!(built.len(), 5000);
        assert_eq!(contents(&built), entries, "read back through a small cache");
        assert_eq!(store.size().base_bytes, store.size().file_bytes);
        // The same file as a commit of the map built in memory: the same nodes, in the same
        // order.
        let other = tempfile::tempdir().unwrap();
        let (mut committed, _) = NodeStore::open(other.path(), 64 << 10).unwrap();
        committed.commit(&memory, 4).unwrap();
        let file = |d: &Path| fs::read(d.join(node_file_name(0))).unwrap();
        assert!(
            file(dir.path()) == file(other.path()),
            "the node files differ"
        );
        // Entries out of order, or one a prefix of the next, are refused with nothing
        // committed.
        for bad in [
            vec![(k(2), vec![1]), (k(1), vec![1])],
            vec![(k(2), vec![1]), (k(2), vec![1])],
            vec![(vec![7u8, 0], vec![1]), (vec![7u8, 0, 0], vec![1])],
        ] {
            let again = tempfile::tempdir().unwrap();
            let (mut store, _) = NodeStore::open(again.path(), 64 << 10).unwrap();
            let refused = store.build(bad.into_iter().map(Ok), 1, None);
            assert!(
                matches!(refused, Err(TrieError::OutOfOrder { .. })),
                "{refused:?}"
            );
            assert_eq!(store.height(), 0);
            assert_eq!(store.size().file_bytes, 8);
        }
    }

    #[test]
    fn compaction_keeps_the_map_and_drops_old_versions() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        let mut t = store.commit(&filled(400), 1).unwrap();
        let snapshot = t.clone();
        for round in 0..20u32 {
            for i in 0..400 {
                t.insert(&k(i), vec![round as u8; 5]).unwrap();
            }
            t = store.commit(&t, 2 + u64::from(round)).unwrap();
        }
        let grown = store.size().file_bytes;
        store.compact().unwrap();
        assert!(
            store.size().file_bytes * 10 < grown,
            "{:?} from {grown}",
            store.size()
        );
        // The old file is gone from the directory but a snapshot into it still reads.
        assert_eq!(snapshot.get(&k(3)).unwrap().as_deref(), Some(&[3u8; 5][..]));
        drop(store);
        let (_, c) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        let c = c.unwrap();
        assert_eq!((c.height, c.trie.root_hash()), (21, t.root_hash()));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "HEAD and one node file"
        );
    }

    /// A node file closes — its memory and, once removed, its disk space released — when its
    /// store has moved on and the last trie reading it is dropped, however much of it was
    /// cached: cached branches hold the file through their children's stubs.
    #[test]
    fn a_node_file_closes_with_the_last_trie_after_its_store_moved_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        let mut t = store.commit(&filled(400), 1).unwrap();
        for round in 0..3u8 {
            for i in 0..400 {
                t.insert(&k(i), vec![round; 5]).unwrap();
            }
            t = store.commit(&t, 2 + u64::from(round)).unwrap();
        }
        // Read through the cache: branches and leaves of the file now sit in it.
        for i in 0..400 {
            assert!(t.get(&k(i)).unwrap().is_some());
        }
        assert!(store.file().reads().0 > 0);
        // A compaction moves the store to a new file; the snapshot still reads the old one.
        let old = Arc::downgrade(store.file());
        store.compact().unwrap();
        assert!(
            old.upgrade().is_some(),
            "a snapshot still reads the old file"
        );
        assert_eq!(t.get(&k(7)).unwrap().as_deref(), Some(&[2u8; 5][..]));
        drop(t);
        assert!(
            old.upgrade().is_none(),
            "the old file outlived its last trie"
        );
        // A store closed while a trie of it was read: the file goes with that trie.
        let t = store.committed().unwrap().trie;
        for i in 0..400 {
            assert!(t.get(&k(i)).unwrap().is_some());
        }
        let current = Arc::downgrade(store.file());
        drop(store);
        assert_eq!(t.get(&k(9)).unwrap().as_deref(), Some(&[2u8; 5][..]));
        drop(t);
        assert!(
            current.upgrade().is_none(),
            "a closed store's file outlived its tries"
        );
    }

    #[test]
    fn a_store_that_grew_is_compacted_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        let mut t = store
            .build((0..300).map(|i| Ok((k(i), vec![0u8; 5]))), 1, None)
            .unwrap();
        for round in 0..10u8 {
            for i in 0..300 {
                t.insert(&k(i), vec![round; 5]).unwrap();
            }
            t = store.commit(&t, 2).unwrap();
        }
        assert!(store.size().file_bytes > COMPACT_GROWTH * store.size().base_bytes);
        drop(store);
        let (store, c) = NodeStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.size().file_bytes, store.size().base_bytes);
        assert_eq!(c.unwrap().trie.root_hash(), t.root_hash());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Updates, commits and reopenings in any order read like a map; a reopened store holds
        /// exactly what its last commit wrote, whatever came after it uncommitted.
        #[test]
        fn a_stored_trie_behaves_like_a_btreemap(
            ops in proptest::collection::vec((0u32..80, proptest::option::of(any::<u8>()), 0u8..10), 1..150)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (mut store, _) = NodeStore::open(dir.path(), 4 << 10).unwrap();
            let mut t = Trie::new();
            let mut m: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut committed = (Trie::new().root_hash(), BTreeMap::new());
            for (key, val, action) in ops {
                match val {
                    Some(v) => { t.insert(&k(key), vec![v]).unwrap(); m.insert(k(key), vec![v]); }
                    None => { prop_assert_eq!(t.remove(&k(key)).unwrap(), m.remove(&k(key)).is_some()); }
                }
                match action {
                    0..=2 => {
                        t = store.commit(&t, 1).unwrap();
                        committed = (t.root_hash(), m.clone());
                    }
                    3 => {
                        drop(store);
                        let (s, c) = NodeStore::open(dir.path(), 4 << 10).unwrap();
                        store = s;
                        t = c.map(|c| c.trie).unwrap_or_default();
                        m = committed.1.clone();
                        prop_assert_eq!(t.root_hash(), committed.0);
                    }
                    _ => {}
                }
                prop_assert_eq!(t.len(), m.len());
            }
            let expected: Vec<(Vec<u8>, Vec<u8>)> = m.into_iter().collect();
            prop_assert_eq!(contents(&t), expected);
        }
    }
}
