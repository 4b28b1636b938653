//! The console's study builder and result views for regression models and survival curves in a
//! real browser (Debian's Chromium driven by `playwright-core`, as `console_study.rs`): the
//! builder, filled in as a researcher would, writes exactly the model and survival
//! specifications of ARCHITECTURE.md, which `types::query::parse` accepts and whose reads the
//! preview shows as `query::validate` lists them; an invalid model (a Poisson model with a
//! yes/no outcome and no covariate) is refused with the reasons in words. Released results —
//! fixed `ResultDoc`s, typed here so they are what a worker serves — render through
//! `researcher.js`'s `resultView` as a coefficient table and forest plot, and as a per-group
//! summary and Kaplan–Meier chart with the log-rank test, in English and Chinese, with their
//! CSV files. The console's files are served as the node serves them (same bytes, same
//! `default-src 'self'` policy); the builder reads a stub catalog. Screenshots go to
//! `target/console-screenshots/models-*`. Without Chromium or playwright-core the test skips
//! loudly; under `CI=true` it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "console/harness.rs"]
mod harness;

use harness::*;
use medspace_worker::wire::ResultDoc;
use serde_json::{Value, json};
use std::process::Command;

const MODEL_SPEC: &str = r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":{"model":{"family":"logistic","outcome":{"condition":"44054006"},"covariates":["age","female",{"measurement":{"code":"39156-5","lower":12,"upper":60}},{"condition":"38341003"}],"max_iterations":25,"dp":false}}}"#;
const SURVIVAL_SPEC: &str = r#"{"version":1,"cohort":{"index_date":"2020-01-01"},"group_by":["sex"],"aggregate":{"survival":{"event":"death","horizon_days":1825,"bin_days":30,"dp":false}}}"#;

/// A released logistic model, as a worker serves it.
fn model_doc() -> ResultDoc {
    let term = |name: &str, c: f64, se: f64, p: f64| {
        let (lo, hi) = (c - 1.96 * se, c + 1.96 * se);
        let ratio = (name != "intercept").then(|| json!([c.exp(), lo.exp(), hi.exp()]));
        json!({"name": name, "coefficient": c, "std_error": se, "z": c / se, "p_value": p,
               "ci_low": lo, "ci_high": hi, "ratio": ratio})
    };
    serde_json::from_value(json!({
        "version": 2, "job": "j-00000000000000a1", "contract": "c-0000000000000007",
        "aggregator": "hospital-a", "k": 5, "epsilon_micro": 300000, "cells": [],
        "contributions": [["hospital-a", 412], ["hospital-b", 388], ["hospital-c", 251]],
        "dropped": [],
        "model": {"family": "logistic", "terms": [
            term("intercept", -3.1, 0.42, 0.000_01),
            term("age", 0.031, 0.009, 0.0006),
            term("female", -0.21, 0.16, 0.19),
            term("measurement 39156-5", 0.048, 0.021, 0.022),
            term("condition 38341003", 0.83, 0.24, 0.0005),
        ], "deviance": 812.4471, "iterations": 6, "n": 1051, "scale": 1.0, "dp": false}
    }))
    .unwrap()
}

/// Released Kaplan–Meier curves by sex (the later bins withheld: small risk sets).
fn survival_doc() -> ResultDoc {
    let curve = |group: &str, entered: u64, bins: u32, rate: u64| {
        let (mut n, mut s, mut green) = (entered, 1.0_f64, 0.0_f64);
        let mut points = Vec::new();
        for b in 0..bins {
            let events = (n * rate / 1000 + u64::from(b % 3 == 0)).min(n);
            let censored = (n / 40).min(n - events);
            s *= 1.0 - events as f64 / n as f64;
            if n > events {
                green += events as f64 / (n as f64 * (n - events) as f64);
            }
            let w = 1.96 * green.sqrt();
            points.push(json!({"day": b * 30, "at_risk": n, "events": events, "censored": censored,
                "survival": s, "ci_low": (s * (-w).exp()).max(0.0), "ci_high": (s * w.exp()).min(1.0)}));
            n -= events + censored;
        }
        json!({"group": group, "entered": entered, "points": points, "suppressed_bins": 61 - bins})
    };
    serde_json::from_value(json!({
        "version": 2, "job": "j-00000000000000b2", "contract": "c-0000000000000008",
        "aggregator": "hospital-b", "k": 5, "epsilon_micro": 0,
        "cells": [{"group": "female", "n": 530}, {"group": "male", "n": 521}],
        "contributions": [["hospital-a", 412], ["hospital-b", 388], ["hospital-c", 251]],
        "dropped": [], "not_counted_once": [["hospital-c", "hospital-b"]],
        "survival": {"bin_days": 30, "curves": [curve("female", 530, 44, 4), curve("male", 521, 40, 7)],
                     "log_rank": [6.214, 1, 0.0127]}
    }))
    .unwrap()
}

/// A released vertical study (three hospitals and insurer-1, split by diabetes), as a worker
/// serves it.
fn vertical_doc() -> ResultDoc {
    serde_json::from_value(json!({
        "version": 2, "job": "j-00000000000000b3", "contract": "c-0000000000000009",
        "aggregator": "hospital-a", "k": 10, "epsilon_micro": 200000,
        "cells": [],
        "contributions": [["hospital-a", 140], ["hospital-b", 130], ["hospital-c", 120], ["insurer-1", 400]],
        "dropped": [],
        "vertical": {"compare": "diabetes", "days": 366, "dp": false, "cells": [
            {"group": "all", "with": true, "n": 26, "claims_mean": 1.92, "claims_sd": 1.09, "paid_mean": 545.2, "paid_sd": 557.0},
            {"group": "all", "with": false, "n": 204, "claims_mean": 1.2, "claims_sd": 1.07, "paid_mean": 185.4, "paid_sd": 241.3}
        ]}
    }))
    .unwrap()
}

/// A released overlap job (a pair below k withheld), as a worker serves it.
fn overlap_doc() -> ResultDoc {
    serde_json::from_value(json!({
        "version": 2, "job": "j-00000000000000b4", "contract": "c-000000000000000a",
        "aggregator": "hospital-a", "k": 10, "epsilon_micro": 100000,
        "cells": [],
        "contributions": [["hospital-a", 150], ["hospital-b", 150], ["hospital-c", 150]],
        "dropped": [],
        "overlap": {"dp": false, "pairs": [["hospital-a", "hospital-b", 12], ["hospital-a", "hospital-c", 13], ["hospital-b", "hospital-c", null]]}
    }))
    .unwrap()
}

/// `table.field` of what the query reads, as the preview lists them.
fn reads(spec: &Value) -> Vec<String> {
    let text = spec.to_string();
    let (_, v) = medspace_types::query::parse(&text)
        .unwrap_or_else(|e| panic!("the builder's spec {text} does not parse: {e}"));
    v.reads.iter().map(|(t, c)| format!("{t}.{c}")).collect()
}

#[test]
fn the_builder_writes_models_and_the_results_show_them() {
    let Some(browser_dir) = browser_or_skip("console models browser test") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("medspace-console-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in medspace_console::asset_names() {
        std::fs::write(dir.join(name), medspace_console::asset(name).unwrap()).unwrap();
    }
    // A bare page for the console's modules (the pages render into `main`).
    std::fs::write(
        dir.join("page.html"),
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><link rel=\"stylesheet\" href=\"style.css\"></head><body><main id=\"main\"></main></body></html>",
    )
    .unwrap();
    let (model, survival) = (model_doc(), survival_doc());
    std::fs::write(
        dir.join("model-doc.json"),
        serde_json::to_vec(&model).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("survival-doc.json"),
        serde_json::to_vec(&survival).unwrap(),
    )
    .unwrap();
    for (name, doc) in [("vertical", vertical_doc()), ("overlap", overlap_doc())] {
        std::fs::write(
            dir.join(format!("{name}-doc.json")),
            serde_json::to_vec(&doc).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("classification.json"),
        serde_json::to_vec(&medspace_types::classification::Classification::default()).unwrap(),
    )
    .unwrap();
    let shots = root().join("target/console-screenshots");
    let out = Command::new("node")
        .arg(root().join("crates/cli/tests/console/driver_models.mjs"))
        .env("CLASSIFICATION", dir.join("classification.json"))
        .env("BROWSER_DIR", &browser_dir)
        .env("ASSETS", &dir)
        .env("MODEL_DOC", dir.join("model-doc.json"))
        .env("SURVIVAL_DOC", dir.join("survival-doc.json"))
        .env("VERTICAL_DOC", dir.join("vertical-doc.json"))
        .env("OVERLAP_DOC", dir.join("overlap-doc.json"))
        .env("SHOTS", &shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("the driver failed:\n{stdout}\n{stderr}"));
    println!("screenshots in {}", shots.display());
    assert_eq!(
        r["ok"], true,
        "failures: {:#} {:#}",
        r["failures"], r["pageErrors"]
    );

    // The builder writes the specifications byte for byte as documented, and the preview
    // lists what the ledger will say they read.
    assert_eq!(r["modelText"], MODEL_SPEC);
    assert_eq!(r["survivalText"], SURVIVAL_SPEC);
    let expected: Value = serde_json::from_str(MODEL_SPEC).unwrap();
    assert_eq!(r["modelSpec"], expected);
    let expected: Value = serde_json::from_str(SURVIVAL_SPEC).unwrap();
    assert_eq!(r["survivalSpec"], expected);
    for (spec, shown) in [
        ("modelSpec", "modelReads"),
        ("poissonSpec", "poissonReads"),
        ("survivalSpec", "survivalReads"),
        ("survivalSpec2", "survivalReads2"),
    ] {
        let js: Vec<String> = serde_json::from_value(r[shown].clone()).unwrap();
        assert_eq!(js, reads(&r[spec]), "reads of {}", r[spec]);
    }
    assert_eq!(
        r["poissonSpec"]["aggregate"]["model"],
        json!({"family": "poisson", "outcome": {"count_within": {"code": "44054006", "days": 365}},
               "covariates": ["age", "female", {"measurement": {"code": "39156-5", "lower": 12, "upper": 60}},
                              {"above": {"code": "4548-4", "op": ">", "value": 6.5}},
                              {"condition_within": {"code": "38341003", "days": 90}}],
               "max_iterations": 25, "dp": true})
    );
    assert_eq!(
        r["survivalSpec2"]["aggregate"]["survival"]["event"],
        json!({"condition": "44054006"})
    );
    assert_eq!(r["survivalSpec2"]["group_by"], json!(["sex", "age_band"]));
    assert_eq!(r["modelLevel"], "L3 identifiable");

    // The invalid model is refused in words, the summary focused, its links to the fields.
    let invalid = r["invalid"].to_string();
    assert!(
        invalid.contains("A model needs 1 to 16 covariates."),
        "{invalid}"
    );
    assert!(
        invalid.contains("A Poisson model needs a count outcome"),
        "{invalid}"
    );
    assert_eq!(r["invalidFocus"], "error-summary");
    assert_eq!(r["linkFocus"], "out-kind");
    assert!(
        r["invalidSurvival"].to_string().contains("time step"),
        "{}",
        r["invalidSurvival"]
    );

    // The model: one row a term, the intercept's ratio blank, a forest plot of the others.
    let en = &r["en"];
    let terms = en["terms"].as_array().unwrap();
    assert_eq!(terms.len(), 5, "{terms:?}");
    assert_eq!(terms[0][0], "intercept");
    assert_eq!(terms[0][6], "", "the intercept has no ratio");
    assert_eq!(terms[4][1], "condition 38341003");
    assert_eq!(terms[4][6], "2.29 (1.43–3.67)", "{:?}", terms[4]);
    assert_eq!(en["forest"][0]["rows"], 4);
    assert_eq!(en["forest"][0]["labelledBy"], true);
    // Survival: one summary row and one curve with its band per group, and the test.
    let curves = en["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 2, "{curves:?}");
    assert_eq!(curves[0][0], "female");
    assert_eq!(curves[0][2], "530");
    assert!(
        curves[1][5].as_str().unwrap().starts_with("21"),
        "{curves:?}"
    );
    assert_eq!(en["km"][0]["paths"], 2);
    assert_eq!(en["km"][0]["bands"], 2);
    assert!(
        en["km"][0]["logRank"]
            .as_str()
            .unwrap()
            .starts_with("Log-rank test: χ² = 6.21 on 1 df, p = 0.013"),
        "{}",
        en["km"][0]["logRank"]
    );
    assert_eq!(en["points"], 84);
    assert!(
        en["survivalText"]
            .as_str()
            .unwrap()
            .contains("No noise was added")
    );
    // The CSV files hold the released numbers.
    let csv = en["modelCsv"].as_str().unwrap();
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("intercept,-3.1,0.42,"),
        "{csv}"
    );
    let csv = en["survivalCsv"].as_str().unwrap();
    assert_eq!(csv.lines().count(), 85, "{csv}");
    let m = model.model.as_ref().unwrap();
    assert!(csv.starts_with("group,day,at_risk,events,censored,survival,ci_low,ci_high\n"));
    assert!(m.terms.len() == 5);
    // Nothing overflows a chart, in either language.
    assert_eq!(en["overflow"], json!([]));
    assert_eq!(r["zh"]["overflow"], json!([]));
    // The Chinese pages say it in Chinese.
    assert_eq!(r["zh"]["terms"][0][1], "截距");
    assert!(
        r["zh"]["km"][0]["title"]
            .as_str()
            .unwrap()
            .contains("生存率"),
        "{}",
        r["zh"]["km"][0]["title"]
    );
    let text = r["zhBuilderText"].as_str().unwrap();
    for english in ["Covariate", "Outcome", "Remove", "iterations", "Model"] {
        assert!(!text.contains(english), "{english} in the Chinese builder");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A logistic model and Kaplan–Meier curves by sex, each run under its own approved contract on
/// a devnet (from the command line), shown on the researcher's contract pages: the terms and
/// the groups the page shows are those of the result the ledger's hash commits to.
#[test]
fn a_devnet_model_and_survival_job_show_on_the_contract_page() {
    let Some(browser_dir) = browser_or_skip("console models devnet browser test") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "medspace-console-models-live-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let net = start_with(&dir, 30);
    let consortium = consortium(&dir);
    let key = consortium.user_key("research-1.researcher").unwrap();
    let wallet = dir.join("research-1.researcher.json");
    browser_key(key, &wallet);
    let mut contracts = Vec::new();
    for (name, spec) in [
        (
            "model",
            r#"{"version":1,"cohort":{"index_date":"2024-01-01"},"aggregate":{"model":{"family":"logistic","outcome":{"condition":"38341003"},"covariates":["age","female"],"max_iterations":25,"dp":false}}}"#,
        ),
        ("survival", SURVIVAL_SPEC),
    ] {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, spec).unwrap();
        let text = cli(
            &dir,
            &[
                "query",
                "contract",
                "--spec",
                file.to_str().unwrap(),
                "--study",
                &format!("console-{name}"),
                "--budget",
                "1.0",
            ],
        );
        let contract = text
            .lines()
            .find_map(|l| l.strip_prefix("contract "))
            .unwrap_or_else(|| panic!("no contract in:\n{text}"))
            .trim()
            .to_string();
        for reviewer in [
            "hospital-a.steward",
            "hospital-b.steward",
            "hospital-c.steward",
            "hospital-a.data-committee",
            "hospital-b.ethics-committee",
        ] {
            let text = cli(
                &dir,
                &[
                    "query",
                    "--as",
                    reviewer,
                    "approve",
                    "--contract",
                    &contract,
                ],
            );
            if text.contains("-> contract ACTIVE") {
                break;
            }
        }
        let text = cli(
            &dir,
            &["query", "run", "--contract", &contract, "--epsilon", "0.1"],
        );
        assert!(!text.contains("nothing was released"), "{text}");
        contracts.push(contract);
    }
    let shots = root().join("target/console-screenshots");
    let out = Command::new("node")
        .arg(root().join("crates/cli/tests/console/driver_models_live.mjs"))
        .env("BROWSER_DIR", &browser_dir)
        .env("RESEARCH_URL", &net.consoles["research-1"])
        .env("KEY", &wallet)
        .env("MODEL_CONTRACT", &contracts[0])
        .env("SURVIVAL_CONTRACT", &contracts[1])
        .env("SHOTS", &shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| {
            panic!(
                "the driver failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(r["ok"], true, "{r:#}");
    // Each job's first answer was a 202 (the aggregator's node a block behind): the page asked
    // again and showed the verified result.
    assert_eq!(r["notYet"], 2, "{r:#}");

    // What the pages showed is the result the ledger's hash commits to.
    let genesis = medspace_chain::node::Genesis::load(&dir.join("genesis.json")).unwrap();
    let ledger = medspace_client::remote::Remote::connect(&genesis, key).unwrap();
    let released = |kind: &str| {
        let job: medspace_types::JobId = r[kind]["job"].as_str().unwrap().parse().unwrap();
        let record = ledger.state().job(job).unwrap().unwrap().result.unwrap();
        medspace_client::study::fetch_result(&ledger, key, job, &record).unwrap()
    };
    let doc = released("model");
    let terms: Vec<String> = doc
        .model
        .as_ref()
        .unwrap()
        .terms
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(r["model"]["terms"], json!(terms));
    assert_eq!(r["model"]["forest"], 1);
    let doc = released("survival");
    let groups: Vec<String> = doc
        .survival
        .as_ref()
        .unwrap()
        .curves
        .iter()
        .map(|c| c.group.clone())
        .collect();
    assert_eq!(r["survival"]["groups"], json!(groups));
    assert_eq!(r["survival"]["curves"], json!(groups.len()));
    // The spec asked for no noise: the page says the counts are exact.
    let text = r["survival"]["text"].as_str().unwrap();
    assert!(text.contains("No noise was added"), "{text}");
    drop(net);
}
