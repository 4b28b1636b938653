//! The hospital's confirmed links between its local patients (the vault's `person_id`) and the
//! patients' ledger pseudonyms. Kept only in the hospital's node directory, never on the ledger,
//! and encrypted at rest under the vault's keys (`links.sealed`: a sealed file, see
//! [`medspace_vault::VaultKey::seal_node_file`]): the map ties identities to pseudonyms.

use medspace_types::PatientId;
use medspace_vault::VaultKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors reading or writing the links.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// File access failed.
    #[error("links file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file failed authentication (altered, or sealed under another vault's keys).
    #[error("links file {path} failed authentication (altered, or another vault's keys)")]
    Tampered {
        /// The file.
        path: String,
    },
    /// The file does not parse.
    #[error("links file {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A patient linked twice, or a local record linked to two patients.
    #[error("link conflict: person_id={person_id} is already linked")]
    Conflict {
        /// The local id.
        person_id: i64,
    },
}

/// Local person ↔ ledger pseudonym, both ways.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Links {
    by_person: BTreeMap<i64, PatientId>,
    #[serde(skip)]
    by_patient: BTreeMap<PatientId, i64>,
}

/// Where a node keeps its links.
pub fn links_path(node_dir: &Path) -> PathBuf {
    node_dir.join(LINKS_FILE)
}

/// The links' file name in the node directory; also the role the file is sealed for.
const LINKS_FILE: &str = "links.sealed";

impl Links {
    /// Loads the links of a node (none if the file does not exist yet), opened with the
    /// vault's keys.
    pub fn load(node_dir: &Path, key: &VaultKey) -> Result<Self, LinkError> {
        let path = links_path(node_dir);
        let sealed = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(LinkError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let bytes = key
            .open_node_file(LINKS_FILE, &sealed)
            .map_err(|_| LinkError::Tampered {
                path: path.display().to_string(),
            })?;
        let mut links: Links =
            serde_json::from_slice(&bytes).map_err(|e| LinkError::Malformed {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        links.by_patient = links.by_person.iter().map(|(p, id)| (*id, *p)).collect();
        if links.by_patient.len() != links.by_person.len() {
            return Err(LinkError::Malformed {
                path: path.display().to_string(),
                reason: "a pseudonym is linked to two local records".into(),
            });
        }
        Ok(links)
    }

    /// These links but the patients in `leave_out` (counted at another site).
    pub fn without(&self, leave_out: &std::collections::BTreeSet<PatientId>) -> Self {
        let by_person: BTreeMap<i64, PatientId> = self
            .by_person
            .iter()
            .filter(|(_, id)| !leave_out.contains(id))
            .map(|(p, id)| (*p, *id))
            .collect();
        let by_patient = by_person.iter().map(|(p, id)| (*id, *p)).collect();
        Self {
            by_person,
            by_patient,
        }
    }

    /// Saves atomically, sealed under the vault's keys (owner-only temporary file, synced,
    /// then renamed).
    pub fn save(&self, node_dir: &Path, key: &VaultKey) -> Result<(), LinkError> {
        let path = links_path(node_dir);
        let io = |source| LinkError::Io {
            path: path.display().to_string(),
            source,
        };
        let json = serde_json::to_vec(self).map_err(|e| LinkError::Malformed {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let sealed = key.seal_node_file(LINKS_FILE, &json);
        medspace_vault::at_rest::write_private_file(&path, &sealed).map_err(io)
    }

    /// Links a local record to a pseudonym (the hospital's confirmation step).
    pub fn link(&mut self, person_id: i64, patient: PatientId) -> Result<(), LinkError> {
        match (
            self.by_person.get(&person_id),
            self.by_patient.get(&patient),
        ) {
            (None, None) => {
                self.by_person.insert(person_id, patient);
                self.by_patient.insert(patient, person_id);
                Ok(())
            }
            (Some(p), Some(q)) if *p == patient && *q == person_id => Ok(()),
            _ => Err(LinkError::Conflict { person_id }),
        }
    }

    /// The pseudonym of a local record.
    pub fn patient_of(&self, person_id: i64) -> Option<&PatientId> {
        self.by_person.get(&person_id)
    }

    /// The local record of a pseudonym.
    pub fn person_of(&self, patient: &PatientId) -> Option<i64> {
        self.by_patient.get(patient).copied()
    }

    /// Every link.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &PatientId)> {
        self.by_person.iter().map(|(p, id)| (*p, id))
    }

    /// Number of links.
    pub fn len(&self) -> usize {
        self.by_person.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_person.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medspace_vault::seal::{KdfParams, Passphrase};

    fn key(node: &Path, pass: &str) -> VaultKey {
        VaultKey::unlock_or_create(
            node,
            &Passphrase::new(pass).unwrap(),
            KdfParams::INSECURE_FAST,
        )
        .unwrap()
    }

    #[test]
    fn links_are_sealed_round_trip_and_refuse_other_keys_and_tampering() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("a");
        let k = key(&node, "p");
        let pseudonym = PatientId([0xab; 32]);
        let mut links = Links::default();
        links.link(42, pseudonym).unwrap();
        links.save(&node, &k).unwrap();
        let bytes = std::fs::read(links_path(&node)).unwrap();
        let hex_id = hex::encode([0xab; 32]);
        assert!(
            !bytes.windows(hex_id.len()).any(|w| w == hex_id.as_bytes()),
            "the pseudonym is in plaintext"
        );
        let back = Links::load(&node, &k).unwrap();
        assert_eq!(back.person_of(&pseudonym), Some(42));
        // Another vault's keys, or one flipped byte: a typed refusal.
        let other = key(&tmp.path().join("b"), "p");
        assert!(matches!(
            Links::load(&node, &other),
            Err(LinkError::Tampered { .. })
        ));
        let mut bytes = bytes;
        let i = bytes.len() / 2;
        bytes[i] ^= 1;
        std::fs::write(links_path(&node), bytes).unwrap();
        assert!(matches!(
            Links::load(&node, &k),
            Err(LinkError::Tampered { .. })
        ));
    }
}
