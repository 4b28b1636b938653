//! Patient identity: the per-vault pseudonym key (inside the vault's sealed key file), ledger pseudonyms, and the mapping between a
//! local person_id, the source `Patient.id` and the pseudonym. The mapping never leaves the
//! vault.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::Vault;
use crate::error::VaultError;

/// pseudonym -> person_id and person_id -> Patient.id.
#[derive(Default)]
pub(super) struct PersonMaps {
    by_pseudonym: HashMap<String, i64>,
    by_person: HashMap<i64, String>,
}

/// The pseudonym key of a vault written before encryption at rest (`secret.key`, 32 plain
/// bytes), if there is one: what a conversion keeps so the patients' pseudonyms stay the same.
pub(super) fn read_plain_key(root: &Path) -> Result<Option<[u8; 32]>, VaultError> {
    let path = root.join(crate::at_rest::PLAIN_KEY_FILE);
    match fs::read(&path) {
        Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| VaultError::Corrupt {
                path: path.clone(),
                reason: "key is not 32 bytes".into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(VaultError::Io { path, source: e }),
    }
}

/// HMAC-SHA256 of the patient id with the vault's key, first 16 bytes in hex.
pub(super) fn pseudonym_with(key: &[u8; 32], patient_id: &str) -> String {
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

impl Vault {
    /// The ledger pseudonym of a source `Patient.id`: HMAC-SHA256 with the vault's secret key,
    /// first 16 bytes in hex. Stable for the life of the vault; unlinkable without the key.
    pub fn pseudonym(&self, patient_id: &str) -> String {
        pseudonym_with(self.key.pseudonym_key(), patient_id)
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

    /// The maps, built on first use (and dropped by a commit).
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
}
