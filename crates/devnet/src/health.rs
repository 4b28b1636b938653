//! Public health and drug safety on the local consortium: the ground truth its generator
//! injects (an outbreak of influenza-like illness in one region, a drug that causes
//! gastrointestinal bleeding and one that does not), the surveillance definition and the
//! drug-safety scan that look for them, and the demo's two steps showing that they find them.

use crate::{Context, Result};
use medspace_client::Remote;
use medspace_client::health::{self, Series};
use medspace_client::study;
use medspace_consortium::{Consortium, HOSPITALS};
use medspace_privacy::aberration::{Method, Params};
use medspace_synth::{
    NULL_DRUG_RXNORM, Outbreak, OutbreakScenario, REGIONS, SIGNAL_DRUG_RXNORM, SIGNAL_EVENT_SNOMED,
    SafetyScenario, Scenarios, region_zip3,
};
use medspace_types::*;
use std::path::Path;
use std::time::Duration;

/// The syndromes' names in a definition, in the generator's order, with codes of the syndrome
/// besides the one the generator records (influenza and cough for influenza-like illness,
/// gastroenteritis and vomiting for acute gastroenteritis).
const SYNDROMES: [(&str, &[&str]); 4] = [
    ("ili", &["6142004", "49727002"]),
    ("agi", &["25374005", "249497008"]),
    ("fever_rash", &[]),
    ("sari", &[]),
];

/// The outbreak the local consortium's generator injects: the generator's example period and
/// syndromes, with influenza-like illness rising in region 3 from day 35 for 21 days, strong
/// enough to stand out in a few hundred patients per hospital (a region holds a twentieth of
/// them).
pub fn outbreak_scenario() -> OutbreakScenario {
    let mut s = OutbreakScenario::example();
    // Fever with rash is recorded under a code the shared OMOP vocabulary subset lacks: rarer
    // here, so the demo's quality step still shows a vault that meets the consortium's floor
    // once re-mapped.
    if let Some(rash) = s.syndromes.get_mut(2) {
        rash.daily_rate = 0.0002;
    }
    s.outbreak = Some(Outbreak {
        syndrome: 0,
        region: 3,
        start_day: 35,
        days: 21,
        attack_rate: 0.6,
    });
    s
}

/// The drugs the local consortium's generator injects: ibuprofen causes gastrointestinal
/// bleeding within 30 days (excess risk 0.15 on a background of 0.05), acetaminophen does not;
/// each goes to 45 % of the patients.
pub fn safety_scenario() -> SafetyScenario {
    SafetyScenario::example(0.45, 0.15, 0.05)
}

/// Both ground truths, as the devnet's generator injects them.
pub fn scenarios() -> Scenarios {
    Scenarios {
        safety: Some(safety_scenario()),
        outbreak: Some(outbreak_scenario()),
    }
}

/// The surveillance definition of the generator's syndromes over its 20 regions, daily over
/// its period: exact counts under secure aggregation, totals below `k` withheld (a devnet's
/// few hundred patients per hospital are too few for per-window noise to leave a signal; the
/// detectors' figures with noise come from `medspace surveil evaluate`).
pub fn example_definition() -> String {
    let s = outbreak_scenario();
    let start = medspace_privacy::query::date_of_day(s.period_start);
    let syndromes: Vec<serde_json::Value> = s
        .syndromes
        .iter()
        .zip(SYNDROMES)
        .map(|(x, (name, more))| {
            let codes: Vec<&str> = std::iter::once(x.code.as_str())
                .chain(more.iter().copied())
                .collect();
            serde_json::json!({"name": name, "codes": codes})
        })
        .collect();
    let regions: Vec<String> = (0..REGIONS).map(region_zip3).collect();
    serde_json::json!({
        "version": 1,
        "cohort": {"index_date": start},
        "aggregate": {"surveillance": {
            "syndromes": syndromes,
            "regions": regions,
            "start": start,
            "window_days": 1,
            "windows": s.period_days,
            "epsilon_per_window": 0.01,
            "dp": false
        }}
    })
    .to_string()
}

/// The drug-safety scan: the injected drugs and the generator's chronic-disease drugs against
/// gastrointestinal bleeding and two other events, new users with a year's washout, a 30-day
/// risk window, Benjamini–Hochberg at 5 %.
pub const DRUG_SAFETY_SPEC: &str = r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":{"drug_safety":{"drugs":[{"name":"ibuprofen","codes":["310965"]},{"name":"acetaminophen","codes":["313782"]},{"name":"simvastatin","codes":["312961"]},{"name":"lisinopril","codes":["314076"]}],"events":[{"name":"gi_bleeding","codes":["74474003","6072007"]},{"name":"bronchitis","codes":["10509002"]}],"window_days":30,"washout_days":180}}}"#;

/// The catalog id of pharma-1's pharmacy sales (the second surveillance source).
pub const SALES_DATASET: &str = "pharma-1.otc-sales";

/// Where a devnet keeps the file of pharma-1's pharmacy sales (the published dataset's bytes).
pub fn sales_file(devnet_dir: &Path) -> std::path::PathBuf {
    devnet_dir.join("pharma-1").join("otc-sales.csv")
}

/// Writes pharma-1's pharmacy sales of antipyretics per region and day over the outbreak
/// scenario's period (`medspace_synth::pharmacy_sales`: aggregate counts, no person) as CSV
/// `day,region,count`, and returns its catalog entry (its content hash is the file's).
pub fn write_sales(
    devnet_dir: &Path,
    seed: u64,
) -> Result<(DatasetDescription, std::path::PathBuf)> {
    let truth = outbreak_scenario();
    let mut csv = String::from("day,region,count\n");
    for (day, region, n) in medspace_synth::pharmacy_sales(seed, &truth) {
        csv.push_str(&format!(
            "{},{},{n}\n",
            medspace_privacy::query::date_of_day(day),
            region_zip3(region)
        ));
    }
    let path = sales_file(devnet_dir);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&path, &csv).with_context(|| format!("writing {}", path.display()))?;
    // Each column at the level the default consortium's classification gives its name.
    let classification = medspace_types::classification::Classification::default();
    let field = |name: &str| -> Result<FieldDesc> {
        Ok(FieldDesc {
            name: Text::new(name)?,
            level: classification.field_level("otc_sales", name),
            missing_ppm: 0,
            invalid_ppm: 0,
        })
    };
    let desc = DatasetDescription {
        id: DatasetId::new(SALES_DATASET)?,
        title: Text::new("pharmacy sales of antipyretics per region and day")?,
        version: 1,
        tables: List::new(vec![TableDesc {
            name: Text::new("otc_sales")?,
            rows: csv.lines().count().saturating_sub(1) as u64,
            duplicate_ppm: 0,
            implausible_ppm: 0,
            fields: List::new(vec![field("day")?, field("region")?, field("count")?])?,
        }])?,
        content_hash: Hash::of(&[csv.as_bytes()]),
    };
    Ok((desc, path))
}

/// Submits a standing surveillance contract (purpose public health) whose budget covers every
/// window at every hospital; returns its id.
pub fn propose_surveillance(
    ledger: &mut Remote,
    key: &Keypair,
    spec_json: &str,
    hospitals: &[&str],
    days: u64,
) -> Result<ContractId> {
    let (spec, _) = medspace_privacy::query::parse(spec_json)
        .map_err(|e| crate::DevnetError::Failed(format!("surveillance definition: {e}")))?;
    let medspace_privacy::query::Aggregate::Surveillance(s) = &spec.aggregate else {
        crate::fail!("not a surveillance definition (its aggregate must be `surveillance`)");
    };
    let budget = s.epsilon_micro() * u64::from(s.windows) * hospitals.len() as u64;
    Ok(study::propose(
        ledger,
        key,
        &study::Proposal {
            spec_json,
            hospitals,
            purpose: Purpose::PublicHealth,
            study: None,
            budget_micro: budget,
            days,
            fee: 0,
        },
    )?)
}

/// The demo's surveillance step: the agency's contract, approved; every window of the period
/// run (the ledger schedules each once it is complete); the EARS detectors over the released
/// series; the first alert in the outbreak's region against the injected start; the alerts
/// stated on the ledger, where the hospitals read them.
pub fn demo_surveillance(ledger: &mut Remote, c: &Consortium, dir: &Path) -> Result<()> {
    let truth = outbreak_scenario();
    let agency = c.user_key("health-agency.epidemiologist")?.clone();
    let spec = example_definition();
    let contract = propose_surveillance(ledger, &agency, &spec, &HOSPITALS, 365)?;
    let approvers = study::approve_all(ledger, c, contract)?;
    let started = std::time::Instant::now();
    let runs = health::run_due_windows(
        ledger,
        &agency,
        contract,
        truth.period_days,
        Duration::from_secs(600),
        |_, _| {},
    )?;
    println!(
        "    health-agency's standing contract {contract} (4 syndromes x 20 regions x 5 age bands, daily), approved by {} reviewers; {} daily windows run by the hospitals in {:.1} s (each a job the ledger scheduled once its day had ended)",
        approvers.len(),
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    let series = Series::fetch(ledger, &agency, contract)?;
    let methods = [Method::C1, Method::C2, Method::C3];
    let (alerts, tracks) = health::detect(&series, &methods, &Params::default())?;
    let Some(o) = &truth.outbreak else {
        crate::fail!("the scenario has no outbreak");
    };
    let zip = region_zip3(o.region);
    let injected = medspace_privacy::query::date_of_day(truth.date_of(o.start_day));
    println!("    injected: influenza-like illness rising in region {zip} from {injected}");
    for m in methods {
        let first = alerts.iter().find(|a| {
            a.method == m.as_str()
                && a.syndrome == "ili"
                && a.region == zip
                && a.window >= o.start_day
        });
        let elsewhere = alerts
            .iter()
            .filter(|a| a.method == m.as_str() && !(a.syndrome == "ili" && a.region == zip))
            .count();
        match first {
            Some(a) => println!(
                "    {m}: detected on {} ({} days after the start; observed {:.0} vs expected {:.1}); {elsewhere} alert(s) in other series",
                a.day,
                a.window - o.start_day,
                a.point.observed,
                a.point.expected
            ),
            None => println!("    {m}: not detected; {elsewhere} alert(s) in other series"),
        }
    }
    // The second source: pharma-1's pharmacy sales, checked against the catalog's hash, in one
    // detector with the hospitals' series.
    let file = sales_file(dir);
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let sales = health::OtherSource::verified(ledger, &DatasetId::new(SALES_DATASET)?, &bytes)?;
    // Fever medicine speaks for influenza-like illness: the sales join that syndrome's series.
    let mut combined = Vec::new();
    for (ri, region) in series.spec.regions.iter().enumerate() {
        let points = health::combine(
            &series.totals(0, ri),
            &sales.series(&series, region),
            &Params::default(),
        )?;
        combined.extend(health::combined_alerts(&series, "ili", region, &points));
    }
    let first = combined
        .iter()
        .find(|a| a.syndrome == "ili" && a.region == zip && a.window >= o.start_day);
    let elsewhere = combined.iter().filter(|a| a.region != zip).count();
    let source =
        format!("pharma-1's pharmacy sales ({SALES_DATASET}, checked against the catalog's hash)");
    match first {
        Some(a) => println!(
            "    ili combined with {source}: detected on {} ({} days after the start); {elsewhere} alert(s) in other regions",
            a.day,
            a.window - o.start_day
        ),
        None => println!(
            "    ili combined with {source}: not detected; {elsewhere} alert(s) in other regions"
        ),
    }
    let alerts: Vec<health::Alert> = alerts.into_iter().chain(combined).collect();
    let n = health::record_alerts(ledger, &agency, contract, &alerts)?;
    let seen = ledger.state().alerts_of(contract)?;
    println!(
        "    {n} alerts stated on the ledger by the agency; every hospital reads them (`medspace surveil alerts`): {} for ili in {zip}",
        seen.iter()
            .filter(|a| a.syndrome.as_str() == "ili" && a.region.as_str() == zip)
            .count()
    );
    if let Some(t) = tracks
        .iter()
        .find(|t| t.syndrome == "ili" && t.region == zip)
    {
        let chart = dir.join("surveillance-ili.svg");
        std::fs::write(
            &chart,
            health::series_svg(
                &series,
                t,
                Method::C2,
                &format!("influenza-like illness, region {zip}"),
            ),
        )
        .with_context(|| format!("writing {}", chart.display()))?;
        println!("    chart: {}", chart.display());
    }
    Ok(())
}

/// The demo's drug-safety step: pharma-1's scan under a drug-safety contract; the injected
/// signal found, the null drug not.
pub fn demo_drug_safety(ledger: &mut Remote, c: &Consortium) -> Result<()> {
    let pharma = c.user_key("pharma-1.safety")?.clone();
    let contract = study::propose(
        ledger,
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
    )?;
    let approvers = study::approve_all(ledger, c, contract)?;
    let run = study::run_job(
        ledger,
        &pharma,
        contract,
        DRUG_SAFETY_SPEC.as_bytes(),
        100_000,
        Duration::from_secs(180),
    )?;
    println!(
        "    pharma-1's drug-safety contract {contract} approved by {} reviewers; job {} released by {} in {:.1} s (each hospital's 2x2 tables summed under secure aggregation)",
        approvers.len(),
        run.job,
        run.result.aggregator,
        run.latency.as_secs_f64()
    );
    for l in study::result_lines(&run.result) {
        println!("      {l}");
    }
    let flagged = |drug: &str| {
        run.result.drug_safety.as_ref().is_some_and(|d| {
            d.pairs.iter().any(|p| {
                p.pair.drug == drug && p.pair.event == "gi_bleeding" && p.scan_signal == Some(true)
            })
        })
    };
    println!(
        "    injected: ibuprofen ({SIGNAL_DRUG_RXNORM}) causes gi bleeding ({SIGNAL_EVENT_SNOMED}), acetaminophen ({NULL_DRUG_RXNORM}) does not -> ibuprofen {}, acetaminophen {}",
        if flagged("ibuprofen") {
            "SIGNAL (found)"
        } else {
            "no signal (missed)"
        },
        if flagged("acetaminophen") {
            "SIGNAL (false)"
        } else {
            "no signal (right)"
        },
    );
    Ok(())
}
