//! The console's staff pages in a real browser (Debian's Chromium driven by `playwright-core`,
//! as `console.rs`) against a running devnet: the researcher browses the catalog, builds a
//! study's specification, sees the level and approvals it needs, submits it and watches it wait;
//! each reviewer approves in their own browser context; the researcher's page turns active
//! without a reload, runs a job and shows the released numbers, which this test compares with
//! the result the ledger's hash commits to (fetched here with the researcher's key); the CSV is
//! downloaded. A second study is rejected with a reason the researcher then reads; a reviewer's
//! forbidden approval is refused in words; no user sees another role's pages; the Chinese
//! locale leaves no English on the new pages. Screenshots go to `target/console-screenshots/`
//! (`study-*`); page-load p50/p95 are printed. Without Chromium or playwright-core the test
//! skips loudly; under `CI=true` it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "console/harness.rs"]
mod harness;

use harness::*;
use std::process::Command;

const USERS: [&str; 7] = [
    "research-1.researcher",
    "hospital-a.steward",
    "hospital-b.steward",
    "hospital-c.steward",
    "hospital-a.data-committee",
    "hospital-b.ethics-committee",
    "regulator.auditor",
];

#[test]
fn staff_run_a_study_in_real_browsers() {
    let Some(browser_dir) = browser_or_skip("console study browser test") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("medspace-console-study-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let net = start(&dir);
    let consortium = consortium(&dir);
    let keys = dir.join("browser-keys");
    std::fs::create_dir_all(&keys).unwrap();
    for u in USERS.iter().chain(&["hospital-a.clinician"]) {
        browser_key(
            consortium.user_key(u).unwrap(),
            &keys.join(format!("{u}.json")),
        );
    }
    // A record delivery from hospital-a: a devnet patient's code, redeemed by hospital-b.
    let text = cli(&dir, &["patient", "grant", "--to", "hospital-b"]);
    let grant = text
        .lines()
        .find_map(|l| l.strip_prefix("grant "))
        .unwrap_or_else(|| panic!("no grant in:\n{text}"))
        .trim()
        .to_string();
    let code = text
        .lines()
        .find_map(|l| l.strip_prefix("code "))
        .unwrap_or_else(|| panic!("no code in:\n{text}"))
        .trim()
        .to_string();
    let bundle = dir.join("bundle.json");
    cli(
        &dir,
        &[
            "patient",
            "redeem",
            "--grant",
            &grant,
            "--code",
            &code,
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    let shots = root().join("target/console-screenshots");
    let csv = dir.join("result.csv");
    let out = Command::new("node")
        .arg(root().join("crates/cli/tests/console/driver_study.mjs"))
        .env("BROWSER_DIR", &browser_dir)
        .env("CONSOLE_URL", &net.console)
        // The researcher at their own institution's node: the result comes from the
        // aggregating hospital's node through that node's relay.
        .env("RESEARCH_URL", &net.consoles["research-1"])
        .env("KEYS", &keys)
        .env("SHOTS", &shots)
        .env("CSV_OUT", &csv)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("the driver failed:\n{stdout}\n{stderr}"));
    println!("console staff page loads (ms, 7 loads each):");
    for (page, t) in result["timing"].as_object().unwrap() {
        println!("  {page:<10} p50 {:>5}  p95 {:>5}", t["p50"], t["p95"]);
    }
    println!("screenshots in {}", shots.display());
    assert_eq!(result["ok"], true, "failures: {:#}", result["failures"]);

    // What the page showed is what the ledger's result hash commits to: the result fetched here
    // with the researcher's key from the aggregator and checked against the hash on the ledger.
    let genesis = medspace_chain::node::Genesis::load(&dir.join("genesis.json")).unwrap();
    let key = consortium.user_key("research-1.researcher").unwrap();
    let ledger = medspace_client::remote::Remote::connect(&genesis, key).unwrap();
    let job: medspace_types::JobId = result["job"].as_str().unwrap().parse().unwrap();
    let record = ledger
        .state()
        .job(job)
        .unwrap()
        .unwrap()
        .result
        .expect("the job has a result on the ledger");
    let doc = medspace_client::study::fetch_result(&ledger, key, job, &record).unwrap();
    let shown: Vec<(String, Option<i64>)> =
        serde_json::from_value(result["shown"].clone()).unwrap();
    let released: Vec<(String, Option<i64>)> =
        doc.cells.iter().map(|c| (c.group.clone(), c.n)).collect();
    assert_eq!(shown, released, "the chart shows the released numbers");
    // The CSV holds the same numbers.
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<(String, Option<i64>)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            let g = f.next().unwrap().to_string();
            (g, f.next().unwrap().parse().ok())
        })
        .collect();
    assert_eq!(rows, released, "the CSV holds the released numbers");
    println!("released and shown: {released:?}");
}
