//! The two sides of a vertical study ([`ClaimsSpec`]) as SQL over a site's own CDM tables.
//! Each query returns one row per consenting person and never leaves its site: the rows are
//! the inputs of the join protocol ([`crate::join`]), which releases only noised sums.

use super::{ClaimsSpec, GroupField, QueryError, QuerySpec, age_band_sql, valid_table_name};
use crate::dp::{DpError, Mechanism};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Appends the clinical side's rows to the cohort CTE `sql`: per cohort person, the
/// `group_by` columns (Utf8, in order), then `person_id` and `has` (Int64: 1 when one of the
/// compared conditions was recorded on or before the index date, else 0).
pub(crate) fn clinical_rows(sql: &mut String, c: &ClaimsSpec, spec: &QuerySpec) {
    let mut cols: Vec<String> = Vec::new();
    for field in &spec.group_by {
        cols.push(match field {
            GroupField::Sex => "k.sex AS sex".to_string(),
            GroupField::AgeBand => format!("{} AS age_band", age_band_sql("k.age")),
        });
    }
    cols.push("k.person_id AS person_id".into());
    let joined = match &c.compare {
        Some(g) => {
            // Codes were validated to `[A-Za-z0-9.-]`: they cannot leave their literals.
            let codes: Vec<String> = g.codes.iter().map(|x| format!("'{x}'")).collect();
            cols.push(
                "CAST(CASE WHEN d.person_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has".into(),
            );
            format!(
                "\nLEFT JOIN (SELECT DISTINCT person_id FROM condition_occurrence WHERE condition_source_value IN ({}) AND condition_start_date <= DATE '{}') d ON d.person_id = k.person_id",
                codes.join(", "),
                spec.cohort.index_date
            )
        }
        None => {
            cols.push("CAST(0 AS BIGINT) AS has".into());
            String::new()
        }
    };
    let _ = write!(
        sql,
        "\nSELECT {}\nFROM cohort k{joined}\nORDER BY k.person_id",
        cols.join(", ")
    );
}

/// The claims side's query: per consenting member (`consented_table(person_id)` joined to
/// `person`), `person_id`, the number of claims whose visit starts in the window (clamped to
/// `max_claims`) and the amount paid on them (each claim rounded to whole units, the total
/// clamped to `max_paid`), all Int64. Members without a claim in the window give zeros.
pub fn claims_sql(spec: &QuerySpec, consented_table: &str) -> Result<String, QueryError> {
    super::validate(spec)?;
    let super::Aggregate::Claims(c) = &spec.aggregate else {
        return Err(QueryError::Model {
            reason: "not a vertical study".into(),
        });
    };
    if !valid_table_name(consented_table) {
        return Err(QueryError::TableName);
    }
    let start = &spec.cohort.index_date;
    let end = c.window_end(start)?;
    Ok(format!(
        "WITH members AS (
  SELECT p.person_id FROM person p
  JOIN (SELECT DISTINCT person_id FROM \"{consented_table}\") c ON c.person_id = p.person_id
),
claims AS (
  SELECT v.person_id, co.cost_id, ROUND(COALESCE(co.total_paid, 0)) AS paid
  FROM visit_occurrence v JOIN cost co ON co.cost_event_id = v.visit_occurrence_id
  WHERE v.visit_start_date >= DATE '{start}' AND v.visit_start_date < DATE '{end}'
),
per AS (
  SELECT m.person_id, CAST(COUNT(k.cost_id) AS BIGINT) AS claims,
         CAST(COALESCE(SUM(k.paid), 0) AS BIGINT) AS paid
  FROM members m LEFT JOIN claims k ON k.person_id = m.person_id
  GROUP BY m.person_id
)
SELECT person_id,
       CAST(CASE WHEN claims > {mc} THEN {mc} ELSE claims END AS BIGINT) AS claims,
       CAST(CASE WHEN paid > {mp} THEN {mp} WHEN paid < 0 THEN 0 ELSE paid END AS BIGINT) AS paid
FROM per
ORDER BY person_id",
        mc = c.max_claims,
        mp = c.max_paid,
    ))
}

/// A claims member's values in the order of [`ClaimsSpec::measures`] (inputs already clamped
/// by [`claims_sql`]; negative inputs count as zero).
pub fn member_values(c: &ClaimsSpec, claims: i64, paid: i64) -> Vec<u64> {
    let n = u64::try_from(claims.max(0)).unwrap_or(0);
    let p = u64::try_from(paid.max(0)).unwrap_or(0);
    if c.dp {
        vec![1, n, p]
    } else {
        vec![1, n, n.saturating_mul(n), p, p.saturating_mul(p)]
    }
}

/// Values released per cell: the measures' sums, the persons first.
pub fn values_per_cell(c: &ClaimsSpec) -> usize {
    c.measures().len()
}

/// What one person can change in each value of a cell (they are in one cell only): 1 for the
/// persons, the clamp (or its square) for each other measure.
pub fn sensitivities(c: &ClaimsSpec) -> Vec<u64> {
    let (mc, mp) = (u64::from(c.max_claims), u64::from(c.max_paid));
    c.measures()
        .iter()
        .map(|m| match *m {
            "persons" => 1,
            "claims" => mc,
            "claims_sq" => mc * mc,
            "paid" => mp,
            _ => mp * mp,
        })
        .collect()
}

/// One side's noise for `cells` cells, [`values_per_cell`] values each, in layout order: with
/// `dp`, discrete Laplace for each value at its sensitivity and an equal share of the job's
/// epsilon (the values of a cell compose; a person is in one cell); zeros without it. Each side
/// draws its own: the clinical side protects its patients' cells from the claims side, the
/// claims side its members' values from the clinical side and the result's reader.
pub fn side_noise<R: CryptoRng + ?Sized>(
    c: &ClaimsSpec,
    epsilon_micro: u64,
    cells: usize,
    rng: &mut R,
) -> Result<Vec<i64>, DpError> {
    let per = values_per_cell(c);
    if !c.dp {
        return Ok(vec![0; cells * per]);
    }
    let share = epsilon_micro / per as u64;
    let sens = sensitivities(c);
    let mut out = Vec::with_capacity(cells * per);
    for _ in 0..cells {
        for s in &sens {
            out.push(
                Mechanism::Laplace {
                    epsilon_micro: share,
                    sensitivity: *s,
                }
                .noise(rng)?,
            );
        }
    }
    Ok(out)
}

/// How far one clinical site's noise may move an opened measure sum (per measure, in order):
/// 40 Laplace scales, exceeded with probability below e^-40; 0 without `dp`.
pub fn noise_margin(c: &ClaimsSpec, epsilon_micro: u64) -> Vec<u64> {
    let per = values_per_cell(c) as u64;
    let share = (epsilon_micro / per).max(1);
    sensitivities(c)
        .iter()
        .map(|s| {
            if c.dp {
                // scale = s / (share / 10^6)
                let scale = u128::from(*s) * 1_000_000 / u128::from(share) + 1;
                u64::try_from(scale * 40).unwrap_or(u64::MAX)
            } else {
                0
            }
        })
        .collect()
}

/// One released cell of a vertical study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimsCell {
    /// The persons in both (noised with `dp`); `None` below `k`.
    pub n: Option<i64>,
    /// Mean claims per person in the window.
    pub claims_mean: Option<f64>,
    /// Their standard deviation (without `dp` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims_sd: Option<f64>,
    /// Mean paid per person in the window (whole currency units).
    pub paid_mean: Option<f64>,
    /// Its standard deviation (without `dp` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_sd: Option<f64>,
}

/// The released cells from the opened totals (`cells × values_per_cell`, layout order): a cell
/// whose `n` is below `k` is withheld whole; means are clamped to `[0, clamp]` (noise can push
/// a sum out of range), standard deviations to `[0, clamp]`.
pub fn release_cells(c: &ClaimsSpec, totals: &[i64], k: u32) -> Vec<ClaimsCell> {
    let per = values_per_cell(c);
    let measures = c.measures();
    let at = |chunk: &[i64], name: &str| {
        measures
            .iter()
            .position(|m| *m == name)
            .and_then(|i| chunk.get(i).copied())
    };
    totals
        .chunks_exact(per)
        .map(|chunk| {
            let n = chunk.first().copied().unwrap_or(0);
            if n < i64::from(k.max(1)) {
                return ClaimsCell {
                    n: None,
                    claims_mean: None,
                    claims_sd: None,
                    paid_mean: None,
                    paid_sd: None,
                };
            }
            let nf = n as f64;
            let stats = |sum: Option<i64>, sq: Option<i64>, clamp: u32| {
                let clamp = f64::from(clamp);
                let mean = sum.map(|s| (s as f64 / nf).clamp(0.0, clamp));
                let sd = match (sum, sq) {
                    (Some(s), Some(q)) if n > 1 => {
                        let s = s as f64;
                        let var = (q as f64 - s * s / nf) / (nf - 1.0);
                        Some(var.max(0.0).sqrt().min(clamp))
                    }
                    _ => None,
                };
                (mean, sd)
            };
            let (claims_mean, claims_sd) =
                stats(at(chunk, "claims"), at(chunk, "claims_sq"), c.max_claims);
            let (paid_mean, paid_sd) = stats(at(chunk, "paid"), at(chunk, "paid_sq"), c.max_paid);
            ClaimsCell {
                n: Some(n),
                claims_mean,
                claims_sd,
                paid_mean,
                paid_sd,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SPEC: &str = r#"{"version":1,"cohort":{"index_date":"2024-01-01"},"group_by":["sex","age_band"],"aggregate":{"claims":{"days":365,"max_claims":50,"max_paid":20000,"compare":{"name":"diabetes","codes":["44054006","73211009"]}}}}"#;

    #[test]
    fn each_side_reads_its_own_tables_only() {
        let (spec, _) = super::super::parse(SPEC).unwrap();
        let clinical = super::super::compile_sql(&spec, "consented").unwrap();
        assert!(clinical.contains("'44054006', '73211009'"));
        assert!(clinical.contains("AS has"));
        assert!(!clinical.contains("cost"), "{clinical}");
        let claims = claims_sql(&spec, "consented").unwrap();
        assert!(claims.contains("DATE '2024-12-31'"));
        assert!(claims.contains("THEN 50") && claims.contains("THEN 20000"));
        assert!(!claims.contains("condition_occurrence"), "{claims}");
        assert!(claims_sql(&spec, "x; drop").is_err());
        let super::super::Aggregate::Claims(c) = &spec.aggregate else {
            unreachable!()
        };
        assert_eq!(member_values(c, 3, 200), [1, 3, 200]);
        let exact = ClaimsSpec {
            dp: false,
            ..c.clone()
        };
        assert_eq!(member_values(&exact, 3, 200), [1, 3, 9, 200, 40_000]);
        assert_eq!(member_values(&exact, -1, -5), [1, 0, 0, 0, 0]);
    }

    #[test]
    fn cells_release_means_and_withhold_small_ones() {
        let (spec, _) = super::super::parse(SPEC).unwrap();
        let super::super::Aggregate::Claims(c) = &spec.aggregate else {
            unreachable!()
        };
        let exact = ClaimsSpec {
            dp: false,
            ..c.clone()
        };
        // n = 4 persons with claims 1,2,3,4 and paid 10,20,30,40; then a cell of 3 persons.
        let totals = [4, 10, 30, 100, 3000, 3, 3, 3, 30, 300];
        let cells = release_cells(&exact, &totals, 4);
        assert_eq!(cells[0].n, Some(4));
        assert_eq!(cells[0].claims_mean, Some(2.5));
        let sd = cells[0].claims_sd.unwrap();
        assert!((sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12, "{sd}");
        assert_eq!(cells[0].paid_mean, Some(25.0));
        assert_eq!(cells[1].n, None);
        assert_eq!(cells[1].paid_mean, None);
        // With dp, only sums: means clamped into range, no standard deviation.
        let cells = release_cells(c, &[20, -5, 2_000_000], 10);
        assert_eq!(cells[0].claims_mean, Some(0.0));
        assert_eq!(cells[0].paid_mean, Some(20_000.0));
        assert_eq!(cells[0].paid_sd, None);
        let mut rng = crate::dp::os_rng().unwrap();
        assert_eq!(
            side_noise(&exact, 1_000_000, 4, &mut rng).unwrap(),
            vec![0; 20]
        );
        assert_eq!(side_noise(c, 1_000_000, 4, &mut rng).unwrap().len(), 12);
        assert_eq!(noise_margin(&exact, 1_000_000), vec![0; 5]);
        // paid: scale 20000 × 3 = 60000 per unit epsilon.
        assert_eq!(noise_margin(c, 1_000_000)[2], 40 * 60_001);
    }
}
