//! The original resources: each segment keeps the resources of its batch as canonical JSON, one
//! per line, zstd-compressed (`resources.ndjson.zst`), for export and record sharing. Reads
//! stream a segment once and pick the lines they need.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Vault;
use crate::at_rest;
use crate::error::VaultError;
use crate::fhir::RefTarget;

/// A segment's original resources, inside its directory.
pub(super) const RESOURCES_FILE: &str = "resources.ndjson.zst";

/// Callback over the lines of a segment's resources file: (line number, bytes).
pub(crate) type LineFn<'a> = dyn FnMut(u32, &[u8]) -> Result<(), VaultError> + 'a;

impl Vault {
    /// The resources file of a committed segment.
    pub(crate) fn resources_file(&self, segment: &str) -> PathBuf {
        self.segment_dir(segment).join(RESOURCES_FILE)
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

    /// The person a stored resource belongs to: a Patient's own row, or the patient of the
    /// compartment a resource is in; `None` for shared resources (Organization, Practitioner,
    /// Location, Medication...) and unknown keys.
    pub(crate) fn owner_of(&self, key: &str) -> Option<i64> {
        let e = self.entries.get(key)?;
        if key.starts_with("Patient/") {
            e.row
        } else {
            e.person
        }
    }

    /// Resolves a reference target to a stored `Type/id` key.
    pub(crate) fn resolve_key(&self, t: &RefTarget) -> Option<String> {
        self.resolve_key_in(t, &mut String::new())
            .map(str::to_string)
    }

    /// [`Vault::resolve_key`], the key spelled in `key` (left there, found or not, for a
    /// typed target) and returned as the index holds it.
    pub(crate) fn resolve_key_in(&self, t: &RefTarget, key: &mut String) -> Option<&str> {
        key.clear();
        let (ty, id) = match t {
            RefTarget::AnyType(id) => (self.by_id.get(id)?.as_str(), id.as_str()),
            RefTarget::Typed(ty, id) => (ty.as_str(), id.as_str()),
            RefTarget::Unresolvable => return None,
        };
        key.push_str(ty);
        key.push('/');
        key.push_str(id);
        self.entries
            .get_key_value(key.as_str())
            .map(|(k, _)| k.as_str())
    }

    /// Resolves a reference made by the stored resource `referrer` (its id qualified by its
    /// source): references resolve within the referrer's source.
    pub(crate) fn resolve_from(&self, referrer: &str, t: &RefTarget) -> Option<String> {
        let source = super::source_of(referrer);
        self.resolve_key(&super::qualify_target(source, t.clone()))
    }

    /// Every live resource's key (`Type/id`, the id qualified by its source as
    /// `source|id` for a named source), sorted.
    pub fn resource_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.entries.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Every stored version of a resource, oldest first as committed: earlier versions
    /// (superseded, arrived late, or deleted) and the current one, if it is live. Versions are
    /// never removed from the segments; this is their audit trail.
    pub fn resource_versions(&self, key: &str) -> Result<Vec<Value>, VaultError> {
        let mut entries: Vec<&super::index::Entry> = self
            .history
            .get(key)
            .map(|h| h.iter().collect())
            .unwrap_or_default();
        entries.extend(self.entries.get(key));
        entries.sort_by_key(|e| (e.seg, e.line));
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let Some(info) = self.manifest.segments.get(e.seg as usize) else {
                continue;
            };
            let path = self.resources_file(&info.name);
            let mut found = None;
            self.scan_segment(&path, &mut |line, bytes| {
                if line == e.line {
                    found = Some(serde_json::from_slice::<Value>(bytes).map_err(|err| {
                        VaultError::Corrupt {
                            path: path.clone(),
                            reason: err.to_string(),
                        }
                    })?);
                }
                Ok(())
            })?;
            out.extend(found);
        }
        Ok(out)
    }

    /// Whether the vault keeps a version of `key` with this content hash (current or earlier).
    pub(crate) fn holds_version(&self, key: &str, hash: &[u8; 16]) -> bool {
        self.entries.get(key).is_some_and(|e| &e.hash == hash)
            || self
                .history
                .get(key)
                .is_some_and(|h| h.iter().any(|e| &e.hash == hash))
    }

    /// Whether the resource `key` was deleted (and not stored again since).
    pub fn is_deleted(&self, key: &str) -> bool {
        self.deleted.contains(key)
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
            let path = self.resources_file(&info.name);
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
        let sealed = at_rest::open_sealed(&self.key, &self.root, path)?;
        let dec = zstd::Decoder::new(sealed).map_err(|e| VaultError::from_io(path, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, dec);
        let mut buf = Vec::with_capacity(8192);
        let mut line = 0u32;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| VaultError::from_io(path, e))?;
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
}
