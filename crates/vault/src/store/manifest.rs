//! The committed state of a vault and the crash-safe commit.
//!
//! `manifest.json` lists the committed segments and the id counters. A batch is written into a
//! fresh segment directory and becomes visible only when the new manifest replaces the old one
//! with one atomic `rename` ([`Vault::commit`]). A crash before that leaves an orphan directory
//! that is not in the manifest: readers never see it, and the next writer deletes it
//! ([`Vault::remove_orphans`]).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Vault;
use crate::at_rest::{self, VaultKey};
use crate::cdm::{CdmWriter, Counters};
use crate::error::VaultError;

const MANIFEST: &str = "manifest.json";
const MANIFEST_TMP: &str = "manifest.json.tmp";
/// The manifest format written: 2 since versions and deletes (segments may hide earlier rows).
/// Format 1 (before) reads as format 2 with no hidden rows.
pub(super) const FORMAT: u32 = 2;
/// Formats this code reads.
const READABLE: [u32; 2] = [1, 2];

/// The committed state of a vault.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    pub generation: u64,
    pub segments: Vec<SegmentInfo>,
    /// Next local id per table (`person`, `visit_occurrence`, row tables).
    pub counters: Counters,
}

impl Manifest {
    /// The directory name of the segment the next commit adds.
    pub(super) fn next_segment_name(&self) -> String {
        segment_name(self.next_segment_number())
    }

    /// The number of the segment the next commit adds: after the generation and after every
    /// segment's number, so that a name is never used twice (a chunked ingest names the
    /// batches it has in flight ahead of their commits, and some may commit nothing).
    pub(super) fn next_segment_number(&self) -> u64 {
        let top = self
            .segments
            .iter()
            .filter_map(|s| s.name.strip_prefix("seg-")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        top.max(self.generation).saturating_add(1)
    }
}

/// One committed batch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SegmentInfo {
    pub name: String,
    pub resources: u64,
    /// Tables with a Parquet file in this segment, and their row counts.
    pub tables: BTreeMap<String, u64>,
    /// CDM rows of earlier segments this one retracts (their resources were updated or
    /// deleted here): the session leaves them out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<Hidden>,
    /// Earlier current resource versions this segment retired (updated or deleted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retired: u64,
    /// Resources this segment deleted (included in `retired`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deleted: u64,
    /// The source system of the batch (`None`: the default namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The `_since` instant of an incremental feed, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// For a batch of an ingest committed in several: how far that ingest had come.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunCursor>,
}

/// How far a chunked ingest had come when one of its batches committed. It names the input
/// only by a digest (file names can hold patients' names), and positions by number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunCursor {
    /// Digest of the ingest's input files (paths, sizes, modification times) and options.
    pub id: String,
    /// The next file to read (its number in the ingest's ordered list).
    pub file: u64,
    /// Items of that file already committed.
    pub item: u64,
    /// Items of the whole input read up to there.
    pub read: u64,
    /// The ingest ended with this batch.
    pub done: bool,
}

impl Manifest {
    /// Where an interrupted ingest of the input `run` resumes: its last committed batch is the
    /// vault's last, and it had not ended. Anything else starts from the beginning (and what
    /// is already stored reads as unchanged).
    pub(crate) fn resume_point(&self, run: &str) -> Option<RunCursor> {
        let cursor = self.segments.last()?.run.as_ref()?;
        (cursor.id == run && !cursor.done).then(|| cursor.clone())
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Rows `first .. first + count` of `table` in segment `segment` that a later segment retracts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hidden {
    pub segment: String,
    pub table: String,
    pub first: i64,
    pub count: u32,
}

impl Manifest {
    /// Every retracted row id, per table and segment name.
    pub(crate) fn hidden_rows(&self) -> BTreeMap<(String, String), Vec<i64>> {
        let mut out: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
        for seg in &self.segments {
            for h in &seg.hidden {
                let ids = out.entry((h.table.clone(), h.segment.clone())).or_default();
                ids.extend((0..i64::from(h.count)).map(|i| h.first + i));
            }
        }
        out
    }

    /// Live resources: stored current versions less those retired since.
    pub(crate) fn live_resources(&self) -> u64 {
        let stored: u64 = self.segments.iter().map(|s| s.resources).sum();
        let retired: u64 = self.segments.iter().map(|s| s.retired).sum();
        stored.saturating_sub(retired)
    }
}

/// `<node>/vault`.
pub fn vault_dir(node_dir: &Path) -> PathBuf {
    crate::at_rest::vault_dir(node_dir)
}

/// The directory name of segment number `n`.
pub(super) fn segment_name(n: u64) -> String {
    format!("seg-{n:08}")
}

/// `<vault>/segments/<name>`.
pub(crate) fn segment_dir(root: &Path, name: &str) -> PathBuf {
    root.join("segments").join(name)
}

/// The committed manifest of the vault at `root` (an empty one when there is none yet).
pub(crate) fn read_manifest(root: &Path, key: &VaultKey) -> Result<Manifest, VaultError> {
    let path = root.join(MANIFEST);
    if !path.exists() {
        return Ok(Manifest {
            format: FORMAT,
            ..Manifest::default()
        });
    }
    match at_rest::read_sealed(key, root, &path) {
        Ok(bytes) => {
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| VaultError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if !READABLE.contains(&m.format) {
                return Err(VaultError::Corrupt {
                    path,
                    reason: format!("format={} expected={FORMAT}", m.format),
                });
            }
            Ok(m)
        }
        Err(e) => Err(e),
    }
}

/// Writes the manifest (sealed) to a temporary file, syncs it, and renames it over the old one.
pub(super) fn write_manifest(root: &Path, key: &VaultKey, m: &Manifest) -> Result<(), VaultError> {
    let tmp = root.join(MANIFEST_TMP);
    let bytes = serde_json::to_vec_pretty(m).map_err(|e| VaultError::Corrupt {
        path: tmp.clone(),
        reason: e.to_string(),
    })?;
    let path = root.join(MANIFEST);
    // Sealed for the manifest's own path: the temporary name is only its way there.
    {
        let file = File::create(&tmp).map_err(VaultError::io(&tmp))?;
        let mut w = medspace_seal::SealWriter::new(
            std::io::BufWriter::new(file),
            key.files(),
            &at_rest::role(&at_rest::rel_path(root, &path)),
        )
        .map_err(|e| VaultError::from_io(&tmp, e))?;
        w.write_all(&bytes)
            .map_err(|e| VaultError::from_io(&tmp, e))?;
        at_rest::finish_sealed(&tmp, w)?;
    }
    fs::rename(&tmp, &path).map_err(VaultError::io(&path))?;
    sync_dir(root)
}

/// Makes a directory's entries (new files, renames) durable.
pub(super) fn sync_dir(path: &Path) -> Result<(), VaultError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(VaultError::io(path))
}

impl Vault {
    /// Commits a fully written and synced segment: the new manifest lists it and carries the
    /// new counters.
    pub(super) fn commit(
        &mut self,
        info: SegmentInfo,
        counters: Counters,
    ) -> Result<(), VaultError> {
        let mut m = self.manifest.clone();
        m.format = FORMAT;
        m.generation += 1;
        m.segments.push(info);
        m.counters = counters;
        write_manifest(&self.root, &self.key, &m)?;
        self.manifest = m;
        Ok(())
    }

    /// Deletes what an interrupted batch left: segment directories not in the manifest and a
    /// temporary manifest.
    pub(super) fn remove_orphans(&self) -> Result<(), VaultError> {
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
        let tmp = self.root.join(MANIFEST_TMP);
        if tmp.exists() {
            fs::remove_file(&tmp).map_err(VaultError::io(&tmp))?;
        }
        Ok(())
    }

    /// Writes rows straight into the CDM tables as one committed segment without original
    /// resources. Only for benchmarks that need millions of persons quickly.
    #[doc(hidden)]
    pub fn bench_commit_cdm(
        &mut self,
        fill: &mut dyn FnMut(&mut crate::BenchRows<'_>) -> Result<(), VaultError>,
    ) -> Result<(), VaultError> {
        let name = self.manifest.next_segment_name();
        let dir = self.segment_dir(&name);
        fs::create_dir_all(&dir).map_err(VaultError::io(&dir))?;
        let mut writer = CdmWriter::new(&self.root, &self.key, &dir.join("cdm"), true)?;
        let mut counters = self.manifest.counters.clone();
        fill(&mut crate::BenchRows {
            writer: &mut writer,
            counters: &mut counters,
        })?;
        let counts = writer.counts.clone();
        writer.finish()?;
        at_rest::write_sealed(&self.key, &self.root, &dir.join("index.jsonl"), b"")?;
        let path = dir.join(super::resources::RESOURCES_FILE);
        let sealed = at_rest::create_sealed(&self.key, &self.root, &path)?;
        let sealed = zstd::Encoder::new(sealed, 1)
            .and_then(|e| e.finish())
            .map_err(|e| VaultError::from_io(&path, e))?;
        at_rest::finish_sealed(&path, sealed)?;
        self.commit(
            SegmentInfo {
                name,
                resources: 0,
                tables: counts,
                ..SegmentInfo::default()
            },
            counters,
        )
    }
}
