//! From a vault's catalog description to the ledger's `PublishDataset`: the privacy level of
//! each field as the consortium's policy on the ledger classifies it (DESIGN §3), quality
//! figures in parts per million.

use medspace_types::{
    DatasetDescription, DatasetId, FieldDesc, Hash, List, TableDesc, Text, TypeError,
};
use medspace_vault::catalog::DatasetDescription as VaultDescription;

fn ppm(rate: f64) -> u32 {
    // Outside the state machine: the node converts its measured rates once, to integers.
    (rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u32
}

/// Why a vault's description does not fit the ledger's (a name or a list too long, a content
/// hash that is not one).
#[derive(Debug, thiserror::Error)]
#[error("the vault's catalog description does not fit the ledger's: {0}")]
pub struct PublishError(String);

impl From<TypeError> for PublishError {
    fn from(e: TypeError) -> Self {
        Self(e.to_string())
    }
}

/// Builds the ledger's dataset description for `hospital` from its vault's description, each
/// field at the level `classification` (the consortium's policy) gives it.
pub fn ledger_description(
    hospital: &str,
    version: u32,
    v: &VaultDescription,
    classification: &medspace_types::classification::Classification,
) -> Result<DatasetDescription, PublishError> {
    let mut tables = Vec::new();
    for t in &v.tables {
        let q = v.quality.tables.iter().find(|q| q.table == t.name);
        let implausible = match t.name.as_str() {
            "measurement" => v.quality.implausible.measurements_out_of_range_total,
            "death" => v.quality.implausible.death_before_birth,
            _ => 0,
        };
        let rows = t.row_count.max(1) as f64;
        let mut fields = Vec::new();
        for f in &t.fields {
            let cq = q.and_then(|q| q.columns.iter().find(|c| c.column == f.name));
            let invalid = cq.map_or(0.0, |c| {
                c.invalid_code_rate.unwrap_or(0.0) + c.unknown_code_rate.unwrap_or(0.0)
            });
            fields.push(FieldDesc {
                name: Text::new(f.name.clone())?,
                level: classification.field_level(&t.name, &f.name),
                missing_ppm: ppm(f.missing_rate),
                invalid_ppm: ppm(invalid),
            });
        }
        tables.push(TableDesc {
            name: Text::new(t.name.clone())?,
            rows: t.row_count,
            duplicate_ppm: ppm(q.map_or(0.0, |q| q.duplicate_rate)),
            implausible_ppm: ppm(implausible as f64 / rows),
            fields: List::new(fields)?,
        });
    }
    let content_hash: Hash = v
        .content_hash
        .parse()
        .map_err(|e| PublishError(format!("vault content hash: {e}")))?;
    Ok(DatasetDescription {
        id: DatasetId::new(&format!("{hospital}.cdm"))?,
        title: Text::new(format!(
            "{hospital} common data model ({} persons)",
            v.persons
        ))?,
        version,
        tables: List::new(tables)?,
        content_hash,
    })
}

/// The catalog entry `hospital` publishes next from its vault's description: the version after
/// the one on the ledger in `state` (1 for a first entry), each field at the level of the
/// consortium's classification in force there.
pub fn next_entry(
    state: &medspace_state::State,
    hospital: &str,
    v: &VaultDescription,
) -> Result<DatasetDescription, PublishError> {
    let ledger = |e: medspace_state::TxError| PublishError(format!("ledger: {e}"));
    let version = state
        .dataset(&DatasetId::new(&format!("{hospital}.cdm"))?)
        .map_err(ledger)?
        .map_or(1, |d| d.description.version.saturating_add(1));
    let classification = state.policy().map_err(ledger)?.classification;
    ledger_description(hospital, version, v, &classification)
}
