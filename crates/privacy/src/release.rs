//! Releasing an aggregate: the totals of a query's fixed vector of cells, after disclosure
//! control (small-cell suppression), as labelled cells. The vector layout is the query's
//! ([`crate::query::groups`]): per group its count and, for a mean, the sum of the clamped
//! values in thousandths.

use crate::dp::suppress_small;
use crate::query::{Aggregate, GroupKey, QuerySpec, groups};

/// How much protection a release applies. Production is always [`Protection::Full`]; the
/// unprotected setting exists only so tests can compare federated and pooled results exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// Noise from each site and small-cell suppression with this `k`.
    Full {
        /// Suppression threshold (the policy's `min_cell_k`).
        k: u32,
    },
    /// No noise, no suppression: only for tests that compare federated and pooled results.
    TestNone,
}

/// A released cell: its group and the protected value (`None`: suppressed).
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The group.
    pub group: GroupKey,
    /// Persons (noisy), or `None` when below the threshold.
    pub n: Option<i64>,
    /// Mean of the measurement (from noisy sum and count), for mean queries.
    pub mean: Option<f64>,
}

/// The layout does not match the query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("result layout: expected={expected} values got={got}")]
pub struct LayoutError {
    /// Values the query's layout has.
    pub expected: usize,
    /// Values given.
    pub got: usize,
}

/// Values per group of the layout: the count, and the sum for a mean; for a survival curve
/// the persons entered and each bin's events and censored persons
/// ([`crate::survival::layout_len`]). A model has no cells: its statistics have their own layout
/// per iteration ([`crate::glm::stats_len`]), so it has none here.
pub fn values_per_group(spec: &QuerySpec) -> usize {
    match &spec.aggregate {
        Aggregate::Count => 1,
        Aggregate::Mean(_) => 2,
        Aggregate::Survival(s) => 1 + 2 * s.bins(),
        Aggregate::Model(_) => 0,
        Aggregate::DrugSafety(d) => crate::pharmacovigilance::layout_len(d.pair_indices().len()),
        Aggregate::Surveillance(s) => s.cells(),
        // Per clinical split of the group: n and the claims side's measures.
        Aggregate::Claims(c) => c.measures().len() * if c.compare.is_some() { 2 } else { 1 },
        // One count per pair of sites: laid out by the job's sites, not the query.
        Aggregate::Overlap(_) => 0,
    }
}

/// Length of a query's vector.
pub fn layout_len(spec: &QuerySpec) -> usize {
    groups(spec).len() * values_per_group(spec)
}

/// The released cells of a vector of totals in the spec's layout: `n` after suppression below
/// `k` (none without protection) and, for a mean, the mean of the clamped values from
/// `sum_fixed / n`.
pub fn release_totals(
    spec: &QuerySpec,
    totals: &[i64],
    protection: Protection,
) -> Result<Vec<Cell>, LayoutError> {
    let layout = groups(spec);
    let per = values_per_group(spec);
    if totals.len() != layout.len() * per {
        return Err(LayoutError {
            expected: layout.len() * per,
            got: totals.len(),
        });
    }
    let mut cells = Vec::with_capacity(layout.len());
    for (group, values) in layout.iter().zip(totals.chunks_exact(per)) {
        let n = values.first().copied().unwrap_or(0);
        let n = match protection {
            Protection::Full { k } => suppress_small(n, k),
            Protection::TestNone => Some(n),
        };
        let mean = match (&spec.aggregate, n) {
            (Aggregate::Mean(_), Some(count)) if count > 0 => {
                values.get(1).map(|v| *v as f64 / 1000.0 / count as f64)
            }
            _ => None,
        };
        cells.push(Cell {
            group: *group,
            n,
            mean,
        });
    }
    Ok(cells)
}

/// Label of a group for display (`all`, `female`, `male 40-49`).
pub fn group_label(g: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(s) = g.sex {
        parts.push(s.as_str().to_string());
    }
    if let Some(b) = g.age_band {
        parts.push(b.label());
    }
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppresses_small_cells_and_checks_the_layout() {
        let (spec, _) = crate::query::parse(
            r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#,
        )
        .unwrap();
        let n = layout_len(&spec);
        let mut totals = vec![50i64; n];
        totals[0] = 3;
        let cells = release_totals(&spec, &totals, Protection::Full { k: 10 }).unwrap();
        assert_eq!(cells[0].n, None);
        assert_eq!(cells[1].n, Some(50));
        assert_eq!(
            release_totals(&spec, &totals, Protection::TestNone).unwrap()[0].n,
            Some(3)
        );
        assert!(release_totals(&spec, &totals[1..], Protection::TestNone).is_err());
        assert_eq!(
            group_label(&cells[1].group),
            cells[1].group.sex.unwrap().as_str()
        );
    }
}
