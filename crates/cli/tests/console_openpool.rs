//! The open pool in real browsers (Debian's Chromium driven by `playwright-core`, as
//! `console_study.rs`) against a running devnet: hospital-a's steward plans a release from the
//! vault on the hospital page (the chosen levels, k, l, the risks, the classes' sizes) and
//! publishes it, signed in the browser; research-1's researcher, at research-1's own node, sees
//! it in the open pool with its figures and asks for it; the steward approves it from the queue;
//! the researcher downloads it through research-1's relay, the page checking the manifest
//! against the catalog entry proven on the ledger and every file against the manifest, and
//! attests the copy's destruction; the regulator's auditor sees the copy awaiting destruction,
//! then no more. The downloaded CSV is compared here with the file the hospital's node keeps,
//! and the figures with the ledger's. Screenshots go to `target/console-screenshots/`
//! (`openpool-*`); page-load p50/p95 are printed. Without Chromium or playwright-core the test
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

const USERS: [&str; 3] = [
    "hospital-a.steward",
    "research-1.researcher",
    "regulator.auditor",
];

#[test]
fn a_release_is_published_requested_downloaded_and_destroyed_in_real_browsers() {
    let Some(browser_dir) = browser_or_skip("console open pool browser test") else {
        return;
    };
    let dir =
        std::env::temp_dir().join(format!("medspace-console-openpool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Enough patients for a k = 5, l = 2 release of hospital-a's consenting ones.
    let net = start_with(&dir, 30);
    let consortium = consortium(&dir);
    let keys = dir.join("browser-keys");
    std::fs::create_dir_all(&keys).unwrap();
    for u in USERS {
        browser_key(
            consortium.user_key(u).unwrap(),
            &keys.join(format!("{u}.json")),
        );
    }
    // A research request over hospital-a's condition concepts, all unmapped on the devnet
    // (it ingests without a vocabulary): below the quality floor, flagged for the reviewers.
    let flagged = {
        let genesis = medspace_chain::node::Genesis::load(&dir.join("genesis.json")).unwrap();
        let key = consortium.user_key("research-1.researcher").unwrap();
        let mut ledger = medspace_client::remote::Remote::connect(&genesis, key).unwrap();
        use medspace_types::*;
        let r = ledger
            .must(
                key,
                Payload::SubmitRequest(SubmitRequest {
                    purpose: Purpose::Research,
                    mode: Mode::Compute,
                    study: None,
                    fields: List::new(vec![FieldRef {
                        dataset: DatasetId::new("hospital-a.cdm").unwrap(),
                        table: Text::new("condition_occurrence").unwrap(),
                        field: Text::new("condition_concept_id").unwrap(),
                    }])
                    .unwrap(),
                    computation: Blob::new(
                        br#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":"count"}"#
                            .to_vec(),
                    )
                    .unwrap(),
                    expiry_ms: ledger.time_ms() + 86_400_000,
                    epsilon_budget: 100_000,
                    fee: 0,
                }),
            )
            .unwrap();
        match r.created {
            Some(medspace_state::Created::Contract(c)) => c.to_string(),
            other => panic!("{other:?}"),
        }
    };
    let shots = root().join("target/console-screenshots");
    let csv = dir.join("person.csv");
    let out = Command::new("node")
        .arg(root().join("crates/cli/tests/console/driver_openpool.mjs"))
        .env("BROWSER_DIR", &browser_dir)
        .env("CONSOLE_URL", &net.console)
        // The researcher at their own institution's node: the release comes from hospital-a's
        // node through that node's relay.
        .env("RESEARCH_URL", &net.consoles["research-1"])
        .env("KEYS", &keys)
        .env("SHOTS", &shots)
        .env("CSV_OUT", &csv)
        .env("FLAGGED", &flagged)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("the driver failed:\n{stdout}\n{stderr}"));
    println!("console open pool page loads (ms, 7 loads each):");
    if let Some(timing) = result["timing"].as_object() {
        for (page, t) in timing {
            println!("  {page:<10} p50 {:>5}  p95 {:>5}", t["p50"], t["p95"]);
        }
    }
    println!("release planned from the vault in {} ms", result["planMs"]);
    println!("screenshots in {}", shots.display());
    assert_eq!(result["ok"], true, "failures: {:#}", result["failures"]);

    // What the pages showed is what the ledger holds: the release's figures, the delivery
    // under the contract, attested destroyed.
    let genesis = medspace_chain::node::Genesis::load(&dir.join("genesis.json")).unwrap();
    let key = consortium.user_key("research-1.researcher").unwrap();
    let ledger = medspace_client::remote::Remote::connect(&genesis, key).unwrap();
    let id = medspace_types::DatasetId::new("hospital-a.open").unwrap();
    let entry = ledger.state().dataset(&id).unwrap().expect("published");
    let figures = entry.release.expect("a release");
    assert_eq!(u64::from(figures.k), result["k"].as_u64().unwrap());
    assert_eq!(u64::from(figures.l), result["l"].as_u64().unwrap());
    let member = medspace_types::MemberId::new("research-1").unwrap();
    let delivered = ledger.state().deliveries_to(&member).unwrap();
    let d = delivered
        .iter()
        .find(|d| d.id.to_string() == result["delivery"].as_str().unwrap())
        .expect("the delivery the page showed is on the ledger");
    assert_eq!(d.contract.to_string(), result["contract"].as_str().unwrap());
    assert_eq!(d.content_hash, entry.description.content_hash);
    assert!(d.destroyed_height.is_some(), "attested destroyed");
    // The file saved from the page is the one the hospital's node keeps.
    let kept = std::fs::read(
        medspace_compute::release::release_dir(&dir.join("hospital-a"), &id).join("person.csv"),
    )
    .unwrap();
    assert_eq!(std::fs::read(&csv).unwrap(), kept, "the saved CSV");
    println!(
        "release k = {}, l = {}, {} persons; files offered: {}",
        figures.k, figures.l, figures.persons, result["files"]
    );
}
