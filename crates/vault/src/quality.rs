//! The data-quality profile of a vault, per table and column: row counts, missing rate, share
//! of invalid (malformed) and unknown (unmapped, concept id 0) codes, duplicate rows, and
//! implausible values (death before birth, dates after an explicit "as of" date, measurements
//! outside physiological ranges for common LOINC codes).
//!
//! It goes into the catalog description, so it holds counts and rates only, never values.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type, Int32Type, Int64Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::cdm::{TABLES, columns};
use crate::error::VaultError;
use crate::fhir::{format_date, parse_date};
use crate::vocab::{CodeSystem, code_is_valid};

/// Quality figures of one column.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnQuality {
    /// Column name.
    pub column: String,
    /// Null (or empty-string) cells.
    pub missing: u64,
    /// `missing / rows` (0 for an empty table).
    pub missing_rate: f64,
    /// Source-code columns: codes not well-formed for their code system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_codes: Option<u64>,
    /// `invalid_codes / non-missing cells`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_code_rate: Option<f64>,
    /// Concept-id columns: cells equal to 0 (code unknown to the vocabulary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_codes: Option<u64>,
    /// `unknown_codes / non-missing cells`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_code_rate: Option<f64>,
    /// Date columns: dates after the "as of" date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub future_dates: Option<u64>,
}

/// Quality figures of one table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableQuality {
    /// Table name.
    pub table: String,
    /// Rows.
    pub rows: u64,
    /// Rows equal to an earlier row in every column but the row id.
    pub duplicates: u64,
    /// `duplicates / rows`.
    pub duplicate_rate: f64,
    /// Per column.
    pub columns: Vec<ColumnQuality>,
}

/// Implausible values across tables.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Implausible {
    /// Persons whose death date is before their birth date.
    pub death_before_birth: u64,
    /// Cells with a date after the "as of" date, all tables together.
    pub future_dates: u64,
    /// Measurements outside the physiological range of their LOINC code, per code.
    pub measurements_out_of_range: BTreeMap<String, u64>,
    /// Sum of `measurements_out_of_range`.
    pub measurements_out_of_range_total: u64,
}

/// The whole profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityProfile {
    /// The "as of" date (YYYY-MM-DD) future dates are judged against.
    pub as_of: String,
    /// Per table, in CDM order.
    pub tables: Vec<TableQuality>,
    /// Cross-table plausibility.
    pub implausible: Implausible,
}

/// Physiological ranges (inclusive) for common LOINC codes, in the unit given. Values in
/// another unit are not judged.
pub const RANGES: &[(&str, &str, f64, f64)] = &[
    ("8480-6", "mm[Hg]", 40.0, 300.0), // systolic blood pressure
    ("8462-4", "mm[Hg]", 20.0, 200.0), // diastolic blood pressure
    ("8867-4", "/min", 20.0, 300.0),   // heart rate
    ("9279-1", "/min", 4.0, 80.0),     // respiratory rate
    ("8310-5", "Cel", 25.0, 45.0),     // body temperature
    ("39156-5", "kg/m2", 8.0, 100.0),  // BMI
    ("29463-7", "kg", 0.3, 400.0),     // body weight
    ("8302-2", "cm", 20.0, 250.0),     // body height
    ("4548-4", "%", 2.0, 20.0),        // HbA1c
    ("2339-0", "mg/dL", 10.0, 1500.0), // glucose
    ("2093-3", "mg/dL", 40.0, 1000.0), // total cholesterol
    ("2160-0", "mg/dL", 0.1, 25.0),    // creatinine
    ("2708-6", "%", 40.0, 100.0),      // oxygen saturation
    ("59408-5", "%", 40.0, 100.0),     // oxygen saturation (pulse oximetry)
];

/// Which code system a source-value column holds (for validity checks).
fn source_systems(table: &str, column: &str) -> Option<&'static [CodeSystem]> {
    match (table, column) {
        ("condition_occurrence", "condition_source_value")
        | ("procedure_occurrence", "procedure_source_value")
        | ("visit_occurrence", "visit_source_value") => Some(&[CodeSystem::Snomed]),
        ("measurement", "measurement_source_value") => Some(&[CodeSystem::Loinc]),
        ("observation", "observation_source_value") => {
            Some(&[CodeSystem::Loinc, CodeSystem::Snomed])
        }
        ("drug_exposure", "drug_source_value") => Some(&[CodeSystem::RxNorm, CodeSystem::Cvx]),
        _ => None,
    }
}

/// Whether a concept-id column counts towards "unknown codes".
fn is_code_concept(table: &str, column: &str) -> bool {
    matches!(
        (table, column),
        ("condition_occurrence", "condition_concept_id")
            | ("drug_exposure", "drug_concept_id")
            | ("measurement", "measurement_concept_id")
            | ("observation", "observation_concept_id")
            | ("procedure_occurrence", "procedure_concept_id")
    )
}

/// Columns that identify a row and are left out when looking for duplicates.
fn key_columns(table: &str) -> &'static [&'static str] {
    match table {
        "person" => &["person_id"],
        "visit_occurrence" => &["visit_occurrence_id"],
        "condition_occurrence" => &["condition_occurrence_id"],
        "drug_exposure" => &["drug_exposure_id"],
        "measurement" => &["measurement_id"],
        "observation" => &["observation_id"],
        "procedure_occurrence" => &["procedure_occurrence_id"],
        "location" => &["location_id"],
        "cost" => &["cost_id"],
        _ => &[],
    }
}

/// Columns whose repetition makes a duplicate, when not "all but the key".
fn duplicate_columns(table: &str) -> Option<&'static [&'static str]> {
    match table {
        // Two person rows are the same person when they carry the same pseudonym.
        "person" => Some(&["person_source_value"]),
        "death" => Some(&["person_id"]),
        // One location per person (its id is the person's): people of one town share the rest.
        "location" => Some(&["location_id"]),
        _ => None,
    }
}

fn rate(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// Profiles every CDM table of a session (see [`crate::open_session`]).
pub async fn profile(ctx: &SessionContext, as_of: i32) -> Result<QualityProfile, VaultError> {
    let mut out = QualityProfile {
        as_of: format_date(as_of),
        ..QualityProfile::default()
    };
    let mut births: HashMap<i64, i32> = HashMap::new();
    let mut deaths: Vec<(i64, i32)> = Vec::new();
    for table in TABLES {
        let cols = columns(table);
        let mut missing = vec![0u64; cols.len()];
        let mut invalid = vec![0u64; cols.len()];
        let mut unknown = vec![0u64; cols.len()];
        let mut future = vec![0u64; cols.len()];
        let mut rows = 0u64;
        let mut seen: HashSet<u64> = HashSet::new();
        let mut duplicates = 0u64;
        let dup_cols: Vec<usize> = match duplicate_columns(table) {
            Some(names) => cols
                .iter()
                .enumerate()
                .filter(|(_, c)| names.contains(&c.name))
                .map(|(i, _)| i)
                .collect(),
            None => {
                let keys = key_columns(table);
                cols.iter()
                    .enumerate()
                    .filter(|(_, c)| !keys.contains(&c.name))
                    .map(|(i, _)| i)
                    .collect()
            }
        };
        let df = ctx.table(table).await?;
        let mut stream = df.execute_stream().await?;
        let converter = RowConverter::new(
            dup_cols
                .iter()
                .filter_map(|i| cols.get(*i))
                .map(|c| {
                    SortField::new(
                        crate::cdm::schema(table)
                            .field_with_name(c.name)
                            .map(|f| f.data_type().clone())
                            .unwrap_or(DataType::Utf8),
                    )
                })
                .collect(),
        )
        .map_err(|e| VaultError::Query(e.to_string()))?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let n = batch.num_rows();
            rows += n as u64;
            for (ci, c) in cols.iter().enumerate() {
                let Some(arr) = batch.column_by_name(c.name) else {
                    continue;
                };
                let mut miss = arr.null_count() as u64;
                if let Some(s) = arr.as_string_opt::<i32>() {
                    miss += s.iter().filter(|v| v.is_some_and(str::is_empty)).count() as u64;
                    if let Some(systems) = source_systems(table, c.name) {
                        let bad = s
                            .iter()
                            .flatten()
                            .filter(|v| {
                                !v.is_empty() && !systems.iter().any(|sys| code_is_valid(*sys, v))
                            })
                            .count();
                        if let Some(x) = invalid.get_mut(ci) {
                            *x += bad as u64;
                        }
                    }
                }
                if is_code_concept(table, c.name)
                    && let Some(a) = arr.as_primitive_opt::<Int32Type>()
                    && let Some(x) = unknown.get_mut(ci)
                {
                    *x += a.iter().flatten().filter(|v| *v == 0).count() as u64;
                }
                if let Some(a) = arr.as_primitive_opt::<Date32Type>()
                    && let Some(x) = future.get_mut(ci)
                {
                    *x += a.iter().flatten().filter(|d| *d > as_of).count() as u64;
                }
                if let Some(x) = missing.get_mut(ci) {
                    *x += miss;
                }
            }
            // Duplicates: hash the comparable row encoding of the chosen columns.
            let arrays: Vec<ArrayRef> = dup_cols
                .iter()
                .filter_map(|i| cols.get(*i))
                .filter_map(|c| batch.column_by_name(c.name).cloned())
                .collect();
            if !arrays.is_empty() {
                let encoded = converter
                    .convert_columns(&arrays)
                    .map_err(|e| VaultError::Query(e.to_string()))?;
                for row in encoded.iter() {
                    let mut h = DefaultHasher::new();
                    row.as_ref().hash(&mut h);
                    if !seen.insert(h.finish()) {
                        duplicates += 1;
                    }
                }
            }
            match table {
                "person" => collect_births(&batch, &mut births),
                "death" => collect_deaths(&batch, &mut deaths),
                "measurement" => {
                    count_out_of_range(&batch, &mut out.implausible.measurements_out_of_range)
                }
                _ => {}
            }
        }
        let mut tq = TableQuality {
            table: table.to_string(),
            rows,
            duplicates,
            duplicate_rate: rate(duplicates, rows),
            columns: Vec::with_capacity(cols.len()),
        };
        for (ci, c) in cols.iter().enumerate() {
            let miss = missing.get(ci).copied().unwrap_or(0);
            let present = rows.saturating_sub(miss);
            let mut cq = ColumnQuality {
                column: c.name.to_string(),
                missing: miss,
                missing_rate: rate(miss, rows),
                ..ColumnQuality::default()
            };
            if source_systems(table, c.name).is_some() {
                let bad = invalid.get(ci).copied().unwrap_or(0);
                cq.invalid_codes = Some(bad);
                cq.invalid_code_rate = Some(rate(bad, present));
            }
            if is_code_concept(table, c.name) {
                let u = unknown.get(ci).copied().unwrap_or(0);
                cq.unknown_codes = Some(u);
                cq.unknown_code_rate = Some(rate(u, present));
            }
            if c.ty == crate::cdm::ColumnType::Date32 {
                let f = future.get(ci).copied().unwrap_or(0);
                cq.future_dates = Some(f);
                out.implausible.future_dates += f;
            }
            tq.columns.push(cq);
        }
        out.tables.push(tq);
    }
    out.implausible.death_before_birth = deaths
        .iter()
        .filter(|(p, d)| births.get(p).is_some_and(|b| d < b))
        .count() as u64;
    out.implausible.measurements_out_of_range_total =
        out.implausible.measurements_out_of_range.values().sum();
    Ok(out)
}

fn collect_births(
    batch: &datafusion::arrow::record_batch::RecordBatch,
    births: &mut HashMap<i64, i32>,
) {
    let (Some(ids), Some(dates), Some(years)) = (
        batch
            .column_by_name("person_id")
            .and_then(|a| a.as_primitive_opt::<Int64Type>()),
        batch
            .column_by_name("birth_datetime")
            .and_then(|a| a.as_primitive_opt::<Date32Type>()),
        batch
            .column_by_name("year_of_birth")
            .and_then(|a| a.as_primitive_opt::<Int32Type>()),
    ) else {
        return;
    };
    for i in 0..batch.num_rows() {
        if ids.is_null(i) {
            continue;
        }
        // Exact birth date, or the first day of the birth year when only the year is known.
        let birth = if dates.is_valid(i) {
            Some(dates.value(i))
        } else if years.is_valid(i) {
            parse_date(&format!("{:04}", years.value(i)))
        } else {
            None
        };
        if let Some(b) = birth {
            births.insert(ids.value(i), b);
        }
    }
}

fn collect_deaths(
    batch: &datafusion::arrow::record_batch::RecordBatch,
    deaths: &mut Vec<(i64, i32)>,
) {
    let (Some(ids), Some(dates)) = (
        batch
            .column_by_name("person_id")
            .and_then(|a| a.as_primitive_opt::<Int64Type>()),
        batch
            .column_by_name("death_date")
            .and_then(|a| a.as_primitive_opt::<Date32Type>()),
    ) else {
        return;
    };
    for i in 0..batch.num_rows() {
        if ids.is_valid(i) && dates.is_valid(i) {
            deaths.push((ids.value(i), dates.value(i)));
        }
    }
}

fn count_out_of_range(
    batch: &datafusion::arrow::record_batch::RecordBatch,
    out: &mut BTreeMap<String, u64>,
) {
    let (Some(codes), Some(values), Some(units)) = (
        batch
            .column_by_name("measurement_source_value")
            .and_then(|a| a.as_string_opt::<i32>()),
        batch
            .column_by_name("value_as_number")
            .and_then(|a| a.as_primitive_opt::<Float64Type>()),
        batch
            .column_by_name("unit_source_value")
            .and_then(|a| a.as_string_opt::<i32>()),
    ) else {
        return;
    };
    for i in 0..batch.num_rows() {
        if codes.is_null(i) || values.is_null(i) {
            continue;
        }
        let code = codes.value(i);
        let Some((_, unit, lo, hi)) = RANGES.iter().find(|(c, ..)| *c == code) else {
            continue;
        };
        if units.is_valid(i) && units.value(i) != *unit {
            continue;
        }
        let v = values.value(i);
        if !(v >= *lo && v <= *hi) {
            *out.entry(code.to_string()).or_insert(0) += 1;
        }
    }
}

/// Blocking profile of a node's vault (for the CLI). Must not be called inside a tokio runtime.
pub fn profile_node(
    node_dir: &Path,
    key: &crate::VaultKey,
    as_of: i32,
) -> Result<QualityProfile, VaultError> {
    let ctx = crate::open_session(node_dir, key)?;
    crate::runtime()?.block_on(profile(&ctx, as_of))
}

impl QualityProfile {
    /// A human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "quality profile as of {}", self.as_of);
        for t in &self.tables {
            let _ = writeln!(
                s,
                "\n{}: rows={} duplicates={} ({:.2}%)",
                t.table,
                t.rows,
                t.duplicates,
                t.duplicate_rate * 100.0
            );
            for c in &t.columns {
                let mut line = format!(
                    "  {:<32} missing {:>6.2}%",
                    c.column,
                    c.missing_rate * 100.0
                );
                if let (Some(n), Some(r)) = (c.invalid_codes, c.invalid_code_rate) {
                    let _ = write!(line, "  invalid codes {n} ({:.2}%)", r * 100.0);
                }
                if let (Some(n), Some(r)) = (c.unknown_codes, c.unknown_code_rate) {
                    let _ = write!(line, "  unknown codes {n} ({:.2}%)", r * 100.0);
                }
                if let Some(f) = c.future_dates.filter(|f| *f > 0) {
                    let _ = write!(line, "  future dates {f}");
                }
                let _ = writeln!(s, "{line}");
            }
        }
        let i = &self.implausible;
        let _ = writeln!(
            s,
            "\nimplausible: death_before_birth={} future_dates={} measurements_out_of_range={}",
            i.death_before_birth, i.future_dates, i.measurements_out_of_range_total
        );
        for (code, n) in &i.measurements_out_of_range {
            let _ = writeln!(s, "  {code}: {n} out of range");
        }
        s
    }
}
