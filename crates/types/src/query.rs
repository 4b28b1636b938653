//! The federated query specification: a versioned, declarative cohort + aggregate (JSON), never
//! SQL from outside. This module is the specification's vocabulary — its types, its parsing
//! and validation, what it reads, the codes it filters on, its privacy level and its fixed
//! output layout — shared by the ledger (which classifies a request by its query and binds
//! jobs to the approved one) and by the data plane (`medspace_privacy::query` compiles it to
//! SQL; the nodes lay results out with [`groups`]).
//!
//! The ledger's rules read no floating point, so neither does a specification: every number is
//! a [`Decimal`], parsed exactly from the JSON text (at most nine decimal places), compared as
//! an integer, and written back as the same decimal.
//!
//! Semantics of a query, all relative to the spec's `index_date`:
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

use crate::Level;
use crate::classification::Classification;
pub mod claims;
pub mod health;
pub mod model;
pub use claims::ClaimsSpec;
pub use health::{
    CodeGroup, DrugSafetySpec, PairRef, SURVEILLANCE_BANDS, SignalThresholds, SurveillanceSpec,
};
pub use model::{Clamped, Event, Family, Feature, ModelSpec, SurvivalSpec, Threshold, Window};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use thiserror::Error;

/// The only spec version this library understands.
pub const SPEC_VERSION: u32 = 1;
/// Largest magnitude accepted for measurement thresholds and clamping bounds, in whole units.
pub const MAX_ABS_VALUE: i64 = 1_000_000_000;
/// Largest age accepted in an age filter.
pub const MAX_AGE: u32 = 150;
/// Fixed-point factor of `sum_fixed`.
pub const FIXED_POINT_SCALE: i64 = 1000;
/// Decimal places a [`Decimal`] keeps.
pub const DECIMAL_PLACES: u32 = 9;
/// `10^DECIMAL_PLACES`: nano-units per unit.
const NANOS_PER_UNIT: i64 = 1_000_000_000;

/// Errors from parsing, validating or compiling a query spec.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    /// Not JSON of the spec's shape (unknown fields included).
    #[error("query spec is not valid json for version 1: {reason}")]
    Parse {
        /// The parser's reason.
        reason: String,
    },
    /// A version other than [`SPEC_VERSION`].
    #[error("unsupported query spec version: version={version} supported=1")]
    Version {
        /// The spec's version.
        version: u32,
    },
    /// A code outside `[A-Za-z0-9.-]{1,32}`.
    #[error("invalid code: field={field} position={position} (must match [A-Za-z0-9.-]{{1,32}})")]
    Code {
        /// The list or field holding it.
        field: &'static str,
        /// Its position in the list.
        position: usize,
    },
    /// An age range that is empty or beyond [`MAX_AGE`].
    #[error("invalid age range: min={min} max={max} (need min <= max <= 150)")]
    AgeRange {
        /// Lower bound.
        min: u32,
        /// Upper bound.
        max: u32,
    },
    /// A malformed or impossible index date.
    #[error("invalid index_date (need an existing date as YYYY-MM-DD)")]
    IndexDate,
    /// A number beyond [`MAX_ABS_VALUE`].
    #[error("invalid number: field={field} (magnitude must be <= 1e9)")]
    Number {
        /// The field.
        field: &'static str,
    },
    /// Clamping bounds in the wrong order.
    #[error("invalid clamping bounds for mean (need lower < upper)")]
    Bounds,
    /// A repeated or excess `group_by` field.
    #[error("invalid group_by: {reason}")]
    GroupBy {
        /// Why.
        reason: &'static str,
    },
    /// A model or survival specification that cannot run.
    #[error("invalid model: {reason}")]
    Model {
        /// Why.
        reason: String,
    },
    /// A consent allow-list table name a compiler cannot quote safely.
    #[error("invalid consented table name (must match [A-Za-z_][A-Za-z0-9_]{{0,62}})")]
    TableName,
}

/// An exact decimal number with at most [`DECIMAL_PLACES`] decimal places, kept as an integer
/// count of billionths. It is read from the JSON number's own text (plain or with an exponent),
/// so the same text is the same value on every machine, and it is written back as a plain
/// decimal (`6.5`, `20.0`, `-0.25`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal {
    nanos: i64,
}

/// Why a JSON number is not a [`Decimal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecimalError {
    /// Not a JSON number.
    #[error("not a json number")]
    Syntax,
    /// More decimal places than a decimal keeps.
    #[error("more than 9 decimal places")]
    Precision,
    /// Beyond the range of a decimal.
    #[error("number out of range")]
    Range,
}

impl Decimal {
    /// The decimal `nanos × 10^-9`.
    pub const fn from_nanos(nanos: i64) -> Self {
        Self { nanos }
    }

    /// The whole number `units`, if it fits.
    pub fn from_units(units: i64) -> Option<Self> {
        units.checked_mul(NANOS_PER_UNIT).map(Self::from_nanos)
    }

    /// The value in billionths.
    pub const fn nanos(self) -> i64 {
        self.nanos
    }

    /// The magnitude in billionths.
    pub const fn abs_nanos(self) -> u64 {
        self.nanos.unsigned_abs()
    }

    /// The nearest binary float, for arithmetic off the ledger (a release's mean).
    pub fn to_f64(self) -> f64 {
        // Two exactly representable parts: whole units and the fraction in billionths.
        let units = self.nanos / NANOS_PER_UNIT;
        let frac = self.nanos % NANOS_PER_UNIT;
        units as f64 + frac as f64 / NANOS_PER_UNIT as f64
    }

    /// Parses a JSON number (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`) exactly.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        let bytes = text.as_bytes();
        let mut i = 0;
        let negative = bytes.first() == Some(&b'-');
        if negative {
            i += 1;
        }
        let int_start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let int_digits = text.get(int_start..i).ok_or(DecimalError::Syntax)?;
        if int_digits.is_empty() || (int_digits.len() > 1 && int_digits.starts_with('0')) {
            return Err(DecimalError::Syntax);
        }
        let mut frac_digits = "";
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            frac_digits = text.get(start..i).ok_or(DecimalError::Syntax)?;
            if frac_digits.is_empty() {
                return Err(DecimalError::Syntax);
            }
        }
        let mut exponent: i64 = 0;
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            let exp_negative = match bytes.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let digits = text.get(start..i).ok_or(DecimalError::Syntax)?;
            if digits.is_empty() {
                return Err(DecimalError::Syntax);
            }
            // Exponents beyond any representable value saturate; zero stays zero below.
            let magnitude = digits
                .bytes()
                .try_fold(0i64, |acc, d| {
                    acc.checked_mul(10)?.checked_add(i64::from(d - b'0'))
                })
                .unwrap_or(i64::MAX / 2)
                .min(i64::MAX / 2);
            exponent = if exp_negative { -magnitude } else { magnitude };
        }
        if i != bytes.len() {
            return Err(DecimalError::Syntax);
        }
        // The value is `digits × 10^scale`, digits without leading or trailing zeros.
        let all = format!("{int_digits}{frac_digits}");
        let significant = all.trim_start_matches('0');
        let trimmed = significant.trim_end_matches('0');
        if trimmed.is_empty() {
            return Ok(Self::from_nanos(0));
        }
        // INVARIANT: lengths are below 2^32 (a transaction is at most 64 KiB) and the exponent
        // was clamped to ±2^62, so these sums stay far inside i64.
        let dropped = (significant.len() - trimmed.len()) as i64;
        let scale = exponent - frac_digits.len() as i64 + dropped + i64::from(DECIMAL_PLACES);
        if scale < 0 {
            return Err(DecimalError::Precision);
        }
        if trimmed.len() > 19 || scale > 19 {
            return Err(DecimalError::Range);
        }
        let mut value: i128 = 0;
        for d in trimmed.bytes() {
            value = value * 10 + i128::from(d - b'0');
        }
        for _ in 0..scale {
            value = value.checked_mul(10).ok_or(DecimalError::Range)?;
        }
        if negative {
            value = -value;
        }
        i64::try_from(value)
            .map(Self::from_nanos)
            .map_err(|_| DecimalError::Range)
    }
}

impl fmt::Display for Decimal {
    /// A plain decimal with at least one decimal place (`6.5`, `20.0`), never an exponent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.abs_nanos();
        let units = abs / NANOS_PER_UNIT.unsigned_abs();
        let frac = abs % NANOS_PER_UNIT.unsigned_abs();
        let digits = format!("{frac:09}");
        let digits = digits.trim_end_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        write!(f, "{sign}{units}.{digits}")
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(self.to_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Decimal::parse(raw.get().trim()).map_err(serde::de::Error::custom)
    }
}

/// A versioned query spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    /// Must be [`SPEC_VERSION`].
    pub version: u32,
    /// Who is counted.
    pub cohort: Cohort,
    /// What is computed per group.
    pub aggregate: Aggregate,
    /// Low-cardinality fields to group by (at most two, distinct).
    #[serde(default)]
    pub group_by: Vec<GroupField>,
}

/// Who is counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A measurement the person must have.
    #[serde(default)]
    pub measurement: Option<MeasurementFilter>,
    /// Only this recorded sex.
    #[serde(default)]
    pub sex: Option<Sex>,
    /// Only ages in this range at the index date.
    #[serde(default)]
    pub age: Option<AgeRange>,
    /// `YYYY-MM-DD`.
    pub index_date: String,
}

/// At least one measurement of `code` with `value_as_number <op> value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementFilter {
    /// LOINC code (bare).
    pub code: String,
    /// The comparison.
    pub op: CmpOp,
    /// The threshold.
    pub value: Decimal,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `=`
    #[serde(rename = "=")]
    Eq,
}

impl CmpOp {
    /// The operator's text (as in the JSON and in SQL).
    pub fn as_str(self) -> &'static str {
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
    /// `female`
    Female,
    /// `male`
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
    /// Youngest age counted.
    pub min: u32,
    /// Oldest age counted.
    pub max: u32,
}

/// What is computed per group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// Number of persons.
    Count,
    /// Clamped mean of a measurement: the node releases `n` and `sum_fixed`.
    Mean(MeanSpec),
    /// A regression fitted across the sites ([`model`]); no `group_by`.
    Model(ModelSpec),
    /// Kaplan–Meier curves per group and the log-rank test ([`model`]).
    Survival(SurvivalSpec),
    /// Drug → adverse event 2×2 tables and their disproportionality ([`health`]); no
    /// `group_by`.
    #[serde(rename = "drug_safety")]
    DrugSafety(DrugSafetySpec),
    /// A standing syndromic surveillance definition, one job per window ([`health`]); no
    /// `group_by`.
    Surveillance(SurveillanceSpec),
    /// A vertical study: the cohort at a hospital joined with an insurer's claims
    /// ([`claims`]).
    Claims(ClaimsSpec),
    /// How many persons of the cohort each pair of sites both hold, by a cardinality-only
    /// private set intersection ([`OverlapSpec`]); no `group_by`.
    Overlap(OverlapSpec),
}

/// The intersection sizes of a cohort between every pair of the job's sites: for sites
/// `i < j` in the contract's order, site `j` runs a cardinality-only PSI of its consenting
/// cohort's pseudonyms with site `i`'s and learns only how many they share. Each count is
/// a protected result: noised by site `j` (a person changes at most `sites − 1` of its counts)
/// with `dp` (the default), else exact with counts below `k` withheld.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlapSpec {
    /// Noise at each site (the default); without it, exact counts with small ones withheld.
    #[serde(default = "overlap_dp")]
    pub dp: bool,
}

fn overlap_dp() -> bool {
    true
}

/// The measurement to average and its clamping bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanSpec {
    /// LOINC code (bare).
    pub measurement: String,
    /// Values below are counted as this.
    pub lower: Decimal,
    /// Values above are counted as this.
    pub upper: Decimal,
}

/// A low-cardinality field to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupField {
    /// Recorded sex.
    Sex,
    /// Ten-year age band.
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

    /// The band's position, 0 (0-9) to 9 (90+).
    pub fn index(self) -> u8 {
        self.0
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
    /// The cell's sex, when grouped by sex.
    pub sex: Option<Sex>,
    /// The cell's age band, when grouped by age band.
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
    match &spec.aggregate {
        Aggregate::Mean(m) => out.push(("measurement", m.measurement.as_str())),
        Aggregate::Model(m) => out.extend(m.variables().filter_map(Feature::code)),
        Aggregate::Survival(s) => {
            if let Event::Condition(c) = &s.event {
                out.push(("condition_occurrence", c.as_str()));
            }
        }
        Aggregate::DrugSafety(d) => out.extend(d.codes()),
        Aggregate::Surveillance(s) => out.extend(s.codes()),
        Aggregate::Claims(c) => {
            if let Some(g) = &c.compare {
                out.extend(g.codes.iter().map(|x| ("condition_occurrence", x.as_str())));
            }
        }
        Aggregate::Count | Aggregate::Overlap(_) => {}
    }
    out
}

/// The highest level the codes of a spec lend it: L4 when one of them is sensitive under
/// `classification`, L1 otherwise.
pub fn code_level(spec: &QuerySpec, classification: &Classification) -> Level {
    codes(spec)
        .into_iter()
        .map(|(t, c)| classification.code_level(t, c))
        .max()
        .unwrap_or(Level::L1)
}

/// A spec's privacy level under a consortium's classification: the highest of the fields it
/// reads (the consent allow-list's `person.person_id` included) and of the codes it filters on
/// (a sensitive code makes it L4, whatever the fields).
pub fn level(spec: &QuerySpec, validated: &Validated, classification: &Classification) -> Level {
    validated
        .reads
        .iter()
        .chain(std::iter::once(&("person", "person_id")))
        .map(|(t, f)| classification.field_level(t, f))
        .chain(std::iter::once(code_level(spec, classification)))
        .max()
        .unwrap_or(Level::L1)
}

/// Parses a spec from JSON (unknown fields are rejected) and validates it.
pub fn parse(json: &str) -> Result<(QuerySpec, Validated), QueryError> {
    let spec: QuerySpec = serde_json::from_str(json).map_err(|e| QueryError::Parse {
        reason: e.to_string(),
    })?;
    let validated = validate(&spec)?;
    Ok((spec, validated))
}

/// [`parse`] of raw bytes (a contract's or a job's computation), which must be UTF-8.
pub fn parse_bytes(bytes: &[u8]) -> Result<(QuerySpec, Validated), QueryError> {
    let json = std::str::from_utf8(bytes).map_err(|_| QueryError::Parse {
        reason: "not utf-8".into(),
    })?;
    parse(json)
}

/// Whether `code` is a well-formed code: 1 to 32 characters of `[A-Za-z0-9.-]` (so it can never
/// break out of a quoted literal).
pub fn valid_code(code: &str) -> bool {
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

/// [`check_number`] for the model module.
pub(crate) fn check_bound(field: &'static str, value: Decimal) -> Result<(), QueryError> {
    check_number(field, value)
}

fn check_number(field: &'static str, value: Decimal) -> Result<(), QueryError> {
    // INVARIANT: MAX_ABS_VALUE × 10^9 = 10^18 fits i64.
    if value.abs_nanos() <= (MAX_ABS_VALUE * NANOS_PER_UNIT).unsigned_abs() {
        Ok(())
    } else {
        Err(QueryError::Number { field })
    }
}

/// An index date `YYYY-MM-DD` as days since 1970-01-01 (the Arrow `Date32` value of that
/// day), checked as [`index_year`] checks it.
pub fn index_day(date: &str) -> Result<i64, QueryError> {
    let year = i64::from(index_year(date)?);
    let num = |r: std::ops::Range<usize>| {
        date.get(r)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(QueryError::IndexDate)
    };
    let (month, day) = (num(5..7)?, num(8..10)?);
    // Days from civil (proleptic Gregorian), counting years from March so the leap day is last.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok(era * 146_097 + doe - 719_468)
}

/// The civil date `(year, month, day)` of a day number (days since 1970-01-01, proleptic
/// Gregorian): the inverse of [`index_day`].
pub fn civil_of_day(day: i64) -> (i64, u32, u32) {
    let z = day.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // INVARIANT: 1 <= d <= 31 and 1 <= m <= 12 by construction.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` of a day number (see [`civil_of_day`]).
pub fn date_of_day(day: i64) -> String {
    let (y, m, d) = civil_of_day(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The year of an index date `YYYY-MM-DD`, checking that the date exists (and is after 1800).
pub fn index_year(date: &str) -> Result<i32, QueryError> {
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
    match &spec.aggregate {
        Aggregate::Model(m) => {
            m.validate()?;
            if !spec.group_by.is_empty() {
                return Err(QueryError::GroupBy {
                    reason: "a model is fitted on the whole cohort (use covariates instead)",
                });
            }
        }
        Aggregate::Survival(s) => s.validate()?,
        Aggregate::DrugSafety(d) => {
            d.validate()?;
            if !spec.group_by.is_empty() {
                return Err(QueryError::GroupBy {
                    reason: "drug safety is assessed on the whole cohort",
                });
            }
        }
        Aggregate::Surveillance(s) => {
            s.validate()?;
            if !spec.group_by.is_empty() {
                return Err(QueryError::GroupBy {
                    reason: "surveillance counts are laid out by syndrome, region and age band",
                });
            }
        }
        Aggregate::Claims(c) => c.validate()?,
        Aggregate::Overlap(_) => {
            if !spec.group_by.is_empty() {
                return Err(QueryError::GroupBy {
                    reason: "an overlap is counted per pair of sites",
                });
            }
        }
        Aggregate::Count | Aggregate::Mean(_) => {}
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
    match &spec.aggregate {
        Aggregate::Model(m) => {
            reads.push(("person", "gender_source_value"));
            reads.extend(m.variables().flat_map(Feature::reads));
        }
        Aggregate::Survival(s) => reads.extend(s.reads()),
        Aggregate::DrugSafety(d) => reads.extend(d.reads()),
        Aggregate::Surveillance(s) => reads.extend(s.reads()),
        Aggregate::Claims(c) => {
            reads.extend(c.clinical_reads());
            reads.extend(ClaimsSpec::claims_reads());
        }
        Aggregate::Count | Aggregate::Mean(_) | Aggregate::Overlap(_) => {}
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn index_day_is_days_since_the_epoch() {
        assert_eq!(index_day("1970-01-01").unwrap(), 0);
        assert_eq!(index_day("2000-03-01").unwrap(), 11_017);
        assert_eq!(index_day("2024-01-01").unwrap(), 19_723);
        assert_eq!(index_day("1969-12-31").unwrap(), -1);
        assert!(index_day("2023-02-29").is_err());
    }

    pub(crate) fn example() -> QuerySpec {
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

    #[test]
    fn a_sensitive_code_makes_a_query_l4_whatever_its_fields() {
        let c = Classification::default();
        let plain = r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;
        let (spec, v) = parse(plain).unwrap();
        assert_eq!(level(&spec, &v, &c), Level::L3);
        assert_eq!(code_level(&spec, &c), Level::L1);
        assert_eq!(codes(&spec), vec![("condition_occurrence", "44054006")]);
        let hiv = plain.replace("44054006", "86406008");
        let (spec, v) = parse(&hiv).unwrap();
        assert_eq!(level(&spec, &v, &c), Level::L4);
        assert_eq!(code_level(&spec, &c), Level::L4);
        let by_sex = r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;
        let (spec, v) = parse(by_sex).unwrap();
        assert_eq!(level(&spec, &v, &c), Level::L2);
    }

    #[test]
    fn decimals_are_exact_and_round_trip() {
        let ok = [
            ("0", 0, "0.0"),
            ("-0", 0, "0.0"),
            ("6.5", 6_500_000_000, "6.5"),
            ("20", 20_000_000_000, "20.0"),
            ("-0.25", -250_000_000, "-0.25"),
            ("1e9", 1_000_000_000_000_000_000, "1000000000.0"),
            ("2.5E-3", 2_500_000, "0.0025"),
            ("0.000000001", 1, "0.000000001"),
            ("1.10000000000000000000", 1_100_000_000, "1.1"),
            ("0e99999999999999999999", 0, "0.0"),
        ];
        for (text, nanos, shown) in ok {
            let d = Decimal::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(d.nanos(), nanos, "{text}");
            assert_eq!(d.to_string(), shown, "{text}");
            assert_eq!(Decimal::parse(shown).unwrap(), d);
        }
        assert_eq!(Decimal::parse("0.0000000001"), Err(DecimalError::Precision));
        assert_eq!(Decimal::parse("1e-10"), Err(DecimalError::Precision));
        assert_eq!(Decimal::parse("1e30"), Err(DecimalError::Range));
        assert_eq!(
            Decimal::parse("99999999999999999999"),
            Err(DecimalError::Range)
        );
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "1 ", "NaN", "0x10",
        ] {
            assert_eq!(Decimal::parse(bad), Err(DecimalError::Syntax), "{bad:?}");
        }
        assert_eq!(Decimal::parse("6.5").unwrap().to_f64(), 6.5);
        let json = serde_json::to_string(&example()).unwrap();
        assert!(json.contains("\"value\":6.5"), "{json}");
        assert_eq!(parse(&json).unwrap().0, example());
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
        let five = Decimal::from_units(5).unwrap();
        spec.aggregate = Aggregate::Mean(MeanSpec {
            measurement: "1".into(),
            lower: five,
            upper: five,
        });
        assert_eq!(validate(&spec), Err(QueryError::Bounds));
        spec.aggregate = Aggregate::Mean(MeanSpec {
            measurement: "1".into(),
            lower: Decimal::from_units(-2_000_000_000).unwrap(),
            upper: five,
        });
        assert!(matches!(validate(&spec), Err(QueryError::Number { .. })));
        let mut spec = example();
        if let Some(m) = spec.cohort.measurement.as_mut() {
            m.value = Decimal::from_units(1_000_000_001).unwrap();
        }
        assert!(matches!(validate(&spec), Err(QueryError::Number { .. })));
        if let Some(m) = spec.cohort.measurement.as_mut() {
            m.value = Decimal::from_units(-1_000_000_000).unwrap();
        }
        assert!(validate(&spec).is_ok(), "the bound itself is allowed");
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
            ok.replace("6.5", "\"6.5\""),
            ok.replace("6.5", "6.5000000001"),
        ] {
            assert!(
                matches!(parse(&bad), Err(QueryError::Parse { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_bytes(&[0xff, 0xfe]),
            Err(QueryError::Parse { .. })
        ));
    }
}
