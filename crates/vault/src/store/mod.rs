//! The vault on disk, its index, and the atomic ingest of a batch.
//!
//! Layout under `<node>/vault/`:
//! ```text
//! LOCK                      exclusive file lock of the one writer
//! vault.key                 the data key and the pseudonym key, sealed under the passphrase
//! key.check                 sealed: tells a wrong key from a damaged vault
//! manifest.json             sealed: the committed state, list of segments, id counters
//! segments/seg-NNNNNNNN/    one per committed batch
//!     resources.ndjson.zst  sealed: the original resources (canonical JSON, zstd)
//!     index.jsonl           sealed: type/id, line, content hash, compartment person, row id
//!     cdm/<table>.parquet   the CDM rows of this batch (Parquet modular encryption)
//! ```
//! Every file but `LOCK` and `vault.key` is encrypted under keys derived from the data key
//! (see [`crate::at_rest`]); "sealed" is a [`medspace_seal::stream`] file bound to its path.
//! A batch is written into a fresh segment directory and becomes visible only when the new
//! `manifest.json` replaces the old one with one atomic `rename`. A crash before that leaves an
//! orphan directory that is not in the manifest: readers never see it and the next writer deletes
//! it. So a crash mid-batch leaves the vault exactly as it was before the batch.
//!
//! Module map:
//! * this file — [`Vault`]: opening (lock, key, index, orphan cleanup) and counts.
//! * `manifest` — the committed state, segment directories, the crash-safe commit, orphan
//!   cleanup.
//! * `index` — a segment's `index.jsonl` (where each resource lives, its hash and local ids).
//! * `resources` — the original resources: streaming a segment, loading by key, a patient's
//!   compartment.
//! * `identity` — the per-vault key, pseudonyms, person_id ↔ Patient.id ↔ pseudonym.
//! * `ingest` — options, report and the two entry points of an ingest.
//! * `batch` — phase 1: check, deduplicate and append each resource to the new segment.
//! * `finish` — phases 2 and 3: dedup against the vault, reference checks, local ids, CDM rows,
//!   index, commit.

mod batch;
mod finish;
mod identity;
mod index;
mod ingest;
mod manifest;
mod options;
mod rekey;
mod resources;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::at_rest::VaultKey;
use crate::error::VaultError;

pub use ingest::{IngestOptions, IngestReport, InputError, OnError, updatable};
pub use manifest::vault_dir;

/// One committed ingest of a vault (a segment), as a steward sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Ingest {
    /// The segment's name (`seg-00000001`, in commit order).
    pub name: String,
    /// FHIR resources it stored.
    pub resources: u64,
    /// CDM rows it added, per table.
    pub tables: BTreeMap<String, u64>,
}
pub(crate) use manifest::{Manifest, read_manifest, segment_dir};

use identity::PersonMaps;
use index::Entry;

/// A hospital's vault, opened for reading or (with the lock) for writing.
pub struct Vault {
    root: PathBuf,
    manifest: Manifest,
    entries: HashMap<String, Entry>,
    /// id -> type, for `urn:uuid:` references.
    by_id: HashMap<String, String>,
    key: VaultKey,
    _lock: Option<File>,
    /// pseudonym -> person_id and person_id -> Patient.id, built on first use.
    persons_cache: std::sync::OnceLock<PersonMaps>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("root", &self.root)
            .field("segments", &self.manifest.segments.len())
            .field("resources", &self.entries.len())
            .finish()
    }
}

impl Vault {
    /// Opens the vault of a node for writing, with its keys (see [`VaultKey::unlock`] and
    /// [`VaultKey::create`]). Takes the exclusive lock, checks the keys against the vault, and
    /// removes leftovers of an interrupted batch or re-encryption.
    pub fn open(node_dir: &Path, key: &VaultKey) -> Result<Vault, VaultError> {
        let root = vault_dir(node_dir);
        rekey::recover(node_dir)?;
        key.check(&root)?;
        fs::create_dir_all(root.join("segments")).map_err(VaultError::io(&root))?;
        let lock = Vault::lock(&root)?;
        rekey::remove_leftovers(node_dir)?;
        let mut v = Vault::load(root, key.clone())?;
        v._lock = Some(lock);
        v.remove_orphans()?;
        Ok(v)
    }

    /// Takes the exclusive writer's lock of the vault at `root`.
    fn lock(root: &Path) -> Result<File, VaultError> {
        let lock_path = root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(VaultError::io(&lock_path))?;
        lock.try_lock()
            .map_err(|_| VaultError::Locked(lock_path.clone()))?;
        Ok(lock)
    }

    /// Opens an existing vault read-only with its keys (no lock; sees the last committed
    /// state). A vault with no committed batch reads as empty.
    pub fn open_read_only(node_dir: &Path, key: &VaultKey) -> Result<Vault, VaultError> {
        let root = vault_dir(node_dir);
        key.check(&root)?;
        Vault::load(root, key.clone())
    }

    /// Reads the manifest and the index of every committed segment.
    fn load(root: PathBuf, key: VaultKey) -> Result<Vault, VaultError> {
        let manifest = read_manifest(&root, &key)?;
        let mut v = Vault {
            root,
            manifest,
            entries: HashMap::new(),
            by_id: HashMap::new(),
            key,
            _lock: None,
            persons_cache: std::sync::OnceLock::new(),
        };
        let segments: Vec<String> = v.manifest.segments.iter().map(|s| s.name.clone()).collect();
        let (key, root) = (v.key.clone(), v.root.clone());
        for (i, name) in segments.iter().enumerate() {
            let path = v.segment_dir(name).join("index.jsonl");
            let seg = u32::try_from(i).unwrap_or(u32::MAX);
            index::read_index(&key, &root, &path, seg, &mut |key, entry| {
                if let Some((t, id)) = key.split_once('/') {
                    v.by_id.insert(id.to_string(), t.to_string());
                }
                v.entries.insert(key, entry);
            })?;
        }
        Ok(v)
    }

    /// The vault directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn segment_dir(&self, name: &str) -> PathBuf {
        segment_dir(&self.root, name)
    }

    pub(crate) fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Every committed ingest, oldest first: its resources and the CDM rows it added per table.
    pub fn ingests(&self) -> Vec<Ingest> {
        self.manifest
            .segments
            .iter()
            .map(|s| Ingest {
                name: s.name.clone(),
                resources: s.resources,
                tables: s.tables.clone(),
            })
            .collect()
    }

    /// Number of stored resources.
    pub fn resource_count(&self) -> usize {
        self.entries.len()
    }

    /// Stored resources per type.
    pub fn counts_by_type(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for k in self.entries.keys() {
            if let Some((t, _)) = k.split_once('/') {
                *out.entry(t.to_string()).or_insert(0) += 1;
            }
        }
        out
    }
}
