//! A vertical study ([`ClaimsSpec`]): hospitals' clinical cohort joined with an insurer's
//! claims on the patients both hold, the computation a contract between one or more hospitals
//! and exactly one insurer approves.
//!
//! The data holders read different columns of the same persons:
//! - **the clinical side** (one or more hospitals) selects the query's cohort at the index date, lays its
//!   persons out in the query's `group_by` cells and, with `compare`, splits each cell in two:
//!   the persons with any condition of that code group recorded on or before the index date,
//!   and the others ([`ClaimsSpec::clinical_reads`]);
//! - **the claims side** (the insurer) gives each of its consenting members, over the window
//!   `[index date, index date + days)`, the number of claims (adjudicated claims whose visit
//!   starts in the window, clamped to `max_claims`) and the amount paid on them (whole currency
//!   units, rounded per claim, clamped to `max_paid`) ([`ClaimsSpec::claims_reads`]).
//!
//! Only persons in both (by ledger pseudonym, through a private set intersection each hospital
//! runs with the insurer; a patient of several hospitals counts at the first) are counted. Per
//! cell the release is the sums of the claims side's measures ([`ClaimsSpec::measures`]), the
//! first of which counts the persons. With `dp` (the default) both sides noise every value with the
//! job's epsilon, each protecting its own data from the other and from the result's reader, and
//! only the sums of claims and paid are released (means); without it the values are exact, a
//! cell below `k` is withheld, and the sums of squares are released too (means and standard
//! deviations). Without `dp` a hospital also leaves out of a cell its persons there when it has
//! fewer than `k` of them, so no total the insurer opens is a sum over fewer than `k` of its
//! members; such a cell can then count fewer persons than the hospitals hold. Neither side ever
//! sees a row of the other.

use super::health::CodeGroup;
use super::{GroupKey, QueryError, QuerySpec};
use serde::{Deserialize, Serialize};

/// Longest window in days (ten years).
pub const MAX_CLAIMS_DAYS: u32 = 3660;
/// Largest `max_claims`.
pub const MAX_CLAIMS_PER_PERSON: u32 = 1000;
/// Largest `max_paid` (whole currency units): its square stays below 2^40.
pub const MAX_PAID_PER_PERSON: u32 = 1_000_000;
/// The values the claims side gives per person without `dp`, in this order: 1 (the person,
/// so the sums count the persons both sides hold), claims, its square, paid, its square.
pub const CLAIMS_MEASURES: [&str; 5] = ["persons", "claims", "claims_sq", "paid", "paid_sq"];
/// The values the claims side gives per person with `dp`, in this order (the squares, whose
/// sensitivity is the square of the clamp, would drown in their noise).
pub const CLAIMS_MEASURES_DP: [&str; 3] = ["persons", "claims", "paid"];

fn yes() -> bool {
    true
}

/// The claims side of a vertical study and the clinical split it is compared by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsSpec {
    /// Days after the index date whose claims count (1 to [`MAX_CLAIMS_DAYS`]).
    pub days: u32,
    /// Claims per person are clamped to this (1 to [`MAX_CLAIMS_PER_PERSON`]).
    pub max_claims: u32,
    /// Paid per person is clamped to this (1 to [`MAX_PAID_PER_PERSON`]).
    pub max_paid: u32,
    /// A clinical split of every cell: persons with any of these conditions recorded on or
    /// before the index date, and the others.
    #[serde(default)]
    pub compare: Option<CodeGroup>,
    /// Noise from both sides (the default); without it, exact values with small cells withheld.
    #[serde(default = "yes")]
    pub dp: bool,
}

impl ClaimsSpec {
    /// Checks the bounds and the comparison's codes.
    pub fn validate(&self) -> Result<(), QueryError> {
        let bad = |reason: String| Err(QueryError::Model { reason });
        if self.days == 0 || self.days > MAX_CLAIMS_DAYS {
            return bad(format!("claims.days: 1 to {MAX_CLAIMS_DAYS}"));
        }
        if self.max_claims == 0 || self.max_claims > MAX_CLAIMS_PER_PERSON {
            return bad(format!("claims.max_claims: 1 to {MAX_CLAIMS_PER_PERSON}"));
        }
        if self.max_paid == 0 || self.max_paid > MAX_PAID_PER_PERSON {
            return bad(format!("claims.max_paid: 1 to {MAX_PAID_PER_PERSON}"));
        }
        if let Some(g) = &self.compare {
            super::health::check_groups("claims.compare", std::slice::from_ref(g), 1)?;
        }
        Ok(())
    }

    /// The claims side's values per person, in order.
    pub fn measures(&self) -> &'static [&'static str] {
        if self.dp {
            &CLAIMS_MEASURES_DP
        } else {
            &CLAIMS_MEASURES
        }
    }

    /// What the clinical side reads besides the cohort's own fields.
    pub fn clinical_reads(&self) -> Vec<(&'static str, &'static str)> {
        match self.compare {
            Some(_) => vec![
                ("condition_occurrence", "person_id"),
                ("condition_occurrence", "condition_source_value"),
                ("condition_occurrence", "condition_start_date"),
            ],
            None => Vec::new(),
        }
    }

    /// What the claims side reads.
    pub fn claims_reads() -> Vec<(&'static str, &'static str)> {
        vec![
            ("person", "person_id"),
            ("visit_occurrence", "person_id"),
            ("visit_occurrence", "visit_occurrence_id"),
            ("visit_occurrence", "visit_start_date"),
            ("cost", "cost_id"),
            ("cost", "cost_event_id"),
            ("cost", "total_paid"),
        ]
    }

    /// The cells of the release: each `group_by` cell of `spec`, split by `compare` (with the
    /// condition first) when there is one. `(group, has the condition)`.
    pub fn cells(&self, spec: &QuerySpec) -> Vec<(GroupKey, Option<bool>)> {
        let groups = super::groups(spec);
        match self.compare {
            Some(_) => groups
                .into_iter()
                .flat_map(|g| [(g, Some(true)), (g, Some(false))])
                .collect(),
            None => groups.into_iter().map(|g| (g, None)).collect(),
        }
    }

    /// The cell index of a person in group `group` (its index in `groups(spec)`) with or
    /// without the compared condition.
    pub fn cell_of(&self, group: usize, has: bool) -> usize {
        match self.compare {
            Some(_) => group * 2 + usize::from(!has),
            None => group,
        }
    }

    /// The last day (exclusive) of the window, as `YYYY-MM-DD`, for the index date `index`.
    pub fn window_end(&self, index: &str) -> Result<String, QueryError> {
        let day = super::index_day(index)?;
        Ok(super::date_of_day(day + i64::from(self.days)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn spec(json: &str) -> Result<(QuerySpec, super::super::Validated), QueryError> {
        super::super::parse(json)
    }

    const BASE: &str = r#"{"version":1,"cohort":{"index_date":"2024-01-01","age":{"min":18,"max":90}},"group_by":["sex"],"aggregate":{"claims":{"days":365,"max_claims":50,"max_paid":20000,"compare":{"name":"diabetes","codes":["44054006"]}}}}"#;

    #[test]
    fn a_vertical_study_parses_and_reads_both_sides() {
        let (s, v) = spec(BASE).unwrap();
        let super::super::Aggregate::Claims(c) = &s.aggregate else {
            panic!("not claims")
        };
        for r in ClaimsSpec::claims_reads()
            .into_iter()
            .chain(c.clinical_reads())
        {
            assert!(v.reads.contains(&r), "{r:?} not read");
        }
        let cells = c.cells(&s);
        assert_eq!(cells.len(), 4);
        assert_eq!(
            cells[c.cell_of(1, false)].0.sex,
            Some(super::super::Sex::Male)
        );
        assert_eq!(cells[c.cell_of(1, false)].1, Some(false));
        assert_eq!(c.window_end("2024-01-01").unwrap(), "2024-12-31");
    }

    #[test]
    fn bad_bounds_and_codes_are_refused() {
        for (from, to) in [
            ("\"days\":365", "\"days\":0"),
            ("\"days\":365", "\"days\":3661"),
            ("\"max_claims\":50", "\"max_claims\":0"),
            ("\"max_paid\":20000", "\"max_paid\":1000001"),
            ("\"44054006\"", "\"x'; DROP\""),
            ("\"max_paid\":20000", "\"max_paid\":20000,\"extra\":1"),
        ] {
            let json = BASE.replace(from, to);
            assert!(spec(&json).is_err(), "{json} accepted");
        }
        let json = BASE.replace(
            ",\"compare\":{\"name\":\"diabetes\",\"codes\":[\"44054006\"]}",
            "",
        );
        let (s, _) = spec(&json).unwrap();
        let super::super::Aggregate::Claims(c) = &s.aggregate else {
            panic!("not claims")
        };
        assert_eq!(c.cells(&s).len(), 2);
        assert!(c.clinical_reads().is_empty());
    }
}
