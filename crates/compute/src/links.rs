//! The hospital's confirmed links between its local patients (the vault's `person_id`) and the
//! patients' ledger pseudonyms. Kept only in the hospital's node directory, never on the ledger.

use medspace_types::PatientId;
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
    node_dir.join("links.json")
}

impl Links {
    /// Loads the links of a node (none if the file does not exist yet).
    pub fn load(node_dir: &Path) -> Result<Self, LinkError> {
        let path = links_path(node_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(LinkError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
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

    /// Saves atomically (write a temporary file, then rename).
    pub fn save(&self, node_dir: &Path) -> Result<(), LinkError> {
        let path = links_path(node_dir);
        let io = |source| LinkError::Io {
            path: path.display().to_string(),
            source,
        };
        let json = serde_json::to_vec(self).map_err(|e| LinkError::Malformed {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
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
