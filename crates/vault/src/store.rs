//! The vault on disk, its index, and the atomic ingest of a batch.
//!
//! Layout under `<node>/vault/`:
//! ```text
//! LOCK                      exclusive file lock of the one writer
//! secret.key                32 random bytes: the per-vault pseudonym key (never leaves the node)
//! manifest.json             the committed state: list of segments, id counters
//! segments/seg-NNNNNNNN/    one per committed batch
//!     resources.ndjson.zst  the original resources (canonical JSON, zstd)
//!     index.jsonl           type/id, line, content hash, compartment person, local row id
//!     cdm/<table>.parquet   the CDM rows of this batch
//! ```
//! A batch is written into a fresh segment directory and becomes visible only when the new
//! `manifest.json` replaces the old one with one atomic `rename`. A crash before that leaves an
//! orphan directory that is not in the manifest: readers never see it and the next writer deletes
//! it. So a crash mid-batch leaves the vault exactly as it was before the batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hmac::{KeyInit, Mac};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cdm::{self, CdmWriter, Counters, Resolve};
use crate::error::VaultError;
use crate::fhir::{self, BadReason, Position, RefTarget};
use crate::vocab::Vocabulary;

const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;

/// The committed state of a vault.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    pub generation: u64,
    pub segments: Vec<SegmentInfo>,
    /// Next local id per table (`person`, `visit_occurrence`, row tables).
    pub counters: Counters,
}

/// One committed batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SegmentInfo {
    pub name: String,
    pub resources: u64,
    /// Tables with a Parquet file in this segment, and their row counts.
    pub tables: BTreeMap<String, u64>,
}

/// One stored resource in the index file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct IndexLine {
    /// `Type/id`.
    k: String,
    /// Line in the segment's resources file.
    l: u32,
    /// First 16 bytes of the SHA-256 of the canonical JSON, hex.
    h: String,
    /// person_id of the patient compartment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<i64>,
    /// Local row id: person_id of a Patient, visit_occurrence_id of an Encounter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<i64>,
}

/// Where a stored resource lives.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub seg: u32,
    pub line: u32,
    pub hash: [u8; 16],
    pub person: Option<i64>,
    pub row: Option<i64>,
}

/// What to do with a bad resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Skip the bad resource, store the rest.
    #[default]
    Skip,
    /// Refuse the whole batch: nothing is stored.
    Refuse,
}

/// Options of one ingest.
#[derive(Clone, Debug, Default)]
pub struct IngestOptions {
    /// Skip bad resources or refuse the batch.
    pub on_error: OnError,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Vocabulary for concept ids (`None`: every concept id is 0).
    pub vocabulary: Option<Arc<Vocabulary>>,
    /// Test hook: abort like a crash after this many resources were written to the new
    /// segment (nothing is cleaned up, nothing committed).
    #[doc(hidden)]
    pub fail_after: Option<u64>,
}

/// One rejected input item.
#[derive(Clone, Debug, Serialize)]
pub struct InputError {
    /// The file.
    pub file: PathBuf,
    /// Where in it.
    pub position: Position,
    /// Why.
    pub reason: BadReason,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.position,
            self.reason
        )
    }
}

/// The outcome of one ingest.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestReport {
    /// Resources (or unreadable items) read from the input.
    pub read: u64,
    /// New resources stored.
    pub stored: u64,
    /// Resources already in the vault (or repeated in the batch) with the same content.
    pub unchanged: u64,
    /// Stored resources replaced by a changed version (only types without CDM rows, such as
    /// Organization or Practitioner, may change; see [`updatable`]).
    pub updated: u64,
    /// Bad resources skipped (`--on-error skip`).
    pub skipped: u64,
    /// Resources not stored because the batch was refused (`--on-error refuse`).
    pub refused: u64,
    /// Whether a new segment was committed.
    pub committed: bool,
    /// Each problem, with file, position and reason.
    pub errors: Vec<InputError>,
    /// Stored resources per type.
    pub stored_by_type: BTreeMap<String, u64>,
    /// Rows added per CDM table.
    pub rows_by_table: BTreeMap<String, u64>,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl IngestReport {
    /// `read=.. stored=.. unchanged=.. skipped=.. refused=..`.
    pub fn summary_line(&self) -> String {
        format!(
            "read={} stored={} updated={} unchanged={} skipped={} refused={} committed={}",
            self.read,
            self.stored,
            self.updated,
            self.unchanged,
            self.skipped,
            self.refused,
            self.committed
        )
    }
}

/// Callback over the lines of a segment's resources file: (line number, bytes).
pub(crate) type LineFn<'a> = dyn FnMut(u32, &[u8]) -> Result<(), VaultError> + 'a;

/// Whether a stored resource of this type may be replaced by a changed version. Types that feed
/// CDM rows may not (their rows would have to be retracted); reference data such as
/// Organization, Practitioner or Location may (Synthea ships updated copies of them).
pub fn updatable(resource_type: &str) -> bool {
    !matches!(
        resource_type,
        "Patient"
            | "Encounter"
            | "Condition"
            | "Observation"
            | "MedicationRequest"
            | "MedicationStatement"
            | "MedicationAdministration"
            | "Immunization"
            | "Procedure"
            | "AllergyIntolerance"
    )
}

/// A hospital's vault, opened for reading or (with the lock) for writing.
pub struct Vault {
    root: PathBuf,
    manifest: Manifest,
    entries: HashMap<String, Entry>,
    /// id -> type, for `urn:uuid:` references.
    by_id: HashMap<String, String>,
    key: [u8; 32],
    _lock: Option<File>,
    /// pseudonym -> person_id and person_id -> Patient.id, built on first use.
    persons_cache: std::sync::OnceLock<PersonMaps>,
}

#[derive(Default)]
struct PersonMaps {
    by_pseudonym: HashMap<String, i64>,
    by_person: HashMap<i64, String>,
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

fn hex16(h: &[u8; 16]) -> String {
    hex::encode(h)
}

fn sync_dir(path: &Path) -> Result<(), VaultError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(VaultError::io(path))
}

/// `<node>/vault`.
pub fn vault_dir(node_dir: &Path) -> PathBuf {
    node_dir.join("vault")
}

impl Vault {
    /// Opens (creating if needed) the vault of a node for writing. Takes the exclusive lock and
    /// removes leftovers of an interrupted batch.
    pub fn open(node_dir: &Path) -> Result<Vault, VaultError> {
        let root = vault_dir(node_dir);
        fs::create_dir_all(root.join("segments")).map_err(VaultError::io(&root))?;
        let lock_path = root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(VaultError::io(&lock_path))?;
        lock.try_lock()
            .map_err(|_| VaultError::Locked(lock_path.clone()))?;
        let key = load_or_create_key(&root)?;
        let mut v = Vault::load(root, key)?;
        v._lock = Some(lock);
        v.remove_orphans()?;
        Ok(v)
    }

    /// Opens an existing vault read-only (no lock; sees the last committed state). A node
    /// without a vault reads as empty.
    pub fn open_read_only(node_dir: &Path) -> Result<Vault, VaultError> {
        let root = vault_dir(node_dir);
        let key_path = root.join("secret.key");
        let key = match fs::read(&key_path) {
            Ok(bytes) => {
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| VaultError::Corrupt {
                    path: key_path.clone(),
                    reason: "key is not 32 bytes".into(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => [0u8; 32],
            Err(e) => {
                return Err(VaultError::Io {
                    path: key_path,
                    source: e,
                });
            }
        };
        Vault::load(root, key)
    }

    fn load(root: PathBuf, key: [u8; 32]) -> Result<Vault, VaultError> {
        let manifest = read_manifest(&root)?;
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
        for (i, name) in segments.iter().enumerate() {
            let path = v.segment_dir(name).join("index.jsonl");
            let file = File::open(&path).map_err(VaultError::io(&path))?;
            for line in BufReader::new(file).lines() {
                let line = line.map_err(VaultError::io(&path))?;
                let il: IndexLine =
                    serde_json::from_str(&line).map_err(|e| VaultError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                let mut hash = [0u8; 16];
                hex::decode_to_slice(&il.h, &mut hash).map_err(|e| VaultError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                if let Some((t, id)) = il.k.split_once('/') {
                    v.by_id.insert(id.to_string(), t.to_string());
                }
                v.entries.insert(
                    il.k,
                    Entry {
                        seg: u32::try_from(i).unwrap_or(u32::MAX),
                        line: il.l,
                        hash,
                        person: il.p,
                        row: il.r,
                    },
                );
            }
        }
        Ok(v)
    }

    fn remove_orphans(&self) -> Result<(), VaultError> {
        let dir = self.root.join("segments");
        let live: HashSet<&str> = self
            .manifest
            .segments
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        for ent in fs::read_dir(&dir).map_err(VaultError::io(&dir))? {
            let ent = ent.map_err(VaultError::io(&dir))?;
            let name = ent.file_name().to_string_lossy().to_string();
            if !live.contains(name.as_str()) {
                tracing::warn!(segment = %name, "vault.segment.remove_orphan");
                fs::remove_dir_all(ent.path()).map_err(VaultError::io(ent.path()))?;
            }
        }
        let tmp = self.root.join("manifest.json.tmp");
        if tmp.exists() {
            fs::remove_file(&tmp).map_err(VaultError::io(&tmp))?;
        }
        Ok(())
    }

    /// The vault directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn segment_dir(&self, name: &str) -> PathBuf {
        self.root.join("segments").join(name)
    }

    pub(crate) fn manifest(&self) -> &Manifest {
        &self.manifest
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

    /// The ledger pseudonym of a source `Patient.id`: HMAC-SHA256 with the vault's secret key,
    /// first 16 bytes in hex. Stable for the life of the vault; unlinkable without the key.
    pub fn pseudonym(&self, patient_id: &str) -> String {
        pseudonym_with(&self.key, patient_id)
    }

    /// person_id of a source `Patient.id`.
    pub fn person_id_for_patient_id(&self, patient_id: &str) -> Option<i64> {
        self.entries
            .get(&format!("Patient/{patient_id}"))
            .and_then(|e| e.row)
    }

    /// All patients: (person_id, source Patient.id, pseudonym), by person_id.
    pub fn persons(&self) -> Vec<(i64, String, String)> {
        let mut out: Vec<(i64, String, String)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| {
                let id = k.strip_prefix("Patient/")?;
                Some((e.row?, id.to_string(), self.pseudonym(id)))
            })
            .collect();
        out.sort();
        out
    }

    /// person_id of a ledger pseudonym.
    pub fn person_id_for_pseudonym(&self, pseudonym: &str) -> Option<i64> {
        self.person_maps().by_pseudonym.get(pseudonym).copied()
    }

    fn person_maps(&self) -> &PersonMaps {
        self.persons_cache.get_or_init(|| {
            let mut m = PersonMaps::default();
            for (k, e) in &self.entries {
                if let (Some(id), Some(row)) = (k.strip_prefix("Patient/"), e.row) {
                    m.by_pseudonym.insert(self.pseudonym(id), row);
                    m.by_person.insert(row, id.to_string());
                }
            }
            m
        })
    }

    /// The ledger pseudonym of a person_id.
    pub fn pseudonym_for_person_id(&self, person_id: i64) -> Option<String> {
        self.patient_id_for_person_id(person_id)
            .map(|id| self.pseudonym(&id))
    }

    /// The source `Patient.id` of a person_id.
    pub fn patient_id_for_person_id(&self, person_id: i64) -> Option<String> {
        self.person_maps().by_person.get(&person_id).cloned()
    }

    /// Resolves a patient given as person_id, source Patient.id or pseudonym.
    pub fn resolve_patient(&self, id: &str) -> Option<i64> {
        if let Some(p) = self.person_id_for_patient_id(id) {
            return Some(p);
        }
        if let Ok(n) = id.parse::<i64>()
            && self.patient_id_for_person_id(n).is_some()
        {
            return Some(n);
        }
        self.person_id_for_pseudonym(id)
    }

    /// The `Type/id` keys of a patient's stored resources (the Patient and everything in its
    /// compartment), sorted.
    pub fn patient_resource_keys(&self, person_id: i64) -> Vec<String> {
        let mut keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(k, e)| {
                e.person == Some(person_id)
                    || (k.starts_with("Patient/") && e.row == Some(person_id))
            })
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// A patient's stored original resources (its compartment, Patient first), as ingested.
    pub fn patient_resources(&self, person_id: i64) -> Result<Vec<Value>, VaultError> {
        let mut keys = self.patient_resource_keys(person_id);
        keys.sort_by_key(|k| (!k.starts_with("Patient/"), k.clone()));
        Ok(self
            .load_resources(&keys)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Resolves a reference target to a stored `Type/id` key.
    pub(crate) fn resolve_key(&self, t: &RefTarget) -> Option<String> {
        match t {
            RefTarget::AnyType(id) => self.by_id.get(id).map(|ty| format!("{ty}/{id}")),
            RefTarget::Typed(ty, id) => {
                let k = format!("{ty}/{id}");
                self.entries.contains_key(&k).then_some(k)
            }
            RefTarget::Unresolvable => None,
        }
    }

    /// Loads stored resources by `Type/id` key (in the order given; unknown keys are left out).
    pub fn load_resources(&self, keys: &[String]) -> Result<Vec<(String, Value)>, VaultError> {
        // Group wanted lines per segment, then stream each segment once.
        let mut wanted: BTreeMap<u32, HashMap<u32, usize>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            if let Some(e) = self.entries.get(k) {
                wanted.entry(e.seg).or_default().insert(e.line, i);
            }
        }
        let mut slots: Vec<Option<Value>> = keys.iter().map(|_| None).collect();
        for (seg, lines) in wanted {
            let Some(info) = self.manifest.segments.get(seg as usize) else {
                continue;
            };
            let path = self.segment_dir(&info.name).join("resources.ndjson.zst");
            self.scan_segment(&path, &mut |line, bytes| {
                if let Some(&slot) = lines.get(&line) {
                    let v: Value =
                        serde_json::from_slice(bytes).map_err(|e| VaultError::Corrupt {
                            path: path.clone(),
                            reason: e.to_string(),
                        })?;
                    if let Some(s) = slots.get_mut(slot) {
                        *s = Some(v);
                    }
                }
                Ok(())
            })?;
        }
        Ok(keys
            .iter()
            .cloned()
            .zip(slots)
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    /// Calls `f(line, bytes)` for every line of a segment's resources file.
    pub(crate) fn scan_segment(&self, path: &Path, f: &mut LineFn<'_>) -> Result<(), VaultError> {
        let file = File::open(path).map_err(VaultError::io(path))?;
        let dec = zstd::Decoder::new(file).map_err(VaultError::io(path))?;
        let mut reader = BufReader::with_capacity(1 << 20, dec);
        let mut buf = Vec::with_capacity(8192);
        let mut line = 0u32;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(VaultError::io(path))?;
            if n == 0 {
                break;
            }
            f(line, &buf)?;
            line += 1;
        }
        Ok(())
    }

    /// Every stored resource key with its segment position, for full scans.
    pub(crate) fn live_lines(&self) -> Vec<(u32, HashMap<u32, String>)> {
        let mut per: BTreeMap<u32, HashMap<u32, String>> = BTreeMap::new();
        for (k, e) in &self.entries {
            per.entry(e.seg).or_default().insert(e.line, k.clone());
        }
        per.into_iter().collect()
    }

    /// Ingests FHIR files and folders (Bundle JSON, NDJSON) as one atomic batch.
    pub fn ingest_paths(
        &mut self,
        paths: &[PathBuf],
        opts: &IngestOptions,
    ) -> Result<IngestReport, VaultError> {
        let mut files = Vec::new();
        for p in paths {
            collect_files(p, &mut files)?;
        }
        let mut batch = Batch::start(self, opts)?;
        for file in &files {
            let file_idx = batch.files.len();
            batch.files.push(file.clone());
            fhir::read_file(file, &mut |pos, item| batch.admit(file_idx, pos, item))?;
        }
        batch.finish(self)
    }

    /// Ingests resources held in memory (e.g. from the generator) as one atomic batch; `source`
    /// names them in error reports.
    pub fn ingest_values(
        &mut self,
        source: &str,
        resources: impl IntoIterator<Item = Value>,
        opts: &IngestOptions,
    ) -> Result<IngestReport, VaultError> {
        let mut batch = Batch::start(self, opts)?;
        batch.files.push(PathBuf::from(source));
        for (i, r) in resources.into_iter().enumerate() {
            batch.admit(0, Position::Entry(i as u64), Ok(r))?;
        }
        batch.finish(self)
    }

    fn commit(&mut self, info: SegmentInfo, counters: Counters) -> Result<(), VaultError> {
        let mut m = self.manifest.clone();
        m.format = FORMAT;
        m.generation += 1;
        m.segments.push(info);
        m.counters = counters;
        write_manifest(&self.root, &m)?;
        self.manifest = m;
        Ok(())
    }

    /// Writes rows straight into the CDM tables as one committed segment without original
    /// resources. Only for benchmarks that need millions of persons quickly.
    #[doc(hidden)]
    pub fn bench_commit_cdm(
        &mut self,
        fill: &mut dyn FnMut(&mut crate::BenchRows<'_>) -> Result<(), VaultError>,
    ) -> Result<(), VaultError> {
        let name = format!("seg-{:08}", self.manifest.generation + 1);
        let dir = self.segment_dir(&name);
        fs::create_dir_all(&dir).map_err(VaultError::io(&dir))?;
        let mut writer = CdmWriter::new(&dir.join("cdm"))?;
        let mut counters = self.manifest.counters.clone();
        fill(&mut crate::BenchRows {
            writer: &mut writer,
            counters: &mut counters,
        })?;
        let counts = writer.counts.clone();
        writer.finish()?;
        File::create(dir.join("index.jsonl")).map_err(VaultError::io(&dir))?;
        zstd::Encoder::new(
            File::create(dir.join("resources.ndjson.zst")).map_err(VaultError::io(&dir))?,
            1,
        )
        .and_then(|e| e.finish())
        .map_err(VaultError::io(&dir))?;
        self.commit(
            SegmentInfo {
                name,
                resources: 0,
                tables: counts,
            },
            counters,
        )
    }
}

pub(crate) fn pseudonym_with(key: &[u8; 32], patient_id: &str) -> String {
    let mut mac = match hmac::Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this branch cannot be taken with a 32-byte key.
        Err(_) => return String::new(),
    };
    mac.update(b"medspace-pseudonym-v1|");
    mac.update(patient_id.as_bytes());
    let out = mac.finalize().into_bytes();
    hex::encode(out.get(..16).unwrap_or(&[]))
}

fn load_or_create_key(root: &Path) -> Result<[u8; 32], VaultError> {
    let path = root.join("secret.key");
    match fs::read(&path) {
        Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| VaultError::Corrupt {
            path: path.clone(),
            reason: "key is not 32 bytes".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let tmp = root.join("secret.key.tmp");
            {
                let mut opts = OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(&tmp).map_err(VaultError::io(&tmp))?;
                f.write_all(&key).map_err(VaultError::io(&tmp))?;
                f.sync_all().map_err(VaultError::io(&tmp))?;
            }
            fs::rename(&tmp, &path).map_err(VaultError::io(&path))?;
            sync_dir(root)?;
            Ok(key)
        }
        Err(e) => Err(VaultError::Io { path, source: e }),
    }
}

pub(crate) fn read_manifest(root: &Path) -> Result<Manifest, VaultError> {
    let path = root.join(MANIFEST);
    match fs::read(&path) {
        Ok(bytes) => {
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| VaultError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if m.format != FORMAT {
                return Err(VaultError::Corrupt {
                    path,
                    reason: format!("format={} expected={FORMAT}", m.format),
                });
            }
            Ok(m)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
            format: FORMAT,
            ..Manifest::default()
        }),
        Err(e) => Err(VaultError::Io { path, source: e }),
    }
}

fn write_manifest(root: &Path, m: &Manifest) -> Result<(), VaultError> {
    let tmp = root.join("manifest.json.tmp");
    let bytes = serde_json::to_vec_pretty(m).map_err(|e| VaultError::Corrupt {
        path: tmp.clone(),
        reason: e.to_string(),
    })?;
    {
        let mut f = File::create(&tmp).map_err(VaultError::io(&tmp))?;
        f.write_all(&bytes).map_err(VaultError::io(&tmp))?;
        f.sync_all().map_err(VaultError::io(&tmp))?;
    }
    let path = root.join(MANIFEST);
    fs::rename(&tmp, &path).map_err(VaultError::io(&path))?;
    sync_dir(root)
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), VaultError> {
    let meta = fs::metadata(p).map_err(VaultError::io(p))?;
    if meta.is_dir() {
        let mut children: Vec<PathBuf> = fs::read_dir(p)
            .map_err(VaultError::io(p))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        children.sort();
        for c in children {
            let name = c.to_string_lossy();
            if c.is_dir()
                || name.ends_with(".json")
                || name.ends_with(".ndjson")
                || name.ends_with(".jsonl")
            {
                collect_files(&c, out)?;
            }
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// A resource admitted to the batch (before reference checks).
struct Pending {
    key: String,
    line: u32,
    hash: [u8; 16],
    file: u32,
    pos: Position,
    /// References not (yet) resolvable inside the batch when the resource was read: checked
    /// against the whole batch and the vault at the end.
    forward: Vec<(String, RefTarget)>,
    /// Batch resources this one refers to that were already read (compact: no strings).
    deps: Vec<u32>,
    compartment: Option<RefTarget>,
    dead: bool,
    /// Rejected (an error was reported): resources referring to it dangle.
    bad: bool,
}

/// One batch being written into a new segment.
struct Batch<'o> {
    opts: &'o IngestOptions,
    name: String,
    dir: PathBuf,
    files: Vec<PathBuf>,
    out: Option<zstd::Encoder<'static, BufWriter<File>>>,
    pending: Vec<Pending>,
    by_key: HashMap<String, usize>,
    by_id: HashMap<String, String>,
    report: IngestReport,
    started: Instant,
    bar: ProgressBar,
}

impl<'o> Batch<'o> {
    fn start(vault: &Vault, opts: &'o IngestOptions) -> Result<Batch<'o>, VaultError> {
        let name = format!("seg-{:08}", vault.manifest.generation + 1);
        let dir = vault.segment_dir(&name);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(VaultError::io(&dir))?;
        }
        fs::create_dir_all(&dir).map_err(VaultError::io(&dir))?;
        let path = dir.join("resources.ndjson.zst");
        let file = File::create(&path).map_err(VaultError::io(&path))?;
        let enc = zstd::Encoder::new(BufWriter::with_capacity(1 << 20, file), 1)
            .map_err(VaultError::io(&path))?;
        let bar = if opts.progress {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} {pos} resources ({per_sec}) {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_message("reading");
            b
        } else {
            ProgressBar::hidden()
        };
        Ok(Batch {
            opts,
            name,
            dir,
            files: Vec::new(),
            out: Some(enc),
            pending: Vec::new(),
            by_key: HashMap::new(),
            by_id: HashMap::new(),
            report: IngestReport::default(),
            started: Instant::now(),
            bar,
        })
    }

    fn error(&mut self, file: usize, pos: Position, reason: BadReason) {
        let file = self.files.get(file).cloned().unwrap_or_default();
        tracing::debug!(file = %file.display(), position = %pos, reason = %reason, "vault.ingest.reject");
        self.report.errors.push(InputError {
            file,
            position: pos,
            reason,
        });
    }

    /// Phase 1: check one resource, deduplicate, append it to the new segment.
    fn admit(&mut self, file: usize, pos: Position, item: fhir::Item) -> Result<(), VaultError> {
        self.report.read += 1;
        self.bar.inc(1);
        let v = match item {
            Ok(v) => v,
            Err(reason) => {
                self.error(file, pos, reason);
                return Ok(());
            }
        };
        let (rtype, id) = match fhir::check_resource(&v) {
            Ok((t, i)) => (t.to_string(), i.to_string()),
            Err(reason) => {
                self.error(file, pos, reason);
                return Ok(());
            }
        };
        let key = format!("{rtype}/{id}");
        // serde_json's Map is ordered by key: this is a canonical form for hashing and storage.
        let bytes = serde_json::to_vec(&v).map_err(|e| VaultError::Corrupt {
            path: self.dir.clone(),
            reason: e.to_string(),
        })?;
        let digest = Sha256::digest(&bytes);
        let mut hash = [0u8; 16];
        hash.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
        let existing = self
            .by_key
            .get(&key)
            .and_then(|i| self.pending.get(*i))
            .map(|p| p.hash);
        // Resolution of this check against the vault happens in `finish` (it needs the vault).
        if let Some(h) = existing {
            if h == hash {
                self.report.unchanged += 1;
                return Ok(());
            }
            if !updatable(&rtype) {
                self.error(file, pos, BadReason::Conflict);
                return Ok(());
            }
            // A later version in the same batch replaces the earlier one.
            if let Some(old) = self.by_key.get(&key).and_then(|i| self.pending.get_mut(*i)) {
                old.dead = true;
            }
            self.report.updated += 1;
        }
        let line = u32::try_from(self.pending.len()).unwrap_or(u32::MAX);
        if let Some(out) = self.out.as_mut() {
            out.write_all(&bytes)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(VaultError::io(&self.dir))?;
        }
        let mut forward = Vec::new();
        let mut deps = Vec::new();
        for (field, t) in fhir::references(&v) {
            let local = match &t {
                RefTarget::AnyType(id) => self.by_id.get(id).map(|ty| format!("{ty}/{id}")),
                RefTarget::Typed(ty, id) => Some(format!("{ty}/{id}")),
                RefTarget::Unresolvable => None,
            };
            match local.and_then(|k| self.by_key.get(&k)) {
                Some(i) => deps.push(u32::try_from(*i).unwrap_or(u32::MAX)),
                None => forward.push((field, t)),
            }
        }
        let compartment = if rtype == "Patient" {
            None
        } else {
            fhir::compartment_ref(&v)
        };
        self.by_id.insert(id, rtype);
        self.by_key.insert(key.clone(), self.pending.len());
        self.pending.push(Pending {
            key,
            line,
            hash,
            file: u32::try_from(file).unwrap_or(u32::MAX),
            pos,
            forward,
            deps,
            compartment,
            dead: false,
            bad: false,
        });
        Ok(())
    }

    fn resolve_batch(&self, vault: &Vault, t: &RefTarget) -> Option<String> {
        let local = match t {
            RefTarget::AnyType(id) => self.by_id.get(id).map(|ty| format!("{ty}/{id}")),
            RefTarget::Typed(ty, id) => {
                Some(format!("{ty}/{id}")).filter(|k| self.by_key.contains_key(k))
            }
            RefTarget::Unresolvable => None,
        };
        match local {
            Some(k)
                if self
                    .by_key
                    .get(&k)
                    .and_then(|i| self.pending.get(*i))
                    .is_some_and(|p| !p.dead) =>
            {
                Some(k)
            }
            _ => vault.resolve_key(t),
        }
    }

    /// Phases 2 and 3: reference checks, ids, CDM rows, commit.
    fn finish(mut self, vault: &mut Vault) -> Result<IngestReport, VaultError> {
        if let Some(out) = self.out.take() {
            let w = out.finish().map_err(VaultError::io(&self.dir))?;
            let f = w
                .into_inner()
                .map_err(|e| VaultError::io(&self.dir)(e.into_error()))?;
            f.sync_all().map_err(VaultError::io(&self.dir))?;
        }
        // Deduplicate against the vault: same content -> unchanged, other content -> conflict
        // (or a new version for updatable types).
        let mut vault_updates = 0u64;
        for i in 0..self.pending.len() {
            let Some(p) = self.pending.get(i) else {
                continue;
            };
            if p.dead {
                continue;
            }
            if let Some(e) = vault.entries.get(&p.key) {
                let (same, file, pos) = (e.hash == p.hash, p.file as usize, p.pos);
                let ty = p.key.split_once('/').map(|(t, _)| t).unwrap_or("");
                if !same && updatable(ty) {
                    self.report.updated += 1;
                    vault_updates += 1;
                    continue;
                }
                if let Some(p) = self.pending.get_mut(i) {
                    p.dead = true;
                    p.bad = !same;
                }
                if same {
                    self.report.unchanged += 1;
                } else {
                    self.error(file, pos, BadReason::Conflict);
                }
            }
        }
        // Dangling references; skipping one resource can orphan others, so iterate.
        loop {
            let mut newly_dead = Vec::new();
            for (i, p) in self.pending.iter().enumerate() {
                if p.dead {
                    continue;
                }
                if let Some((field, _)) = p
                    .forward
                    .iter()
                    .find(|(_, t)| self.resolve_batch(vault, t).is_none())
                {
                    newly_dead.push((i, field.clone()));
                } else if p
                    .deps
                    .iter()
                    .any(|d| self.pending.get(*d as usize).is_some_and(|x| x.bad))
                {
                    newly_dead.push((i, "(refers to a rejected resource)".to_string()));
                }
            }
            if newly_dead.is_empty() {
                break;
            }
            for (i, field) in newly_dead {
                let Some(p) = self.pending.get_mut(i) else {
                    continue;
                };
                p.dead = true;
                p.bad = true;
                let (file, pos) = (p.file as usize, p.pos);
                self.error(file, pos, BadReason::DanglingReference(field));
            }
            if self.opts.on_error == OnError::Refuse {
                break;
            }
        }
        let bad = self.report.errors.len() as u64;
        if self.opts.on_error == OnError::Refuse && bad > 0 {
            fs::remove_dir_all(&self.dir).map_err(VaultError::io(&self.dir))?;
            self.report.refused = self.report.read;
            self.report.unchanged = 0;
            self.report.seconds = self.started.elapsed().as_secs_f64();
            self.bar.finish_and_clear();
            return Ok(self.report);
        }
        self.report.skipped = bad;
        let live = self.pending.iter().filter(|p| !p.dead).count();
        if live == 0 {
            fs::remove_dir_all(&self.dir).map_err(VaultError::io(&self.dir))?;
            self.report.seconds = self.started.elapsed().as_secs_f64();
            self.bar.finish_and_clear();
            return Ok(self.report);
        }
        // Local ids for new patients and encounters, in input order.
        let mut counters = vault.manifest.counters.clone();
        let mut rows: HashMap<String, i64> = HashMap::new();
        for p in self.pending.iter().filter(|p| !p.dead) {
            if p.key.starts_with("Patient/") {
                rows.insert(p.key.clone(), cdm::next_id(&mut counters, "person"));
            } else if p.key.starts_with("Encounter/") {
                rows.insert(
                    p.key.clone(),
                    cdm::next_id(&mut counters, "visit_occurrence"),
                );
            }
        }
        let resolver = BatchResolver {
            batch: &self,
            vault,
            rows: &rows,
        };
        let mut persons: Vec<Option<i64>> = Vec::with_capacity(self.pending.len());
        for p in &self.pending {
            persons.push(if p.dead {
                None
            } else {
                p.compartment.as_ref().and_then(|t| resolver.person(t))
            });
        }
        // Phase 3: stream the new resources again into the CDM tables.
        self.bar.set_message("mapping");
        self.bar.set_position(0);
        let vocab_empty = Vocabulary::empty();
        let vocab = self.opts.vocabulary.as_deref().unwrap_or(&vocab_empty);
        let mut writer = CdmWriter::new(&self.dir.join("cdm"))?;
        let key = vault.key;
        let pseudonym = move |id: &str| pseudonym_with(&key, id);
        let path = self.dir.join("resources.ndjson.zst");
        let mut done = 0u64;
        let fail_after = self.opts.fail_after;
        vault.scan_segment(&path, &mut |line, bytes| {
            let Some(p) = self.pending.get(line as usize) else {
                return Ok(());
            };
            if p.dead {
                return Ok(());
            }
            if let Some(n) = fail_after
                && done >= n
            {
                return Err(VaultError::InjectedFault(done));
            }
            let v: Value = serde_json::from_slice(bytes).map_err(|e| VaultError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let own = rows.get(&p.key).copied();
            cdm::map_resource(
                &v,
                own,
                &pseudonym,
                vocab,
                &resolver,
                &mut counters,
                &mut writer,
            )?;
            done += 1;
            self.bar.inc(1);
            Ok(())
        })?;
        let counts = writer.counts.clone();
        writer.finish()?;
        // The index of the new segment.
        let seg_no = u32::try_from(vault.manifest.segments.len()).unwrap_or(u32::MAX);
        let index_path = self.dir.join("index.jsonl");
        let mut new_entries = Vec::with_capacity(live);
        {
            let f = File::create(&index_path).map_err(VaultError::io(&index_path))?;
            let mut w = BufWriter::new(f);
            for (p, person) in self.pending.iter().zip(&persons) {
                if p.dead {
                    continue;
                }
                let row = rows.get(&p.key).copied();
                let person = if p.key.starts_with("Patient/") {
                    row
                } else {
                    *person
                };
                let il = IndexLine {
                    k: p.key.clone(),
                    l: p.line,
                    h: hex16(&p.hash),
                    p: person,
                    r: row,
                };
                serde_json::to_writer(&mut w, &il).map_err(|e| VaultError::Corrupt {
                    path: index_path.clone(),
                    reason: e.to_string(),
                })?;
                w.write_all(b"\n").map_err(VaultError::io(&index_path))?;
                new_entries.push((
                    p.key.clone(),
                    Entry {
                        seg: seg_no,
                        line: p.line,
                        hash: p.hash,
                        person,
                        row,
                    },
                ));
                if let Some((t, _)) = p.key.split_once('/') {
                    *self.report.stored_by_type.entry(t.to_string()).or_insert(0) += 1;
                }
            }
            let f = w
                .into_inner()
                .map_err(|e| VaultError::io(&index_path)(e.into_error()))?;
            f.sync_all().map_err(VaultError::io(&index_path))?;
        }
        sync_dir(&self.dir)?;
        let info = SegmentInfo {
            name: self.name.clone(),
            resources: live as u64,
            tables: counts.clone(),
        };
        vault.commit(info, counters)?;
        for (k, e) in new_entries {
            if let Some((t, id)) = k.split_once('/') {
                vault.by_id.insert(id.to_string(), t.to_string());
            }
            vault.entries.insert(k, e);
        }
        vault.persons_cache = std::sync::OnceLock::new();
        self.report.stored = (live as u64).saturating_sub(vault_updates);
        self.report.rows_by_table = counts;
        self.report.committed = true;
        self.report.seconds = self.started.elapsed().as_secs_f64();
        self.bar.finish_and_clear();
        tracing::info!(segment = %self.name, stored = live, "vault.ingest.commit");
        Ok(self.report)
    }
}

struct BatchResolver<'a> {
    batch: &'a Batch<'a>,
    vault: &'a Vault,
    rows: &'a HashMap<String, i64>,
}

impl BatchResolver<'_> {
    fn row(&self, t: &RefTarget, ty: &str) -> Option<i64> {
        let k = self.batch.resolve_batch(self.vault, t)?;
        if !k.starts_with(ty) {
            return None;
        }
        self.rows
            .get(&k)
            .copied()
            .or_else(|| self.vault.entries.get(&k).and_then(|e| e.row))
    }
}

impl Resolve for BatchResolver<'_> {
    fn person(&self, t: &RefTarget) -> Option<i64> {
        self.row(t, "Patient/")
    }
    fn visit(&self, t: &RefTarget) -> Option<i64> {
        self.row(t, "Encounter/")
    }
}
