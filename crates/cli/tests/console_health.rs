//! Public health in real browsers (Debian's Chromium driven by `playwright-core`, as
//! `console_openpool.rs`) against a running devnet whose generator injected an outbreak of
//! influenza-like illness in region 013 and a drug that causes gastrointestinal bleeding. The
//! Rust library prepares what the pages read: the agency's standing surveillance contract,
//! approved, every window run by the hospitals, the EARS detectors over the released series and
//! their alerts stated on the ledger; pharma-1's drug-safety scan, approved and run. Then the
//! agency's epidemiologist, at research-1's node (no node of its own), reads the contract: every
//! window fetched through the relay and checked against its hash on the ledger, the ILI series
//! of region 013 with its C2 band and its alerts; pharma-1's safety officer reads the scan's
//! table. What the pages showed is compared here with the ledger (the alerts, each window's
//! totals) and with `medspace_privacy::aberration`'s C2 on the same series (the band), and with
//! the released 2×2 tables. Screenshots go to `target/console-screenshots/` (`health-*`).
//! Without Chromium or playwright-core the test skips loudly; under `CI=true` it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "console/harness.rs"]
mod harness;

use harness::*;
use medspace_client::health::{self, Series};
use medspace_client::study;
use medspace_consortium::HOSPITALS;
use medspace_devnet::health::{DRUG_SAFETY_SPEC, example_definition, propose_surveillance};
use medspace_privacy::aberration::{self, Method, Params};
use medspace_types::*;
use std::process::Command;
use std::time::Duration;

const AGENCY: &str = "health-agency.epidemiologist";
const PHARMA: &str = "pharma-1.safety";

#[test]
fn the_agency_reads_its_surveillance_and_pharma_its_drug_safety_table_in_real_browsers() {
    let Some(browser_dir) = browser_or_skip("console public health browser test") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("medspace-console-health-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // As many patients as the demo: enough for the outbreak to stand out above k.
    let net = start_with(&dir, 200);
    let consortium = consortium(&dir);
    let keys = dir.join("browser-keys");
    std::fs::create_dir_all(&keys).unwrap();
    for u in [AGENCY, PHARMA] {
        browser_key(
            consortium.user_key(u).unwrap(),
            &keys.join(format!("{u}.json")),
        );
    }

    // The agency's standing contract, approved; every window run; the detectors' alerts stated.
    let genesis = medspace_chain::node::Genesis::load(&dir.join("genesis.json")).unwrap();
    let agency = consortium.user_key(AGENCY).unwrap().clone();
    let mut ledger = medspace_client::remote::Remote::connect(&genesis, &agency).unwrap();
    let contract =
        propose_surveillance(&mut ledger, &agency, &example_definition(), &HOSPITALS, 365).unwrap();
    study::approve_all(&mut ledger, &consortium, contract).unwrap();
    // Every window, eight at a time (on a loaded machine, fifty-six rounds at once may leave a
    // site too slow to deal: that window then releases nothing, as the ledger records).
    let mut runs = Vec::new();
    loop {
        let batch = health::run_due_windows(
            &mut ledger,
            &agency,
            contract,
            8,
            Duration::from_secs(600),
            |_, _| {},
        )
        .unwrap();
        if batch.is_empty() {
            break;
        }
        runs.extend(batch);
    }
    let series = Series::fetch(&ledger, &agency, contract).unwrap();
    let windows = series.spec.windows as usize;
    assert_eq!(runs.len(), windows, "every window ran");
    let failed: Vec<String> = runs
        .iter()
        .filter_map(|r| r.result.failure.clone())
        .collect();
    println!(
        "{windows} windows run, {} released counts; {} released nothing{}",
        windows - failed.len(),
        failed.len(),
        failed
            .first()
            .map(|f| format!(" (the first: {f})"))
            .unwrap_or_default()
    );
    let methods = [Method::C1, Method::C2, Method::C3];
    let (alerts, _) = health::detect(&series, &methods, &Params::default()).unwrap();
    let stated = health::record_alerts(&mut ledger, &agency, contract, &alerts).unwrap();
    let on_ledger = ledger.state().alerts_of(contract).unwrap();
    assert_eq!(stated, on_ledger.len());
    assert!(
        on_ledger
            .iter()
            .any(|a| a.syndrome.as_str() == "ili" && a.region.as_str() == "013"),
        "the injected outbreak raised alerts: {on_ledger:?}"
    );

    // pharma-1's drug-safety scan, approved, one job.
    let pharma = consortium.user_key(PHARMA).unwrap().clone();
    let drug = study::propose(
        &mut ledger,
        &pharma,
        &study::Proposal {
            spec_json: DRUG_SAFETY_SPEC,
            hospitals: &HOSPITALS,
            purpose: Purpose::DrugSafety,
            study: None,
            budget_micro: 1_000_000,
            days: 90,
            fee: 0,
        },
    )
    .unwrap();
    study::approve_all(&mut ledger, &consortium, drug).unwrap();
    let run = study::run_job(
        &mut ledger,
        &pharma,
        drug,
        DRUG_SAFETY_SPEC.as_bytes(),
        100_000,
        Duration::from_secs(180),
    )
    .unwrap();
    let released = run.result.drug_safety.expect("a drug-safety result");

    let shots = root().join("target/console-screenshots");
    let out = Command::new("node")
        .arg(root().join("crates/cli/tests/console/driver_health.mjs"))
        .env("BROWSER_DIR", &browser_dir)
        // Neither the agency nor pharma-1 runs a node: they read at research-1's, whose relay
        // passes each window's result on from its aggregator.
        .env("RESEARCH_URL", &net.consoles["research-1"])
        .env("KEYS", &keys)
        .env("SHOTS", &shots)
        .env("SURVEILLANCE", contract.to_string())
        .env("DRUG_SAFETY", drug.to_string())
        .env("WINDOWS", windows.to_string())
        .env("RELEASED", (windows - failed.len()).to_string())
        .env("NOTHING", failed.len().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("the driver failed:\n{stdout}\n{stderr}"));
    println!(
        "surveillance page: {windows} windows fetched, verified and drawn in {} ms",
        result["loadMs"]
    );
    println!("screenshots in {}", shots.display());
    assert_eq!(result["ok"], true, "failures: {:#}", result["failures"]);
    let shown = &result["shown"];

    // The alert table is the ledger's: every alert, once.
    type Row = (u32, String, String, String);
    let mut table: Vec<Row> = shown["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a[0].as_u64().unwrap() as u32,
                a[1].as_str().unwrap().to_string(),
                a[2].as_str().unwrap().to_string(),
                a[3].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut ledger_rows: Vec<Row> = on_ledger
        .iter()
        .map(|a| {
            (
                a.window,
                a.syndrome.to_string(),
                a.region.to_string(),
                a.method.to_string(),
            )
        })
        .collect();
    table.sort();
    ledger_rows.sort();
    assert_eq!(
        table, ledger_rows,
        "the alert table holds the ledger's alerts"
    );
    assert_eq!(table.len(), on_ledger.len());

    // The chart: ILI in region 013, one red marker per window the ledger's alerts name.
    assert_eq!(shown["syndrome"], "ili");
    assert_eq!(shown["region"], "013");
    let mut marked: Vec<u64> = shown["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    marked.sort();
    let mut alert_windows: Vec<u64> = on_ledger
        .iter()
        .filter(|a| a.syndrome.as_str() == "ili" && a.region.as_str() == "013")
        .map(|a| u64::from(a.window))
        .collect();
    alert_windows.sort();
    alert_windows.dedup();
    assert_eq!(marked, alert_windows, "a marker on every alerting window");

    // Its points: the released totals (withheld ones at the middle of [0, k)) and the band of
    // the Rust C2 detector on the same series.
    let si = series
        .spec
        .syndromes
        .iter()
        .position(|s| s.name == "ili")
        .unwrap();
    let ri = series.spec.regions.iter().position(|r| r == "013").unwrap();
    let totals = series.totals(si, ri);
    let c2 = aberration::detect(Method::C2, &totals, &Params::default()).unwrap();
    let points = shown["points"].as_array().unwrap();
    assert_eq!(points.len(), windows, "a row per window");
    let mut banded = 0;
    for p in points {
        let w = p[0].as_u64().unwrap() as usize;
        assert_eq!(p[1].as_f64(), totals[w], "observed, window {w}");
        let rust = c2.iter().find(|x| x.day == w);
        match (rust, p[3].as_f64(), p[4].as_f64()) {
            (Some(x), Some(expected), Some(threshold)) => {
                assert!(
                    (x.expected - expected).abs() < 1e-9 && (x.threshold - threshold).abs() < 1e-9,
                    "window {w}: the page's band {expected}..{threshold}, C2's {}..{}",
                    x.expected,
                    x.threshold
                );
                banded += 1;
            }
            (None, None, None) => {}
            other => panic!("window {w}: the page and C2 disagree on having a band: {other:?}"),
        }
    }
    assert!(banded > 0, "the band is drawn");
    println!(
        "{} alerts on the ledger, all in the table; ILI 013: markers on windows {marked:?}; C2 band equal on {banded} windows",
        on_ledger.len()
    );

    // The drug-safety table is the released one.
    for p in &released.pairs {
        let name = format!("{}>{}", p.pair.drug, p.pair.event);
        let row = result["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pair"] == name.as_str())
            .unwrap_or_else(|| panic!("no row for {name}"));
        assert_eq!(row["suppressed"], p.suppressed, "{name}");
        if let Some(t) = &p.table {
            let cells: Vec<u64> = row["cells"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(cells, vec![t.a, t.b, t.c, t.d], "{name}: a, b, c, d");
        }
        assert_eq!(
            row["signal"],
            p.scan_signal == Some(true),
            "{name}: the scan's signal"
        );
    }
    let ibuprofen = released
        .pairs
        .iter()
        .find(|p| p.pair.drug == "ibuprofen" && p.pair.event == "gi_bleeding")
        .unwrap();
    assert_eq!(ibuprofen.scan_signal, Some(true), "the injected signal");
    println!(
        "drug safety: {} pairs shown as released; ibuprofen -> gi_bleeding flagged",
        released.pairs.len()
    );
}
