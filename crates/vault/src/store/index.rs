//! A segment's index (`index.jsonl`): one line per stored resource version or delete with its
//! `Type/id` (the id qualified by its source, see [`super::qualify`]), its line in the segment's
//! resources file, its content hash, its local ids, the CDM rows it produced, and whether it is
//! the current version, an older version kept for audit, or a delete.
//!
//! Lines written before versioning (format 1) carry no row list (`c`): their resources read as
//! usual but cannot be updated or deleted (their CDM rows cannot be retracted).

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
    /// The CDM rows this version produced: (table, first row id, count). Absent in lines
    /// written before versioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<Box<[RowSpan]>>,
    /// visit_occurrence_id its rows refer to (the Encounter it belongs to), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<i64>,
    /// `old` (a version kept for audit, never current) or `del` (a delete); absent: the
    /// current version when committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<Status>,
    /// `meta.lastUpdated` of the resource, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u: Option<String>,
    /// `meta.versionId` of the resource, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
}

/// What an index line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// An older version, kept for audit (superseded in its own batch, or arrived late).
    Old,
    /// A delete of the resource (the line holds the delete request).
    Del,
}

/// CDM rows of one table produced by one resource version: ids `first .. first + count`. The
/// table is one of [`crate::TABLES`], held as that name (every stored resource keeps its spans
/// in the vault's index in memory, so a copy of the name each would add up).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct RowSpan(pub &'static str, pub i64, pub u32);

impl RowSpan {
    /// The span of `count` rows of `table` from `first`, if `table` is a CDM table.
    pub(crate) fn of(table: &str, first: i64, count: u32) -> Option<RowSpan> {
        let name = medspace_types::cdm::table(table)?.name;
        Some(RowSpan(name, first, count))
    }
}

impl<'de> Deserialize<'de> for RowSpan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (table, first, count) = <(String, i64, u32)>::deserialize(d)?;
        RowSpan::of(&table, first, count)
            .ok_or_else(|| serde::de::Error::custom("row span of an unknown table"))
    }
}

/// A resource's version stamp: `meta.lastUpdated` and `meta.versionId`. Most resources carry
/// neither, so the stamp is one pointer, null for them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp(Option<Box<StampParts>>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct StampParts {
    updated: Option<String>,
    version: Option<String>,
}

impl Stamp {
    /// The stamp of a resource.
    pub(crate) fn of(v: &serde_json::Value) -> Stamp {
        let meta = v.get("meta");
        let get = |f: &str| {
            meta.and_then(|m| m.get(f))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        Stamp::new(get("lastUpdated"), get("versionId"))
    }

    /// The stamp of `meta.lastUpdated` and `meta.versionId`.
    pub(crate) fn new(updated: Option<String>, version: Option<String>) -> Stamp {
        if updated.is_none() && version.is_none() {
            return Stamp(None);
        }
        Stamp(Some(Box::new(StampParts { updated, version })))
    }

    /// `meta.lastUpdated`, if given.
    pub(crate) fn updated(&self) -> Option<&str> {
        self.0.as_ref()?.updated.as_deref()
    }

    /// `meta.versionId`, if given.
    pub(crate) fn version(&self) -> Option<&str> {
        self.0.as_ref()?.version.as_deref()
    }

    /// Whether a resource with this stamp is older than one with `other`: by `lastUpdated`
    /// when both have it and they differ (FHIR instants, compared as UTC when both end in `Z`
    /// or carry the same offset, which is how servers write them), else by a numeric
    /// `versionId` when both have one. Otherwise not older: arrival order decides.
    pub(crate) fn older_than(&self, other: &Stamp) -> bool {
        if let (Some(a), Some(b)) = (self.updated(), other.updated())
            && a != b
        {
            return a < b;
        }
        match (
            self.version().map(str::parse::<u64>),
            other.version().map(str::parse::<u64>),
        ) {
            (Some(Ok(a)), Some(Ok(b))) => a < b,
            _ => false,
        }
    }
}

/// Where a stored resource lives.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub seg: u32,
    pub line: u32,
    pub hash: [u8; 16],
    pub person: Option<i64>,
    pub row: Option<i64>,
    /// CDM rows of this version (`None`: written before versioning, unknown).
    pub rows: Option<Box<[RowSpan]>>,
    pub visit: Option<i64>,
    pub status: Option<Status>,
    pub stamp: Stamp,
}

impl Entry {
    fn line(&self, key: &str) -> IndexLine {
        IndexLine {
            k: key.to_string(),
            l: self.line,
            h: hex16(&self.hash),
            p: self.person,
            r: self.row,
            c: self.rows.clone(),
            v: self.visit,
            s: self.status,
            u: self.stamp.updated().map(str::to_string),
            n: self.stamp.version().map(str::to_string),
        }
    }
}

/// The hex of a content hash (`hex::encode` goes through a char iterator, which showed in the
/// profile of writing a segment's index).
fn hex16(hash: &[u8; 16]) -> String {
    let mut out = [0u8; 32];
    match hex::encode_to_slice(hash, &mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => hex::encode(hash),
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
                rows: il.c,
                visit: il.v,
                status: il.s,
                stamp: Stamp::new(il.u, il.n),
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
    // Buffered in front of the sealing writer: serde writes a line in many small pieces.
    let mut w =
        std::io::BufWriter::with_capacity(1 << 16, at_rest::create_sealed(vault_key, root, path)?);
    for (key, entry) in entries {
        serde_json::to_writer(&mut w, &entry.line(key)).map_err(|e| VaultError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        w.write_all(b"\n")
            .map_err(|e| VaultError::from_io(path, e))?;
    }
    let w = w
        .into_inner()
        .map_err(|e| VaultError::from_io(path, e.into_error()))?;
    at_rest::finish_sealed(path, w)
}
