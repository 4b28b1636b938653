//! Disproportionality statistics against independent implementations — statsmodels'
//! `Table2x2` (risk ratio = PRR, odds ratio = ROR, with their CIs; on zero cells the CIs of the
//! table with 0.5 added to every cell)
//! and scipy's `chi2_contingency(correction=True)` (Yates) — on many seeded random tables, run
//! like `against_python.rs` (CSV in, JSON out; skipped loudly without `.ci/venv`, failing under
//! CI=true); and property tests of the signal rules, suppression, the Benjamini–Hochberg scan and
//! the site vectors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use medspace_privacy::pharmacovigilance::{
    Cell, Disproportionality, PairId, SignalRule, Table2x2, assess, classify, layout_len, scan,
    scan_pairs, site_vector, tables_from_sum,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;

fn python() -> Option<PathBuf> {
    medspace_testkit::venv_python(
        &["statsmodels", "scipy"],
        "the pharmacovigilance independent checks",
    )
}

const SCRIPT: &str = r#"
import json, math, sys, warnings
import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency
from statsmodels.stats.contingency_tables import Table2x2
warnings.simplefilter("ignore")
def num(x):
    x = float(x)
    return x if math.isfinite(x) else None
out = []
for a, b, c, d in pd.read_csv(sys.argv[1]).itertuples(index=False):
    t = np.array([[a, b], [c, d]], dtype=float)
    raw = Table2x2(t, shift_zeros=False)
    # Haldane-Anscombe: 0.5 added to every cell when one is 0. (statsmodels' own
    # shift_zeros=True replaces only the zero cells by 0.5, despite its docstring.)
    shifted = Table2x2(t + 0.5 if t.min() == 0 else t, shift_zeros=False)
    try:
        chi2, p, _, _ = chi2_contingency(t, correction=True)
        chi2, p = num(chi2), num(p)
    except ValueError:
        chi2, p = None, None
    out.append({
        "rr": num(raw.riskratio), "or": num(raw.oddsratio),
        "rr_ci": [num(x) for x in shifted.riskratio_confint(alpha=0.05)],
        "or_ci": [num(x) for x in shifted.oddsratio_confint(alpha=0.05)],
        "chi2": chi2, "p": p,
    })
print(json.dumps(out))
"#;

fn run_python(exe: &PathBuf, csv: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tables.csv");
    std::fs::write(&data, csv).unwrap();
    let out = std::process::Command::new(exe)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn below(r: &mut ChaCha20Rng, n: u64) -> u64 {
    r.next_u64() % n
}

/// Random tables in several regimes: tiny cells with zeros, moderate ones, and a rare event
/// among many persons (the usual shape of a drug-safety table).
fn random_tables(seed: u64, n: usize) -> Vec<Table2x2> {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| match i % 3 {
            0 => Table2x2::new(
                below(&mut r, 8),
                below(&mut r, 8),
                below(&mut r, 8),
                below(&mut r, 8),
            ),
            1 => Table2x2::new(
                below(&mut r, 300),
                below(&mut r, 300),
                below(&mut r, 300),
                below(&mut r, 300),
            ),
            _ => Table2x2::new(
                1 + below(&mut r, 500),
                100 + below(&mut r, 50_000),
                1 + below(&mut r, 2_000),
                10_000 + below(&mut r, 2_000_000),
            ),
        })
        .collect()
}

/// |ours − theirs| within 1e-9 relative (with an absolute floor for values near 0).
fn agree(what: &str, t: &Table2x2, ours: Option<f64>, theirs: &Value, floor: f64) {
    match (ours, theirs.as_f64()) {
        (Some(x), Some(y)) => assert!(
            (x - y).abs() <= 1e-9 * y.abs() + floor,
            "{what} of {t:?}: ours {x} vs python {y}"
        ),
        (None, None) => {}
        (x, _) => panic!("{what} of {t:?}: ours {x:?} vs python {theirs}"),
    }
}

#[test]
fn prr_ror_and_chi2_match_statsmodels_and_scipy() {
    let Some(py) = python() else { return };
    let tables = random_tables(14, 900);
    let mut csv = String::from("a,b,c,d\n");
    for t in &tables {
        writeln!(csv, "{},{},{},{}", t.a, t.b, t.c, t.d).unwrap();
    }
    let want = run_python(&py, &csv);
    let want = want.as_array().unwrap();
    assert_eq!(want.len(), tables.len());
    let (mut zero_cells, mut chi2_checked) = (0, 0);
    for (t, w) in tables.iter().zip(want) {
        let s = Disproportionality::of(t, &SignalRule::default());
        // Point estimates: the raw table. statsmodels gives inf or nan where ours is None, and
        // 0/x = 0 where ours is 0.
        agree("PRR", t, s.prr, &w["rr"], 0.0);
        if s.prr.is_none() {
            assert!(w["rr"].is_null(), "{t:?}");
        }
        let or = if t.b * t.c == 0 {
            None
        } else {
            w["or"].as_f64()
        };
        assert_eq!(s.ror.is_some(), or.is_some(), "{t:?}");
        if let (Some(x), Some(y)) = (s.ror, or) {
            assert!((x - y).abs() <= 1e-9 * y.abs(), "ROR of {t:?}: {x} vs {y}");
        }
        // CIs: on the Haldane-shifted table when a cell is 0 (statsmodels' shift_zeros), and
        // None only without exposed or unexposed persons.
        if t.a + t.b == 0 || t.c + t.d == 0 {
            assert!(s.prr_ci.is_none() && s.ror_ci.is_none(), "{t:?}");
        } else {
            zero_cells += usize::from(s.haldane);
            let (lo, hi) = s.prr_ci.unwrap();
            agree("PRR CI low", t, Some(lo), &w["rr_ci"][0], 0.0);
            agree("PRR CI high", t, Some(hi), &w["rr_ci"][1], 0.0);
            let (lo, hi) = s.ror_ci.unwrap();
            agree("ROR CI low", t, Some(lo), &w["or_ci"][0], 0.0);
            agree("ROR CI high", t, Some(hi), &w["or_ci"][1], 0.0);
        }
        // Yates χ²: None exactly where scipy refuses (a zero margin).
        agree("chi2", t, s.chi2, &w["chi2"], 1e-12);
        if s.chi2.is_some() {
            chi2_checked += 1;
            agree("chi2 p", t, s.chi2_p, &w["p"], 1e-15);
        }
    }
    // The regimes did exercise the zero-cell and χ² paths.
    assert!(zero_cells > 50, "{zero_cells}");
    assert!(chi2_checked > 800, "{chi2_checked}");
}

fn table() -> impl Strategy<Value = Table2x2> {
    (0u64..400, 0u64..4_000, 0u64..400, 0u64..40_000)
        .prop_map(|(a, b, c, d)| Table2x2::new(a, b, c, d))
}

fn contains((lo, hi): (f64, f64), x: f64) -> bool {
    lo <= x * (1.0 + 1e-12) && x <= hi * (1.0 + 1e-12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The CIs contain their estimate: the raw one without zero cells, the Haldane-corrected
    /// one with; and no statistic is ever NaN or infinite.
    #[test]
    fn ci_contains_the_estimate(t in table()) {
        let s = Disproportionality::of(&t, &SignalRule::default());
        for x in [s.prr, s.ror, s.ic, s.ic025, s.ic975, s.expected, s.chi2, s.chi2_p]
            .into_iter()
            .flatten()
        {
            prop_assert!(x.is_finite());
        }
        if let (Some(ci), Some(ror)) = (s.ror_ci, s.ror) && !s.haldane {
            prop_assert!(contains(ci, ror), "{t:?} {ci:?} {ror}");
        }
        if let (Some(ci), Some(prr)) = (s.prr_ci, s.prr) && !s.haldane {
            prop_assert!(contains(ci, prr), "{t:?} {ci:?} {prr}");
        }
        if s.haldane && let Some(ci) = s.ror_ci {
            let [a, b, c, d] = t.cells().map(|x| x as f64 + 0.5);
            prop_assert!(contains(ci, a * d / (b * c)), "{t:?} {ci:?}");
        }
        if let (Some(lo), Some(ic), Some(hi)) = (s.ic025, s.ic, s.ic975) {
            prop_assert!(lo < ic && ic < hi);
        }
    }

    /// One more exposed case never takes a signal away (b, c, d fixed), for the PRR rule and,
    /// on drug-safety-shaped tables (a rare event: b ≥ a, d ≥ c), the IC rule.
    #[test]
    fn signals_are_monotone_in_a(t in table()) {
        let rule = SignalRule::default();
        let now = Disproportionality::of(&t, &rule).signals;
        let more = Table2x2::new(t.a + 1, t.b, t.c, t.d);
        let next = Disproportionality::of(&more, &rule).signals;
        prop_assert!(!now.prr_rule || next.prr_rule, "{t:?}");
        if t.b > t.a && t.d >= t.c {
            prop_assert!(!now.ic_rule || next.ic_rule, "{t:?}");
        }
    }

    /// A pair is released exactly when every cell is at least k, and a suppressed pair
    /// carries nothing.
    #[test]
    fn suppression_hides_small_cells(t in table(), k in 0u64..20) {
        let pairs = [(PairId::new("d", "e"), t)];
        let r = &assess(&pairs, &SignalRule::default(), k).unwrap()[0];
        let small = t.cells().iter().any(|&x| x < k);
        prop_assert_eq!(r.suppressed, small);
        if small {
            prop_assert!(r.table.is_none() && r.stats.is_none() && r.scan_signal.is_none());
        } else {
            prop_assert_eq!(r.table, Some(t));
        }
        let s = &scan(&pairs, &SignalRule::default(), k, 0.05).unwrap()[0];
        prop_assert_eq!(s.suppressed, small);
        prop_assert_eq!(s.scan_signal.is_none(), small);
    }
}

fn bernoulli(r: &mut ChaCha20Rng, p: f64) -> bool {
    ((r.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
}

/// A table of `n` persons, exposed with probability `pe`, the event with probability `p0`
/// among the unexposed and `p1` among the exposed.
fn sample_table(r: &mut ChaCha20Rng, n: u64, pe: f64, p0: f64, p1: f64) -> Table2x2 {
    let mut t = Table2x2::default();
    for _ in 0..n {
        let exposed = bernoulli(r, pe);
        let event = bernoulli(r, if exposed { p1 } else { p0 });
        match (exposed, event) {
            (true, true) => t.a += 1,
            (true, false) => t.b += 1,
            (false, true) => t.c += 1,
            (false, false) => t.d += 1,
        }
    }
    t
}

#[test]
fn benjamini_hochberg_scan_keeps_null_pairs_quiet_and_finds_real_ones() {
    let mut r = ChaCha20Rng::seed_from_u64(2024);
    let drugs: Vec<String> = (0..20).map(|i| format!("drug{i}")).collect();
    let events: Vec<String> = (0..10).map(|i| format!("event{i}")).collect();
    let ids = scan_pairs(&drugs, &events);
    assert_eq!(ids.len(), 200);
    // 200 null pairs: exposure and event independent.
    let null: Vec<(PairId, Table2x2)> = ids
        .iter()
        .map(|id| (id.clone(), sample_table(&mut r, 4_000, 0.1, 0.02, 0.02)))
        .collect();
    let rule = SignalRule::default();
    let scanned = scan(&null, &rule, 0, 0.05).unwrap();
    let flagged = scanned
        .iter()
        .filter(|x| x.scan_signal == Some(true))
        .count();
    // The unadjusted rule, for comparison, is what the scan protects against.
    let unadjusted = scanned
        .iter()
        .filter(|x| x.stats.as_ref().unwrap().chi2.unwrap() >= 3.841)
        .count();
    eprintln!("null scan: {flagged} flagged by BH+PRR, {unadjusted} with χ² ≥ 3.84 unadjusted");
    assert!(flagged <= 2, "{flagged} null pairs flagged");
    // Three true signals (event risk ×4 among the exposed) among the same nulls are found.
    let mut mixed = null.clone();
    for i in [3, 77, 150] {
        mixed[i].1 = sample_table(&mut r, 4_000, 0.1, 0.02, 0.08);
    }
    let scanned = scan(&mixed, &rule, 0, 0.05).unwrap();
    for i in [3, 77, 150] {
        assert_eq!(scanned[i].scan_signal, Some(true), "{:?}", scanned[i]);
    }
    let flagged = scanned
        .iter()
        .filter(|x| x.scan_signal == Some(true))
        .count();
    assert!(flagged <= 5, "{flagged}");
}

#[test]
fn sites_classify_sum_and_match_the_pooled_table() {
    // Two pairs; three sites with persons (observed_from, exposures, events-per-pair).
    let mut r = ChaCha20Rng::seed_from_u64(7);
    let mut pooled = [Table2x2::default(); 2];
    let mut sum = vec![0i64; layout_len(2)];
    for _site in 0..3 {
        let mut rows = Vec::new();
        for _ in 0..300 {
            let start = below(&mut r, 1_000) as i64;
            let exposures: Vec<i64> = if bernoulli(&mut r, 0.3) {
                vec![start + below(&mut r, 800) as i64]
            } else {
                vec![]
            };
            for (pair, t) in pooled.iter_mut().enumerate() {
                let events: Vec<i64> = if bernoulli(&mut r, 0.2) {
                    vec![start + below(&mut r, 900) as i64]
                } else {
                    vec![]
                };
                if let Some(cell) = classify(start, &exposures, &events, 60, 180) {
                    rows.push((pair, cell));
                    match cell {
                        Cell::A => t.a += 1,
                        Cell::B => t.b += 1,
                        Cell::C => t.c += 1,
                        Cell::D => t.d += 1,
                    }
                }
            }
        }
        let v = site_vector(2, &rows).unwrap();
        for (s, x) in sum.iter_mut().zip(&v) {
            *s = s.wrapping_add(*x);
        }
    }
    assert_eq!(tables_from_sum(&sum, 2).unwrap(), pooled.to_vec());
    assert!(
        pooled
            .iter()
            .all(|t| t.a > 0 && t.b > 0 && t.c > 0 && t.d > 0)
    );
}

/// The scan's multiplicity control against statsmodels' `multipletests(method="fdr_bh")`: the
/// same rejections on many random p-value sets (nulls mixed with small p-values, ties).
#[test]
fn benjamini_hochberg_matches_statsmodels() {
    let Some(exe) = python() else { return };
    let mut r = ChaCha20Rng::seed_from_u64(77);
    let mut sets: Vec<Vec<f64>> = Vec::new();
    for s in 0..60 {
        let m = 1 + (s % 40) * 5;
        let p: Vec<f64> = (0..m)
            .map(|i| {
                let u = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                match i % 4 {
                    0 => u * 1e-3,
                    1 => (u * 20.0).round() / 20.0,
                    _ => u,
                }
            })
            .collect();
        sets.push(p);
    }
    let script = r#"
import json, sys
from statsmodels.stats.multitest import multipletests
sets = json.load(open(sys.argv[1]))
print(json.dumps([[bool(x) for x in multipletests(p, alpha=0.05, method="fdr_bh")[0]] for p in sets]))
"#;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("p.json");
    std::fs::write(&data, serde_json::to_vec(&sets).unwrap()).unwrap();
    let out = std::process::Command::new(exe)
        .arg("-c")
        .arg(script)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<Vec<bool>> = serde_json::from_slice(&out.stdout).unwrap();
    let mut rejected = 0;
    for (p, want) in sets.iter().zip(&theirs) {
        let ours = medspace_privacy::pharmacovigilance::benjamini_hochberg(p, 0.05);
        assert_eq!(&ours, want, "p = {p:?}");
        rejected += ours.iter().filter(|x| **x).count();
    }
    assert!(rejected > 0, "the sets include signals");
}
