//! Ingest of the Synthea sample (three hospitals): counts per resource type and CDM table
//! against the source files, round trip through patient export, idempotent re-ingest.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use medspace_vault::{IngestOptions, OnError, Vault, Vocabulary, export, open_session};
use serde_json::Value;

fn bundle_resources(path: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn key(r: &Value) -> String {
    format!(
        "{}/{}",
        r["resourceType"].as_str().unwrap(),
        r["id"].as_str().unwrap()
    )
}

fn count(node: &Path, sql: &str) -> i64 {
    let ctx = open_session(node, &vkey(node)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let batches = rt.block_on(medspace_vault::sql(&ctx, sql)).unwrap();
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// Refuse mode with the OMOP vocabulary subset (see [`common::vocab_dir`] for when it is
/// missing).
fn opts(test: &str) -> IngestOptions {
    IngestOptions {
        on_error: OnError::Refuse,
        vocabulary: common::vocab_dir(test).map(|d| Arc::new(Vocabulary::load(&d).unwrap())),
        ..IngestOptions::default()
    }
}

#[test]
fn counts_per_type_and_table_match_the_source() {
    let test = "counts_per_type_and_table_match_the_source";
    let Some(dir) = common::synthea_dir(test) else {
        return;
    };
    let opts = opts(test);
    let counts: Value =
        serde_json::from_slice(&std::fs::read(dir.join("../counts.json")).unwrap()).unwrap();
    for hospital in ["hospital-a", "hospital-b", "hospital-c"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut vault = Vault::open(tmp.path(), &vkey(tmp.path())).unwrap();
        let report = vault.ingest_paths(&[dir.join(hospital)], &opts).unwrap();
        assert!(
            report.errors.is_empty(),
            "{hospital}: {:?}",
            report.errors.first()
        );
        let expected_read: u64 = counts["per_hospital"][hospital]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(report.read, expected_read, "{hospital}: resources read");
        // Distinct resources (by type and id; the last version of a repeated one) from the files.
        let mut distinct: BTreeMap<String, Value> = BTreeMap::new();
        let mut files: Vec<_> = std::fs::read_dir(dir.join(hospital))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in &files {
            for r in bundle_resources(f) {
                distinct.insert(key(&r), r);
            }
        }
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        for k in distinct.keys() {
            *by_type
                .entry(k.split('/').next().unwrap().to_string())
                .or_default() += 1;
        }
        assert_eq!(
            vault.counts_by_type(),
            by_type,
            "{hospital}: stored per type"
        );
        for (t, n) in counts["per_hospital"][hospital].as_object().unwrap() {
            if !matches!(t.as_str(), "Organization" | "Practitioner") {
                assert_eq!(
                    by_type.get(t).copied(),
                    n.as_u64(),
                    "{hospital}: {t} has no duplicates in the source"
                );
            }
        }
        let n = |t: &str| by_type.get(t).copied().unwrap_or(0) as i64;
        let node = tmp.path();
        assert_eq!(count(node, "select count(*) from person"), n("Patient"));
        assert_eq!(
            count(node, "select count(*) from visit_occurrence"),
            n("Encounter")
        );
        assert_eq!(
            count(node, "select count(*) from condition_occurrence"),
            n("Condition")
        );
        assert_eq!(
            count(node, "select count(*) from procedure_occurrence"),
            n("Procedure")
        );
        assert_eq!(
            count(node, "select count(*) from drug_exposure"),
            n("MedicationRequest") + n("Immunization")
        );
        let deceased = distinct
            .values()
            .filter(|r| r["resourceType"] == "Patient" && r.get("deceasedDateTime").is_some())
            .count() as i64;
        assert_eq!(count(node, "select count(*) from death"), deceased);
        // Every Synthea Patient has a home address: one location each, the postal code cut to
        // three characters, no street line anywhere.
        let patients: Vec<&Value> = distinct
            .values()
            .filter(|r| r["resourceType"] == "Patient")
            .collect();
        let with_address = patients
            .iter()
            .filter(|r| r["address"].as_array().is_some_and(|a| !a.is_empty()))
            .count() as i64;
        assert!(with_address > 0);
        assert_eq!(count(node, "select count(*) from location"), with_address);
        assert_eq!(
            count(
                node,
                "select count(*) from person p join location l on p.location_id = l.location_id"
            ),
            with_address
        );
        assert_eq!(
            count(
                node,
                "select count(*) from location where length(zip) <> 3 or state <> 'MA'"
            ),
            0
        );
        // A few Synthea addresses have no postal code: no zip then.
        let with_zip = patients
            .iter()
            .filter(|r| r["address"][0]["postalCode"].is_string())
            .count() as i64;
        assert_eq!(
            count(node, "select count(*) from location where zip is not null"),
            with_zip
        );
        let lines_and_codes: Vec<String> = patients
            .iter()
            .flat_map(|r| r["address"].as_array().cloned().unwrap_or_default())
            .flat_map(|a| {
                let mut v: Vec<String> = a["line"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l.as_str().map(str::to_string))
                    .collect();
                v.extend(a["postalCode"].as_str().map(str::to_string));
                v
            })
            .collect();
        assert!(!lines_and_codes.is_empty());
        for table in medspace_vault::TABLES {
            for col in medspace_vault::cdm::columns(table)
                .iter()
                .filter(|c| c.ty == medspace_vault::cdm::ColumnType::Utf8)
            {
                let list: Vec<String> = lines_and_codes
                    .iter()
                    .map(|s| format!("'{}'", s.replace('\'', "''")))
                    .collect();
                let sql = format!(
                    "select count(*) from {table} where {} in ({})",
                    col.name,
                    list.join(", ")
                );
                assert_eq!(count(node, &sql), 0, "{hospital}: {table}.{}", col.name);
            }
        }
        let obs_rows: i64 = distinct
            .values()
            .filter(|r| r["resourceType"] == "Observation")
            .map(|r| match r.get("component").and_then(Value::as_array) {
                Some(c) => {
                    c.len() as i64
                        + i64::from(
                            r.as_object()
                                .unwrap()
                                .keys()
                                .any(|k| k.starts_with("value")),
                        )
                }
                None => 1,
            })
            .sum();
        assert_eq!(
            count(
                node,
                "select (select count(*) from measurement) + (select count(*) from observation)"
            ),
            obs_rows + n("AllergyIntolerance")
        );
        // Source codes are bare codes, every row has a person.
        assert_eq!(
            count(
                node,
                "select count(*) from condition_occurrence where condition_source_value like '%|%' or person_id is null"
            ),
            0
        );
        assert_eq!(
            count(
                node,
                "select count(*) from measurement m left join person p on m.person_id = p.person_id where p.person_id is null"
            ),
            0
        );
        if opts.vocabulary.is_some() {
            assert!(
                count(
                    node,
                    "select count(*) from condition_occurrence where condition_concept_id <> 0"
                ) > 0,
                "vocabulary maps some conditions"
            );
        }
    }
    let c = &counts["total"];
    assert_eq!(c["Patient"], 60);
}

#[test]
fn export_round_trip_gives_back_the_same_resources() {
    let test = "export_round_trip_gives_back_the_same_resources";
    let Some(dir) = common::synthea_dir(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut vault = Vault::open(tmp.path(), &vkey(tmp.path())).unwrap();
    let hospital = dir.join("hospital-b");
    let report = vault
        .ingest_paths(std::slice::from_ref(&hospital), &opts(test))
        .unwrap();
    assert!(report.committed);
    let mut files: Vec<_> = std::fs::read_dir(&hospital)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // The latest version of each resource across the ingested files (what the vault keeps).
    let mut latest: HashMap<String, Value> = HashMap::new();
    for f in &files {
        for r in bundle_resources(f) {
            latest.insert(key(&r), r);
        }
    }
    for f in &files {
        let source = bundle_resources(f);
        let patient_id = source
            .iter()
            .find(|r| r["resourceType"] == "Patient")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let bundle = export::export_patient(&vault, &patient_id).unwrap();
        let exported: BTreeMap<String, Value> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (key(&e["resource"]), e["resource"].clone()))
            .collect();
        let expected: BTreeMap<String, Value> = source
            .iter()
            .map(|r| (key(r), latest[&key(r)].clone()))
            .collect();
        assert_eq!(
            exported.len(),
            expected.len(),
            "{}: resource count",
            f.display()
        );
        assert!(
            exported == expected,
            "{}: exported resources differ from the source",
            f.display()
        );
        // Every reference resolves to an entry of the export.
        let urls: std::collections::HashSet<String> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap().to_string())
            .collect();
        for e in bundle["entry"].as_array().unwrap() {
            for (_, t) in medspace_vault::fhir::references(&e["resource"]) {
                let medspace_vault::fhir::RefTarget::AnyType(id) = t else {
                    panic!("reference not in urn:uuid form")
                };
                assert!(
                    urls.contains(&format!("urn:uuid:{id}")),
                    "unresolved reference"
                );
            }
        }
        // The export can also be found by person_id and by pseudonym.
        let pid = vault.person_id_for_patient_id(&patient_id).unwrap();
        let pseudo = vault.pseudonym_for_person_id(pid).unwrap();
        assert_eq!(vault.person_id_for_pseudonym(&pseudo), Some(pid));
        assert_eq!(export::export_patient(&vault, &pseudo).unwrap(), bundle);
    }
}

#[test]
fn re_ingest_adds_nothing() {
    let test = "re_ingest_adds_nothing";
    let Some(dir) = common::synthea_dir(test) else {
        return;
    };
    let opts = opts(test);
    let tmp = tempfile::tempdir().unwrap();
    let paths = [dir.join("hospital-c"), dir.join("shared")];
    let first = Vault::open(tmp.path(), &vkey(tmp.path()))
        .unwrap()
        .ingest_paths(&paths, &opts)
        .unwrap();
    assert!(first.committed && first.stored > 0);
    let persons = count(tmp.path(), "select count(*) from person");
    let rows = count(tmp.path(), "select count(*) from measurement");
    let mut vault = Vault::open(tmp.path(), &vkey(tmp.path())).unwrap();
    let before = vault.resource_count();
    let again = vault.ingest_paths(&paths, &opts).unwrap();
    assert_eq!(again.stored, 0);
    assert!(!again.committed);
    assert_eq!(again.read, first.read);
    assert_eq!(vault.resource_count(), before);
    drop(vault);
    assert_eq!(count(tmp.path(), "select count(*) from person"), persons);
    assert_eq!(count(tmp.path(), "select count(*) from measurement"), rows);
    // Person ids and pseudonyms are stable across reopen.
    let a = Vault::open_read_only(tmp.path(), &vkey(tmp.path()))
        .unwrap()
        .persons();
    let b = Vault::open_read_only(tmp.path(), &vkey(tmp.path()))
        .unwrap()
        .persons();
    assert_eq!(a, b);
    assert_eq!(a.len() as i64, persons);
}

/// The rule for missing shared data: a printed skip on a developer machine, a failure in CI.
#[test]
fn missing_shared_data_skips_here_and_fails_under_ci() {
    let nowhere = tempfile::tempdir().unwrap();
    let got = std::panic::catch_unwind(|| {
        common::shared_in(
            nowhere.path(),
            "missing_shared_data_skips_here_and_fails_under_ci",
            "reference/omop-vocabulary-subset",
            "CONCEPT.csv",
            "this check",
        )
    });
    if common::ci() {
        assert!(got.is_err(), "missing shared data must fail under CI=true");
    } else {
        assert_eq!(
            got.ok(),
            Some(None),
            "missing shared data is a printed skip"
        );
    }
}

/// The test vault's keys: a fixed passphrase and the cheapest argon2id parameters, the vault's
/// keys created on first use.
#[allow(dead_code)]
fn vkey(node: &std::path::Path) -> medspace_vault::VaultKey {
    medspace_vault::VaultKey::unlock_or_create(
        node,
        &medspace_vault::seal::Passphrase::new("test passphrase").unwrap(),
        medspace_vault::seal::KdfParams::INSECURE_FAST,
    )
    .unwrap()
}
