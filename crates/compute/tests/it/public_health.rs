//! The public-health aggregates on three real vaults filled by the generator with its injected
//! ground truth (an outbreak, a drug that causes an event and one that does not), each site's
//! vector from its compiled SQL over its CDM tables, checked against an independent count made
//! straight from the generated FHIR resources (no SQL, no CDM): the 2×2 tables of the
//! risk-window rule and each window's surveillance counts. Then the released statistics find
//! the injected signal and not the null drug, over several seeds, and the outbreak's region
//! stands out.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use medspace_compute::federated::{SiteJob, site_vector};
use medspace_privacy::pharmacovigilance::{self as pv, Cell, classify};
use medspace_privacy::query::{Aggregate, QuerySpec, index_day, parse};
use medspace_privacy::release::Protection;
use medspace_synth::{OutbreakScenario, SafetyScenario, Scenarios};
use medspace_vault::{IngestOptions, OnError, Vault};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const PER_HOSPITAL: u64 = 150;

const SAFETY: &str = r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":{"drug_safety":{"drugs":[{"name":"ibuprofen","codes":["310965"]},{"name":"acetaminophen","codes":["313782"]},{"name":"simvastatin","codes":["312961"]}],"events":[{"name":"gi_bleeding","codes":["74474003","6072007"]},{"name":"bronchitis","codes":["10509002"]}],"window_days":30,"washout_days":180}}}"#;

fn vkey(node: &Path) -> medspace_vault::VaultKey {
    medspace_vault::VaultKey::unlock_or_create(
        node,
        &medspace_vault::seal::Passphrase::new("test passphrase").unwrap(),
        medspace_vault::seal::KdfParams::INSECURE_FAST,
    )
    .unwrap()
}

struct Sites {
    dirs: Vec<PathBuf>,
    cohorts: Vec<BTreeSet<i64>>,
    resources: Vec<Value>,
}

fn scenarios(outbreak: bool) -> Scenarios {
    let mut o = OutbreakScenario::example();
    if let Some(x) = o.outbreak.as_mut() {
        x.attack_rate = 0.3;
    }
    Scenarios {
        safety: Some(SafetyScenario::example(0.45, 0.15, 0.05)),
        outbreak: outbreak.then_some(o),
    }
}

fn sites(root: &Path, seed: u64, outbreak: bool) -> Sites {
    let sc = scenarios(outbreak);
    let opts = IngestOptions {
        on_error: OnError::Refuse,
        progress: false,
        vocabulary: None,
        ..IngestOptions::default()
    };
    let mut out = Sites {
        dirs: Vec::new(),
        cohorts: Vec::new(),
        resources: Vec::new(),
    };
    for h in 0..3u32 {
        let dir = root.join(format!("hospital-{h}"));
        let mut vault = Vault::open(&dir, &vkey(&dir)).unwrap();
        let resources: Vec<Value> = medspace_synth::hospital_resources(seed, h)
            .into_iter()
            .chain(
                (0..PER_HOSPITAL)
                    .flat_map(|i| medspace_synth::patient_resources_with(seed, h, i, &sc)),
            )
            .collect();
        vault
            .ingest_values("synth", resources.clone(), &opts)
            .unwrap();
        out.cohorts
            .push(vault.persons().into_iter().map(|(p, _, _)| p).collect());
        out.resources.extend(resources);
        out.dirs.push(dir);
    }
    out
}

fn summed(s: &Sites, spec: &QuerySpec, window: Option<u32>) -> Vec<i64> {
    let job = SiteJob {
        spec,
        epsilon_micro: 100_000,
        protection: Protection::TestNone,
        window,
    };
    let mut rng = medspace_privacy::dp::os_rng().unwrap();
    let mut total: Vec<i64> = Vec::new();
    for (dir, cohort) in s.dirs.iter().zip(&s.cohorts) {
        let (v, _) = site_vector(
            medspace_compute::federated::SiteVault::embedded(dir, &vkey(dir)),
            cohort,
            &job,
            &mut rng,
        )
        .unwrap();
        if total.is_empty() {
            total = v;
        } else {
            for (t, x) in total.iter_mut().zip(v) {
                *t += x;
            }
        }
    }
    total
}

fn day(v: Option<&Value>) -> Option<i64> {
    index_day(v?.as_str()?.get(..10)?).ok()
}

fn code(v: &Value, field: &str) -> Option<String> {
    Some(
        v.get(field)?
            .get("coding")?
            .get(0)?
            .get("code")?
            .as_str()?
            .to_string(),
    )
}

fn subject(v: &Value, field: &str) -> Option<String> {
    let r = v.get(field)?.get("reference")?.as_str()?;
    Some(r.rsplit(['/', ':']).next()?.to_string())
}

/// Per patient id: the first encounter day, drug start days by code, condition days by code,
/// birth year and postal prefix — read from the FHIR resources themselves.
#[derive(Default, Debug)]
struct Record {
    first: Option<i64>,
    drugs: BTreeMap<String, Vec<i64>>,
    conditions: BTreeMap<String, Vec<i64>>,
    birth_year: Option<i64>,
    zip3: Option<String>,
}

fn records(resources: &[Value]) -> BTreeMap<String, Record> {
    let mut out: BTreeMap<String, Record> = BTreeMap::new();
    for r in resources {
        match r.get("resourceType").and_then(Value::as_str) {
            Some("Patient") => {
                let id = r["id"].as_str().unwrap().to_string();
                let e = out.entry(id).or_default();
                e.birth_year = r["birthDate"]
                    .as_str()
                    .and_then(|b| b.get(..4)?.parse().ok());
                e.zip3 = r["address"][0]["postalCode"]
                    .as_str()
                    .map(|z| z.chars().take(3).collect());
            }
            Some("Encounter") => {
                let (Some(p), Some(d)) = (subject(r, "subject"), day(r["period"].get("start")))
                else {
                    continue;
                };
                let e = out.entry(p).or_default();
                e.first = Some(e.first.map_or(d, |f| f.min(d)));
            }
            Some("MedicationRequest") => {
                let (Some(p), Some(c), Some(d)) = (
                    subject(r, "subject"),
                    code(r, "medicationCodeableConcept"),
                    day(r.get("authoredOn")),
                ) else {
                    continue;
                };
                out.entry(p)
                    .or_default()
                    .drugs
                    .entry(c)
                    .or_default()
                    .push(d);
            }
            Some("Condition") => {
                let (Some(p), Some(c), Some(d)) = (
                    subject(r, "subject"),
                    code(r, "code"),
                    day(r.get("onsetDateTime")),
                ) else {
                    continue;
                };
                out.entry(p)
                    .or_default()
                    .conditions
                    .entry(c)
                    .or_default()
                    .push(d);
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_sites_tables_are_the_risk_window_rule_and_find_the_injected_signal() {
    let (spec, _) = parse(SAFETY).unwrap();
    let Aggregate::DrugSafety(d) = &spec.aggregate else {
        panic!()
    };
    let rule = pv::SignalRule::default();
    for seed in [7, 8, 9] {
        let root = tempfile::tempdir().unwrap();
        let s = sites(root.path(), seed, false);
        let total = summed(&s, &spec, None);
        let tables = pv::tables_from_sum(&total, d.pair_indices().len()).unwrap();
        // The same tables from the FHIR resources, person by person.
        let recs = records(&s.resources);
        for (i, (di, ei)) in d.pair_indices().into_iter().enumerate() {
            let mut want = [0u64; 4];
            for r in recs.values() {
                let Some(first) = r.first else { continue };
                let exposures: Vec<i64> = d.drugs[di]
                    .codes
                    .iter()
                    .flat_map(|c| r.drugs.get(c).cloned().unwrap_or_default())
                    .collect();
                let events: Vec<i64> = d.events[ei]
                    .codes
                    .iter()
                    .flat_map(|c| r.conditions.get(c).cloned().unwrap_or_default())
                    .filter(|t| *t >= first)
                    .collect();
                if let Some(c) = classify(first, &exposures, &events, d.window_days, d.washout_days)
                {
                    want[match c {
                        Cell::A => 0,
                        Cell::B => 1,
                        Cell::C => 2,
                        Cell::D => 3,
                    }] += 1;
                }
            }
            assert_eq!(tables[i].cells(), want, "seed {seed} pair {i}");
        }
        let pairs: Vec<(pv::PairId, pv::Table2x2)> = d
            .pair_indices()
            .into_iter()
            .zip(tables)
            .map(|((di, ei), t)| (pv::PairId::new(&d.drugs[di].name, &d.events[ei].name), t))
            .collect();
        let scan = pv::scan(&pairs, &rule, 0, 0.05).unwrap();
        let signal = |drug: &str| {
            scan.iter()
                .find(|p| p.pair.drug == drug && p.pair.event == "gi_bleeding")
                .and_then(|p| p.scan_signal)
                .unwrap()
        };
        assert!(
            signal("ibuprofen"),
            "seed {seed}: the injected signal is found"
        );
        assert!(
            !signal("acetaminophen"),
            "seed {seed}: the null drug is not flagged"
        );
    }
}

#[test]
fn each_window_counts_the_persons_with_a_syndrome_by_region_and_band() {
    let root = tempfile::tempdir().unwrap();
    let s = sites(root.path(), 11, true);
    let truth = scenarios(true).outbreak.unwrap();
    let o = truth.outbreak.clone().unwrap();
    let start = medspace_privacy::query::date_of_day(truth.period_start);
    let regions: Vec<String> = (0..medspace_synth::REGIONS)
        .map(medspace_synth::region_zip3)
        .collect();
    let json = serde_json::json!({"version":1,"cohort":{"index_date":start},
        "aggregate":{"surveillance":{"syndromes":[{"name":"ili","codes":[medspace_synth::ILI_SNOMED]},{"name":"agi","codes":[medspace_synth::AGI_SNOMED]}],
        "regions":regions,"start":start,"window_days":1,"windows":truth.period_days,"epsilon_per_window":0.1,"dp":false}}})
    .to_string();
    let (spec, _) = parse(&json).unwrap();
    let Aggregate::Surveillance(def) = &spec.aggregate else {
        panic!()
    };
    let recs = records(&s.resources);
    let codes = [medspace_synth::ILI_SNOMED, medspace_synth::AGI_SNOMED];
    let mut outbreak_region: Vec<i64> = Vec::new();
    for w in [0, 10, o.start_day + o.days / 2, o.start_day + o.days - 1] {
        let total = summed(&s, &spec, Some(w));
        let (first, end) = def.window_days_range(w).unwrap();
        let year = medspace_privacy::query::civil_of_day(first).0;
        let mut want = vec![0i64; def.cells()];
        for r in recs.values() {
            let (Some(zip), Some(born)) = (&r.zip3, r.birth_year) else {
                continue;
            };
            let Some(region) = def.regions.iter().position(|x| x == zip) else {
                continue;
            };
            let Some(band) = medspace_privacy::query::SurveillanceSpec::band_of(year - born) else {
                continue;
            };
            for (si, c) in codes.iter().enumerate() {
                let hit = r
                    .conditions
                    .get(*c)
                    .is_some_and(|days| days.iter().any(|d| *d >= first && *d < end));
                if hit {
                    want[def.cell(si, region, band)] += 1;
                }
            }
        }
        assert_eq!(total, want, "window {w}");
        let region = o.region as usize;
        outbreak_region.push((0..5).map(|b| total[def.cell(0, region, b)]).sum());
    }
    // Before the outbreak its region sees a case now and then; at its height, many.
    assert!(
        outbreak_region[2] + outbreak_region[3] > 3 * (outbreak_region[0] + outbreak_region[1]) + 3,
        "{outbreak_region:?}"
    );
}
