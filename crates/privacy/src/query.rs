//! The federated query language: a versioned, declarative cohort + aggregate spec (JSON), never
//! SQL from outside. A node validates a spec, compiles it locally to SQL over its own tables
//! (always joined to the contract's consent allow-list), and vectorizes the result over the fixed
//! group layout of [`groups`] so every site's vector lines up for secure aggregation.
//!
//! Semantics of a compiled query, all relative to the spec's `index_date`:
//! - the cohort is the persons in the consent allow-list and in `person`, born in or before the
//!   index year;
//! - age is `index year − year_of_birth` (only the birth year is stored);
//! - every listed condition, drug and procedure must have been recorded on or before the index
//!   date (all of them: the lists are conjunctions);
//! - the measurement filter keeps persons with at least one measurement of that code on or before
//!   the index date whose value satisfies the comparison;
//! - when grouped by sex, persons whose recorded sex is neither `female` nor `male` are left out
//!   (they have no group in the fixed layout);
//! - `count` gives `n`, the number of persons per group;
//! - `mean` uses each cohort person's latest value of the measurement on or before the index date
//!   (ties on the date broken by the larger value), clamped to `[lower, upper]`; `n` counts the
//!   persons having such a value and `sum_fixed` is the sum of `round(clamped × 1000)`. The
//!   clamping bounds the sensitivity of `sum_fixed` to `1000 × max(|lower|, |upper|)`.
//!
//! Output columns, in order: the `group_by` fields in the order given (`sex` Utf8, `age_band`
//! Utf8), then `n` (Int64), then for `mean` `sum_fixed` (Int64). Rows are ordered by the group
//! columns; groups with no persons produce no row (the node fills them with zeros using
//! [`groups`]).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The only spec version this library understands.
pub const SPEC_VERSION: u32 = 1;
/// Largest magnitude accepted for measurement thresholds and clamping bounds.
pub const MAX_ABS_VALUE: f64 = 1e9;
/// Largest age accepted in an age filter.
pub const MAX_AGE: u32 = 150;
/// Fixed-point factor of `sum_fixed`.
pub const FIXED_POINT_SCALE: i64 = 1000;

/// Errors from parsing, validating or compiling a query spec.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    #[error("query spec is not valid json for version 1: {reason}")]
    Parse { reason: String },
    #[error("unsupported query spec version: version={version} supported=1")]
    Version { version: u32 },
    #[error("invalid code: field={field} position={position} (must match [A-Za-z0-9.-]{{1,32}})")]
    Code {
        field: &'static str,
        position: usize,
    },
    #[error("invalid age range: min={min} max={max} (need min <= max <= 150)")]
    AgeRange { min: u32, max: u32 },
    #[error("invalid index_date (need an existing date as YYYY-MM-DD)")]
    IndexDate,
    #[error("invalid number: field={field} (must be finite with magnitude <= 1e9)")]
    Number { field: &'static str },
    #[error("invalid clamping bounds for mean (need lower < upper)")]
    Bounds,
    #[error("invalid group_by: {reason}")]
    GroupBy { reason: &'static str },
    #[error("invalid consented table name (must match [A-Za-z_][A-Za-z0-9_]{{0,62}})")]
    TableName,
}

/// A versioned query spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    pub version: u32,
    pub cohort: Cohort,
    pub aggregate: Aggregate,
    #[serde(default)]
    pub group_by: Vec<GroupField>,
}

/// Who is counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cohort {
    /// SNOMED CT codes (bare), all required.
    #[serde(default)]
    pub conditions: Vec<String>,
    /// Drug codes (bare, e.g. RxNorm), all required.
    #[serde(default)]
    pub drugs: Vec<String>,
    /// Procedure codes (bare, e.g. SNOMED CT), all required.
    #[serde(default)]
    pub procedures: Vec<String>,
    #[serde(default)]
    pub measurement: Option<MeasurementFilter>,
    #[serde(default)]
    pub sex: Option<Sex>,
    #[serde(default)]
    pub age: Option<AgeRange>,
    /// `YYYY-MM-DD`.
    pub index_date: String,
}

/// At least one measurement of `code` with `value_as_number <op> value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementFilter {
    /// LOINC code (bare).
    pub code: String,
    pub op: CmpOp,
    pub value: f64,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "=")]
    Eq,
}

impl CmpOp {
    fn sql(self) -> &'static str {
        match self {
            CmpOp::Ge => ">=",
            CmpOp::Gt => ">",
            CmpOp::Le => "<=",
            CmpOp::Lt => "<",
            CmpOp::Eq => "=",
        }
    }
}

/// Recorded sex (`person.gender_source_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Female,
    Male,
}

impl Sex {
    /// All values, in layout order.
    pub const ALL: [Sex; 2] = [Sex::Female, Sex::Male];

    /// The stored and output string.
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
        }
    }
}

/// Inclusive age range in years at the index date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgeRange {
    pub min: u32,
    pub max: u32,
}

/// What is computed per group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// Number of persons.
    Count,
    /// Clamped mean of a measurement: the node releases `n` and `sum_fixed`.
    Mean(MeanSpec),
}

/// The measurement to average and its clamping bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanSpec {
    pub measurement: String,
    pub lower: f64,
    pub upper: f64,
}

/// A low-cardinality field to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupField {
    Sex,
    AgeBand,
}

/// Ten-year age band: `0` is 0-9, …, `8` is 80-89, `9` is 90+.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgeBand(u8);

impl AgeBand {
    /// Number of bands.
    pub const COUNT: u8 = 10;

    /// All bands in layout order.
    pub fn all() -> impl Iterator<Item = AgeBand> {
        (0..Self::COUNT).map(AgeBand)
    }

    /// The band containing `age`.
    pub fn of_age(age: u32) -> AgeBand {
        AgeBand(u8::try_from(age / 10).unwrap_or(9).min(9))
    }

    /// The output label, e.g. `"40-49"` or `"90+"`.
    pub fn label(self) -> String {
        if self.0 >= 9 {
            "90+".to_string()
        } else {
            format!("{}-{}", u32::from(self.0) * 10, u32::from(self.0) * 10 + 9)
        }
    }

    /// Parses an output label back.
    pub fn from_label(label: &str) -> Option<AgeBand> {
        AgeBand::all().find(|b| b.label() == label)
    }
}

/// One cell of the fixed output layout; a field is `None` when not grouped by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub sex: Option<Sex>,
    pub age_band: Option<AgeBand>,
}

/// A spec that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The `(table, field)` pairs the query reads, sorted, besides the consent allow-list's
    /// `person_id`, which every query reads.
    pub reads: Vec<(&'static str, &'static str)>,
    /// The fixed output layout (see [`groups`]).
    pub groups: Vec<GroupKey>,
}

/// The codes a spec filters on, with the CDM table whose source codes they are matched in.
pub fn codes(spec: &QuerySpec) -> Vec<(&'static str, &str)> {
    let c = &spec.cohort;
    let mut out: Vec<(&'static str, &str)> = Vec::new();
    out.extend(
        c.conditions
            .iter()
            .map(|x| ("condition_occurrence", x.as_str())),
    );
    out.extend(c.drugs.iter().map(|x| ("drug_exposure", x.as_str())));
    out.extend(
        c.procedures
            .iter()
            .map(|x| ("procedure_occurrence", x.as_str())),
    );
    if let Some(m) = &c.measurement {
        out.push(("measurement", m.code.as_str()));
    }
    if let Aggregate::Mean(m) = &spec.aggregate {
        out.push(("measurement", m.measurement.as_str()));
    }
    out
}

/// A spec's privacy level under a consortium's classification: the highest of the fields it
/// reads (the consent allow-list's `person.person_id` included) and of the codes it filters on
/// (a sensitive code makes it L4, whatever the fields).
pub fn level(
    spec: &QuerySpec,
    validated: &Validated,
    classification: &medspace_types::classification::Classification,
) -> medspace_types::Level {
    let fields = validated
        .reads
        .iter()
        .chain(std::iter::once(&("person", "person_id")))
        .map(|(t, f)| classification.field_level(t, f));
    let codes = codes(spec)
        .into_iter()
        .map(|(t, c)| classification.code_level(t, c));
    fields
        .chain(codes)
        .max()
        .unwrap_or(medspace_types::Level::L1)
}

/// Parses a spec from JSON (unknown fields are rejected) and validates it.
pub fn parse(json: &str) -> Result<(QuerySpec, Validated), QueryError> {
    let spec: QuerySpec = serde_json::from_str(json).map_err(|e| QueryError::Parse {
        reason: e.to_string(),
    })?;
    let validated = validate(&spec)?;
    Ok((spec, validated))
}

fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 32
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

fn check_codes(field: &'static str, codes: &[String]) -> Result<(), QueryError> {
    match codes.iter().position(|c| !valid_code(c)) {
        Some(position) => Err(QueryError::Code { field, position }),
        None => Ok(()),
    }
}

fn check_number(field: &'static str, value: f64) -> Result<(), QueryError> {
    if value.is_finite() && value.abs() <= MAX_ABS_VALUE {
        Ok(())
    } else {
        Err(QueryError::Number { field })
    }
}

/// Parses `YYYY-MM-DD` into its year, checking the date exists.
fn index_year(date: &str) -> Result<i32, QueryError> {
    let b = date.as_bytes();
    let shape = b.len() == 10
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(QueryError::IndexDate);
    }
    let num = |r: std::ops::Range<usize>| {
        date.get(r)
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or(QueryError::IndexDate)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(QueryError::IndexDate),
    };
    if year < 1800 || day == 0 || day > days {
        return Err(QueryError::IndexDate);
    }
    i32::try_from(year).map_err(|_| QueryError::IndexDate)
}

/// Checks a spec and lists what it reads.
pub fn validate(spec: &QuerySpec) -> Result<Validated, QueryError> {
    if spec.version != SPEC_VERSION {
        return Err(QueryError::Version {
            version: spec.version,
        });
    }
    let c = &spec.cohort;
    check_codes("conditions", &c.conditions)?;
    check_codes("drugs", &c.drugs)?;
    check_codes("procedures", &c.procedures)?;
    index_year(&c.index_date)?;
    if let Some(age) = c.age
        && (age.min > age.max || age.max > MAX_AGE)
    {
        return Err(QueryError::AgeRange {
            min: age.min,
            max: age.max,
        });
    }
    if let Some(m) = &c.measurement {
        if !valid_code(&m.code) {
            return Err(QueryError::Code {
                field: "measurement.code",
                position: 0,
            });
        }
        check_number("measurement.value", m.value)?;
    }
    if let Aggregate::Mean(mean) = &spec.aggregate {
        if !valid_code(&mean.measurement) {
            return Err(QueryError::Code {
                field: "aggregate.mean.measurement",
                position: 0,
            });
        }
        check_number("aggregate.mean.lower", mean.lower)?;
        check_number("aggregate.mean.upper", mean.upper)?;
        if mean.lower >= mean.upper {
            return Err(QueryError::Bounds);
        }
    }
    if spec.group_by.len() > 2 {
        return Err(QueryError::GroupBy {
            reason: "at most 2 fields",
        });
    }
    if spec.group_by.len() == 2 && spec.group_by.first() == spec.group_by.get(1) {
        return Err(QueryError::GroupBy {
            reason: "duplicate field",
        });
    }

    let mut reads = vec![("person", "person_id"), ("person", "year_of_birth")];
    if c.sex.is_some() || spec.group_by.contains(&GroupField::Sex) {
        reads.push(("person", "gender_source_value"));
    }
    let mut table = |nonempty: bool, t: &'static str, code: &'static str, date: &'static str| {
        if nonempty {
            reads.extend([(t, "person_id"), (t, code), (t, date)]);
        }
    };
    table(
        !c.conditions.is_empty(),
        "condition_occurrence",
        "condition_source_value",
        "condition_start_date",
    );
    table(
        !c.drugs.is_empty(),
        "drug_exposure",
        "drug_source_value",
        "drug_exposure_start_date",
    );
    table(
        !c.procedures.is_empty(),
        "procedure_occurrence",
        "procedure_source_value",
        "procedure_date",
    );
    let measured = c.measurement.is_some() || matches!(spec.aggregate, Aggregate::Mean(_));
    table(
        measured,
        "measurement",
        "measurement_source_value",
        "measurement_date",
    );
    if measured {
        reads.push(("measurement", "value_as_number"));
    }
    reads.sort_unstable();
    reads.dedup();
    Ok(Validated {
        reads,
        groups: groups(spec),
    })
}

/// The fixed output layout for a spec: the cartesian product of the `group_by` fields' value
/// lists, in `group_by` order (first field outermost), with sex ∈ [female, male] and age bands
/// 0-9, 10-19, …, 80-89, 90+. Without `group_by` there is a single cell. Every site produces its
/// vector in this order, with zeros for empty groups.
pub fn groups(spec: &QuerySpec) -> Vec<GroupKey> {
    let mut cells = vec![GroupKey {
        sex: None,
        age_band: None,
    }];
    for field in &spec.group_by {
        cells = cells
            .into_iter()
            .flat_map(|cell| -> Vec<GroupKey> {
                match field {
                    GroupField::Sex => Sex::ALL
                        .iter()
                        .map(|&s| GroupKey {
                            sex: Some(s),
                            ..cell
                        })
                        .collect(),
                    GroupField::AgeBand => AgeBand::all()
                        .map(|b| GroupKey {
                            age_band: Some(b),
                            ..cell
                        })
                        .collect(),
                }
            })
            .collect();
    }
    cells
}

/// The position of an output row in the layout of [`groups`], from the row's `sex` and
/// `age_band` column strings (`None` for a column the spec does not group by).
pub fn group_index(
    layout: &[GroupKey],
    sex: Option<&str>,
    age_band: Option<&str>,
) -> Option<usize> {
    let sex = match sex {
        Some(s) => Some(Sex::ALL.into_iter().find(|x| x.as_str() == s)?),
        None => None,
    };
    let age_band = match age_band {
        Some(b) => Some(AgeBand::from_label(b)?),
        None => None,
    };
    layout
        .iter()
        .position(|k| k.sex == sex && k.age_band == age_band)
}

fn valid_table_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A float as a SQL decimal literal (always with a decimal point, never an exponent, for the
/// validated range).
fn sql_f64(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// Compiles a spec to one SQL statement for DataFusion over the node's tables and the consent
/// allow-list `consented_table(person_id Int64)`. Codes are validated to `[A-Za-z0-9.-]` and so
/// cannot break out of their string literals; the table name is validated and double-quoted.
pub fn compile_sql(spec: &QuerySpec, consented_table: &str) -> Result<String, QueryError> {
    validate(spec)?;
    if !valid_table_name(consented_table) {
        return Err(QueryError::TableName);
    }
    let c = &spec.cohort;
    let year = index_year(&c.index_date)?;
    let date = format!("DATE '{}'", c.index_date);
    let age = format!("({year} - p.year_of_birth)");

    let mut sql = String::new();
    let _ = writeln!(sql, "WITH cohort AS (");
    let _ = writeln!(
        sql,
        "  SELECT p.person_id, p.gender_source_value AS sex, {age} AS age"
    );
    let _ = writeln!(sql, "  FROM person p");
    let _ = writeln!(
        sql,
        "  JOIN (SELECT DISTINCT person_id FROM \"{consented_table}\") c ON c.person_id = p.person_id"
    );
    let _ = writeln!(sql, "  WHERE p.year_of_birth <= {year}");
    if let Some(sex) = c.sex {
        let _ = writeln!(sql, "    AND p.gender_source_value = '{}'", sex.as_str());
    } else if spec.group_by.contains(&GroupField::Sex) {
        let _ = writeln!(sql, "    AND p.gender_source_value IN ('female', 'male')");
    }
    if let Some(range) = c.age {
        let _ = writeln!(sql, "    AND {age} BETWEEN {} AND {}", range.min, range.max);
    }
    let lists: [(&[String], &str, &str, &str); 3] = [
        (
            &c.conditions,
            "condition_occurrence",
            "condition_source_value",
            "condition_start_date",
        ),
        (
            &c.drugs,
            "drug_exposure",
            "drug_source_value",
            "drug_exposure_start_date",
        ),
        (
            &c.procedures,
            "procedure_occurrence",
            "procedure_source_value",
            "procedure_date",
        ),
    ];
    for (codes, table, code_col, date_col) in lists {
        for code in codes {
            let _ = writeln!(
                sql,
                "    AND p.person_id IN (SELECT person_id FROM {table} WHERE {code_col} = '{code}' AND {date_col} <= {date})"
            );
        }
    }
    if let Some(m) = &c.measurement {
        let _ = writeln!(
            sql,
            "    AND p.person_id IN (SELECT person_id FROM measurement WHERE measurement_source_value = '{}' AND measurement_date <= {date} AND value_as_number {} {})",
            m.code,
            m.op.sql(),
            sql_f64(m.value)
        );
    }
    let _ = write!(sql, ")");

    let mut cols: Vec<String> = Vec::new();
    for field in &spec.group_by {
        cols.push(
            match field {
                GroupField::Sex => "sex",
                GroupField::AgeBand => "age_band",
            }
            .to_string(),
        );
    }
    let keys = cols.join(", ");
    cols.push("CAST(COUNT(*) AS BIGINT) AS n".to_string());
    let band = age_band_sql("k.age");
    match &spec.aggregate {
        Aggregate::Count => {
            let _ = writeln!(sql, ",");
            let _ = writeln!(sql, "cells AS (");
            let _ = writeln!(sql, "  SELECT k.sex AS sex, {band} AS age_band");
            let _ = writeln!(sql, "  FROM cohort k");
            let _ = writeln!(sql, ")");
        }
        Aggregate::Mean(mean) => {
            let _ = writeln!(sql, ",");
            let _ = writeln!(sql, "latest AS (");
            let _ = writeln!(sql, "  SELECT person_id, v FROM (");
            let _ = writeln!(
                sql,
                "    SELECT person_id, value_as_number AS v, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY measurement_date DESC, value_as_number DESC) AS rn"
            );
            let _ = writeln!(
                sql,
                "    FROM measurement WHERE measurement_source_value = '{}' AND measurement_date <= {date} AND value_as_number IS NOT NULL",
                mean.measurement
            );
            let _ = writeln!(sql, "  ) m WHERE rn = 1");
            let _ = writeln!(sql, "),");
            let _ = writeln!(sql, "cells AS (");
            let _ = writeln!(sql, "  SELECT k.sex AS sex, {band} AS age_band, l.v AS v");
            let _ = writeln!(
                sql,
                "  FROM cohort k JOIN latest l ON l.person_id = k.person_id"
            );
            let _ = writeln!(sql, ")");
            let (lo, hi) = (sql_f64(mean.lower), sql_f64(mean.upper));
            cols.push(format!(
                "CAST(COALESCE(SUM(CAST(ROUND((CASE WHEN v < {lo} THEN {lo} WHEN v > {hi} THEN {hi} ELSE v END) * {FIXED_POINT_SCALE}.0) AS BIGINT)), 0) AS BIGINT) AS sum_fixed"
            ));
        }
    }
    let _ = write!(sql, "SELECT {}\nFROM cells", cols.join(", "));
    if !keys.is_empty() {
        let _ = write!(sql, "\nGROUP BY {keys}\nORDER BY {keys}");
    }
    Ok(sql)
}

/// `CASE` expression mapping an age column to its band label.
fn age_band_sql(col: &str) -> String {
    let mut s = String::from("CASE");
    for band in AgeBand::all().take(9) {
        let _ = write!(
            s,
            " WHEN {col} < {} THEN '{}'",
            (u32::from(band.0) + 1) * 10,
            band.label()
        );
    }
    s.push_str(" ELSE '90+' END");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensitive_code_makes_a_query_l4_whatever_its_fields() {
        let c = medspace_types::classification::Classification::default();
        let plain = r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;
        let (spec, v) = parse(plain).unwrap();
        assert_eq!(level(&spec, &v, &c), medspace_types::Level::L3);
        assert_eq!(codes(&spec), vec![("condition_occurrence", "44054006")]);
        let hiv = plain.replace("44054006", "86406008");
        let (spec, v) = parse(&hiv).unwrap();
        assert_eq!(level(&spec, &v, &c), medspace_types::Level::L4);
        let by_sex = r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;
        let (spec, v) = parse(by_sex).unwrap();
        assert_eq!(level(&spec, &v, &c), medspace_types::Level::L2);
    }

    fn example() -> QuerySpec {
        serde_json::from_str(
            r#"{ "version": 1,
                 "cohort": { "conditions": ["44054006"], "drugs": [], "procedures": [],
                             "measurement": {"code": "4548-4", "op": ">=", "value": 6.5},
                             "sex": "female", "age": {"min": 40, "max": 80},
                             "index_date": "2024-01-01" },
                 "aggregate": "count",
                 "group_by": ["sex", "age_band"] }"#,
        )
        .unwrap()
    }

    const BAND: &str = "CASE WHEN k.age < 10 THEN '0-9' WHEN k.age < 20 THEN '10-19' WHEN k.age < 30 THEN '20-29' WHEN k.age < 40 THEN '30-39' WHEN k.age < 50 THEN '40-49' WHEN k.age < 60 THEN '50-59' WHEN k.age < 70 THEN '60-69' WHEN k.age < 80 THEN '70-79' WHEN k.age < 90 THEN '80-89' ELSE '90+' END";

    #[test]
    fn golden_count_grouped() {
        let sql = compile_sql(&example(), "consented_job_1").unwrap();
        let expected = format!(
            "WITH cohort AS (
  SELECT p.person_id, p.gender_source_value AS sex, (2024 - p.year_of_birth) AS age
  FROM person p
  JOIN (SELECT DISTINCT person_id FROM \"consented_job_1\") c ON c.person_id = p.person_id
  WHERE p.year_of_birth <= 2024
    AND p.gender_source_value = 'female'
    AND (2024 - p.year_of_birth) BETWEEN 40 AND 80
    AND p.person_id IN (SELECT person_id FROM condition_occurrence WHERE condition_source_value = '44054006' AND condition_start_date <= DATE '2024-01-01')
    AND p.person_id IN (SELECT person_id FROM measurement WHERE measurement_source_value = '4548-4' AND measurement_date <= DATE '2024-01-01' AND value_as_number >= 6.5)
),
cells AS (
  SELECT k.sex AS sex, {BAND} AS age_band
  FROM cohort k
)
SELECT sex, age_band, CAST(COUNT(*) AS BIGINT) AS n
FROM cells
GROUP BY sex, age_band
ORDER BY sex, age_band"
        );
        assert_eq!(sql, expected);
    }

    #[test]
    fn golden_mean_ungrouped() {
        let spec: QuerySpec = serde_json::from_str(
            r#"{ "version": 1,
                 "cohort": { "drugs": ["860975"], "procedures": ["73761001"], "index_date": "2020-02-29" },
                 "aggregate": {"mean": {"measurement": "4548-4", "lower": 0, "upper": 20}} }"#,
        )
        .unwrap();
        let sql = compile_sql(&spec, "allow").unwrap();
        let expected = format!(
            "WITH cohort AS (
  SELECT p.person_id, p.gender_source_value AS sex, (2020 - p.year_of_birth) AS age
  FROM person p
  JOIN (SELECT DISTINCT person_id FROM \"allow\") c ON c.person_id = p.person_id
  WHERE p.year_of_birth <= 2020
    AND p.person_id IN (SELECT person_id FROM drug_exposure WHERE drug_source_value = '860975' AND drug_exposure_start_date <= DATE '2020-02-29')
    AND p.person_id IN (SELECT person_id FROM procedure_occurrence WHERE procedure_source_value = '73761001' AND procedure_date <= DATE '2020-02-29')
),
latest AS (
  SELECT person_id, v FROM (
    SELECT person_id, value_as_number AS v, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY measurement_date DESC, value_as_number DESC) AS rn
    FROM measurement WHERE measurement_source_value = '4548-4' AND measurement_date <= DATE '2020-02-29' AND value_as_number IS NOT NULL
  ) m WHERE rn = 1
),
cells AS (
  SELECT k.sex AS sex, {BAND} AS age_band, l.v AS v
  FROM cohort k JOIN latest l ON l.person_id = k.person_id
)
SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(CAST(ROUND((CASE WHEN v < 0.0 THEN 0.0 WHEN v > 20.0 THEN 20.0 ELSE v END) * 1000.0) AS BIGINT)), 0) AS BIGINT) AS sum_fixed
FROM cells"
        );
        assert_eq!(sql, expected);
        let v = validate(&spec).unwrap();
        assert_eq!(
            v.groups,
            vec![GroupKey {
                sex: None,
                age_band: None
            }]
        );
        assert_eq!(
            v.reads,
            vec![
                ("drug_exposure", "drug_exposure_start_date"),
                ("drug_exposure", "drug_source_value"),
                ("drug_exposure", "person_id"),
                ("measurement", "measurement_date"),
                ("measurement", "measurement_source_value"),
                ("measurement", "person_id"),
                ("measurement", "value_as_number"),
                ("person", "person_id"),
                ("person", "year_of_birth"),
                ("procedure_occurrence", "person_id"),
                ("procedure_occurrence", "procedure_date"),
                ("procedure_occurrence", "procedure_source_value"),
            ]
        );
    }

    #[test]
    fn group_by_sex_only_restricts_to_known_sexes() {
        let mut spec = example();
        spec.cohort.sex = None;
        spec.group_by = vec![GroupField::Sex];
        let sql = compile_sql(&spec, "allow").unwrap();
        assert!(sql.contains("AND p.gender_source_value IN ('female', 'male')"));
        assert!(sql.ends_with("GROUP BY sex\nORDER BY sex"));
    }

    #[test]
    fn fixed_group_layout() {
        let spec = example();
        let g = groups(&spec);
        assert_eq!(g.len(), 20);
        assert_eq!(
            g[0],
            GroupKey {
                sex: Some(Sex::Female),
                age_band: Some(AgeBand(0))
            }
        );
        assert_eq!(
            g[19],
            GroupKey {
                sex: Some(Sex::Male),
                age_band: Some(AgeBand(9))
            }
        );
        assert_eq!(group_index(&g, Some("male"), Some("40-49")), Some(14));
        assert_eq!(group_index(&g, Some("other"), Some("40-49")), None);
        assert_eq!(group_index(&g, Some("male"), None), None);
        let mut swapped = spec.clone();
        swapped.group_by = vec![GroupField::AgeBand, GroupField::Sex];
        let g = groups(&swapped);
        assert_eq!(
            g[1],
            GroupKey {
                sex: Some(Sex::Male),
                age_band: Some(AgeBand(0))
            }
        );
        let labels: Vec<String> = AgeBand::all().map(AgeBand::label).collect();
        assert_eq!(labels.first().map(String::as_str), Some("0-9"));
        assert_eq!(labels.last().map(String::as_str), Some("90+"));
        assert_eq!(AgeBand::of_age(200), AgeBand(9));
        assert_eq!(AgeBand::of_age(45).label(), "40-49");
    }

    #[test]
    fn hostile_strings_are_rejected() {
        for bad in [
            "44054006'; DROP TABLE person; --",
            "x' OR '1'='1",
            "",
            "a b",
            "a\"b",
            "123456789012345678901234567890123",
            "é",
            "a\nb",
            "a/*",
        ] {
            let mut spec = example();
            spec.cohort.conditions = vec!["1".into(), bad.into()];
            assert_eq!(
                validate(&spec),
                Err(QueryError::Code {
                    field: "conditions",
                    position: 1
                }),
                "{bad:?}"
            );
            assert!(compile_sql(&spec, "allow").is_err());
            let mut spec = example();
            spec.cohort.index_date = bad.into();
            assert_eq!(validate(&spec), Err(QueryError::IndexDate));
            let mut spec = example();
            spec.aggregate = Aggregate::Mean(MeanSpec {
                measurement: bad.into(),
                lower: 0.0,
                upper: 1.0,
            });
            assert!(validate(&spec).is_err());
            assert_eq!(compile_sql(&example(), bad), Err(QueryError::TableName));
        }
        for bad in ["allow\"; DROP TABLE person; --", "1abc", "a-b", "a.b"] {
            assert_eq!(compile_sql(&example(), bad), Err(QueryError::TableName));
        }
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let mut spec = example();
        spec.version = 2;
        assert_eq!(validate(&spec), Err(QueryError::Version { version: 2 }));
        let mut spec = example();
        spec.cohort.age = Some(AgeRange { min: 50, max: 40 });
        assert_eq!(
            validate(&spec),
            Err(QueryError::AgeRange { min: 50, max: 40 })
        );
        spec.cohort.age = Some(AgeRange { min: 0, max: 151 });
        assert!(validate(&spec).is_err());
        for date in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "24-01-01",
            "2024/01/01",
        ] {
            let mut spec = example();
            spec.cohort.index_date = date.into();
            assert_eq!(validate(&spec), Err(QueryError::IndexDate), "{date}");
        }
        let mut spec = example();
        spec.group_by = vec![GroupField::Sex, GroupField::Sex];
        assert!(matches!(validate(&spec), Err(QueryError::GroupBy { .. })));
        spec.group_by = vec![GroupField::Sex, GroupField::AgeBand, GroupField::Sex];
        assert!(matches!(validate(&spec), Err(QueryError::GroupBy { .. })));
        let mut spec = example();
        spec.aggregate = Aggregate::Mean(MeanSpec {
            measurement: "1".into(),
            lower: 5.0,
            upper: 5.0,
        });
        assert_eq!(validate(&spec), Err(QueryError::Bounds));
        spec.aggregate = Aggregate::Mean(MeanSpec {
            measurement: "1".into(),
            lower: f64::NAN,
            upper: 5.0,
        });
        assert!(matches!(validate(&spec), Err(QueryError::Number { .. })));
        let mut spec = example();
        if let Some(m) = spec.cohort.measurement.as_mut() {
            m.value = 1e300;
        }
        assert!(matches!(validate(&spec), Err(QueryError::Number { .. })));
    }

    #[test]
    fn json_parsing_is_strict() {
        let ok = serde_json::to_string(&example()).unwrap();
        assert!(parse(&ok).is_ok());
        for bad in [
            ok.replace("\"age_band\"", "\"zip\""),
            ok.replace("\"count\"", "\"sql\""),
            ok.replace("\"version\":1", "\"version\":1,\"raw_sql\":\"select 1\""),
            ok.replace("\">=\"", "\"LIKE\""),
            ok.replace("\"female\"", "\"f\""),
        ] {
            assert!(
                matches!(parse(&bad), Err(QueryError::Parse { .. })),
                "{bad}"
            );
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn code() -> impl Strategy<Value = String> {
            "[A-Za-z0-9.-]{1,32}"
        }

        fn spec() -> impl Strategy<Value = QuerySpec> {
            let cohort = (
                prop::collection::vec(code(), 0..3),
                prop::collection::vec(code(), 0..3),
                prop::collection::vec(code(), 0..3),
                prop::option::of((code(), 0usize..5, -1e9f64..1e9)),
                prop::option::of(prop::bool::ANY),
                prop::option::of((0u32..=150, 0u32..=150)),
                (1800u32..3000, 1u32..=12, 1u32..=28),
            );
            let aggregate = prop::option::of((code(), -1e9f64..0.0, 0.0f64..1e9));
            let group_by =
                prop::sample::subsequence(vec![GroupField::Sex, GroupField::AgeBand], 0..=2)
                    .prop_shuffle();
            (cohort, aggregate, group_by).prop_map(|((c, d, p, m, s, a, (y, mo, da)), agg, g)| {
                let ops = [CmpOp::Ge, CmpOp::Gt, CmpOp::Le, CmpOp::Lt, CmpOp::Eq];
                QuerySpec {
                    version: 1,
                    cohort: Cohort {
                        conditions: c,
                        drugs: d,
                        procedures: p,
                        measurement: m.map(|(code, op, value)| MeasurementFilter {
                            code,
                            op: ops[op],
                            value,
                        }),
                        sex: s.map(|f| if f { Sex::Female } else { Sex::Male }),
                        age: a.map(|(x, y)| AgeRange {
                            min: x.min(y),
                            max: x.max(y),
                        }),
                        index_date: format!("{y:04}-{mo:02}-{da:02}"),
                    },
                    aggregate: match agg {
                        None => Aggregate::Count,
                        Some((measurement, lower, upper)) => Aggregate::Mean(MeanSpec {
                            measurement,
                            lower,
                            upper,
                        }),
                    },
                    group_by: g,
                }
            })
        }

        proptest! {
            #[test]
            fn every_valid_spec_compiles(spec in spec()) {
                let v = validate(&spec).unwrap();
                let sql = compile_sql(&spec, "consented").unwrap();
                prop_assert!(sql.contains("FROM \"consented\") c ON c.person_id = p.person_id"));
                prop_assert_eq!(v.groups.len(), groups(&spec).len());
                let expected = spec.group_by.iter().map(|f| match f {
                    GroupField::Sex => 2,
                    GroupField::AgeBand => 10,
                }).product::<usize>();
                prop_assert_eq!(v.groups.len(), expected);
                // JSON round trip gives the same SQL.
                let json = serde_json::to_string(&spec).unwrap();
                let (back, _) = parse(&json).unwrap();
                prop_assert_eq!(compile_sql(&back, "consented").unwrap(), sql);
            }

            #[test]
            fn arbitrary_codes_validate_iff_well_formed(s in ".{0,40}") {
                let mut spec = example();
                spec.cohort.drugs = vec![s.clone()];
                let ok = valid_code(&s);
                prop_assert_eq!(validate(&spec).is_ok(), ok);
                if !ok {
                    prop_assert!(compile_sql(&spec, "consented").is_err());
                }
            }
        }
    }
}
