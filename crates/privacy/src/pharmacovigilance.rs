//! Drug safety (pharmacovigilance) from aggregated 2×2 tables: disproportionality statistics
//! per drug → adverse-event pair, signal rules, and a multiplicity-aware scan.
//!
//! Every site classifies its persons per pair ([`classify`]) into the four cells of a 2×2 table,
//! lays the cells of all the contract's pairs out as one vector ([`site_vector`]); the vectors
//! are summed (secure aggregation) and the statistics are computed from the sum alone
//! ([`tables_from_sum`], then [`assess`] or [`scan`]).
//!
//! **Table.** `a` = exposed with the event in the risk window, `b` = exposed without,
//! `c` = unexposed with the event, `d` = unexposed without; `N = a + b + c + d`.
//!
//! **Layout** (length [`layout_len`]): per pair, in the contract's order, `[a, b, c, d]`.
//! Noisy sums (DP noise added upstream) may be negative: every cell is clamped to at least 0.
//!
//! **Statistics** (all in f64; a value that is undefined is `None`, never NaN or ±∞):
//! - PRR, the proportional reporting ratio (Evans, Waller & Davis, *Pharmacoepidemiol Drug Saf*
//!   2001;10:483–486): `PRR = [a/(a+b)] / [c/(c+d)]`, with
//!   `SE(ln PRR) = √(1/a − 1/(a+b) + 1/c − 1/(c+d))` and the 95 % CI `exp(ln PRR ± z·SE)`. This is
//!   the risk ratio of the table, the same as statsmodels' `Table2x2.riskratio` and
//!   `riskratio_confint`. `None` when `a + b = 0` or `c = 0`.
//! - ROR, the reporting odds ratio (van Puijenbroek et al., *Pharmacoepidemiol Drug Saf*
//!   2002;11:3–10): `ROR = ad / bc`, `SE(ln ROR) = √(1/a + 1/b + 1/c + 1/d)` (Woolf), 95 % CI
//!   `exp(ln ROR ± z·SE)` (statsmodels' `oddsratio`, `oddsratio_confint`). `None` when `bc = 0`.
//! - **Zero cells** (Haldane–Anscombe): when any cell is 0, both CIs are computed on the table
//!   with 0.5 added to *every* cell, and
//!   [`Disproportionality::haldane`] is set. The point estimates stay those of the raw table (so
//!   with a zero cell the raw PRR or ROR may lie outside its corrected CI, e.g. `a = 0` gives
//!   `PRR = 0`). A CI is `None` only when there is nobody exposed (`a + b = 0`) or nobody
//!   unexposed (`c + d = 0`). (statsmodels' `Table2x2(…, shift_zeros=True)` differs: it
//!   replaces only the zero cells by 0.5; the independent check passes it the shifted table.)
//! - IC, the information component of the Bayesian confidence propagation neural network
//!   (BCPNN) with the usual shrinkage: `IC = log2((a + 0.5)/(E + 0.5))`, `E = (a+b)(a+c)/N`; its
//!   95 % credibility interval by the closed-form approximation of Norén, Hopstadius & Bate,
//!   *Stat Methods Med Res* 2013;22(1):57–69 (§2.3):
//!   `IC025 = IC − 3.3·(a+0.5)^(−1/2) − 2·(a+0.5)^(−3/2)`,
//!   `IC975 = IC + 2.4·(a+0.5)^(−1/2) − 0.5·(a+0.5)^(−3/2)`. `None` when `N = 0`.
//! - χ² with Yates' continuity correction (the one the PRR rule of Evans et al. uses):
//!   `χ² = N·max(|ad − bc| − N/2, 0)² / ((a+b)(c+d)(a+c)(b+d))` — the same statistic as scipy's
//!   `chi2_contingency(correction=True)`, whose correction never moves a cell past its expected
//!   value. `|ad − bc|` and `N` are exact integers (u128). Its p-value is the χ²₁ upper tail
//!   ([`crate::survival::chi2_sf`]). `None` when a margin is 0.
//!
//! **Signals** ([`SignalRule`], default the usual thresholds): the PRR rule (Evans et al.)
//! `PRR ≥ 2 ∧ χ² ≥ 4 ∧ a ≥ 3`, and as a second rule `IC025 > 0`. An undefined value never
//! signals.
//!
//! **Suppression.** A pair is suppressed — no cells, no statistics, no flags — when *any* of its
//! four cells is below `k` (zero included, as [`crate::dp::suppress_small`] does). Not only `a`:
//! the four released statistics together determine the four cells, so a small `c` (an event
//! rare among the unexposed) would be disclosed as surely as a small `a`.
//!
//! **Scan** ([`scan`]): all pairs of a drug class against all event groups ([`scan_pairs`]). The
//! χ² p-values of all `m` pairs of the scan form the family of the Benjamini–Hochberg step-up
//! procedure (Benjamini & Hochberg, *J R Stat Soc B* 1995;57:289–300) at the false discovery
//! rate `q`: with the p-values sorted, `p_(1) ≤ … ≤ p_(m)`, the pairs of rank `≤ max{i : p_(i) ≤
//! i·q/m}` are rejected. A suppressed pair or one with an undefined p-value takes part with
//! `p = 1` (so `m` is the whole scan, which is conservative, and nothing released depends on a
//! suppressed pair's cells). A pair is a scan signal when it is rejected, `PRR ≥ prr_min` and
//! `a ≥ min_cases`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::survival::chi2_sf;

/// 97.5 % quantile of the standard normal.
const Z_975: f64 = 1.959963984540054;
/// Most pairs in one computation (bounds every allocation).
pub const MAX_PAIRS: usize = 100_000;
/// Values per pair in the layout: a, b, c, d.
pub const CELLS_PER_PAIR: usize = 4;

/// Errors of the pharmacovigilance layout and statistics.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PvError {
    /// Zero or too many pairs.
    #[error("bad layout: pairs={pairs} (between 1 and {MAX_PAIRS})")]
    BadLayout {
        /// Pairs.
        pairs: usize,
    },
    /// A vector of the wrong length.
    #[error("vector length mismatch: expected={expected} got={got}")]
    Length {
        /// The layout's length.
        expected: usize,
        /// The given length.
        got: usize,
    },
    /// A person's pair is not below `pairs`.
    #[error("pair out of range: pair={pair} pairs={pairs} row={row}")]
    PairOutOfRange {
        /// The pair.
        pair: usize,
        /// Pairs.
        pairs: usize,
        /// The row.
        row: usize,
    },
    /// A count does not fit in an i64.
    #[error("count overflow")]
    Overflow,
    /// A threshold of the rule is not a finite number.
    #[error("bad signal rule: field={field}")]
    BadRule {
        /// The offending field.
        field: &'static str,
    },
    /// The false discovery rate is not in (0, 1).
    #[error("bad false discovery rate: fdr={fdr}")]
    BadFdr {
        /// The given rate.
        fdr: f64,
    },
}

/// One drug → adverse-event pair of a contract.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PairId {
    /// The drug (or drug class) code, e.g. RxNorm.
    pub drug: String,
    /// The event (or event group) code, e.g. SNOMED CT.
    pub event: String,
}

impl PairId {
    /// A pair from its codes.
    pub fn new(drug: impl Into<String>, event: impl Into<String>) -> PairId {
        PairId {
            drug: drug.into(),
            event: event.into(),
        }
    }
}

/// The 2×2 table of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Table2x2 {
    /// Exposed with the event in the risk window.
    pub a: u64,
    /// Exposed without the event in the window.
    pub b: u64,
    /// Unexposed with the event.
    pub c: u64,
    /// Unexposed without the event.
    pub d: u64,
}

impl Table2x2 {
    /// A table from its cells.
    pub const fn new(a: u64, b: u64, c: u64, d: u64) -> Table2x2 {
        Table2x2 { a, b, c, d }
    }

    /// A table from one pair's `[a, b, c, d]` of a summed vector; negative (noisy) cells are
    /// clamped to 0.
    pub fn from_cells(cells: &[i64]) -> Result<Table2x2, PvError> {
        let [a, b, c, d] = *cells else {
            return Err(PvError::Length {
                expected: CELLS_PER_PAIR,
                got: cells.len(),
            });
        };
        let clamp = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Table2x2::new(clamp(a), clamp(b), clamp(c), clamp(d)))
    }

    /// The cells in layout order.
    pub const fn cells(&self) -> [u64; 4] {
        [self.a, self.b, self.c, self.d]
    }

    /// The smallest cell.
    pub fn min_cell(&self) -> u64 {
        self.a.min(self.b).min(self.c).min(self.d)
    }

    /// The sum of two tables (`None` on overflow).
    pub fn checked_add(&self, other: &Table2x2) -> Option<Table2x2> {
        Some(Table2x2::new(
            self.a.checked_add(other.a)?,
            self.b.checked_add(other.b)?,
            self.c.checked_add(other.c)?,
            self.d.checked_add(other.d)?,
        ))
    }

    fn f64s(&self) -> [f64; 4] {
        [self.a as f64, self.b as f64, self.c as f64, self.d as f64]
    }
}

/// The thresholds of the signal rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRule {
    /// PRR at least this (2).
    pub prr_min: f64,
    /// Yates χ² at least this (4).
    pub chi2_min: f64,
    /// `a` at least this (3).
    pub min_cases: u64,
    /// IC025 strictly above this (0).
    pub ic025_min: f64,
}

impl Default for SignalRule {
    /// The usual thresholds: Evans et al. (PRR ≥ 2, χ² ≥ 4, a ≥ 3) and IC025 > 0.
    fn default() -> SignalRule {
        SignalRule {
            prr_min: 2.0,
            chi2_min: 4.0,
            min_cases: 3,
            ic025_min: 0.0,
        }
    }
}

impl SignalRule {
    fn validate(&self) -> Result<(), PvError> {
        for (field, v) in [
            ("prr_min", self.prr_min),
            ("chi2_min", self.chi2_min),
            ("ic025_min", self.ic025_min),
        ] {
            if !v.is_finite() {
                return Err(PvError::BadRule { field });
            }
        }
        Ok(())
    }
}

/// Which signal rules a pair meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Signals {
    /// `PRR ≥ prr_min ∧ χ² ≥ chi2_min ∧ a ≥ min_cases`.
    pub prr_rule: bool,
    /// `IC025 > ic025_min`.
    pub ic_rule: bool,
}

/// The disproportionality statistics of one table (see the module docs for the formulas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disproportionality {
    /// Proportional reporting ratio.
    pub prr: Option<f64>,
    /// Its 95 % CI.
    pub prr_ci: Option<(f64, f64)>,
    /// Reporting odds ratio.
    pub ror: Option<f64>,
    /// Its 95 % CI.
    pub ror_ci: Option<(f64, f64)>,
    /// The CIs were computed with 0.5 added to every cell (some cell is 0).
    pub haldane: bool,
    /// Information component (shrunk, log2).
    pub ic: Option<f64>,
    /// Lower end of its 95 % credibility interval.
    pub ic025: Option<f64>,
    /// Upper end of its 95 % credibility interval.
    pub ic975: Option<f64>,
    /// Expected `a` under independence, `(a+b)(a+c)/N`.
    pub expected: Option<f64>,
    /// Yates-corrected χ².
    pub chi2: Option<f64>,
    /// Its p-value (χ², 1 degree of freedom).
    pub chi2_p: Option<f64>,
    /// The signal rules met.
    pub signals: Signals,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn finite_pair(lo: f64, hi: f64) -> Option<(f64, f64)> {
    Some((finite(lo)?, finite(hi)?))
}

/// `exp(ln r ± z·se)`.
fn log_ci(ratio: f64, se: f64) -> Option<(f64, f64)> {
    if ratio.is_nan() || ratio <= 0.0 {
        return None;
    }
    let l = ratio.ln();
    finite_pair((l - Z_975 * se).exp(), (l + Z_975 * se).exp())
}

impl Disproportionality {
    /// The statistics of `t` and the signals of `rule` (an invalid rule signals nothing; use
    /// [`assess`] for a checked rule).
    pub fn of(t: &Table2x2, rule: &SignalRule) -> Disproportionality {
        let [a, b, c, d] = t.f64s();
        let (exposed, unexposed) = (a + b, c + d);
        let n = exposed + unexposed;
        let prr = if exposed > 0.0 && c > 0.0 {
            finite((a / exposed) / (c / unexposed))
        } else {
            None
        };
        let ror = if b > 0.0 && c > 0.0 {
            finite((a * d) / (b * c))
        } else {
            None
        };
        let haldane = t.min_cell() == 0;
        let [ha, hb, hc, hd] = if haldane {
            [a + 0.5, b + 0.5, c + 0.5, d + 0.5]
        } else {
            [a, b, c, d]
        };
        let (prr_ci, ror_ci) = if exposed > 0.0 && unexposed > 0.0 {
            let rr = (ha / (ha + hb)) / (hc / (hc + hd));
            let se_rr = (1.0 / ha - 1.0 / (ha + hb) + 1.0 / hc - 1.0 / (hc + hd))
                .max(0.0)
                .sqrt();
            let or = (ha * hd) / (hb * hc);
            let se_or = (1.0 / ha + 1.0 / hb + 1.0 / hc + 1.0 / hd).sqrt();
            (log_ci(rr, se_rr), log_ci(or, se_or))
        } else {
            (None, None)
        };
        let (expected, ic, ic025, ic975) = if n > 0.0 {
            let e = exposed * (a + c) / n;
            let ic = ((a + 0.5) / (e + 0.5)).log2();
            let s = a + 0.5;
            let (r1, r3) = (s.powf(-0.5), s.powf(-1.5));
            (
                finite(e),
                finite(ic),
                finite(ic - 3.3 * r1 - 2.0 * r3),
                finite(ic + 2.4 * r1 - 0.5 * r3),
            )
        } else {
            (None, None, None, None)
        };
        let chi2 = yates_chi2(t);
        let chi2_p = chi2.map(|x| chi2_sf(x, 1)).and_then(finite);
        let valid = rule.validate().is_ok();
        let signals = Signals {
            prr_rule: valid
                && t.a >= rule.min_cases
                && prr.is_some_and(|p| p >= rule.prr_min)
                && chi2.is_some_and(|x| x >= rule.chi2_min),
            ic_rule: valid && ic025.is_some_and(|x| x > rule.ic025_min),
        };
        Disproportionality {
            prr,
            prr_ci,
            ror,
            ror_ci,
            haldane,
            ic,
            ic025,
            ic975,
            expected,
            chi2,
            chi2_p,
            signals,
        }
    }
}

/// Yates-corrected χ² of the table (`None` when a margin is 0).
pub fn yates_chi2(t: &Table2x2) -> Option<f64> {
    let [a, b, c, d] = t.cells().map(u128::from);
    let margins = [a + b, c + d, a + c, b + d];
    if margins.contains(&0) {
        return None;
    }
    let n = a + b + c + d;
    let (ad, bc) = (a * d, b * c);
    let diff = ad.abs_diff(bc);
    let den: f64 = margins.iter().map(|&m| m as f64).product();
    // χ² = N (|ad − bc| − N/2)² / Π margins = N (2|ad − bc| − N)² / (4 Π margins).
    let num = match diff.checked_mul(2) {
        Some(twice) => twice.saturating_sub(n) as f64,
        None => (2.0 * diff as f64 - n as f64).max(0.0),
    };
    finite(n as f64 * num * num / (4.0 * den))
}

/// One pair's released result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    /// The pair.
    pub pair: PairId,
    /// Some cell is below the threshold: nothing else is released.
    pub suppressed: bool,
    /// The table (`None` when suppressed).
    pub table: Option<Table2x2>,
    /// The statistics and signals (`None` when suppressed).
    pub stats: Option<Disproportionality>,
    /// In a [`scan`]: rejected by Benjamini–Hochberg with `PRR ≥ prr_min` and `a ≥ min_cases`
    /// (`None` outside a scan and when suppressed).
    pub scan_signal: Option<bool>,
}

/// The statistics and signals of every pair, pairs with a cell below `k` suppressed.
pub fn assess(
    pairs: &[(PairId, Table2x2)],
    rule: &SignalRule,
    k: u64,
) -> Result<Vec<PairResult>, PvError> {
    rule.validate()?;
    Ok(pairs
        .iter()
        .map(|(pair, t)| {
            let suppressed = t.min_cell() < k;
            PairResult {
                pair: pair.clone(),
                suppressed,
                table: (!suppressed).then_some(*t),
                stats: (!suppressed).then(|| Disproportionality::of(t, rule)),
                scan_signal: None,
            }
        })
        .collect())
}

/// Every drug against every event, drugs outermost (the scan's fixed layout order).
pub fn scan_pairs<D: AsRef<str>, E: AsRef<str>>(drugs: &[D], events: &[E]) -> Vec<PairId> {
    drugs
        .iter()
        .flat_map(|d| {
            events
                .iter()
                .map(move |e| PairId::new(d.as_ref(), e.as_ref()))
        })
        .collect()
}

/// [`assess`] and the Benjamini–Hochberg scan at false discovery rate `fdr` ∈ (0, 1).
pub fn scan(
    pairs: &[(PairId, Table2x2)],
    rule: &SignalRule,
    k: u64,
    fdr: f64,
) -> Result<Vec<PairResult>, PvError> {
    if fdr.is_nan() || fdr <= 0.0 || fdr >= 1.0 {
        return Err(PvError::BadFdr { fdr });
    }
    let mut out = assess(pairs, rule, k)?;
    let p: Vec<f64> = out
        .iter()
        .map(|r| {
            r.stats
                .as_ref()
                .and_then(|s| s.chi2_p)
                .unwrap_or(1.0)
                .clamp(0.0, 1.0)
        })
        .collect();
    let rejected = benjamini_hochberg(&p, fdr);
    for (r, rej) in out.iter_mut().zip(rejected) {
        if let (Some(s), Some(t)) = (&r.stats, &r.table) {
            r.scan_signal =
                Some(rej && t.a >= rule.min_cases && s.prr.is_some_and(|x| x >= rule.prr_min));
        }
    }
    Ok(out)
}

/// The Benjamini–Hochberg step-up procedure: which of the p-values are rejected at FDR `q`.
/// A NaN p-value counts as 1.
pub fn benjamini_hochberg(p: &[f64], q: f64) -> Vec<bool> {
    let m = p.len();
    let clean = |x: f64| if x.is_nan() { 1.0 } else { x };
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| {
        let (x, y) = (p.get(i).copied(), p.get(j).copied());
        clean(x.unwrap_or(1.0)).total_cmp(&clean(y.unwrap_or(1.0)))
    });
    let mut cut = 0;
    for (rank, &i) in order.iter().enumerate() {
        let pi = clean(p.get(i).copied().unwrap_or(1.0));
        if pi <= (rank + 1) as f64 * q / m as f64 {
            cut = rank + 1;
        }
    }
    let mut out = vec![false; m];
    for &i in order.iter().take(cut) {
        if let Some(slot) = out.get_mut(i) {
            *slot = true;
        }
    }
    out
}

/// The cell of a person's 2×2 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cell {
    /// Exposed (new user), event in the risk window.
    A,
    /// Exposed (new user), no event in the risk window.
    B,
    /// Never exposed, with the event.
    C,
    /// Never exposed, without the event.
    D,
}

impl Cell {
    const fn offset(self) -> usize {
        match self {
            Cell::A => 0,
            Cell::B => 1,
            Cell::C => 2,
            Cell::D => 3,
        }
    }
}

/// The risk-window rule: the cell of one person for one pair, or `None` when the person is not
/// in the analysis. Days are day numbers (e.g. days since 1970-01-01).
///
/// - `observed_from`: the first day of the person's record (the washout needs observed time).
/// - `exposures`: the start days of the drug's exposures (any order); `events`: the event's days.
/// - Unexposed (no exposure at all): `C` when an event is on or after `observed_from`, else `D`.
/// - Exposed: the index is the first exposure start. The person is a *new user* only when the
///   record covers the washout before it (`index − observed_from ≥ washout_days`), so no earlier
///   exposure in the washout can have gone unseen; otherwise `None` (a possibly prevalent user).
///   `A` when an event falls in the risk window, days `index + 1 ..= index + window_days` (an
///   event on the index day is not counted: it may be the indication), else `B`. Events before
///   the index do not exclude the person.
pub fn classify(
    observed_from: i64,
    exposures: &[i64],
    events: &[i64],
    window_days: u32,
    new_users_washout_days: u32,
) -> Option<Cell> {
    let Some(&index) = exposures.iter().min() else {
        return Some(if events.iter().any(|&e| e >= observed_from) {
            Cell::C
        } else {
            Cell::D
        });
    };
    if i128::from(index) - i128::from(observed_from) < i128::from(new_users_washout_days) {
        return None;
    }
    let in_window = events.iter().any(|&e| {
        let lag = i128::from(e) - i128::from(index);
        lag >= 1 && lag <= i128::from(window_days)
    });
    Some(if in_window { Cell::A } else { Cell::B })
}

/// The length of the layout for `pairs` pairs.
pub fn layout_len(pairs: usize) -> usize {
    pairs.saturating_mul(CELLS_PER_PAIR)
}

fn check_layout(pairs: usize) -> Result<(), PvError> {
    if pairs == 0 || pairs > MAX_PAIRS {
        return Err(PvError::BadLayout { pairs });
    }
    Ok(())
}

/// One site's vector from its persons' `(pair, cell)` rows (a person appears once per pair it
/// is classified in).
pub fn site_vector(pairs: usize, rows: &[(usize, Cell)]) -> Result<Vec<i64>, PvError> {
    check_layout(pairs)?;
    let mut v = vec![0i64; layout_len(pairs)];
    for (row, &(pair, cell)) in rows.iter().enumerate() {
        if pair >= pairs {
            return Err(PvError::PairOutOfRange { pair, pairs, row });
        }
        let slot = v
            .get_mut(pair * CELLS_PER_PAIR + cell.offset())
            .ok_or(PvError::Overflow)?;
        *slot = slot.checked_add(1).ok_or(PvError::Overflow)?;
    }
    Ok(v)
}

/// One site's vector from tables already counted (e.g. by SQL), one per pair.
pub fn site_vector_from_tables(tables: &[Table2x2]) -> Result<Vec<i64>, PvError> {
    check_layout(tables.len())?;
    let mut v = Vec::with_capacity(layout_len(tables.len()));
    for t in tables {
        for x in t.cells() {
            v.push(i64::try_from(x).map_err(|_| PvError::Overflow)?);
        }
    }
    Ok(v)
}

/// The tables of every pair from a summed vector (negative noisy cells clamped to 0).
pub fn tables_from_sum(sum: &[i64], pairs: usize) -> Result<Vec<Table2x2>, PvError> {
    check_layout(pairs)?;
    let expected = layout_len(pairs);
    if sum.len() != expected {
        return Err(PvError::Length {
            expected,
            got: sum.len(),
        });
    }
    sum.chunks_exact(CELLS_PER_PAIR)
        .map(Table2x2::from_cells)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn hand_computed_table() {
        // a=20, b=80, c=10, d=190: PRR = 0.2/0.05 = 4, ROR = 20·190/(80·10) = 4.75.
        let t = Table2x2::new(20, 80, 10, 190);
        let s = Disproportionality::of(&t, &SignalRule::default());
        assert!(close(s.prr.unwrap(), 4.0, 1e-15));
        assert!(close(s.ror.unwrap(), 4.75, 1e-15));
        let se = (1.0f64 / 20.0 - 1.0 / 100.0 + 1.0 / 10.0 - 1.0 / 200.0).sqrt();
        let (lo, hi) = s.prr_ci.unwrap();
        assert!(close(lo, (4f64.ln() - Z_975 * se).exp(), 1e-14));
        assert!(close(hi, (4f64.ln() + Z_975 * se).exp(), 1e-14));
        // E = 100·30/300 = 10; IC = log2(20.5/10.5).
        assert!(close(s.expected.unwrap(), 10.0, 1e-15));
        let ic = (20.5f64 / 10.5).log2();
        assert!(close(s.ic.unwrap(), ic, 1e-15));
        let ic025 = ic - 3.3 / 20.5f64.sqrt() - 2.0 / 20.5f64.powf(1.5);
        assert!(close(s.ic025.unwrap(), ic025, 1e-14));
        // χ² = 300 (|3800 − 800| − 150)² / (100·200·30·270) = 300·2850²/162e6.
        assert!(close(
            s.chi2.unwrap(),
            300.0 * 2850.0 * 2850.0 / 162e6,
            1e-14
        ));
        assert!(!s.haldane);
        assert!(s.signals.prr_rule && s.signals.ic_rule);
    }

    #[test]
    fn zero_cells_give_none_or_haldane_never_nan() {
        let rule = SignalRule::default();
        for t in [
            Table2x2::new(0, 0, 0, 0),
            Table2x2::new(0, 10, 0, 10),
            Table2x2::new(5, 0, 0, 10),
            Table2x2::new(5, 10, 0, 10),
            Table2x2::new(0, 10, 5, 10),
            Table2x2::new(5, 10, 5, 0),
            Table2x2::new(5, 10, 0, 0),
            Table2x2::new(u64::MAX, u64::MAX, 1, u64::MAX),
        ] {
            let s = Disproportionality::of(&t, &rule);
            let all = [
                s.prr, s.ror, s.ic, s.ic025, s.ic975, s.expected, s.chi2, s.chi2_p,
            ];
            assert!(all.iter().flatten().all(|x| x.is_finite()), "{t:?} {s:?}");
            for (lo, hi) in [s.prr_ci, s.ror_ci].into_iter().flatten() {
                assert!(lo.is_finite() && hi.is_finite() && lo <= hi, "{t:?}");
            }
        }
        let s = Disproportionality::of(&Table2x2::new(5, 10, 0, 10), &rule);
        assert_eq!((s.prr, s.ror, s.chi2.is_some()), (None, None, true));
        assert!(s.haldane && s.prr_ci.is_some() && s.ror_ci.is_some());
        let s = Disproportionality::of(&Table2x2::new(0, 10, 5, 10), &rule);
        assert_eq!((s.prr, s.ror), (Some(0.0), Some(0.0)));
        let s = Disproportionality::of(&Table2x2::new(5, 10, 0, 0), &rule);
        assert_eq!((s.prr_ci, s.ror_ci, s.chi2), (None, None, None));
        assert!(!s.signals.prr_rule);
        let s = Disproportionality::of(&Table2x2::new(0, 0, 0, 0), &rule);
        assert_eq!(s.ic, None);
    }

    #[test]
    fn yates_correction_never_overshoots() {
        // |ad − bc| = 1 < N/2: scipy's capped correction gives 0.
        assert_eq!(yates_chi2(&Table2x2::new(1, 1, 1, 2)), Some(0.0));
    }

    #[test]
    fn suppression_is_on_any_cell() {
        let pairs = [
            (PairId::new("d", "e1"), Table2x2::new(2, 100, 50, 1000)),
            (PairId::new("d", "e2"), Table2x2::new(20, 100, 2, 1000)),
            (PairId::new("d", "e3"), Table2x2::new(20, 100, 50, 1000)),
        ];
        let r = assess(&pairs, &SignalRule::default(), 5).unwrap();
        assert!(r[0].suppressed && r[0].stats.is_none() && r[0].table.is_none());
        assert!(r[1].suppressed);
        assert!(!r[2].suppressed && r[2].stats.is_some());
        assert!(
            assess(&pairs, &SignalRule::default(), 0)
                .unwrap()
                .iter()
                .all(|x| !x.suppressed)
        );
    }

    #[test]
    fn benjamini_hochberg_by_hand() {
        // m = 5, q = 0.05: thresholds 0.01, 0.02, 0.03, 0.04, 0.05. Sorted p: 0.001, 0.015,
        // 0.035, 0.039, 0.2: the largest i with p_(i) ≤ i·q/m is 4 (0.039 ≤ 0.04).
        let p = [0.2, 0.035, 0.001, 0.039, 0.015];
        assert_eq!(
            benjamini_hochberg(&p, 0.05),
            vec![false, true, true, true, true]
        );
        assert_eq!(
            benjamini_hochberg(&[0.5, f64::NAN], 0.05),
            vec![false, false]
        );
        assert!(benjamini_hochberg(&[], 0.05).is_empty());
    }

    #[test]
    fn scan_checks_its_inputs() {
        let pairs = [(PairId::new("d", "e"), Table2x2::new(30, 70, 10, 190))];
        for fdr in [0.0, 1.0, f64::NAN, -0.1] {
            assert!(matches!(
                scan(&pairs, &SignalRule::default(), 0, fdr),
                Err(PvError::BadFdr { .. })
            ));
        }
        let bad = SignalRule {
            prr_min: f64::NAN,
            ..SignalRule::default()
        };
        assert_eq!(
            assess(&pairs, &bad, 0),
            Err(PvError::BadRule { field: "prr_min" })
        );
        let r = scan(&pairs, &SignalRule::default(), 0, 0.05).unwrap();
        assert_eq!(r[0].scan_signal, Some(true));
    }

    #[test]
    fn classify_risk_window_and_new_users() {
        // Never exposed.
        assert_eq!(classify(0, &[], &[], 30, 365), Some(Cell::D));
        assert_eq!(classify(0, &[], &[100], 30, 365), Some(Cell::C));
        assert_eq!(classify(200, &[], &[100], 30, 365), Some(Cell::D));
        // New user (first exposure 400 days after the record starts, washout 365).
        assert_eq!(classify(0, &[400, 900], &[410], 30, 365), Some(Cell::A));
        assert_eq!(classify(0, &[900, 400], &[430], 30, 365), Some(Cell::A));
        assert_eq!(classify(0, &[400], &[431], 30, 365), Some(Cell::B));
        // The index day itself and earlier events do not count.
        assert_eq!(classify(0, &[400], &[400, 10], 30, 365), Some(Cell::B));
        // An event in the window of a later exposure only: not the index exposure.
        assert_eq!(classify(0, &[400, 900], &[905], 30, 365), Some(Cell::B));
        // Not enough observed time before the first exposure: possibly a prevalent user.
        assert_eq!(classify(0, &[364], &[370], 30, 365), None);
        assert_eq!(classify(0, &[365], &[370], 30, 365), Some(Cell::A));
        assert_eq!(
            classify(i64::MIN, &[i64::MAX], &[i64::MIN], u32::MAX, u32::MAX),
            Some(Cell::B)
        );
    }

    #[test]
    fn vectors_round_trip() {
        let rows = [
            (0, Cell::A),
            (0, Cell::A),
            (0, Cell::D),
            (1, Cell::B),
            (1, Cell::C),
        ];
        let v = site_vector(2, &rows).unwrap();
        assert_eq!(v, vec![2, 0, 0, 1, 0, 1, 1, 0]);
        let w = site_vector_from_tables(&[Table2x2::new(1, 2, 3, 4), Table2x2::new(0, 0, 0, 1)])
            .unwrap();
        let sum: Vec<i64> = v.iter().zip(&w).map(|(x, y)| x + y).collect();
        let t = tables_from_sum(&sum, 2).unwrap();
        assert_eq!(
            t,
            vec![Table2x2::new(3, 2, 3, 5), Table2x2::new(0, 1, 1, 1)]
        );
        // Noisy negative cells are clamped.
        let t = tables_from_sum(&[-3, 4, 5, 6], 1).unwrap();
        assert_eq!(t, vec![Table2x2::new(0, 4, 5, 6)]);
        assert!(matches!(
            tables_from_sum(&[1, 2, 3], 1),
            Err(PvError::Length {
                expected: 4,
                got: 3
            })
        ));
        assert!(matches!(
            site_vector(0, &[]),
            Err(PvError::BadLayout { pairs: 0 })
        ));
        assert!(matches!(
            site_vector(1, &[(1, Cell::A)]),
            Err(PvError::PairOutOfRange { .. })
        ));
        assert_eq!(
            site_vector_from_tables(&[Table2x2::new(u64::MAX, 0, 0, 0)]),
            Err(PvError::Overflow)
        );
        assert_eq!(layout_len(3), 12);
        assert_eq!(
            scan_pairs(&["d1", "d2"], &["e1", "e2", "e3"])[4],
            PairId::new("d2", "e2")
        );
    }
}
