//! The dataset description a hospital publishes in the catalog: tables, fields, row counts,
//! the quality profile, a privacy level per field and a content hash. No data.
//!
//! The lead's ledger code turns [`DatasetDescription`] into the `PublishDataset` transaction.

use std::path::Path;

use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::at_rest::VaultKey;
use crate::cdm::{TABLES, schema};
use crate::error::VaultError;
use crate::quality::{self, QualityProfile};
use crate::store;

/// How sensitive a field is: the consortium's level (DESIGN §3), as the default
/// classification of `medspace_types::classification` sets it. The ledger's policy is the
/// authority: a consortium may have voted other levels, and publishing takes the policy's.
pub use medspace_types::Level as PrivacyLevel;

/// The default privacy level of a CDM column.
pub fn privacy_level(table: &str, column: &str) -> PrivacyLevel {
    medspace_types::classification::default_field_level(table, column)
}

/// One field of a published table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldDescription {
    /// Column name.
    pub name: String,
    /// Arrow data type, e.g. `Int64`, `Utf8`, `Date32`.
    pub data_type: String,
    /// Sensitivity.
    pub privacy_level: PrivacyLevel,
    /// Missing rate from the quality profile.
    pub missing_rate: f64,
}

/// One published table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableDescription {
    /// CDM table name.
    pub name: String,
    /// Rows.
    pub row_count: u64,
    /// Fields.
    pub fields: Vec<FieldDescription>,
}

/// What a hospital publishes about its dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetDescription {
    /// `medspace-cdm/1`.
    pub format: String,
    /// Data model the tables follow.
    pub data_model: String,
    /// Number of persons.
    pub persons: u64,
    /// Number of stored FHIR resources.
    pub resources: u64,
    /// Tables.
    pub tables: Vec<TableDescription>,
    /// Quality profile.
    pub quality: QualityProfile,
    /// SHA-256 (hex) over the committed segments' names and index files (which hold each
    /// resource's content hash): changes whenever the data changes, reveals nothing.
    pub content_hash: String,
}

/// SHA-256 over the committed state: each segment's name, the SHA-256 of its index's
/// *plaintext*, and its row counts. A hash of the logical content, the same however the files
/// are encrypted (so re-encryption under a new key does not change it).
pub fn content_hash(node_dir: &Path, key: &VaultKey) -> Result<String, VaultError> {
    let root = store::vault_dir(node_dir);
    let manifest = store::read_manifest(&root, key)?;
    let mut h = Sha256::new();
    h.update(b"medspace-vault-content-v1");
    for seg in &manifest.segments {
        let path = store::segment_dir(&root, &seg.name).join("index.jsonl");
        let bytes = crate::at_rest::read_sealed(key, &root, &path)?;
        h.update((seg.name.len() as u64).to_le_bytes());
        h.update(seg.name.as_bytes());
        h.update(Sha256::digest(bytes.as_slice()));
        for (table, rows) in &seg.tables {
            h.update(table.as_bytes());
            h.update(rows.to_le_bytes());
        }
        // The rows it retracts (a segment of an earlier format retracts none and hashes as
        // before).
        for hidden in &seg.hidden {
            h.update(b"hidden");
            h.update(hidden.segment.as_bytes());
            h.update(hidden.table.as_bytes());
            h.update(hidden.first.to_le_bytes());
            h.update(hidden.count.to_le_bytes());
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Builds the description from a session over the vault (async, for callers inside tokio).
pub async fn describe(
    ctx: &SessionContext,
    node_dir: &Path,
    key: &VaultKey,
    as_of: i32,
) -> Result<DatasetDescription, VaultError> {
    let quality = quality::profile(ctx, as_of).await?;
    let root = store::vault_dir(node_dir);
    let manifest = store::read_manifest(&root, key)?;
    // Live resources: updated and deleted ones are not counted twice or at all.
    let resources = manifest.live_resources();
    let mut tables = Vec::new();
    let mut persons = 0;
    for table in TABLES {
        let tq = quality.tables.iter().find(|t| t.table == table);
        let rows = tq.map(|t| t.rows).unwrap_or(0);
        if table == "person" {
            persons = rows;
        }
        let fields = schema(table)
            .fields()
            .iter()
            .map(|f| FieldDescription {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                privacy_level: privacy_level(table, f.name()),
                missing_rate: tq
                    .and_then(|t| t.columns.iter().find(|c| &c.column == f.name()))
                    .map(|c| c.missing_rate)
                    .unwrap_or(0.0),
            })
            .collect();
        tables.push(TableDescription {
            name: table.to_string(),
            row_count: rows,
            fields,
        });
    }
    Ok(DatasetDescription {
        format: "medspace-cdm/1".into(),
        data_model: "OMOP CDM 5.4 (subset)".into(),
        persons,
        resources,
        tables,
        quality,
        content_hash: content_hash(node_dir, key)?,
    })
}

/// Blocking [`describe`] of a node's vault. Must not be called inside a tokio runtime.
pub fn describe_node(
    node_dir: &Path,
    key: &VaultKey,
    as_of: i32,
) -> Result<DatasetDescription, VaultError> {
    let ctx = crate::open_session(node_dir, key)?;
    crate::runtime()?.block_on(describe(&ctx, node_dir, key, as_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_the_consortium_defaults() {
        assert_eq!(
            privacy_level("person", "person_source_value"),
            PrivacyLevel::L3
        );
        assert_eq!(privacy_level("measurement", "person_id"), PrivacyLevel::L2);
        assert_eq!(privacy_level("person", "birth_datetime"), PrivacyLevel::L3);
        assert_eq!(privacy_level("person", "year_of_birth"), PrivacyLevel::L2);
        assert_eq!(
            privacy_level("condition_occurrence", "condition_source_value"),
            PrivacyLevel::L3
        );
        assert_eq!(
            privacy_level("measurement", "measurement_id"),
            PrivacyLevel::L2
        );
    }
}
