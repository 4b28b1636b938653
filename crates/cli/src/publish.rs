//! From a vault's catalog description to the ledger's `PublishDataset`: the privacy level of
//! each field as the consortium classifies it (DESIGN §3), quality figures in parts per million.

use medspace_types::{
    DatasetDescription, DatasetId, FieldDesc, Hash, Level, List, TableDesc, Text,
};
use medspace_vault::catalog::DatasetDescription as VaultDescription;

/// The consortium's level for a CDM field. Record-level pseudonymous data is L2; dates, clinical
/// codes and values make a record identifiable in combination and are L3; the ledger pseudonym
/// itself, race and ethnicity are L3 too. L4 (special categories) is assigned per code set by
/// the hospital's steward, not per column.
pub fn level_of(table: &str, column: &str) -> Level {
    match column {
        "person_source_value"
        | "birth_datetime"
        | "race_source_value"
        | "ethnicity_source_value"
        | "day_of_birth" => Level::L3,
        "person_id"
        | "gender_source_value"
        | "gender_concept_id"
        | "year_of_birth"
        | "month_of_birth" => Level::L2,
        c if c.ends_with("_date") || c.ends_with("_datetime") => Level::L3,
        c if c.ends_with("_source_value") || c.starts_with("value_as") => Level::L3,
        _ if table == "death" => Level::L3,
        _ => Level::L2,
    }
}

fn ppm(rate: f64) -> u32 {
    // Outside the state machine: the node converts its measured rates once, to integers.
    (rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u32
}

/// Builds the ledger's dataset description for `hospital` from its vault's description.
pub fn ledger_description(
    hospital: &str,
    version: u32,
    v: &VaultDescription,
) -> anyhow::Result<DatasetDescription> {
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
                level: level_of(&t.name, &f.name),
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
        .map_err(|e| anyhow::anyhow!("vault content hash: {e}"))?;
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
