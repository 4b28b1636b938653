//! Models and survival curves over three hospitals' vaults, against independent
//! implementations on the same rows read from the pooled vault: `statsmodels` (GLM) and
//! `lifelines` (Kaplan–Meier, log-rank), from the virtual environment `.ci/run` installs. The
//! sites read their rows through the ledger's plan (contract, scope, consent), compute their
//! statistics, mask them for the step and the sum opens: exactly the data path of a node.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_compute::Links;
use medspace_compute::federated::{SiteVault, run_model_site, run_site};
use medspace_privacy::glm::{self, Irls, Options, Progress, Rows};
use medspace_privacy::query::{Aggregate, Family, parse};
use medspace_privacy::release::Protection;
use medspace_privacy::{secagg, survival};
use medspace_types::*;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::support;
use support::*;

const LOGISTIC: &str = r#"{"version":1,"cohort":{"index_date":"2022-01-01"},"aggregate":{"model":{"family":"logistic","outcome":{"condition":"44054006"},"covariates":["age","female",{"measurement":{"code":"39156-5","lower":10,"upper":60}},{"condition":"38341003"}]}}}"#;
const POISSON: &str = r#"{"version":1,"cohort":{"index_date":"2019-01-01"},"aggregate":{"model":{"family":"poisson","outcome":{"count_within":{"code":"444814009","days":1825}},"covariates":["age","female",{"condition":"38341003"}]}}}"#;
const LINEAR: &str = r#"{"version":1,"cohort":{"index_date":"2022-01-01"},"aggregate":{"model":{"family":"linear","outcome":{"measurement":{"code":"39156-5","lower":10,"upper":60}},"covariates":["age","female",{"condition":"44054006"}]}}}"#;
const SURVIVAL: &str = r#"{"version":1,"cohort":{"index_date":"2016-01-01"},"group_by":["sex"],"aggregate":{"survival":{"event":{"condition":"444814009"},"horizon_days":3000,"bin_days":1}}}"#;

/// Every published field (the contracts here may read them all).
fn fields() -> Vec<(&'static str, &'static str)> {
    PUBLISHED
        .iter()
        .flat_map(|(t, fs)| fs.iter().map(move |f| (*t, *f)))
        .collect()
}

fn python() -> Option<PathBuf> {
    medspace_testkit::venv_python(
        &["statsmodels", "lifelines"],
        "the models' checks against statsmodels and lifelines",
    )
}

fn python_json(exe: &PathBuf, script: &str, csv: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rows.csv");
    std::fs::write(&data, csv).unwrap();
    let out = std::process::Command::new(exe)
        .args(["-c", script])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const GLM: &str = r#"
import json, sys
import numpy as np, pandas as pd
# Not `statsmodels.api`: its discrete-distributions module does not import under scipy >= 1.16.
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.tools.tools import add_constant
d = pd.read_csv(sys.argv[1])
fam = d["family"][0]
X = add_constant(d[[c for c in d.columns if c.startswith("x")]], has_constant="add")
kw = {}
if fam == "logistic":
    f = families.Binomial()
elif fam == "poisson":
    f = families.Poisson(); kw["offset"] = np.log(d["days"])
else:
    f = families.Gaussian()
r = GLM(d["y"], X, family=f, **kw).fit(tol=1e-12)
print(json.dumps({"params": list(r.params), "bse": list(r.bse), "deviance": r.deviance, "n": int(r.nobs)}))
"#;

const KM: &str = r#"
import json, sys
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test
d = pd.read_csv(sys.argv[1])
out = {"curves": []}
for g in sorted(d["group"].unique()):
    s = d[d["group"] == g]
    k = KaplanMeierFitter().fit(s["days"], s["event"])
    out["curves"].append({"group": int(g), "t": [float(t) for t in k.survival_function_.index],
        "s": list(k.survival_function_.iloc[:, 0])})
a, b = d[d["group"] == 0], d[d["group"] == 1]
t = logrank_test(a["days"], b["days"], a["event"], b["event"])
out["chi2"] = t.test_statistic
out["p"] = t.p_value
print(json.dumps(out))
"#;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// The federated fit: each site's rows from its own vault through the ledger's plan, its
/// statistics masked for each step over the fixed set; only the sum is decoded.
fn federated_fit(w: &World, job: JobId, spec: &medspace_privacy::query::ModelSpec) -> glm::Fit {
    let sites: Vec<_> = HOSPITALS
        .iter()
        .enumerate()
        .map(|(i, m)| {
            run_model_site(
                &w.state,
                job,
                &MemberId::new(m).unwrap(),
                SiteVault::embedded(&w.dirs[i], &vkey(&w.dirs[i])),
                &Links::load(&w.dirs[i], &vkey(&w.dirs[i])).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let (x, peers) = secrets();
    let round = secagg::Round::new([3; 32], 3).unwrap();
    let family = match spec.family {
        Family::Logistic => glm::Family::Logistic,
        Family::Poisson => glm::Family::Poisson,
        Family::Linear => glm::Family::Linear,
    };
    let p = spec.covariates.len() + 1;
    let mut irls = Irls::new(family, p, Options::default());
    loop {
        let step = irls.iteration().to_be_bytes();
        let mut sum = vec![0u64; glm::stats_len(p)];
        for (i, s) in sites.iter().enumerate() {
            let rows = Rows {
                p: s.p,
                x: &s.x,
                y: &s.y,
                offset: s.offset.as_deref(),
            };
            let stats = glm::site_stats(family, &rows, irls.beta()).unwrap();
            let encoded: Vec<u64> = glm::encode(&stats)
                .unwrap()
                .into_iter()
                .map(secagg::encode_i64)
                .collect();
            let keys = secagg::Keys {
                me: i,
                secret: &x[i],
                peers: &peers,
            };
            let masked = secagg::mask_step(&round, &keys, &[0, 1, 2], &step, &encoded).unwrap();
            assert_ne!(masked, encoded, "a site's statistics leave it masked");
            for (a, b) in sum.iter_mut().zip(masked) {
                *a = a.wrapping_add(b);
            }
        }
        let total: Vec<i64> = sum.into_iter().map(secagg::decode_i64).collect();
        let stats = glm::decode(p, &total).unwrap();
        if irls.update(&stats).unwrap() == Progress::Converged {
            return glm::summarize(family, &spec.terms(), &irls, &stats).unwrap();
        }
    }
}

/// The same model's rows read from the pooled vault (every patient), as CSV.
fn pooled_rows(w: &World, json: &str) -> String {
    let spec = parse(json).unwrap().0;
    let Aggregate::Model(m) = &spec.aggregate else {
        panic!("not a model")
    };
    let sql =
        medspace_privacy::query::compile_sql(&spec, medspace_compute::local::CONSENTED).unwrap();
    let cohort = w.pooled_persons();
    let cols =
        medspace_compute::local::run_f64(&w.pooled, &vkey(&w.pooled), &cohort, &sql).unwrap();
    let mut csv = String::from("family");
    for (name, _) in &cols {
        write!(csv, ",{name}").unwrap();
    }
    csv.push('\n');
    let n = cols[0].1.len();
    let days = cols.iter().position(|(c, _)| c == "days");
    for r in 0..n {
        // A person without person-time in the window is not at risk (as at the sites).
        if days.is_some_and(|d| cols[d].1[r] <= 0.0) {
            continue;
        }
        csv.push_str(m.family.as_str());
        for (_, v) in &cols {
            write!(csv, ",{:?}", v[r]).unwrap();
        }
        csv.push('\n');
    }
    csv
}

#[test]
fn federated_models_equal_statsmodels_on_the_pooled_rows() {
    let Some(py) = python() else { return };
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    for json in [LOGISTIC, POISSON, LINEAR] {
        let spec = parse(json).unwrap().0;
        let Aggregate::Model(m) = &spec.aggregate else {
            panic!()
        };
        let contract = w.contract_for(&fields(), json);
        let job = w.job_with(contract, json, 100_000);
        let fit = federated_fit(&w, job, m);
        let want = python_json(&py, GLM, &pooled_rows(&w, json));
        assert_eq!(fit.n, want["n"].as_u64().unwrap(), "{json}");
        let params = want["params"].as_array().unwrap();
        let bse = want["bse"].as_array().unwrap();
        let mut worst: f64 = 0.0;
        for (j, t) in fit.terms.iter().enumerate() {
            let (b, se) = (params[j].as_f64().unwrap(), bse[j].as_f64().unwrap());
            assert!(
                rel(t.coefficient, b) < 1e-6,
                "{}: β {} vs {b}",
                t.name,
                t.coefficient
            );
            assert!(
                rel(t.std_error, se) < 1e-6,
                "{}: SE {} vs {se}",
                t.name,
                t.std_error
            );
            worst = worst.max(rel(t.coefficient, b)).max(rel(t.std_error, se));
        }
        assert!(rel(fit.deviance, want["deviance"].as_f64().unwrap()) < 1e-6);
        eprintln!(
            "{}: n={} iterations={} worst relative difference from statsmodels {worst:.1e}",
            m.family.as_str(),
            fit.n,
            fit.iterations
        );
    }
}

#[test]
fn federated_kaplan_meier_equals_lifelines_on_the_pooled_rows() {
    let Some(py) = python() else { return };
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    let spec = parse(SURVIVAL).unwrap().0;
    let Aggregate::Survival(s) = &spec.aggregate else {
        panic!()
    };
    let contract = w.contract_for(&fields(), SURVIVAL);
    let job = w.job_with(contract, SURVIVAL, 100_000);
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(1);
    let vectors: Vec<Option<Vec<i64>>> = HOSPITALS
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (v, _) = run_site(
                &w.state,
                job,
                &MemberId::new(m).unwrap(),
                SiteVault::embedded(&w.dirs[i], &vkey(&w.dirs[i])),
                &Links::load(&w.dirs[i], &vkey(&w.dirs[i])).unwrap(),
                Protection::TestNone,
                &mut rng,
            )
            .unwrap();
            Some(v)
        })
        .collect();
    let total = secure_total(job, &vectors);
    let curves = survival::kaplan_meier(&total, 2, s.bins(), 1, 0).unwrap();

    // The pooled rows, censored at the horizon as the sites censor them.
    let sql =
        medspace_privacy::query::compile_sql(&spec, medspace_compute::local::CONSENTED).unwrap();
    let cohort = w.pooled_persons();
    let rows = medspace_compute::local::run(&w.pooled, &vkey(&w.pooled), &cohort, &sql).unwrap();
    let mut csv = String::from("group,days,event\n");
    for r in &rows {
        let g = usize::from(r.key[0] == "male");
        let (days, event) = if r.values[0] >= i64::from(s.horizon_days) {
            (i64::from(s.horizon_days), 0)
        } else {
            (r.values[0], r.values[1])
        };
        writeln!(csv, "{g},{days},{event}").unwrap();
    }
    let want = python_json(&py, KM, &csv);
    let mut compared = 0;
    for (curve, w) in curves.iter().zip(want["curves"].as_array().unwrap()) {
        for (t, sv) in w["t"]
            .as_array()
            .unwrap()
            .iter()
            .zip(w["s"].as_array().unwrap())
        {
            let t = t.as_f64().unwrap() as u64;
            let Some(p) = curve
                .points
                .iter()
                .find(|p| p.time_days == t && !p.suppressed)
            else {
                continue;
            };
            assert!(
                (p.survival - sv.as_f64().unwrap()).abs() < 1e-9,
                "group {} day {t}: {} vs {sv}",
                curve.group,
                p.survival
            );
            compared += 1;
        }
    }
    assert!(compared > 20, "compared {compared} times");
    let lr = survival::log_rank(&total, 2, s.bins()).unwrap();
    assert!(
        rel(lr.chi2, want["chi2"].as_f64().unwrap()) < 1e-9,
        "{lr:?} vs {want}"
    );
    assert!(
        rel(lr.p_value, want["p"].as_f64().unwrap()) < 1e-9,
        "{lr:?} vs {want}"
    );
}
