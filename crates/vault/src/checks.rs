//! Data quality as the steward acts on it: the quality profile's figures as checks in the
//! manner of OHDSI's Data Quality Dashboard (completeness, conformance, mapping to standard
//! concepts, uniqueness, plausibility), each with its records' count, a score, and the way to
//! fix it — for unmapped codes, the codes themselves with their counts and the standard
//! concept the vocabulary offers, fixed by [`crate::Vault::remap`].
//!
//! Counts, codes and rates only: never a patient's value.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use serde::Serialize;

use crate::error::VaultError;
use crate::quality::QualityProfile;
use crate::vocab::{CodeSystem, Vocabulary};

/// The concept columns whose zeros are unmapped codes, with their source column and systems.
const CONCEPTS: &[(&str, &str, &str, &[CodeSystem])] = &[
    (
        "condition_occurrence",
        "condition_concept_id",
        "condition_source_value",
        &[CodeSystem::Snomed],
    ),
    (
        "drug_exposure",
        "drug_concept_id",
        "drug_source_value",
        &[CodeSystem::RxNorm, CodeSystem::Cvx],
    ),
    (
        "measurement",
        "measurement_concept_id",
        "measurement_source_value",
        &[CodeSystem::Loinc],
    ),
    (
        "observation",
        "observation_concept_id",
        "observation_source_value",
        &[CodeSystem::Loinc, CodeSystem::Snomed],
    ),
    (
        "procedure_occurrence",
        "procedure_concept_id",
        "procedure_source_value",
        &[CodeSystem::Snomed],
    ),
];

/// How many unmapped codes of a column a check lists.
const TOP_CODES: usize = 10;

/// One unmapped source code: how many rows carry it, and the standard concept the vocabulary
/// maps it to now (`None`: the vocabulary does not know it either).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnmappedCode {
    /// The source code.
    pub code: String,
    /// Rows with it.
    pub rows: u64,
    /// The standard concept the vocabulary offers.
    pub maps_to: Option<i32>,
}

/// A failing check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// `completeness`, `conformance`, `mapping`, `uniqueness` or `plausibility`.
    pub kind: &'static str,
    /// The table.
    pub table: String,
    /// The column (`None` for a table's check).
    pub column: Option<String>,
    /// Records failing it.
    pub records: u64,
    /// Their share of the rows it judges.
    pub share: f64,
    /// `1 − share`.
    pub score: f64,
    /// For unmapped codes: the most frequent ones.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<UnmappedCode>,
    /// What to do about it.
    pub fix: String,
}

/// The checks a profile fails (every one with failing records), the worst first, with the
/// unmapped codes of `unmapped` (see [`unmapped_codes`]) looked up in `vocabulary`.
pub fn checks(
    profile: &QualityProfile,
    unmapped: &BTreeMap<String, Vec<(String, u64)>>,
    vocabulary: Option<&Vocabulary>,
) -> Vec<Check> {
    let mut out = Vec::new();
    for t in &profile.tables {
        for c in &t.columns {
            if c.missing > 0 {
                out.push(check(
                    "completeness",
                    &t.table,
                    Some(&c.column),
                    c.missing,
                    c.missing_rate,
                    "the source system does not fill it: complete it there and re-send the records with `medspace ingest --update` (or leave it out of requests that need it)".into(),
                ));
            }
            if let (Some(n), Some(r)) = (c.invalid_codes, c.invalid_code_rate)
                && n > 0
            {
                out.push(check(
                    "conformance",
                    &t.table,
                    Some(&c.column),
                    n,
                    r,
                    "codes malformed for their code system: correct them at the source and re-send with `medspace ingest --update`".into(),
                ));
            }
            if let (Some(n), Some(r)) = (c.unknown_codes, c.unknown_code_rate)
                && n > 0
            {
                let codes: Vec<UnmappedCode> = CONCEPTS
                    .iter()
                    .find(|(table, col, ..)| *table == t.table && *col == c.column)
                    .map(|(_, _, _, systems)| {
                        unmapped
                            .get(&t.table)
                            .into_iter()
                            .flatten()
                            .map(|(code, rows)| UnmappedCode {
                                code: code.clone(),
                                rows: *rows,
                                maps_to: vocabulary.and_then(|v| {
                                    systems
                                        .iter()
                                        .map(|s| v.map(*s, code).concept_id)
                                        .find(|id| *id != 0)
                                }),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let fixable: u64 = codes
                    .iter()
                    .filter(|x| x.maps_to.is_some())
                    .map(|x| x.rows)
                    .sum();
                let fix = match vocabulary {
                    Some(_) if fixable > 0 => format!(
                        "the vocabulary maps {fixable} of these rows' codes to standard concepts: run `medspace quality --node … --remap --vocab …`, then publish the catalog entry again; add the others to the vocabulary"
                    ),
                    Some(_) => "the vocabulary knows none of these codes: add them (CONCEPT.csv and a Maps to relationship) and re-map".into(),
                    None => "no vocabulary was given: map the codes through one with `medspace quality --node … --remap --vocab …`".into(),
                };
                let mut x = check("mapping", &t.table, Some(&c.column), n, r, fix);
                x.codes = codes;
                out.push(x);
            }
        }
        if t.duplicates > 0 {
            out.push(check(
                "uniqueness",
                &t.table,
                None,
                t.duplicates,
                t.duplicate_rate,
                "rows equal in every column but the row id: the feed sends them twice; delete the copies at the source and re-send, or send Bundle DELETE entries".into(),
            ));
        }
    }
    let i = &profile.implausible;
    let rows_of = |table: &str| {
        profile
            .tables
            .iter()
            .find(|t| t.table == table)
            .map_or(0, |t| t.rows)
    };
    if i.measurements_out_of_range_total > 0 {
        let codes = i
            .measurements_out_of_range
            .iter()
            .map(|(c, n)| format!("{c} ({n})"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(check(
            "plausibility",
            "measurement",
            Some("value_as_number"),
            i.measurements_out_of_range_total,
            share(i.measurements_out_of_range_total, rows_of("measurement")),
            format!(
                "values outside the physiological range of their code ({codes}): flagged; check the units and the device at the source"
            ),
        ));
    }
    if i.death_before_birth > 0 {
        out.push(check(
            "plausibility",
            "death",
            Some("death_date"),
            i.death_before_birth,
            share(i.death_before_birth, rows_of("death")),
            "deaths recorded before the birth date: correct either at the source".into(),
        ));
    }
    if i.future_dates > 0 {
        out.push(check(
            "plausibility",
            "*",
            None,
            i.future_dates,
            0.0,
            format!("dates after {}: correct them at the source", profile.as_of),
        ));
    }
    out.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.table.cmp(&b.table)));
    out
}

fn share(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

fn check(
    kind: &'static str,
    table: &str,
    column: Option<&str>,
    records: u64,
    share: f64,
    fix: String,
) -> Check {
    Check {
        kind,
        table: table.into(),
        column: column.map(String::from),
        records,
        share,
        score: 1.0 - share,
        codes: Vec::new(),
        fix,
    }
}

/// The most frequent source codes of rows whose concept id is 0, per table (at most
/// [`TOP_CODES`] each). Blocking; must not be called inside a tokio runtime.
pub fn unmapped_codes(
    node_dir: &Path,
    key: &crate::VaultKey,
) -> Result<BTreeMap<String, Vec<(String, u64)>>, VaultError> {
    let ctx = crate::open_session(node_dir, key)?;
    let rt = crate::runtime()?;
    let mut out = BTreeMap::new();
    for (table, concept, source, _) in CONCEPTS {
        let q = format!(
            "SELECT {source} AS code, COUNT(*) AS n FROM {table} WHERE {concept} = 0 AND {source} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_CODES}"
        );
        let mut codes = Vec::new();
        for b in rt.block_on(crate::sql(&ctx, &q))? {
            let (Some(c), Some(n)) = (b.column_by_name("code"), b.column_by_name("n")) else {
                continue;
            };
            let (Some(c), Some(n)) = (c.as_string_opt::<i32>(), n.as_primitive_opt::<Int64Type>())
            else {
                continue;
            };
            for i in 0..b.num_rows() {
                if c.is_valid(i) {
                    codes.push((
                        c.value(i).to_string(),
                        u64::try_from(n.value(i)).unwrap_or(0),
                    ));
                }
            }
        }
        out.insert((*table).to_string(), codes);
    }
    Ok(out)
}

/// A readable list of the checks, with their fix paths.
pub fn render(checks: &[Check]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if checks.is_empty() {
        let _ = writeln!(s, "every check passes");
    }
    for c in checks {
        let what = match &c.column {
            Some(col) => format!("{}.{col}", c.table),
            None => c.table.clone(),
        };
        let _ = writeln!(
            s,
            "{:<13} {what}: {} records ({:.2} %), score {:.3}",
            c.kind,
            c.records,
            c.share * 100.0,
            c.score
        );
        for x in &c.codes {
            let _ = writeln!(
                s,
                "    {:<14} {:>7} rows  {}",
                x.code,
                x.rows,
                x.maps_to
                    .map_or("not in the vocabulary".to_string(), |id| format!(
                        "maps to concept {id}"
                    ))
            );
        }
        let _ = writeln!(s, "    fix: {}", c.fix);
    }
    s
}
