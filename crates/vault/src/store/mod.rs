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
//!     index.jsonl           sealed: type/id, line, content hash, compartment person, row ids,
//!                           version status
//!     cdm/<table>.parquet   the CDM rows of this batch (Parquet modular encryption)
//! ```
//!
//! **Sources.** A resource is keyed by (source, type, id): its key is `Type/id` in the default
//! namespace (every vault written before sources) and `Type/source|id` for a named source
//! ([`qualify`]; `|` cannot occur in a FHIR id). References resolve within the source of the
//! resource that makes them. A named source's patients are `source|id` wherever the vault names
//! a source `Patient.id` (persons, pseudonyms, export), so `lab-system|123` and `ehr|123` are
//! two persons with two pseudonyms.
//!
//! **Versions and deletes.** Segments are never rewritten: every version ever ingested stays
//! in the segment that brought it, for audit ([`Vault::resource_versions`]). A segment's index
//! says which of its lines are current, older (kept for audit) or deletes; reading the indexes
//! in commit order gives the current version of every live resource. CDM rows follow the
//! current version by *retraction*: each index line lists the CDM rows its version produced
//! (table, first id, count), and a segment that updates or deletes a resource lists the
//! earlier rows it retracts (`hidden` in the manifest: segment, table, ids). The session
//! leaves those rows out when it registers the tables (`session`), so queries, the quality
//! profile and the catalog see the latest state. Rows are hidden per *segment*, because a new
//! version of a Patient or Encounter keeps its `person_id` / `visit_occurrence_id` (and the
//! Patient its pseudonym): the new person row has the same id as the retracted one, in another
//! segment. The retraction commits with the batch (same segment, same manifest rename), so a
//! crash mid-batch still leaves the vault exactly as before.
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
//! * `pipeline` — the ingest's reading and mapping on several threads, in one thread's order.
//! * `finish` — phases 2 and 3: dedup against the vault, reference checks, local ids, CDM rows,
//!   index, commit.

mod batch;
mod finish;
mod identity;
mod index;
mod ingest;
mod manifest;
mod options;
mod pipeline;
mod rekey;
mod remap;
mod resources;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::at_rest::VaultKey;
use crate::error::VaultError;

pub use ingest::{
    COMMIT_EVERY, IngestOptions, IngestReport, InputError, OnError, ingest_order, updatable,
};
pub use manifest::vault_dir;
pub use options::valid_source;
pub use remap::Remapped;

/// One committed ingest of a vault (a segment), as a steward sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Ingest {
    /// The segment's name (`seg-00000001`, in commit order).
    pub name: String,
    /// FHIR resources it stored.
    pub resources: u64,
    /// CDM rows it added, per table.
    pub tables: BTreeMap<String, u64>,
    /// Earlier resource versions it retired (updated or deleted).
    pub retired: u64,
    /// Resources it deleted.
    pub deleted: u64,
    /// Its source system (`None`: the default namespace).
    pub source: Option<String>,
    /// The `_since` of an incremental feed.
    pub since: Option<String>,
}
pub(crate) use manifest::{Manifest, read_manifest, segment_dir};

use crate::fhir::RefTarget;
use identity::PersonMaps;
use index::{Entry, Status};

/// The maps of the ingest's hot path, keyed by resource keys and ids: foldhash, several times
/// cheaper than std's SipHash on keys of this length (a batch looks up several per resource).
/// Not a cryptographic hash, but seeded at random like SipHash, so ids cannot be prepared in
/// advance to collide.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The set of [`FastMap`]'s kind.
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// The id of a resource of `source` in the vault's keys: the id itself in the default
/// namespace, `source|id` otherwise.
pub(crate) fn qualify(source: Option<&str>, id: &str) -> String {
    match source {
        Some(s) => format!("{s}|{id}"),
        None => id.to_string(),
    }
}

/// A reference target with its id qualified by `source` (references resolve within their
/// source).
pub(crate) fn qualify_target(source: Option<&str>, t: RefTarget) -> RefTarget {
    match t {
        RefTarget::AnyType(id) => RefTarget::AnyType(qualify(source, &id)),
        RefTarget::Typed(ty, id) => RefTarget::Typed(ty, qualify(source, &id)),
        RefTarget::Unresolvable => RefTarget::Unresolvable,
    }
}

/// The source of a stored key (`Type/source|id`), `None` for the default namespace.
pub(crate) fn source_of(key: &str) -> Option<&str> {
    let qid = key.split_once('/').map_or(key, |(_, i)| i);
    qid.split_once('|').map(|(s, _)| s)
}

/// The FHIR id of a qualified id (`source|id` → `id`).
pub(crate) fn bare_id(qid: &str) -> &str {
    qid.split_once('|').map_or(qid, |(_, i)| i)
}

/// A hospital's vault, opened for reading or (with the lock) for writing.
pub struct Vault {
    root: PathBuf,
    manifest: Manifest,
    entries: FastMap<String, Entry>,
    /// id -> type, for `urn:uuid:` references.
    by_id: FastMap<String, String>,
    /// Earlier versions of each key (superseded or deleted), oldest first, for audit.
    history: HashMap<String, Vec<Entry>>,
    /// Keys whose latest index line is a delete.
    deleted: std::collections::HashSet<String>,
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
        // Sized once for the live resources, rather than grown (each growth holds the old table
        // and the new one at once); bounded, whatever the manifest says.
        let live = usize::try_from(manifest.live_resources())
            .unwrap_or(0)
            .min(1 << 26);
        let mut v = Vault {
            root,
            manifest,
            entries: FastMap::with_capacity_and_hasher(live, Default::default()),
            by_id: FastMap::with_capacity_and_hasher(live, Default::default()),
            history: HashMap::new(),
            deleted: std::collections::HashSet::new(),
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
                v.apply_line(key, entry);
            })?;
        }
        Ok(v)
    }

    /// Applies one index line, in commit order, to the in-memory index: a current version
    /// replaces the previous one (kept in the history), an older version goes to the history,
    /// a delete retires the current one.
    fn apply_line(&mut self, key: String, entry: Entry) {
        match entry.status {
            Some(Status::Old) => self.history.entry(key).or_default().push(entry),
            Some(Status::Del) => {
                if let Some(prev) = self.entries.remove(&key) {
                    self.history.entry(key.clone()).or_default().push(prev);
                }
                if let Some((t, id)) = key.split_once('/')
                    && self.by_id.get(id).is_some_and(|ty| ty == t)
                {
                    self.by_id.remove(id);
                }
                self.deleted.insert(key);
            }
            None => {
                if let Some((t, id)) = key.split_once('/') {
                    self.by_id.insert(id.to_string(), t.to_string());
                }
                self.deleted.remove(&key);
                if let Some(prev) = self.entries.insert(key.clone(), entry) {
                    self.history.entry(key).or_default().push(prev);
                }
            }
        }
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
                retired: s.retired,
                deleted: s.deleted,
                source: s.source.clone(),
                since: s.since.clone(),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::fhir::BadReason;
    use crate::{IngestOptions, at_rest};
    use serde_json::{Value, json};

    fn key(node: &Path) -> VaultKey {
        VaultKey::unlock_or_create(
            node,
            &medspace_seal::Passphrase::new("test passphrase").unwrap(),
            medspace_seal::KdfParams::INSECURE_FAST,
        )
        .unwrap()
    }

    fn condition(id: &str, code: &str) -> Value {
        json!({"resourceType": "Condition", "id": id, "subject": {"reference": "Patient/p1"},
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]}})
    }

    /// Rewrites a vault as the format before versions wrote it: manifest format 1, index lines
    /// without row lists or visits.
    fn downgrade(node: &Path, key: &VaultKey) {
        let root = vault_dir(node);
        let mut m = read_manifest(&root, key).unwrap();
        m.format = 1;
        manifest::write_manifest(&root, key, &m).unwrap();
        for seg in &m.segments {
            let path = segment_dir(&root, &seg.name).join("index.jsonl");
            let text = String::from_utf8(at_rest::read_sealed(key, &root, &path).unwrap().to_vec())
                .unwrap();
            let mut out = String::new();
            for line in text.lines() {
                let mut v: Value = serde_json::from_str(line).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("c");
                o.remove("v");
                out.push_str(&v.to_string());
                out.push('\n');
            }
            at_rest::write_sealed(key, &root, &path, out.as_bytes()).unwrap();
        }
    }

    /// A vault written before sources and versions opens as the default source: its patients,
    /// pseudonyms and tables are as they were, new resources refer to its resources, and its
    /// clinical resources, whose rows are not known, are refused for update or delete with a
    /// clear reason (reference data still updates).
    #[test]
    fn a_format_1_vault_opens_as_the_default_source() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path();
        let k = key(node);
        let mut v = Vault::open(node, &k).unwrap();
        let first = vec![
            json!({"resourceType": "Patient", "id": "p1", "gender": "female"}),
            json!({"resourceType": "Organization", "id": "o", "name": "A"}),
            condition("c1", "44054006"),
        ];
        v.ingest_values("t", first, &IngestOptions::default())
            .unwrap();
        let persons = v.persons();
        drop(v);
        downgrade(node, &k);
        let mut v = Vault::open(node, &k).unwrap();
        assert_eq!(v.persons(), persons);
        assert_eq!(v.resource_count(), 3);
        let feed = IngestOptions {
            updates: true,
            ..IngestOptions::default()
        };
        let r = v
            .ingest_values("t", vec![condition("c1", "38341003")], &feed)
            .unwrap();
        assert_eq!(r.errors[0].reason, BadReason::NotVersioned);
        assert!(!r.committed);
        let del = json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": "Patient/p1"}}]});
        let r = v
            .ingest_values("t", vec![del], &IngestOptions::default())
            .unwrap();
        assert_eq!(r.errors[0].reason, BadReason::NotVersioned);
        let r = v
            .ingest_values(
                "t",
                vec![
                    condition("c2", "38341003"),
                    json!({"resourceType": "Organization", "id": "o", "name": "B"}),
                ],
                &IngestOptions::default(),
            )
            .unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!((r.stored, r.updated), (1, 1));
        assert_eq!(v.manifest().format, manifest::FORMAT);
        drop(v);
        let ctx = crate::open_session(node, &k).unwrap();
        let rt = crate::runtime().unwrap();
        let b = rt
            .block_on(crate::sql(
                &ctx,
                "select count(*) from condition_occurrence where person_id = 1",
            ))
            .unwrap();
        let n = b[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(n, 2);
    }

    /// An ExplanationOfBenefit stored before versions had no CDM rows then (the cost mapping
    /// came later): its rows are known, none, so it can be updated and deleted, where a
    /// Condition of that time cannot.
    #[test]
    fn a_claim_stored_before_versions_can_be_updated_and_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path();
        let k = key(node);
        let claim = |paid: f64| {
            json!({"resourceType": "ExplanationOfBenefit", "id": "x1", "status": "active",
                   "patient": {"reference": "Patient/p1"},
                   "payment": {"amount": {"value": paid, "currency": "USD"}}})
        };
        let mut v = Vault::open(node, &k).unwrap();
        let first = vec![
            json!({"resourceType": "Patient", "id": "p1", "gender": "female"}),
            claim(10.0),
        ];
        v.ingest_values("t", first, &IngestOptions::default())
            .unwrap();
        drop(v);
        downgrade(node, &k);
        let mut v = Vault::open(node, &k).unwrap();
        let feed = IngestOptions {
            updates: true,
            ..IngestOptions::default()
        };
        let r = v.ingest_values("t", vec![claim(20.0)], &feed).unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.updated, 1);
        let r = v
            .ingest_values("t", vec![claim(30.0)], &IngestOptions::default())
            .unwrap();
        assert_eq!(
            r.errors[0].reason,
            BadReason::Conflict,
            "outside an update feed, as any type with rows"
        );
        let del = json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": "ExplanationOfBenefit/x1"}}]});
        let r = v
            .ingest_values("t", vec![del], &IngestOptions::default())
            .unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.deleted, 1);
    }
}
