//! Crash mid-batch, quality figures on data with known defects, export of generated patients,
//! and the exact output of two ingests (every file the vault writes, exports, quality, catalog)
//! pinned by hash.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::collections::HashSet;
use std::path::Path;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use medspace_vault::error::VaultError;
use medspace_vault::fhir::{RefTarget, parse_date, references};
use medspace_vault::{IngestOptions, Vault, catalog, export, open_session, quality};
use serde_json::{Value, json};

fn count(node: &Path, sql: &str) -> i64 {
    let ctx = open_session(node, &vkey(node)).unwrap();
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
    let mut vault = Vault::open(node, &vkey(node)).unwrap();
    let first = vault
        .ingest_values("h0", synth(0, 20), &IngestOptions::default())
        .unwrap();
    assert!(first.committed);
    let persons = count(node, "select count(*) from person");
    let meas = count(node, "select count(*) from measurement");
    let stored = vault.resource_count();
    let manifest = std::fs::read(node.join("vault/manifest.json")).unwrap();
    // Two threads: the mapping stops mid-segment with its parsing workers still busy.
    let crash = IngestOptions {
        fail_after: Some(100),
        threads: 2,
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
    let mut vault = Vault::open(node, &vkey(node)).unwrap();
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
    let _a = Vault::open(tmp.path(), &vkey(tmp.path())).unwrap();
    assert!(matches!(
        Vault::open(tmp.path(), &vkey(tmp.path())),
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
    let mut vault = Vault::open(node, &vkey(node)).unwrap();
    let r = vault
        .ingest_values("defects", resources, &IngestOptions::default())
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let as_of = parse_date("2025-01-01").unwrap();
    let p = quality::profile_node(node, &vkey(node), as_of).unwrap();
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
    let d = catalog::describe_node(node, &vkey(node), as_of).unwrap();
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
    assert_eq!(psv.privacy_level, catalog::PrivacyLevel::L3);
    // The hash changes with the data.
    vault
        .ingest_values(
            "more",
            vec![json!({"resourceType": "Patient", "id": "e"})],
            &IngestOptions::default(),
        )
        .unwrap();
    assert_ne!(
        catalog::content_hash(node, &vkey(node)).unwrap(),
        d.content_hash
    );
}

#[test]
fn generated_patients_export_with_every_reference_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let mut vault = Vault::open(&node, &vkey(&node)).unwrap();
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
    let r2 = Vault::open(&other, &vkey(&other))
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
        let r = medspace_vault::ingest_synthetic(&node, &vkey(&node), h, 15, 11, None).unwrap();
        assert!(r.committed && r.errors.is_empty());
        assert_eq!(count(&node, "select count(*) from person"), 15);
        // Again: idempotent.
        let again = medspace_vault::ingest_synthetic(&node, &vkey(&node), h, 15, 11, None).unwrap();
        assert_eq!((again.stored, again.committed), (0, false));
    }
    let a = Vault::open_read_only(&tmp.path().join("h0"), &vkey(&tmp.path().join("h0")))
        .unwrap()
        .persons();
    let b = Vault::open_read_only(&tmp.path().join("h1"), &vkey(&tmp.path().join("h1")))
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
    let mut vault = Vault::open(tmp.path(), &vkey(tmp.path())).unwrap();
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
    let mut v2 = Vault::open(other.path(), &vkey(other.path())).unwrap();
    v2.ingest_values("h0", resources, &IngestOptions::default())
        .unwrap();
    assert_ne!(v2.pseudonym(&patient_id), pseudo);
}

/// Hand-written resources that take every branch of the CDM mapping (partial birth dates, death
/// as a date or a flag, each visit class, components, coded and string values, every drug
/// source, allergies, `urn:uuid:` and `context` references), plus a few bad ones.
fn mapping_cases() -> Vec<Value> {
    let snomed =
        |code: &str| json!({"coding": [{"system": "http://snomed.info/sct", "code": code}]});
    let loinc = |code: &str| json!({"coding": [{"system": "http://loinc.org", "code": code}]});
    let race = |code: &str, eth: &str| {
        json!([
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
             "extension": [{"url": "ombCategory", "valueCoding": {"code": code}}]},
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
             "extension": [{"url": "ombCategory", "valueCoding": {"code": eth}}]}
        ])
    };
    let mut v = vec![
        json!({"resourceType": "Organization", "id": "org", "name": "A"}),
        json!({"resourceType": "Patient", "id": "pa", "gender": "female", "birthDate": "1950-03-04",
               "extension": race("2106-3", "2135-2"), "deceasedDateTime": "2020-02-02T10:00:00Z",
               "managingOrganization": {"reference": "Organization/org"}}),
        json!({"resourceType": "Patient", "id": "pb", "gender": "male", "birthDate": "1980",
               "extension": race("2054-5", "2186-5"), "deceasedBoolean": true}),
        json!({"resourceType": "Patient", "id": "pc", "gender": "other", "birthDate": "1990-07",
               "extension": race("2028-9", "x")}),
        json!({"resourceType": "Patient", "id": "pd", "extension": race("1002-5", "2135-2")}),
        json!({"resourceType": "Patient", "id": "pe", "gender": "unknown", "birthDate": "2001-01-01",
               "extension": race("2076-8", "2186-5")}),
    ];
    for (i, class) in [
        "AMB",
        "EMER",
        "IMP",
        "outpatient",
        "emergency",
        "ACUTE",
        "HH",
    ]
    .iter()
    .enumerate()
    {
        v.push(
            json!({"resourceType": "Encounter", "id": format!("e{i}"), "class": {"code": class},
            "type": [snomed("185349003")], "subject": {"reference": "Patient/pa"},
            "period": {"start": format!("2019-0{}-01T08:00:00Z", i + 1)}}),
        );
    }
    v.extend([
        json!({"resourceType": "Encounter", "id": "e9", "subject": {"reference": "urn:uuid:pb"},
               "period": {"start": "2018-01-01", "end": "2018-01-03"}}),
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/pa"},
               "encounter": {"reference": "Encounter/e0"}, "code": snomed("44054006"),
               "clinicalStatus": {"coding": [{"code": "active"}]}, "onsetDateTime": "2019-01-01"}),
        json!({"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/pb"},
               "code": snomed("15777000"), "onsetPeriod": {"start": "2017-05-05"},
               "abatementDateTime": "2018-05-05"}),
        json!({"resourceType": "Condition", "id": "c3", "subject": {"reference": "Patient/pc"},
               "code": {"coding": [{"system": "http://example.org/local", "code": "X1"},
                                   {"system": "http://snomed.info/sct", "code": "38341003"}]},
               "recordedDate": "2016-01-01", "abatementPeriod": {"end": "2016-02-01"}}),
        json!({"resourceType": "MedicationRequest", "id": "m1", "subject": {"reference": "Patient/pa"},
               "encounter": {"reference": "Encounter/e1"}, "authoredOn": "2019-02-01",
               "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]},
               "dispenseRequest": {"quantity": {"value": 30}, "validityPeriod": {"start": "2019-02-01", "end": "2019-03-01"}}}),
        json!({"resourceType": "MedicationStatement", "id": "m2", "subject": {"reference": "Patient/pb"},
               "context": {"reference": "Encounter/e9"}, "effectivePeriod": {"start": "2018-01-01", "end": "2018-02-01"},
               "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076"}]}}),
        json!({"resourceType": "MedicationAdministration", "id": "m3", "subject": {"reference": "Patient/pc"},
               "effectiveDateTime": "2016-03-03", "medicationCodeableConcept": {"text": "no coding"}}),
        json!({"resourceType": "Immunization", "id": "i1", "patient": {"reference": "Patient/pa"},
               "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
               "occurrenceDateTime": "2019-10-10", "encounter": {"reference": "Encounter/e2"}}),
        json!({"resourceType": "Procedure", "id": "pr1", "subject": {"reference": "Patient/pa"},
               "code": snomed("73761001"), "performedDateTime": "2019-04-04"}),
        json!({"resourceType": "Procedure", "id": "pr2", "subject": {"reference": "Patient/pd"},
               "code": snomed("430193006"), "performedPeriod": {"start": "2015-01-01", "end": "2015-01-02"}}),
        json!({"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/pa"},
               "code": snomed("300916003"), "onsetDateTime": "2010-01-01"}),
        json!({"resourceType": "AllergyIntolerance", "id": "a2", "patient": {"reference": "Patient/pe"},
               "recordedDate": "2011-01-01"}),
        json!({"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/pa"},
               "code": loinc("85354-9"), "effectiveDateTime": "2019-01-01",
               "category": [{"coding": [{"code": "vital-signs"}]}],
               "component": [
                   {"code": loinc("8480-6"), "valueQuantity": {"value": 120, "code": "mm[Hg]"}},
                   {"code": loinc("8462-4"), "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}]}),
        json!({"resourceType": "Observation", "id": "o2", "subject": {"reference": "Patient/pa"},
               "code": loinc("55284-4"), "effectivePeriod": {"start": "2019-01-02"},
               "component": [{"code": loinc("8480-6"), "valueQuantity": {"value": 130, "code": "mm[Hg]"}}],
               "valueString": "panel"}),
        json!({"resourceType": "Observation", "id": "o3", "subject": {"reference": "Patient/pb"},
               "code": loinc("72166-2"), "effectiveInstant": "2018-01-01T00:00:00Z",
               "valueCodeableConcept": snomed("266919005")}),
        json!({"resourceType": "Observation", "id": "o4", "subject": {"reference": "Patient/pb"},
               "code": loinc("2339-0"), "issued": "2018-02-02T00:00:00Z",
               "category": [{"coding": [{"code": "laboratory"}]}]}),
        json!({"resourceType": "Observation", "id": "o5", "subject": {"reference": "Patient/pc"},
               "code": loinc("9279-1"), "valueInteger": 16, "effectiveDateTime": "2016-01-01"}),
        json!({"resourceType": "Observation", "id": "o6", "subject": {"reference": "Patient/pc"},
               "code": loinc("X"), "valueString": "free text", "effectiveDateTime": "2016-01-01"}),
    ]);
    for (i, unit) in ["%", "mg/dL", "kg/m2", "kg", "cm", "/min", "Cel"]
        .iter()
        .enumerate()
    {
        v.push(json!({"resourceType": "Observation", "id": format!("q{i}"),
            "subject": {"reference": "Patient/pd"}, "code": loinc("4548-4"),
            "encounter": {"reference": "Encounter/e3"}, "effectiveDateTime": "2020-01-01",
            "valueQuantity": {"value": 5.5 + i as f64, "code": unit}}));
    }
    // Bad: dangling, unknown type, not R4, conflict within the batch.
    v.extend([
        json!({"resourceType": "Condition", "id": "bad1", "subject": {"reference": "Patient/nobody"}, "code": {}}),
        json!({"resourceType": "Banana", "id": "bad2"}),
        json!({"resourceType": "Observation", "id": "bad3", "subject": {"reference": "Patient/pa"}, "code": {}, "context": {}}),
        json!({"resourceType": "Patient", "id": "pe", "gender": "female"}),
    ]);
    v
}

/// A tiny vocabulary: one standard concept, one that maps to a standard one, one unmapped.
fn tiny_vocabulary(dir: &Path) -> medspace_vault::Vocabulary {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("CONCEPT.csv"),
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason\n\
         201826,Type 2 diabetes,Condition,SNOMED,Clinical Finding,S,44054006,1970-01-01,2099-12-31,\n\
         40316773,Prediabetes,Condition,SNOMED,Clinical Finding,,15777000,1970-01-01,2002-01-31,U\n\
         3004410,HbA1c,Measurement,LOINC,Lab Test,S,4548-4,1970-01-01,2099-12-31,\n\
         1503297,Metformin,Drug,RxNorm,Clinical Drug,,860975,1970-01-01,2099-12-31,\n\
         40213154,Influenza,Drug,CVX,CVX,S,140,1970-01-01,2099-12-31,\n\
         9999,Other,Drug,ATC,ATC,S,A10,1970-01-01,2099-12-31,\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("CONCEPT_RELATIONSHIP_maps_to.csv"),
        "concept_id_1,concept_id_2,relationship_id,valid_start_date,valid_end_date,invalid_reason\n\
         40316773,37018196,Maps to,1970-01-01,2099-12-31,\n\
         1503297,1503298,Maps to,1970-01-01,2099-12-31,\n\
         1503297,1,Subsumes,1970-01-01,2099-12-31,\n",
    )
    .unwrap();
    medspace_vault::Vocabulary::load(dir).unwrap()
}

/// Every file under `dir`, by relative path; zstd files decompressed.
/// The logical content of a vault's files: the plaintext of every sealed file (manifest, keys
/// check, indexes, original resources decompressed) and every CDM table's rows read through a
/// session, so the digest does not depend on the random nonces of encryption.
fn vault_digest(h: &mut sha2::Sha256, node: &Path) {
    use sha2::Digest;
    let key = vkey(node);
    let dir = node.join("vault");
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        let rel = f.strip_prefix(&dir).unwrap().to_string_lossy().to_string();
        if rel == "LOCK" || rel == "vault.key" || rel == "key.check" || rel.ends_with(".parquet") {
            continue;
        }
        let mut bytes = key.read_vault_file(node, &f).unwrap().to_vec();
        if rel.ends_with(".zst") {
            bytes = zstd_decode(&bytes);
        }
        h.update((rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    let ctx = open_session(node, &key).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for table in medspace_vault::TABLES {
        let batches = rt
            .block_on(medspace_vault::sql(
                &ctx,
                &format!("SELECT * FROM {table} ORDER BY 1, 2"),
            ))
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        h.update(table.as_bytes());
        h.update(text.as_bytes());
    }
}

fn tree_digest(h: &mut sha2::Sha256, dir: &Path) {
    use sha2::Digest;
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        let rel = f.strip_prefix(dir).unwrap().to_string_lossy().to_string();
        if rel == "LOCK" {
            continue;
        }
        let mut bytes = std::fs::read(&f).unwrap();
        if rel.ends_with(".zst") {
            bytes = zstd_decode(&bytes);
        }
        h.update((rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
}

fn zstd_decode(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    zstd::Decoder::new(bytes)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn report_text(r: &medspace_vault::IngestReport) -> String {
    let errors: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
    format!(
        "{} {:?} {:?} {errors:?}",
        r.summary_line(),
        r.stored_by_type,
        r.rows_by_table
    )
}

/// Everything an ingest writes (manifest, index, original resources, every Parquet file byte for
/// byte), the reports, both exports, the quality profile and the catalog description, for a
/// fixed key and fixed input: pinned so that a refactoring of the vault provably leaves its
/// output unchanged. A deliberate change of the output updates the constant. The ingest runs on
/// one thread and on three (readers and parsers): the output may not depend on it.
#[test]
fn ingest_output_is_pinned() {
    assert_eq!(ingest_digest(1), PINNED_INGEST, "vault output changed");
    assert_eq!(
        ingest_digest(3),
        PINNED_INGEST,
        "vault output changed with three threads"
    );
}

fn ingest_digest(threads: usize) -> String {
    use sha2::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    // A fixed pseudonym key, as the plain `secret.key` of earlier versions was.
    medspace_vault::VaultKey::create_with_pseudonym_key(
        &node,
        &medspace_vault::seal::Passphrase::new("test passphrase").unwrap(),
        medspace_vault::seal::KdfParams::INSECURE_FAST,
        [7u8; 32],
    )
    .unwrap();
    let vocab = std::sync::Arc::new(tiny_vocabulary(&tmp.path().join("vocab")));
    let opts = IngestOptions {
        vocabulary: Some(vocab),
        threads,
        ..IngestOptions::default()
    };
    let mut h = sha2::Sha256::new();
    let mut vault = Vault::open(&node, &vkey(&node)).unwrap();
    let first = vault
        .ingest_values("cases", mapping_cases(), &opts)
        .unwrap();
    h.update(report_text(&first).as_bytes());
    // A second batch: a Bundle file with references into the first batch, an updated
    // Organization, repeats, and generated patients.
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Organization", "id": "org", "name": "B"}},
        {"resource": {"resourceType": "Observation", "id": "later", "subject": {"reference": "Patient/pa"},
                      "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                      "valueQuantity": {"value": 6.0, "code": "%"}, "effectiveDateTime": "2021-01-01"}},
        {"resource": {"resourceType": "Patient", "id": "pa", "gender": "female"}},
        {"resource": {"resourceType": "Organization", "id": "org2", "name": "C"}},
        {"resource": {"resourceType": "Organization", "id": "org2", "name": "D"}}
    ]});
    let input = tmp.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("b.json"), bundle.to_string()).unwrap();
    let lines: String = synth(3, 12).iter().map(|r| r.to_string() + "\n").collect();
    std::fs::write(input.join("g.ndjson"), lines).unwrap();
    let second = vault.ingest_paths(&[input], &opts).unwrap();
    let text = report_text(&second);
    h.update(
        text.replace(&tmp.path().display().to_string(), "TMP")
            .as_bytes(),
    );
    vault_digest(&mut h, &node);
    for (pid, patient_id, pseudo) in vault.persons() {
        h.update(format!("{pid} {patient_id} {pseudo}\n").as_bytes());
        let b = export::export_patient(&vault, &patient_id).unwrap();
        h.update(serde_json::to_vec(&b).unwrap());
    }
    let nd = tmp.path().join("nd");
    export::export_ndjson(&vault, &nd).unwrap();
    tree_digest(&mut h, &nd);
    drop(vault);
    let as_of = parse_date("2025-01-01").unwrap();
    let q = quality::profile_node(&node, &vkey(&node), as_of).unwrap();
    h.update(q.render().as_bytes());
    let d = catalog::describe_node(&node, &vkey(&node), as_of).unwrap();
    h.update(serde_json::to_vec(&d).unwrap());
    hex::encode(h.finalize())
}

// Changed on purpose: once when the catalog's field levels came to come from the consortium's
// default classification (`medspace_types::classification`) instead of the vault's own table;
// once when a patient's export came to withhold what belongs to another person (in these
// cases, observations of `pd` point at an encounter of another patient); once for encryption
// at rest, when the digest of the vault's files became a digest of their
// logical content (sealed files' plaintext, the tables' rows) instead of raw bytes, which
// random nonces now make differ on every run. The plaintext of the manifest, indexes and
// resources is byte for byte what was hashed before; only the Parquet part is now hashed as
// rows rather than file bytes. Once for versions and deletes (issue #17, item 7): the manifest
// is format 2, each index line lists the CDM rows its version produced and the visit they
// refer to, a version superseded in its own batch is kept in the index as `old`, and the
// report's summary counts deletes. Once for the person's region: `person.location_id`, the
// `location` table (its rows, quality and catalog entry), and the generated patients' home
// addresses that fill it. Once for the `cost` table (ExplanationOfBenefit → cost): its (empty)
// rows, quality and catalog entry; these inputs hold no ExplanationOfBenefit.
const PINNED_INGEST: &str = "570a0ef52dc0c20603f69626ae6695af66766e70e6409d6dd8df42d6aa9040dd";

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
