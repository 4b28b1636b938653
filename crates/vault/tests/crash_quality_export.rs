//! Crash mid-batch, quality figures on data with known defects, export of generated patients.

use std::collections::HashSet;
use std::path::Path;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use medspace_vault::error::VaultError;
use medspace_vault::fhir::{RefTarget, parse_date, references};
use medspace_vault::{IngestOptions, Vault, catalog, export, open_session, quality};
use serde_json::{Value, json};

fn count(node: &Path, sql: &str) -> i64 {
    let ctx = open_session(node).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let b = rt.block_on(medspace_vault::sql(&ctx, sql)).unwrap();
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

fn synth(hospital: u32, patients: u64) -> Vec<Value> {
    medspace_synth::generate(medspace_synth::SynthConfig {
        patients,
        seed: 7,
        hospital,
    })
}

#[test]
fn crash_mid_batch_leaves_the_vault_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path();
    let mut vault = Vault::open(node).unwrap();
    let first = vault
        .ingest_values("h0", synth(0, 20), &IngestOptions::default())
        .unwrap();
    assert!(first.committed);
    let persons = count(node, "select count(*) from person");
    let meas = count(node, "select count(*) from measurement");
    let stored = vault.resource_count();
    let manifest = std::fs::read(node.join("vault/manifest.json")).unwrap();
    let crash = IngestOptions {
        fail_after: Some(100),
        ..IngestOptions::default()
    };
    let err = vault.ingest_values("h1", synth(1, 20), &crash).unwrap_err();
    assert!(matches!(err, VaultError::InjectedFault(100)));
    // The half-written segment is on disk, as after a crash, but not committed.
    assert_eq!(
        std::fs::read_dir(node.join("vault/segments"))
            .unwrap()
            .count(),
        2
    );
    assert_eq!(
        std::fs::read(node.join("vault/manifest.json")).unwrap(),
        manifest
    );
    assert_eq!(count(node, "select count(*) from person"), persons);
    assert_eq!(count(node, "select count(*) from measurement"), meas);
    drop(vault);
    // Reopen: the orphan is gone, the state is the one before the batch, and the batch can be
    // ingested again in full.
    let mut vault = Vault::open(node).unwrap();
    assert_eq!(vault.resource_count(), stored);
    assert_eq!(
        std::fs::read_dir(node.join("vault/segments"))
            .unwrap()
            .count(),
        1
    );
    let again = vault
        .ingest_values("h1", synth(1, 20), &IngestOptions::default())
        .unwrap();
    assert!(again.committed);
    assert_eq!(count(node, "select count(*) from person"), 40);
    // Person ids stay unique across batches.
    assert_eq!(
        count(node, "select count(distinct person_id) from person"),
        40
    );
}

#[test]
fn second_writer_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let _a = Vault::open(tmp.path()).unwrap();
    assert!(matches!(
        Vault::open(tmp.path()),
        Err(VaultError::Locked(_))
    ));
}

fn obs(id: &str, patient: &str, loinc: &str, value: f64, unit: &str, date: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
}

fn cond(id: &str, patient: &str, code: &str, onset: &str) -> Value {
    json!({"resourceType": "Condition", "id": id, "subject": {"reference": format!("Patient/{patient}")},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]}, "onsetDateTime": onset})
}

#[test]
fn quality_figures_on_data_with_known_defects() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path();
    let resources = vec![
        json!({"resourceType": "Patient", "id": "a", "gender": "female", "birthDate": "1950-01-01"}),
        json!({"resourceType": "Patient", "id": "b", "gender": "male", "birthDate": "1960-01-01"}),
        // no gender
        json!({"resourceType": "Patient", "id": "c", "birthDate": "1970-01-01"}),
        // death before birth
        json!({"resourceType": "Patient", "id": "d", "gender": "male", "birthDate": "1990-01-01", "deceasedDateTime": "1980-01-01"}),
        cond("c1", "a", "44054006", "2020-01-01"),
        cond("c2", "b", "38341003", "2020-01-01"),
        // not a SNOMED CT concept id (partition 01 is a description id)
        cond("c3", "c", "44054016", "2020-01-01"),
        // future onset (as of 2025-01-01)
        cond("c4", "d", "195967001", "2030-06-01"),
        obs("o1", "a", "4548-4", 6.1, "%", "2021-01-01"),
        // HbA1c 45 % is outside the physiological range
        obs("o2", "b", "4548-4", 45.0, "%", "2021-01-01"),
        // systolic 500 mm[Hg] too
        obs("o3", "c", "8480-6", 500.0, "mm[Hg]", "2021-01-01"),
        // duplicate of o1 in every column but the id
        obs("o4", "a", "4548-4", 6.1, "%", "2021-01-01"),
        // glucose in another unit is not judged
        obs("o5", "a", "2339-0", 3000.0, "mmol/L", "2021-01-01"),
    ];
    let mut vault = Vault::open(node).unwrap();
    let r = vault
        .ingest_values("defects", resources, &IngestOptions::default())
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let as_of = parse_date("2025-01-01").unwrap();
    let p = quality::profile_node(node, as_of).unwrap();
    let table = |t: &str| p.tables.iter().find(|x| x.table == t).unwrap();
    let col = |t: &str, c: &str| {
        table(t)
            .columns
            .iter()
            .find(|x| x.column == c)
            .unwrap()
            .clone()
    };
    assert_eq!(table("person").rows, 4);
    assert_eq!(col("person", "gender_source_value").missing, 1);
    assert!((col("person", "gender_source_value").missing_rate - 0.25).abs() < 1e-12);
    assert_eq!(table("condition_occurrence").rows, 4);
    assert_eq!(
        col("condition_occurrence", "condition_source_value").invalid_codes,
        Some(1)
    );
    assert_eq!(
        col("condition_occurrence", "condition_source_value").invalid_code_rate,
        Some(0.25)
    );
    assert_eq!(
        col("condition_occurrence", "condition_concept_id").unknown_code_rate,
        Some(1.0),
        "no vocabulary loaded"
    );
    assert_eq!(
        col("condition_occurrence", "condition_start_date").future_dates,
        Some(1)
    );
    assert_eq!(col("condition_occurrence", "condition_end_date").missing, 4);
    assert_eq!(table("measurement").rows, 5);
    assert_eq!(table("measurement").duplicates, 1);
    assert!((table("measurement").duplicate_rate - 0.2).abs() < 1e-12);
    assert_eq!(table("condition_occurrence").duplicates, 0);
    assert_eq!(p.implausible.death_before_birth, 1);
    assert_eq!(p.implausible.future_dates, 1);
    assert_eq!(p.implausible.measurements_out_of_range_total, 2);
    assert_eq!(
        p.implausible.measurements_out_of_range.get("4548-4"),
        Some(&1)
    );
    assert_eq!(
        p.implausible.measurements_out_of_range.get("8480-6"),
        Some(&1)
    );
    // The catalog description carries the same profile, privacy levels, and no data.
    let d = catalog::describe_node(node, as_of).unwrap();
    assert_eq!(d.persons, 4);
    assert_eq!(d.quality, p);
    assert_eq!(d.content_hash.len(), 64);
    let text = serde_json::to_string(&d).unwrap();
    assert!(
        !text.contains("1950-01-01") && !text.contains("\"a\""),
        "description must hold no data"
    );
    let person = d.tables.iter().find(|t| t.name == "person").unwrap();
    let psv = person
        .fields
        .iter()
        .find(|f| f.name == "person_source_value")
        .unwrap();
    assert_eq!(psv.privacy_level, catalog::PrivacyLevel::L4);
    // The hash changes with the data.
    vault
        .ingest_values(
            "more",
            vec![json!({"resourceType": "Patient", "id": "e"})],
            &IngestOptions::default(),
        )
        .unwrap();
    assert_ne!(catalog::content_hash(node).unwrap(), d.content_hash);
}

#[test]
fn generated_patients_export_with_every_reference_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let mut vault = Vault::open(&node).unwrap();
    let resources = synth(2, 30);
    let n = resources.len() as u64;
    let r = vault
        .ingest_values("h2", resources, &IngestOptions::default())
        .unwrap();
    assert_eq!((r.read, r.stored, r.skipped), (n, n, 0));
    for (pid, patient_id, _) in vault.persons().into_iter().take(5) {
        let b = export::export_patient(&vault, &pid.to_string()).unwrap();
        let entries = b["entry"].as_array().unwrap();
        assert_eq!(entries[0]["resource"]["id"], patient_id.as_str());
        let urls: HashSet<&str> = entries
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap())
            .collect();
        let types: HashSet<&str> = entries
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert!(
            types.contains("Organization")
                && types.contains("Practitioner")
                && types.contains("Encounter")
        );
        for e in entries {
            for (field, t) in references(&e["resource"]) {
                let RefTarget::AnyType(id) = t else {
                    panic!("{field} not rewritten to urn:uuid")
                };
                assert!(
                    urls.contains(format!("urn:uuid:{id}").as_str()),
                    "{field} does not resolve"
                );
            }
        }
    }
    // Bulk NDJSON of everything; every reference resolves inside it, and it ingests cleanly
    // into another vault with the same content.
    let out = tmp.path().join("nd");
    let s = export::export_ndjson(&vault, &out).unwrap();
    assert_eq!(s.by_type.values().sum::<u64>(), n);
    let mut keys = HashSet::new();
    let mut refs = Vec::new();
    for f in std::fs::read_dir(&out).unwrap() {
        for line in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            keys.insert(format!(
                "{}/{}",
                v["resourceType"].as_str().unwrap(),
                v["id"].as_str().unwrap()
            ));
            refs.extend(references(&v));
        }
    }
    for (field, t) in refs {
        let RefTarget::Typed(ty, id) = t else {
            panic!("{field} not relative")
        };
        assert!(
            keys.contains(&format!("{ty}/{id}")),
            "{field} does not resolve"
        );
    }
    let other = tmp.path().join("other");
    let r2 = Vault::open(&other)
        .unwrap()
        .ingest_paths(&[out], &IngestOptions::default())
        .unwrap();
    assert_eq!((r2.stored, r2.skipped), (n, 0));
    assert_eq!(
        count(&other, "select count(*) from measurement"),
        count(&node, "select count(*) from measurement")
    );
}

#[test]
fn synthetic_hospitals_get_their_own_patients() {
    let tmp = tempfile::tempdir().unwrap();
    for h in 0..3u32 {
        let node = tmp.path().join(format!("h{h}"));
        let r = medspace_vault::ingest_synthetic(&node, h, 15, 11, None).unwrap();
        assert!(r.committed && r.errors.is_empty());
        assert_eq!(count(&node, "select count(*) from person"), 15);
        // Again: idempotent.
        let again = medspace_vault::ingest_synthetic(&node, h, 15, 11, None).unwrap();
        assert_eq!((again.stored, again.committed), (0, false));
    }
    let a = Vault::open_read_only(&tmp.path().join("h0"))
        .unwrap()
        .persons();
    let b = Vault::open_read_only(&tmp.path().join("h1"))
        .unwrap()
        .persons();
    assert!(
        a.iter()
            .all(|(_, id, _)| b.iter().all(|(_, other, _)| other != id))
    );
}

#[test]
fn patient_resources_are_listed_by_person() {
    let tmp = tempfile::tempdir().unwrap();
    let mut vault = Vault::open(tmp.path()).unwrap();
    let resources = synth(0, 3);
    vault
        .ingest_values("h0", resources.clone(), &IngestOptions::default())
        .unwrap();
    let (pid, patient_id, pseudo) = vault.persons()[1].clone();
    assert_eq!(vault.resolve_patient(&pseudo), Some(pid));
    assert_eq!(vault.resolve_patient(&patient_id), Some(pid));
    let mine = vault.patient_resources(pid).unwrap();
    assert_eq!(mine[0]["id"], patient_id.as_str());
    let reference = format!("Patient/{patient_id}");
    let expected = resources
        .iter()
        .filter(|r| {
            r["id"] == patient_id.as_str()
                || r["subject"]["reference"] == reference.as_str()
                || r["patient"]["reference"] == reference.as_str()
        })
        .count();
    assert_eq!(mine.len(), expected);
    // The pseudonym is a keyed hash: not the id, and different in another vault.
    assert_ne!(pseudo, patient_id);
    let other = tempfile::tempdir().unwrap();
    let mut v2 = Vault::open(other.path()).unwrap();
    v2.ingest_values("h0", resources, &IngestOptions::default())
        .unwrap();
    assert_ne!(v2.pseudonym(&patient_id), pseudo);
}
