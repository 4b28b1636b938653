//! The federated models against independent implementations: statsmodels' GLM (logistic,
//! Poisson with offset, Gaussian) and lifelines' Kaplan–Meier and log-rank, both PyPI, pinned
//! and installed by `.ci/run` into `.ci/venv`. Synthetic data from a seeded RNG is written as
//! CSV; the Python side fits the pooled data, the Rust side fits three sites through
//! encode → wrapping sum → decode → IRLS. Without the venv the checks are skipped loudly, except
//! under CI=true, where they fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use medspace_privacy::glm::{
    Family, Fit, Irls, Options, Progress, Rows, decode, encode, site_stats, stats_len, summarize,
    wrapping_sum,
};
use medspace_privacy::survival::{kaplan_meier, layout_len, log_rank, site_vector};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;

const SITES: usize = 3;
/// Covariates besides the intercept: age (years, centred at 60), sex, BMI, smoker, a lab value.
const COVARIATES: [&str; 5] = ["age", "sex", "bmi", "smoker", "lab"];
const P: usize = COVARIATES.len() + 1;

fn python() -> Option<PathBuf> {
    medspace_testkit::venv_python(
        &["statsmodels", "lifelines"],
        "the models' checks against statsmodels and lifelines",
    )
}

fn run_python(exe: &PathBuf, script: &str, csv: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    std::fs::write(&data, csv).unwrap();
    let out = std::process::Command::new(exe)
        .arg("-c")
        .arg(script)
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

fn unif(r: &mut ChaCha20Rng) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn normal(r: &mut ChaCha20Rng) -> f64 {
    let u = unif(r).max(1e-300);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * unif(r)).cos()
}

fn poisson(r: &mut ChaCha20Rng, lambda: f64) -> f64 {
    let l = (-lambda).exp();
    let (mut k, mut prod) = (0.0, unif(r));
    while prod > l {
        k += 1.0;
        prod *= unif(r);
    }
    k
}

/// One site's rows: x (with the intercept), and the three outcomes and the offset.
struct Site {
    x: Vec<f64>,
    y_logit: Vec<f64>,
    y_count: Vec<f64>,
    y_lin: Vec<f64>,
    offset: Vec<f64>,
}

fn site(seed: u64, n: usize) -> Site {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    let mut s = Site {
        x: vec![],
        y_logit: vec![],
        y_count: vec![],
        y_lin: vec![],
        offset: vec![],
    };
    // Sites differ in case mix: a site-specific shift of age and BMI.
    let shift = seed as f64 % 3.0;
    for _ in 0..n {
        let age = 10.0 * normal(&mut r) + 2.0 * shift;
        let sex = if unif(&mut r) < 0.5 { 1.0 } else { 0.0 };
        let bmi = 27.0 + 4.0 * normal(&mut r) - shift;
        let smoker = if unif(&mut r) < 0.25 { 1.0 } else { 0.0 };
        let lab = (0.5 * normal(&mut r)).exp() * 100.0;
        let row = [1.0, age, sex, bmi, smoker, lab];
        let eta = -4.0 + 0.04 * age - 0.3 * sex + 0.08 * bmi + 0.7 * smoker + 0.004 * lab;
        let years = 0.5 + 4.5 * unif(&mut r);
        s.x.extend_from_slice(&row);
        let p = 1.0 / (1.0 + (-eta).exp());
        s.y_logit.push(if unif(&mut r) < p { 1.0 } else { 0.0 });
        s.y_count.push(poisson(&mut r, (eta - 1.0).exp() * years));
        s.y_lin.push(120.0 + 5.0 * eta + 8.0 * normal(&mut r));
        s.offset.push(years.ln());
    }
    s
}

fn rows(s: &Site, family: Family) -> Rows<'_> {
    let (y, offset) = match family {
        Family::Logistic => (&s.y_logit[..], None),
        Family::Poisson => (&s.y_count[..], Some(&s.offset[..])),
        Family::Linear => (&s.y_lin[..], None),
    };
    Rows {
        p: P,
        x: &s.x,
        y,
        offset,
    }
}

fn names() -> Vec<String> {
    std::iter::once("const")
        .chain(COVARIATES)
        .map(String::from)
        .collect()
}

fn federated(family: Family, sites: &[Site]) -> Fit {
    let mut irls = Irls::new(family, P, Options::default());
    loop {
        let encs: Vec<Vec<i64>> = sites
            .iter()
            .map(|s| encode(&site_stats(family, &rows(s, family), irls.beta()).unwrap()).unwrap())
            .collect();
        let sum = wrapping_sum(encs.iter().map(|v| &v[..]), stats_len(P)).unwrap();
        let total = decode(P, &sum).unwrap();
        if irls.update(&total).unwrap() == Progress::Converged {
            return summarize(family, &names(), &irls, &total).unwrap();
        }
    }
}

const GLM_SCRIPT: &str = r#"
import json, sys
import pandas as pd
# Not `statsmodels.api`: its discrete-distributions module does not import under scipy >= 1.16
# (`_lazywhere` was removed); the GLM modules do.
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.tools.tools import add_constant
d = pd.read_csv(sys.argv[1])
X = add_constant(d[["age", "sex", "bmi", "smoker", "lab"]])
out = {}
for name, y, fam, off in [
    ("logistic", "y_logit", families.Binomial(), None),
    ("poisson", "y_count", families.Poisson(), d["offset"]),
    ("linear", "y_lin", families.Gaussian(), None),
]:
    r = GLM(d[y], X, family=fam, offset=off).fit(tol=1e-13, maxiter=100)
    out[name] = {"params": list(r.params), "bse": list(r.bse), "deviance": r.deviance,
                 "null_deviance": r.null_deviance, "scale": r.scale, "pvalues": list(r.pvalues)}
print(json.dumps(out))
"#;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn federated_glm_matches_statsmodels() {
    let Some(py) = python() else { return };
    let sites: Vec<Site> = (0..SITES)
        .map(|i| site(1000 + i as u64, 2500 + 500 * i))
        .collect();
    let mut csv = String::from("age,sex,bmi,smoker,lab,y_logit,y_count,y_lin,offset\n");
    for s in &sites {
        for (i, row) in s.x.chunks(P).enumerate() {
            for v in &row[1..] {
                write!(csv, "{v:?},").unwrap();
            }
            writeln!(
                csv,
                "{:?},{:?},{:?},{:?}",
                s.y_logit[i], s.y_count[i], s.y_lin[i], s.offset[i]
            )
            .unwrap();
        }
    }
    let want = run_python(&py, GLM_SCRIPT, &csv);
    for (family, key) in [
        (Family::Logistic, "logistic"),
        (Family::Poisson, "poisson"),
        (Family::Linear, "linear"),
    ] {
        let fit = federated(family, &sites);
        let w = &want[key];
        let params = floats(&w["params"]);
        let bse = floats(&w["bse"]);
        let pvalues = floats(&w["pvalues"]);
        for (j, t) in fit.terms.iter().enumerate() {
            assert!(
                rel(t.coefficient, params[j]) < 1e-6,
                "{key} {}: β {} vs statsmodels {}",
                t.name,
                t.coefficient,
                params[j]
            );
            assert!(
                rel(t.std_error, bse[j]) < 1e-6,
                "{key} {}: SE {} vs statsmodels {}",
                t.name,
                t.std_error,
                bse[j]
            );
            // p-values agree where they are not vanishingly small.
            if pvalues[j] > 1e-200 {
                assert!(
                    rel(t.p_value, pvalues[j]) < 1e-5,
                    "{key} {}: p {} vs {}",
                    t.name,
                    t.p_value,
                    pvalues[j]
                );
            }
        }
        let f = |k: &str| w[k].as_f64().unwrap();
        assert!(rel(fit.deviance, f("deviance")) < 1e-6, "{key} deviance");
        assert!(
            rel(fit.null_deviance.unwrap(), f("null_deviance")) < 1e-6,
            "{key} null deviance {:?} vs {}",
            fit.null_deviance,
            f("null_deviance")
        );
        assert!(rel(fit.scale, f("scale")) < 1e-6, "{key} scale");
        let worst = fit
            .terms
            .iter()
            .zip(&params)
            .map(|(t, p)| rel(t.coefficient, *p))
            .fold(0.0, f64::max);
        eprintln!(
            "{key}: {} iterations, max relative difference of β from statsmodels {worst:.2e}",
            fit.iterations
        );
    }
}

const KM_SCRIPT: &str = r#"
import json, sys
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test
d = pd.read_csv(sys.argv[1])
out = {"curves": []}
for g in sorted(d["group"].unique()):
    s = d[d["group"] == g]
    k = KaplanMeierFitter().fit(s["days"], s["event"])
    ci = k.confidence_interval_
    out["curves"].append({"group": int(g), "t": [float(t) for t in k.survival_function_.index],
        "s": list(k.survival_function_.iloc[:, 0]), "lo": list(ci.iloc[:, 0]), "hi": list(ci.iloc[:, 1])})
m = multivariate_logrank_test(d["days"], d["group"], d["event"])
out["multi"] = {"chi2": m.test_statistic, "p": m.p_value}
a, b = d[d["group"] == 0], d[d["group"] == 1]
t = logrank_test(a["days"], b["days"], a["event"], b["event"])
out["two"] = {"chi2": t.test_statistic, "p": t.p_value}
print(json.dumps(out))
"#;

#[test]
fn kaplan_meier_and_log_rank_match_lifelines() {
    const GROUPS: usize = 3;
    let Some(py) = python() else { return };
    let mut r = ChaCha20Rng::seed_from_u64(77);
    // Three sites' persons: exponential event times (group-specific hazards, in days),
    // uniform censoring, administrative end at day 400.
    let sites: Vec<Vec<(usize, u32, bool)>> = (0..SITES)
        .map(|_| {
            (0..700)
                .map(|_| {
                    let g = (r.next_u32() % GROUPS as u32) as usize;
                    let hazard = [1.0 / 300.0, 1.0 / 220.0, 1.0 / 260.0][g];
                    let event = -(unif(&mut r).max(1e-300)).ln() / hazard;
                    let censor = unif(&mut r) * 600.0;
                    let t = event.min(censor).min(400.0);
                    (g, t.floor() as u32, event <= censor && event <= 400.0)
                })
                .collect()
        })
        .collect();
    let max_day = sites.iter().flatten().map(|x| x.1).max().unwrap() as usize;
    let bins = max_day + 1;
    let len = layout_len(GROUPS, bins);
    let vectors: Vec<Vec<i64>> = sites
        .iter()
        .map(|s| site_vector(GROUPS, bins, 1, s).unwrap())
        .collect();
    let sum: Vec<i64> = (0..len)
        .map(|i| vectors.iter().fold(0i64, |a, v| a.wrapping_add(v[i])))
        .collect();
    let mut csv = String::from("group,days,event\n");
    for (g, d, e) in sites.iter().flatten() {
        writeln!(csv, "{g},{d},{}", u8::from(*e)).unwrap();
    }
    let want = run_python(&py, KM_SCRIPT, &csv);

    let curves = kaplan_meier(&sum, GROUPS, bins, 1, 0).unwrap();
    for (curve, w) in curves.iter().zip(want["curves"].as_array().unwrap()) {
        assert_eq!(curve.group as u64, w["group"].as_u64().unwrap());
        let t = floats(&w["t"]);
        let s = floats(&w["s"]);
        let lo = floats(&w["lo"]);
        let hi = floats(&w["hi"]);
        assert!(t.len() > 100);
        for i in 0..t.len() {
            let p = &curve.points[t[i] as usize];
            assert_eq!(p.time_days, t[i] as u64);
            assert!(!p.suppressed);
            assert!(
                (p.survival - s[i]).abs() < 1e-9,
                "t={} {} vs {}",
                t[i],
                p.survival,
                s[i]
            );
            assert!(
                (p.ci_low - lo[i]).abs() < 1e-9,
                "t={} lo {} vs {}",
                t[i],
                p.ci_low,
                lo[i]
            );
            assert!(
                (p.ci_high - hi[i]).abs() < 1e-9,
                "t={} hi {} vs {}",
                t[i],
                p.ci_high,
                hi[i]
            );
        }
    }

    let lr = log_rank(&sum, GROUPS, bins).unwrap();
    assert_eq!(lr.df, 2);
    let m = &want["multi"];
    assert!(
        rel(lr.chi2, m["chi2"].as_f64().unwrap()) < 1e-9,
        "{lr:?} vs {m}"
    );
    assert!(
        rel(lr.p_value, m["p"].as_f64().unwrap()) < 1e-9,
        "{lr:?} vs {m}"
    );

    // Two groups: the first two groups' part of the layout.
    let two = &sum[..layout_len(2, bins)];
    let lr2 = log_rank(two, 2, bins).unwrap();
    let t = &want["two"];
    assert_eq!(lr2.df, 1);
    assert!(
        rel(lr2.chi2, t["chi2"].as_f64().unwrap()) < 1e-9,
        "{lr2:?} vs {t}"
    );
    assert!(
        rel(lr2.p_value, t["p"].as_f64().unwrap()) < 1e-9,
        "{lr2:?} vs {t}"
    );
}
