//! The console's study builder writes the specification the Rust code reads: `researcher.js`'s
//! `specOf` (the form's values → the query JSON) and `reads` (what it reads, for the fields of
//! the contract and the level shown before signing) run under node for several forms, each spec
//! parsed and validated by `types::query::parse` and its reads equal to `query::validate`'s.
//! Without node the test skips loudly; under `CI=true` it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

#[test]
fn the_study_builder_writes_specs_the_ledger_reads() {
    if Command::new("node").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "node is missing and CI=true"
        );
        eprintln!("SKIPPED console builder test: node is missing");
        return;
    }
    let dir = std::env::temp_dir().join(format!("medspace-console-builder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in medspace_console::asset_names().filter(|n| n.ends_with(".js")) {
        std::fs::write(dir.join(name), medspace_console::asset(name).unwrap()).unwrap();
    }
    // The consortium's default classification, as `/v1/status` gives it to the page.
    std::fs::write(
        dir.join("classification.json"),
        serde_json::to_vec(&medspace_types::classification::Classification::default()).unwrap(),
    )
    .unwrap();
    // The modules read the locale from the browser's storage when they load.
    let script = r#"
const classification = JSON.parse((await import("node:fs")).readFileSync(new URL("./classification.json", import.meta.url), "utf8"));
globalThis.localStorage = { getItem: () => null, setItem: () => {} };
if (!globalThis.navigator) globalThis.navigator = { language: "en" };
const R = await import("./researcher.js");
const v = (value) => ({ value });
const form = (o) => ({
  study: v("s"), purpose: v("research"),
  conditions: v(o.conditions || ""), drugs: v(o.drugs || ""), procedures: v(o.procedures || ""),
  mcode: v(o.mcode || ""), mop: v(o.mop || ">="), mvalue: v(o.mvalue || ""),
  sex: v(o.sex || ""), amin: v(o.amin ?? ""), amax: v(o.amax ?? ""), index: v(o.index || "2025-01-01"),
  agg: v(o.agg || "count"), mean: v(o.mean || ""), lower: v(o.lower || ""), upper: v(o.upper || ""),
  gsex: { checked: !!o.gsex }, gage: { checked: !!o.gage },
  family: v(o.family || "logistic"), outcome: row("out", o.outcome || ["condition", { code: "44054006" }]),
  covariates: (o.covariates || []).map((c, i) => row("cov-" + i, c)), iters: v(o.iters || "25"), mdp: { checked: !!o.dp },
  event: v(o.event || "death"), ecode: v(o.ecode || ""), horizon: v(o.horizon || "1825"), bin: v(o.bin || "30"), sdp: { checked: !!o.dp },
  budget: v("1"), days: v("90"),
});
// A model variable's row: `[kind, {code, lower, upper, op, value, days}]`.
const row = (p, [kind, x = {}]) => ({ p, kind: v(kind), code: v(x.code || ""), lower: v(x.lower || ""), upper: v(x.upper || ""), op: v(x.op || ">="), value: v(x.value || ""), days: v(x.days || "") });
const forms = [
  {},
  { gsex: true, amin: "40", amax: "79" },
  { conditions: "44054006, 38341003", drugs: "860975", sex: "female", gage: true },
  { procedures: "73761001", mcode: "4548-4", mop: ">", mvalue: "6.5", gsex: true, gage: true },
  { agg: "mean", mean: "2339-0", lower: "40", upper: "400.5", gsex: true },
  { agg: "model", gsex: true, covariates: [["age"], ["female"], ["measurement", { code: "39156-5", lower: "12", upper: "60" }], ["condition", { code: "38341003" }]] },
  { agg: "model", family: "poisson", dp: true, outcome: ["count_within", { code: "44054006", days: "365" }], covariates: [["drug", { code: "860975" }], ["procedure", { code: "73761001" }], ["above", { code: "4548-4", op: ">", value: "6.5" }], ["condition_within", { code: "38341003", days: "90" }]] },
  { agg: "model", family: "linear", conditions: "44054006", outcome: ["measurement", { code: "4548-4", lower: "3", upper: "20.5" }], covariates: [["age"], ["female"]] },
  { agg: "survival", gsex: true, index: "2020-01-01" },
  { agg: "survival", gage: true, event: "condition", ecode: "44054006", horizon: "3650", bin: "1", dp: true },
  // Highly sensitive codes (HIV infection, an HIV antibody test, depression), in the cohort
  // and in a model's variables: the preview says L4, as the ledger will.
  { conditions: "44054006, 86406008", gsex: true },
  { agg: "model", covariates: [["age"], ["above", { code: "7917-8", op: ">", value: "0" }], ["condition_within", { code: "35489007", days: "30" }]] },
  { agg: "survival", event: "condition", ecode: "86406008" },
];
// Invalid forms: the reasons the builder gives, by field.
const invalid = [
  { agg: "model", family: "poisson" },
  { agg: "model", family: "linear", covariates: [["age"], ["age"], ["measurement", { code: "x y", lower: "5", upper: "1" }]] },
  { agg: "model", covariates: Array.from({ length: 17 }, (_, i) => ["condition", { code: "c" + i }]), iters: "51" },
  { agg: "survival", event: "condition", horizon: "20000" },
  { agg: "survival", horizon: "5000", bin: "1" },
].map((o) => {
  const f = form(o);
  const spec = R.specOf(f);
  return { ids: R.problems(f, spec, ["hospital-a"]).map(([id]) => id), json: R.specJson(spec) };
});
const out = forms.map((f) => {
  const spec = R.specOf(form(f));
  return {
    json: R.specJson(spec),
    reads: R.reads(spec).map(([t, c]) => `${t}.${c}`),
    codes: R.specCodes(spec).map(([t, c]) => `${t}:${c}`),
    sensitive: R.sensitiveCodes(spec, classification).map(([t, c]) => `${t}:${c}`),
  };
});
console.log(JSON.stringify({ out, invalid }));
"#;
    std::fs::write(dir.join("builder.mjs"), script).unwrap();
    let out = Command::new("node")
        .arg(dir.join("builder.mjs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let forms = all["out"].as_array().unwrap();
    assert_eq!(forms.len(), 13);
    // The model and survival forms write the documented specifications.
    assert_eq!(
        forms[5]["json"],
        r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":{"model":{"family":"logistic","outcome":{"condition":"44054006"},"covariates":["age","female",{"measurement":{"code":"39156-5","lower":12,"upper":60}},{"condition":"38341003"}],"max_iterations":25,"dp":false}}}"#
    );
    assert_eq!(
        forms[8]["json"],
        r#"{"version":1,"cohort":{"index_date":"2020-01-01"},"group_by":["sex"],"aggregate":{"survival":{"event":"death","horizon_days":1825,"bin_days":30,"dp":false}}}"#
    );
    // Each invalid form names the fields at fault (and Rust refuses its spec too).
    let invalid = all["invalid"].as_array().unwrap();
    for f in invalid {
        let json = f["json"].as_str().unwrap();
        assert!(
            medspace_types::query::parse(json).is_err(),
            "{json} is refused by the builder but not by the ledger"
        );
    }
    let ids: Vec<Vec<String>> = invalid
        .iter()
        .map(|f| serde_json::from_value(f["ids"].clone()).unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            vec!["add-covariate", "out-kind"],
            vec!["cov-2-code", "cov-2-lower", "cov-1-kind", "out-kind"],
            vec!["add-covariate", "iters"],
            vec!["ecode", "horizon"],
            vec!["bin"],
        ]
    );
    for f in forms {
        let json = f["json"].as_str().unwrap();
        let (_, validated) = medspace_types::query::parse(json)
            .unwrap_or_else(|e| panic!("the builder's spec {json} does not parse: {e}"));
        let rust: Vec<String> = validated
            .reads
            .iter()
            .map(|(t, c)| format!("{t}.{c}"))
            .collect();
        let js: Vec<String> = serde_json::from_value(f["reads"].clone()).unwrap();
        assert_eq!(js, rust, "reads of {json}");
        // The codes and the sensitive ones among them, as the ledger finds them.
        let (spec, _) = medspace_types::query::parse(json).unwrap();
        let default = medspace_types::classification::Classification::default();
        let codes = medspace_types::query::codes(&spec);
        let rust: Vec<String> = codes.iter().map(|(t, c)| format!("{t}:{c}")).collect();
        let js: Vec<String> = serde_json::from_value(f["codes"].clone()).unwrap();
        assert_eq!(js, rust, "codes of {json}");
        let rust: Vec<String> = codes
            .iter()
            .filter(|(t, c)| default.sensitive(t, c).is_some())
            .map(|(t, c)| format!("{t}:{c}"))
            .collect();
        let js: Vec<String> = serde_json::from_value(f["sensitive"].clone()).unwrap();
        assert_eq!(js, rust, "sensitive codes of {json}");
        assert_eq!(
            !js.is_empty(),
            medspace_types::query::code_level(&spec, &default) == medspace_types::Level::L4,
            "{json}"
        );
    }
    // The sensitive forms are found so (the check above is not vacuous).
    for f in &forms[10..] {
        assert!(
            !f["sensitive"].as_array().unwrap().is_empty(),
            "{}",
            f["json"]
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
