//! The public-health specifications a federated query may carry as its aggregate: standing
//! syndromic surveillance and drug safety (pharmacovigilance). Like a model, each is the
//! exact computation a contract approves.
//!
//! **Surveillance** ([`SurveillanceSpec`]) counts, per window of `window_days` days, the
//! persons with at least one condition of a syndrome's code set recorded in that window, per
//! syndrome × region × age band. A person's region is the three-character postal prefix of
//! their `location` (`location.zip`); persons outside the listed regions are not counted. Age is
//! the window's first year minus the year of birth, in the bands of [`SURVEILLANCE_BANDS`].
//! Window `w` covers the days `start + w·window_days ..` (exclusive end), and the ledger lets
//! the job of window `w` run only once block time has passed that end, each window once, in
//! order, at most `windows` of them — so every site computes the same, complete window. Every
//! window reserves `epsilon_per_window` at each site (part of what the contract approves, and
//! the contract's budget must cover every window) and, with `dp` (the default), is noised with
//! it: a person may be counted in every syndrome of a window, so the L1 sensitivity of one
//! window's vector is the number of syndromes.
//!
//! **Drug safety** ([`DrugSafetySpec`]) builds, per drug group → event group pair, the 2×2
//! table of the risk-window rule (`medspace_privacy::pharmacovigilance::classify`): a person's
//! record starts at their first visit; a *new user* of the drug (first exposure at least
//! `washout_days` after the record starts) is exposed, with the event when it is recorded 1 to
//! `window_days` days after that first exposure; a person never exposed has the event when it is
//! recorded at any time in their record; prevalent users are left out. Pairs are listed, or all
//! drug × event pairs are scanned (with a false-discovery-rate control). The cells are exact
//! unless `dp` (only their sum leaves the sites; pairs with a cell below `k` are suppressed).

use super::{Decimal, QueryError, valid_code};
use serde::{Deserialize, Serialize};

/// Most code groups (drugs, events or syndromes) in a specification.
pub const MAX_GROUPS: usize = 200;
/// Most codes in one group.
pub const MAX_GROUP_CODES: usize = 64;
/// Most pairs of a drug-safety specification (listed or scanned).
pub const MAX_SAFETY_PAIRS: usize = 10_000;
/// Most syndromes of a surveillance definition.
pub const MAX_SYNDROMES: usize = 32;
/// Most regions of a surveillance definition.
pub const MAX_REGIONS: usize = 100;
/// Most windows a surveillance contract covers (ten years of days).
pub const MAX_WINDOWS: u32 = 3660;
/// Longest surveillance window in days.
pub const MAX_WINDOW_DAYS: u32 = 28;
/// Longest risk window or washout in days (30 years).
pub const MAX_SAFETY_DAYS: u32 = 10_958;
/// Largest per-window epsilon (in whole units).
pub const MAX_WINDOW_EPSILON: i64 = 10;
/// The age bands of surveillance counts (the bands syndromic surveillance reports in):
/// `(label, lowest age, highest age)`.
pub const SURVEILLANCE_BANDS: [(&str, u32, u32); 5] = [
    ("0-4", 0, 4),
    ("5-17", 5, 17),
    ("18-49", 18, 49),
    ("50-64", 50, 64),
    ("65+", 65, u32::MAX),
];
/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// A named set of codes: a drug class member, an event group or a syndrome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeGroup {
    /// 1 to 32 characters of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// The codes (bare; RxNorm for drugs, SNOMED CT for conditions), 1 to [`MAX_GROUP_CODES`].
    pub codes: Vec<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

pub(crate) fn check_groups(
    field: &'static str,
    groups: &[CodeGroup],
    most: usize,
) -> Result<(), QueryError> {
    let bad = |reason: String| Err(QueryError::Model { reason });
    if groups.is_empty() || groups.len() > most {
        return bad(format!("{field}: 1 to {most} groups"));
    }
    for (i, g) in groups.iter().enumerate() {
        if !valid_name(&g.name) {
            return bad(format!(
                "{field}[{i}].name must be 1 to 32 characters of [A-Za-z0-9_.-]"
            ));
        }
        if groups.iter().take(i).any(|h| h.name == g.name) {
            return bad(format!("{field}: the name `{}` is repeated", g.name));
        }
        if g.codes.is_empty() || g.codes.len() > MAX_GROUP_CODES {
            return bad(format!("{field}[{i}].codes: 1 to {MAX_GROUP_CODES} codes"));
        }
        if let Some(position) = g.codes.iter().position(|c| !valid_code(c)) {
            return Err(QueryError::Code { field, position });
        }
    }
    Ok(())
}

/// One listed drug → event pair, by group names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairRef {
    /// A drug group's name.
    pub drug: String,
    /// An event group's name.
    pub event: String,
}

/// The signal thresholds (the usual rule of Evans et al.: PRR ≥ 2, χ² ≥ 4, at least 3 cases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalThresholds {
    /// Least proportional reporting ratio.
    pub prr: Decimal,
    /// Least Yates χ².
    pub chi2: Decimal,
    /// Least number of exposed cases (`a`).
    pub cases: u32,
}

impl Default for SignalThresholds {
    fn default() -> Self {
        SignalThresholds {
            prr: Decimal::from_nanos(2_000_000_000),
            chi2: Decimal::from_nanos(4_000_000_000),
            cases: 3,
        }
    }
}

/// Drug → adverse event pairs with a risk window, over new users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrugSafetySpec {
    /// The drugs (each a group of codes, e.g. the products of one ingredient).
    pub drugs: Vec<CodeGroup>,
    /// The adverse-event groups.
    pub events: Vec<CodeGroup>,
    /// The pairs to assess; empty: every drug × event pair, as a scan with
    /// Benjamini–Hochberg control of the false discovery rate `fdr`.
    #[serde(default)]
    pub pairs: Vec<PairRef>,
    /// The risk window: the event 1 to `window_days` days after the first exposure.
    pub window_days: u32,
    /// New users only: the first exposure at least this many days after the record starts.
    pub washout_days: u32,
    /// The signal thresholds (default PRR ≥ 2, χ² ≥ 4, 3 cases).
    #[serde(default)]
    pub thresholds: SignalThresholds,
    /// The scan's false discovery rate, in (0, 1) (default 0.05).
    #[serde(default)]
    pub fdr: Option<Decimal>,
    /// Whether each site adds discrete Laplace noise to its cells (calibrated to the job's
    /// epsilon; a person is in one cell per pair, so the sensitivity is the number of pairs).
    #[serde(default)]
    pub dp: bool,
}

impl DrugSafetySpec {
    /// Whether every pair is assessed as one scan.
    pub fn is_scan(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs in layout order, as `(drug index, event index)`: the listed ones, or every
    /// drug × event (drugs outermost). Names not found are left out (validation refuses them).
    pub fn pair_indices(&self) -> Vec<(usize, usize)> {
        if self.pairs.is_empty() {
            return (0..self.drugs.len())
                .flat_map(|d| (0..self.events.len()).map(move |e| (d, e)))
                .collect();
        }
        self.pairs
            .iter()
            .filter_map(|p| {
                let d = self.drugs.iter().position(|g| g.name == p.drug)?;
                let e = self.events.iter().position(|g| g.name == p.event)?;
                Some((d, e))
            })
            .collect()
    }

    /// The scan's false discovery rate as a float (default 0.05).
    pub fn fdr_f64(&self) -> f64 {
        self.fdr.map_or(0.05, Decimal::to_f64)
    }

    /// Checks the specification.
    pub fn validate(&self) -> Result<(), QueryError> {
        let bad = |reason: String| Err(QueryError::Model { reason });
        check_groups("drug_safety.drugs", &self.drugs, MAX_GROUPS)?;
        check_groups("drug_safety.events", &self.events, MAX_GROUPS)?;
        let pairs = if self.pairs.is_empty() {
            self.drugs.len().saturating_mul(self.events.len())
        } else {
            self.pairs.len()
        };
        if pairs > MAX_SAFETY_PAIRS {
            return bad(format!("at most {MAX_SAFETY_PAIRS} pairs"));
        }
        for (i, p) in self.pairs.iter().enumerate() {
            if !self.drugs.iter().any(|g| g.name == p.drug)
                || !self.events.iter().any(|g| g.name == p.event)
            {
                return bad(format!(
                    "drug_safety.pairs[{i}] names a drug or event group that is not listed"
                ));
            }
            if self.pairs.iter().take(i).any(|q| q == p) {
                return bad(format!("drug_safety.pairs[{i}] is repeated"));
            }
        }
        if self.window_days == 0 || self.window_days > MAX_SAFETY_DAYS {
            return bad(format!("window_days must be 1 to {MAX_SAFETY_DAYS}"));
        }
        if self.washout_days > MAX_SAFETY_DAYS {
            return bad(format!("washout_days must be at most {MAX_SAFETY_DAYS}"));
        }
        let t = &self.thresholds;
        if t.prr.nanos() <= 0 || t.chi2.nanos() < 0 || t.prr.abs_nanos() > 1_000_000_000_000 {
            return bad("thresholds: prr > 0 (at most 1000), chi2 >= 0".into());
        }
        if t.chi2.abs_nanos() > 1_000_000_000_000 {
            return bad("thresholds: chi2 at most 1000".into());
        }
        if let Some(q) = self.fdr
            && (q.nanos() <= 0 || q.nanos() >= 1_000_000_000)
        {
            return bad("fdr must be in (0, 1)".into());
        }
        if self.fdr.is_some() && !self.pairs.is_empty() {
            return bad("fdr applies to a scan (no listed pairs)".into());
        }
        Ok(())
    }

    /// Every code with the CDM table it is matched in.
    pub fn codes(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let drugs = self
            .drugs
            .iter()
            .flat_map(|g| g.codes.iter().map(|c| ("drug_exposure", c.as_str())));
        let events = self
            .events
            .iter()
            .flat_map(|g| g.codes.iter().map(|c| ("condition_occurrence", c.as_str())));
        drugs.chain(events)
    }

    /// The `(table, field)` pairs it reads besides the cohort's.
    pub fn reads(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("visit_occurrence", "person_id"),
            ("visit_occurrence", "visit_start_date"),
            ("drug_exposure", "person_id"),
            ("drug_exposure", "drug_source_value"),
            ("drug_exposure", "drug_exposure_start_date"),
            ("condition_occurrence", "person_id"),
            ("condition_occurrence", "condition_source_value"),
            ("condition_occurrence", "condition_start_date"),
        ]
    }
}

/// A standing syndromic surveillance definition, run once per window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveillanceSpec {
    /// The syndromes, each a set of condition codes (SNOMED CT).
    pub syndromes: Vec<CodeGroup>,
    /// The regions: three-character postal prefixes (`location.zip`), distinct.
    pub regions: Vec<String>,
    /// The first day of window 0, `YYYY-MM-DD`.
    pub start: String,
    /// Days per window (1: daily counts).
    pub window_days: u32,
    /// How many windows the contract covers.
    pub windows: u32,
    /// The epsilon of every window at each site (each job reserves exactly this; the noise is
    /// calibrated to it when `dp`).
    pub epsilon_per_window: Decimal,
    /// Whether each site adds discrete Laplace noise to its counts (default). Without it the
    /// counts are exact and only their sum leaves the sites; a syndrome × region total below
    /// `k` is withheld, and its bands are released only when every band reaches `k` (so no
    /// withheld count can be had by difference).
    #[serde(default = "default_dp")]
    pub dp: bool,
}

fn default_dp() -> bool {
    true
}

impl SurveillanceSpec {
    /// Cells per window: syndromes × regions × age bands.
    pub fn cells(&self) -> usize {
        self.syndromes
            .len()
            .saturating_mul(self.regions.len())
            .saturating_mul(SURVEILLANCE_BANDS.len())
    }

    /// The position of a cell in the window's vector (syndrome outermost, then region, then
    /// band).
    pub fn cell(&self, syndrome: usize, region: usize, band: usize) -> usize {
        (syndrome * self.regions.len() + region) * SURVEILLANCE_BANDS.len() + band
    }

    /// The band of an age, by [`SURVEILLANCE_BANDS`].
    pub fn band_of(age: i64) -> Option<usize> {
        let age = u32::try_from(age).ok()?;
        SURVEILLANCE_BANDS
            .iter()
            .position(|(_, lo, hi)| age >= *lo && age <= *hi)
    }

    /// The per-window epsilon in micro-epsilon (what each job reserves).
    pub fn epsilon_micro(&self) -> u64 {
        self.epsilon_per_window.abs_nanos() / 1000
    }

    /// Window `w`'s days as day numbers (days since 1970-01-01): `[first, end)`.
    pub fn window_days_range(&self, w: u32) -> Result<(i64, i64), QueryError> {
        let start = super::index_day(&self.start)?;
        let first = start + i64::from(w) * i64::from(self.window_days);
        Ok((first, first + i64::from(self.window_days)))
    }

    /// Block time (ms) from which window `w` may run: the end of its last day (UTC).
    pub fn window_end_ms(&self, w: u32) -> Result<u64, QueryError> {
        let (_, end) = self.window_days_range(w)?;
        u64::try_from(end.saturating_mul(DAY_MS)).map_err(|_| QueryError::IndexDate)
    }

    /// Checks the definition.
    pub fn validate(&self) -> Result<(), QueryError> {
        let bad = |reason: String| Err(QueryError::Model { reason });
        check_groups("surveillance.syndromes", &self.syndromes, MAX_SYNDROMES)?;
        if self.regions.is_empty() || self.regions.len() > MAX_REGIONS {
            return bad(format!("surveillance.regions: 1 to {MAX_REGIONS} regions"));
        }
        for (i, r) in self.regions.iter().enumerate() {
            if r.len() != 3 || !r.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return bad(format!(
                    "surveillance.regions[{i}] must be a three-character postal prefix"
                ));
            }
            if self.regions.iter().take(i).any(|x| x == r) {
                return bad(format!("surveillance.regions[{i}] is repeated"));
            }
        }
        super::index_year(&self.start)?;
        if self.window_days == 0 || self.window_days > MAX_WINDOW_DAYS {
            return bad(format!("window_days must be 1 to {MAX_WINDOW_DAYS}"));
        }
        if self.windows == 0 || self.windows > MAX_WINDOWS {
            return bad(format!("windows must be 1 to {MAX_WINDOWS}"));
        }
        let eps = self.epsilon_per_window.nanos();
        if !(1000..=MAX_WINDOW_EPSILON * 1_000_000_000).contains(&eps) || eps % 1000 != 0 {
            return bad(format!(
                "epsilon_per_window must be 0.000001 to {MAX_WINDOW_EPSILON}, in millionths"
            ));
        }
        Ok(())
    }

    /// Every code with the CDM table it is matched in.
    pub fn codes(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.syndromes
            .iter()
            .flat_map(|g| g.codes.iter().map(|c| ("condition_occurrence", c.as_str())))
    }

    /// The `(table, field)` pairs it reads besides the cohort's.
    pub fn reads(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("person", "location_id"),
            ("location", "location_id"),
            ("location", "zip"),
            ("condition_occurrence", "person_id"),
            ("condition_occurrence", "condition_source_value"),
            ("condition_occurrence", "condition_start_date"),
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::{Aggregate, parse};
    use super::*;

    const SURV: &str = r#"{"version":1,"cohort":{"index_date":"2026-01-01"},
        "aggregate":{"surveillance":{"syndromes":[{"name":"ili","codes":["6142004"]},{"name":"agi","codes":["25374005"]}],
        "regions":["010","013"],"start":"2026-01-01","window_days":1,"windows":56,"epsilon_per_window":0.5}}}"#;

    const SAFETY: &str = r#"{"version":1,"cohort":{"index_date":"2026-01-01"},
        "aggregate":{"drug_safety":{"drugs":[{"name":"warfarin","codes":["855332"]},{"name":"statin","codes":["312961"]}],
        "events":[{"name":"bleeding","codes":["131148009"]}],"window_days":30,"washout_days":180}}}"#;

    #[test]
    fn a_surveillance_definition_lays_out_and_schedules_its_windows() {
        let (spec, v) = parse(SURV).unwrap();
        let Aggregate::Surveillance(s) = &spec.aggregate else {
            panic!("not surveillance")
        };
        assert_eq!(s.cells(), 2 * 2 * 5);
        assert_eq!(s.cell(1, 1, 4), 19);
        assert_eq!(s.epsilon_micro(), 500_000);
        let (first, end) = s.window_days_range(0).unwrap();
        assert_eq!(end - first, 1);
        // 2026-01-01 is day 20454; window 0 may run from 2026-01-02T00:00Z.
        assert_eq!(first, 20_454);
        assert_eq!(s.window_end_ms(0).unwrap(), 20_455 * 86_400_000);
        assert!(v.reads.contains(&("location", "zip")));
        assert_eq!(SurveillanceSpec::band_of(4), Some(0));
        assert_eq!(SurveillanceSpec::band_of(65), Some(4));
        assert_eq!(SurveillanceSpec::band_of(-1), None);
    }

    #[test]
    fn a_drug_safety_spec_scans_every_pair_or_the_listed_ones() {
        let (spec, v) = parse(SAFETY).unwrap();
        let Aggregate::DrugSafety(d) = &spec.aggregate else {
            panic!("not drug safety")
        };
        assert!(d.is_scan());
        assert_eq!(d.pair_indices(), vec![(0, 0), (1, 0)]);
        assert!(v.reads.contains(&("drug_exposure", "drug_source_value")));
        let listed = SAFETY.replace(
            r#""window_days":30"#,
            r#""pairs":[{"drug":"statin","event":"bleeding"}],"window_days":30"#,
        );
        let (spec, _) = parse(&listed).unwrap();
        let Aggregate::DrugSafety(d) = &spec.aggregate else {
            panic!("not drug safety")
        };
        assert_eq!(d.pair_indices(), vec![(1, 0)]);
    }

    #[test]
    fn bad_public_health_specs_are_refused() {
        let bad = [
            SURV.replace(r#""010","013""#, r#""010","010""#),
            SURV.replace(r#""010","013""#, r#""01""#),
            SURV.replace(r#""windows":56"#, r#""windows":0"#),
            SURV.replace(r#""window_days":1"#, r#""window_days":29"#),
            SURV.replace(r#""epsilon_per_window":0.5"#, r#""epsilon_per_window":0"#),
            SURV.replace(r#""epsilon_per_window":0.5"#, r#""epsilon_per_window":11"#),
            SURV.replace(r#""6142004""#, r#""x'--""#),
            SURV.replace(r#""name":"agi""#, r#""name":"ili""#),
            SURV.replace(r#""start":"2026-01-01""#, r#""start":"2026-02-30""#),
            SURV.replace(
                r#""index_date":"2026-01-01"}"#,
                r#""index_date":"2026-01-01"},"group_by":["sex"]"#,
            ),
            SAFETY.replace(r#""window_days":30"#, r#""window_days":0"#),
            SAFETY.replace(
                r#""window_days":30"#,
                r#""pairs":[{"drug":"aspirin","event":"bleeding"}],"window_days":30"#,
            ),
            SAFETY.replace(r#""window_days":30"#, r#""fdr":1,"window_days":30"#),
            SAFETY.replace(r#""codes":["131148009"]"#, r#""codes":[]"#),
        ];
        for json in bad {
            assert!(parse(&json).is_err(), "{json}");
        }
    }
}
