//! A segment's index (`index.jsonl`): one line per stored resource with its `Type/id`, its line
//! in the segment's resources file, its content hash, and its local ids.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::at_rest::{self, VaultKey};
use crate::error::VaultError;

/// One stored resource in the index file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct IndexLine {
    /// `Type/id`.
    pub k: String,
    /// Line in the segment's resources file.
    pub l: u32,
    /// First 16 bytes of the SHA-256 of the canonical JSON, hex.
    pub h: String,
    /// person_id of the patient compartment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<i64>,
    /// Local row id: person_id of a Patient, visit_occurrence_id of an Encounter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<i64>,
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

impl Entry {
    fn line(&self, key: &str) -> IndexLine {
        IndexLine {
            k: key.to_string(),
            l: self.line,
            h: hex::encode(self.hash),
            p: self.person,
            r: self.row,
        }
    }
}

/// Calls `f(key, entry)` for every line of the index of segment number `seg`, in file order.
pub(super) fn read_index(
    key: &VaultKey,
    root: &Path,
    path: &Path,
    seg: u32,
    f: &mut dyn FnMut(String, Entry),
) -> Result<(), VaultError> {
    let reader = at_rest::open_sealed(key, root, path)?;
    for line in std::io::BufReader::new(reader).lines() {
        let line = line.map_err(|e| VaultError::from_io(path, e))?;
        let il: IndexLine = serde_json::from_str(&line).map_err(|e| VaultError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut hash = [0u8; 16];
        hex::decode_to_slice(&il.h, &mut hash).map_err(|e| VaultError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        f(
            il.k,
            Entry {
                seg,
                line: il.l,
                hash,
                person: il.p,
                row: il.r,
            },
        );
    }
    Ok(())
}

/// Writes and syncs a segment's index (sealed): one line per `(key, entry)`, in the order
/// given.
pub(super) fn write_index(
    vault_key: &VaultKey,
    root: &Path,
    path: &Path,
    entries: &[(String, Entry)],
) -> Result<(), VaultError> {
    let mut w = at_rest::create_sealed(vault_key, root, path)?;
    for (key, entry) in entries {
        serde_json::to_writer(&mut w, &entry.line(key)).map_err(|e| VaultError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        w.write_all(b"\n")
            .map_err(|e| VaultError::from_io(path, e))?;
    }
    at_rest::finish_sealed(path, w)
}
