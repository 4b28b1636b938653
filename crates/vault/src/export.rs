//! Patient export: one patient's complete record as a FHIR R4 Bundle, or every stored resource
//! as Bulk Data NDJSON. Every reference in an export resolves inside it: the export includes
//! the resources a patient's resources refer to (Organization, Practitioner, ...), and
//! references are rewritten consistently (`urn:uuid:` full URLs in a Bundle, `Type/id` in NDJSON).
//!
//! Each resource is exported in its current version (earlier versions stay readable through
//! [`Vault::resource_versions`]); deleted resources are not exported.
//!
//! Only the patient's own resources leave: reference following stops at anything that belongs
//! to another person (another patient's Patient or compartment, a Person or RelatedPerson not in
//! this patient's compartment), and a reference to such a resource is replaced by a bare
//! `display` saying it was withheld, so not even the other person's id leaves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::VaultError;
use crate::fhir::{self, RefTarget};
use crate::store::Vault;

/// Whether an id is UUID-shaped (8-4-4-4-12 hex).
fn is_uuid(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

/// The `fullUrl` of a stored resource in an exported Bundle: `urn:uuid:<id>` when the id is a
/// UUID, otherwise a UUID derived from a hash of `Type/id`.
fn full_url(key: &str) -> String {
    let id = key.split_once('/').map(|(_, i)| i).unwrap_or(key);
    if is_uuid(id) {
        return format!("urn:uuid:{id}");
    }
    let h = Sha256::digest(key.as_bytes());
    let x = hex::encode(h.get(..16).unwrap_or(&[]));
    format!(
        "urn:uuid:{}-{}-5{}-{}-{}",
        x.get(0..8).unwrap_or(""),
        x.get(8..12).unwrap_or(""),
        x.get(13..16).unwrap_or(""),
        x.get(16..20).unwrap_or(""),
        x.get(20..32).unwrap_or("")
    )
}

/// Resource types that describe a person: never followed into an export unless they are the
/// patient's own (their Patient, or in their compartment).
const PERSON_TYPES: [&str; 3] = ["Patient", "Person", "RelatedPerson"];

/// What a reference to another person's resource becomes in an export.
pub const WITHHELD: &str = "withheld: concerns another person";

/// Whether the stored resource `key` may leave in `person_id`'s export: it is theirs (their
/// Patient or in their compartment), or it is shared and describes no person.
fn belongs_to(vault: &Vault, key: &str, person_id: i64) -> bool {
    match vault.owner_of(key) {
        Some(owner) => owner == person_id,
        None => {
            let ty = key.split_once('/').map_or(key, |(t, _)| t);
            !PERSON_TYPES.contains(&ty)
        }
    }
}

/// Whether a reference names a person other than the exported patient: a stored resource that
/// is not theirs, or a person-type target that is not stored here (another hospital's patient).
fn names_someone_else(vault: &Vault, referrer: &str, t: &RefTarget, person_id: i64) -> bool {
    match vault.resolve_from(referrer, t) {
        Some(k) => !belongs_to(vault, &k, person_id),
        None => matches!(t, RefTarget::Typed(ty, _) if PERSON_TYPES.contains(&ty.as_str())),
    }
}

/// The keys of a patient's record: its compartment plus everything of theirs, or shared and
/// about nobody, reachable by references.
fn closure(vault: &Vault, person_id: i64) -> Result<Vec<(String, Value)>, VaultError> {
    let mut keys = vault.patient_resource_keys(person_id);
    let mut seen: HashSet<String> = keys.iter().cloned().collect();
    let mut out = Vec::new();
    while !keys.is_empty() {
        let loaded = vault.load_resources(&keys)?;
        let mut next = Vec::new();
        for (referrer, v) in &loaded {
            for (_, t) in fhir::references(v) {
                if let Some(k) = vault.resolve_from(referrer, &t)
                    && belongs_to(vault, &k, person_id)
                    && seen.insert(k.clone())
                {
                    next.push(k);
                }
            }
        }
        out.extend(loaded);
        next.sort();
        keys = next;
    }
    Ok(out)
}

/// One patient's complete record as a FHIR R4 `collection` Bundle. `id` may be the person_id,
/// the source `Patient.id` or the ledger pseudonym. The Patient comes first.
pub fn export_patient(vault: &Vault, id: &str) -> Result<Value, VaultError> {
    let person_id = vault
        .resolve_patient(id)
        .ok_or(VaultError::PatientNotFound)?;
    let mut resources = closure(vault, person_id)?;
    resources.sort_by_key(|(k, _)| (!k.starts_with("Patient/"), k.clone()));
    let urls: HashMap<String, String> = resources
        .iter()
        .map(|(k, _)| (k.clone(), full_url(k)))
        .collect();
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|(k, mut v)| {
            fhir::withhold_references(&mut v, WITHHELD, &mut |r| {
                fhir::parse_reference(r)
                    .is_some_and(|t| names_someone_else(vault, &k, &t, person_id))
            });
            fhir::rewrite_references(&mut v, &mut |r| {
                let t = fhir::parse_reference(r)?;
                let target = vault.resolve_from(&k, &t)?;
                let url = urls.get(&target)?;
                (url != r).then(|| url.clone())
            });
            let url = urls.get(&k).cloned().unwrap_or_default();
            json!({"fullUrl": url, "resource": v})
        })
        .collect();
    Ok(json!({"resourceType": "Bundle", "type": "collection", "entry": entries}))
}

/// Summary of an NDJSON export.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NdjsonSummary {
    /// Resources written per type (one file `<Type>.ndjson` each).
    pub by_type: BTreeMap<String, u64>,
}

/// Writes every stored resource as Bulk Data NDJSON into `dir` (one file per type), with
/// references rewritten to the relative `Type/id` form.
pub fn export_ndjson(vault: &Vault, dir: &Path) -> Result<NdjsonSummary, VaultError> {
    fs::create_dir_all(dir).map_err(VaultError::io(dir))?;
    let mut writers: BTreeMap<String, BufWriter<File>> = BTreeMap::new();
    let mut summary = NdjsonSummary::default();
    for (seg, lines) in vault.live_lines() {
        let Some(info) = vault.manifest().segments.get(seg as usize) else {
            continue;
        };
        let path = vault.resources_file(&info.name);
        vault.scan_segment(&path, &mut |line, bytes| {
            let Some(key) = lines.get(&line) else {
                return Ok(());
            };
            let mut v: Value = serde_json::from_slice(bytes).map_err(|e| VaultError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            fhir::rewrite_references(&mut v, &mut |r| {
                let t = fhir::parse_reference(r)?;
                if matches!(t, RefTarget::Unresolvable) {
                    return None;
                }
                // The target's own `Type/id` (a named source's qualifier left out).
                let target = vault.resolve_from(key, &t)?;
                let target = match target.split_once('/') {
                    Some((ty, qid)) => format!("{ty}/{}", crate::store::bare_id(qid)),
                    None => target,
                };
                (target != r).then_some(target)
            });
            let ty = key
                .split_once('/')
                .map(|(t, _)| t)
                .unwrap_or("Unknown")
                .to_string();
            let file_path = dir.join(format!("{ty}.ndjson"));
            let w = match writers.entry(ty.clone()) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    let f = File::create(&file_path).map_err(VaultError::io(&file_path))?;
                    slot.insert(BufWriter::new(f))
                }
            };
            serde_json::to_writer(&mut *w, &v).map_err(|e| VaultError::Io {
                path: file_path.clone(),
                source: e.into(),
            })?;
            w.write_all(b"\n").map_err(VaultError::io(&file_path))?;
            *summary.by_type.entry(ty).or_insert(0) += 1;
            Ok(())
        })?;
    }
    for (ty, w) in writers {
        let path = dir.join(format!("{ty}.ndjson"));
        let f = w
            .into_inner()
            .map_err(|e| VaultError::io(&path)(e.into_error()))?;
        f.sync_all().map_err(VaultError::io(&path))?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_urls() {
        assert_eq!(
            full_url("Patient/004b7f3b-eaaa-4eda-81dc-3a82854a363d"),
            "urn:uuid:004b7f3b-eaaa-4eda-81dc-3a82854a363d"
        );
        let u = full_url("Patient/p1");
        assert!(u.starts_with("urn:uuid:"));
        assert!(is_uuid(u.trim_start_matches("urn:uuid:")), "{u}");
        assert_ne!(u, full_url("Patient/p2"));
    }
}
