//! The person's region (OMOP `location`): a Patient with an address gives one location row,
//! keyed by the person's id, with the city, the state, the county and only the first three
//! characters of the postal code — never a street line or the full postal code, in any table.
//! A new version of the Patient replaces its row; deleting the Patient removes it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use crate::common;

use std::path::Path;

use common::vkey;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use medspace_vault::{IngestOptions, IngestReport, Vault, open_session};
use serde_json::{Value, json};

fn batches(node: &Path, sql: &str) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
    let ctx = open_session(node, &vkey(node)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(medspace_vault::sql(&ctx, sql)).unwrap()
}

fn count(node: &Path, sql: &str) -> i64 {
    batches(node, sql)[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0)
}

/// The location rows as `(location_id, city, state, zip, county)` text, ordered.
fn locations(node: &Path) -> Vec<(i64, String, String, String, String)> {
    let mut out = Vec::new();
    for b in batches(
        node,
        "select location_id, city, state, zip, county from location order by 1",
    ) {
        let text = |c: usize, i: usize| {
            let a = b.column(c).as_string::<i32>();
            if a.is_null(i) {
                "NULL".to_string()
            } else {
                a.value(i).to_string()
            }
        };
        for i in 0..b.num_rows() {
            out.push((
                b.column(0).as_primitive::<Int64Type>().value(i),
                text(1, i),
                text(2, i),
                text(3, i),
                text(4, i),
            ));
        }
    }
    out
}

/// `person.location_id` of every person, by person_id.
fn person_locations(node: &Path) -> Vec<(i64, Option<i64>)> {
    let mut out = Vec::new();
    for b in batches(node, "select person_id, location_id from person order by 1") {
        let loc = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((
                b.column(0).as_primitive::<Int64Type>().value(i),
                (!loc.is_null(i)).then(|| loc.value(i)),
            ));
        }
    }
    out
}

/// Every string cell of every CDM table.
fn every_string(node: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for table in medspace_vault::TABLES {
        for b in batches(node, &format!("select * from {table}")) {
            for col in b.columns() {
                if let Some(s) = col.as_string_opt::<i32>() {
                    out.extend(s.iter().flatten().map(str::to_string));
                }
            }
        }
    }
    out
}

fn ingest(node: &Path, values: Vec<Value>, opts: &IngestOptions) -> IngestReport {
    let mut vault = Vault::open(node, &vkey(node)).unwrap();
    let r = vault.ingest_values("test", values, opts).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r
}

fn feed() -> IngestOptions {
    IngestOptions {
        updates: true,
        ..IngestOptions::default()
    }
}

/// A Patient as Synthea writes it (identifiers, telecom, a geolocated home address with a
/// street line and a full postal code, a birthplace).
fn synthea_patient(id: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
             "valueAddress": {"city": "San Juan", "state": "Puerto Rico", "country": "PR"}}
        ],
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-95-6102"}],
        "name": [{"use": "official", "family": "Escobar", "given": ["Mayte"], "prefix": ["Mrs."]}],
        "telecom": [{"system": "phone", "value": "555-609-6292", "use": "home"}],
        "gender": "female",
        "birthDate": "1965-09-12",
        "address": [{
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/geolocation", "extension": [
                {"url": "latitude", "valueDecimal": 42.269478},
                {"url": "longitude", "valueDecimal": -71.807783}]}],
            "line": ["141 Schinner Gate Unit 24"],
            "city": "Worcester",
            "state": "Massachusetts",
            "postalCode": "01545",
            "country": "US"
        }],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]}
    })
}

fn moved(mut p: Value, line: &str, city: &str, postal: &str, district: Option<&str>) -> Value {
    let mut a =
        json!({"use": "home", "line": [line], "city": city, "state": "MA", "postalCode": postal});
    if let Some(d) = district {
        a["district"] = json!(d);
    }
    p["address"] = json!([a]);
    p
}

#[test]
fn a_synthea_patient_gets_a_region_and_nothing_more_precise() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    ingest(
        &node,
        vec![
            synthea_patient("p1"),
            json!({"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1990-01-01"}),
        ],
        &IngestOptions::default(),
    );
    let vault = Vault::open_read_only(&node, &vkey(&node)).unwrap();
    let p1 = vault.person_id_for_patient_id("p1").unwrap();
    let p2 = vault.person_id_for_patient_id("p2").unwrap();
    drop(vault);
    assert_eq!(
        locations(&node),
        [(
            p1,
            "Worcester".into(),
            "MA".into(),
            "015".into(),
            "NULL".into()
        )]
    );
    // The person refers to it; a Patient without an address has no location.
    let mut want = vec![(p1, Some(p1)), (p2, None)];
    want.sort();
    assert_eq!(person_locations(&node), want);
    assert_eq!(
        count(
            &node,
            "select count(*) from person p join location l on p.location_id = l.location_id"
        ),
        1
    );
    // No street line, full postal code, geolocation or birthplace in any table.
    let strings = every_string(&node);
    assert!(strings.iter().any(|s| s == "015"));
    for s in &strings {
        for banned in [
            "Schinner",
            "01545",
            "42.26",
            "San Juan",
            "Puerto Rico",
            "US",
        ] {
            assert!(!s.contains(banned), "{s:?} holds {banned:?}");
        }
    }
    // Every zip is three characters.
    assert_eq!(
        count(
            &node,
            "select count(*) from location where length(zip) <> 3"
        ),
        0
    );
}

#[test]
fn a_new_version_replaces_the_location_and_a_delete_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    ingest(
        &node,
        vec![synthea_patient("p1"), synthea_patient("p2")],
        &IngestOptions::default(),
    );
    let vault = Vault::open_read_only(&node, &vkey(&node)).unwrap();
    let (p1, p2) = (
        vault.person_id_for_patient_id("p1").unwrap(),
        vault.person_id_for_patient_id("p2").unwrap(),
    );
    drop(vault);
    assert_eq!(locations(&node).len(), 2);
    // p1 moves to Boston: its row is replaced, p2's stays.
    let r = ingest(
        &node,
        vec![moved(
            synthea_patient("p1"),
            "1 Beacon Street",
            "Boston",
            "02108-1234",
            Some("Suffolk County"),
        )],
        &feed(),
    );
    assert_eq!(r.updated, 1);
    assert_eq!(r.rows_retracted_by_table.get("location"), Some(&1));
    let mut want = vec![
        (
            p1,
            "Boston".to_string(),
            "MA".to_string(),
            "021".to_string(),
            "Suffolk County".to_string(),
        ),
        (
            p2,
            "Worcester".into(),
            "MA".into(),
            "015".into(),
            "NULL".into(),
        ),
    ];
    want.sort();
    assert_eq!(locations(&node), want);
    assert!(
        every_string(&node)
            .iter()
            .all(|s| !s.contains("Beacon") && !s.contains("02108"))
    );
    // A version without an address: no location, the person's location_id null.
    let mut gone = synthea_patient("p1");
    gone.as_object_mut().unwrap().remove("address");
    ingest(&node, vec![gone.clone()], &feed());
    assert_eq!(locations(&node).len(), 1);
    assert!(person_locations(&node).contains(&(p1, None)));
    // And back again.
    ingest(&node, vec![synthea_patient("p1")], &feed());
    assert_eq!(locations(&node).len(), 2);
    assert!(person_locations(&node).contains(&(p1, Some(p1))));
    // Deleting the Patient removes its location row with its person row.
    let r = ingest(
        &node,
        vec![
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": "Patient/p2"}}]}),
        ],
        &IngestOptions::default(),
    );
    assert_eq!(r.deleted, 1);
    assert_eq!(r.rows_retracted_by_table.get("location"), Some(&1));
    assert_eq!(
        locations(&node).iter().map(|l| l.0).collect::<Vec<_>>(),
        [p1]
    );
    assert_eq!(count(&node, "select count(*) from person"), 1);
    // The quality profile and the catalog list the table.
    let as_of = medspace_vault::fhir::parse_date("2025-01-01").unwrap();
    let d = medspace_vault::catalog::describe_node(&node, &vkey(&node), as_of).unwrap();
    let loc = d.tables.iter().find(|t| t.name == "location").unwrap();
    assert_eq!(loc.row_count, 1);
    use medspace_vault::catalog::PrivacyLevel::{L2, L3};
    let levels: Vec<_> = loc
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.privacy_level))
        .collect();
    assert_eq!(
        levels,
        [
            ("location_id", L2),
            ("city", L3),
            ("state", L2),
            ("zip", L3),
            ("county", L3)
        ]
    );
    let q = d
        .quality
        .tables
        .iter()
        .find(|t| t.table == "location")
        .unwrap();
    assert_eq!((q.rows, q.duplicates), (1, 0));
}

#[test]
fn generated_patients_live_in_their_region() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let cfg = medspace_synth::SynthConfig {
        patients: 30,
        seed: 5,
        hospital: 1,
    };
    // With the surveillance scenario's cases, which ingest cleanly too.
    let scenarios = medspace_synth::Scenarios {
        safety: None,
        outbreak: Some(medspace_synth::OutbreakScenario::example()),
    };
    let generated = medspace_synth::generate_with(cfg, &scenarios);
    let cases = generated
        .iter()
        .filter(|r| r["resourceType"] == "Condition")
        .filter(|r| {
            let code = r["code"]["coding"][0]["code"].as_str().unwrap();
            [
                medspace_synth::ILI_SNOMED,
                medspace_synth::AGI_SNOMED,
                medspace_synth::RASH_SNOMED,
                medspace_synth::SARI_SNOMED,
            ]
            .contains(&code)
        })
        .count() as i64;
    assert!(cases > 0);
    let refuse = IngestOptions {
        on_error: medspace_vault::OnError::Refuse,
        ..IngestOptions::default()
    };
    ingest(&node, generated, &refuse);
    assert_eq!(
        count(
            &node,
            "select count(*) from condition_occurrence c join visit_occurrence v on c.visit_occurrence_id = v.visit_occurrence_id \
             where c.condition_source_value in ('386661006', '267060006', '271807003', '233604007') \
             and c.condition_start_date = v.visit_start_date and c.person_id = v.person_id"
        ),
        cases
    );
    let vault = Vault::open_read_only(&node, &vkey(&node)).unwrap();
    let mut want = Vec::new();
    for i in 0..30 {
        let p = &medspace_synth::patient_resources(5, 1, i)[0];
        let pid = vault
            .person_id_for_patient_id(p["id"].as_str().unwrap())
            .unwrap();
        let zip = medspace_synth::region_zip3(medspace_synth::region_of(5, 1, i));
        want.push((pid, zip));
    }
    drop(vault);
    want.sort();
    let got: Vec<(i64, String)> = locations(&node)
        .into_iter()
        .map(|(id, city, state, zip, county)| {
            assert!(city != "NULL" && state == "MA" && county == "NULL");
            (id, zip)
        })
        .collect();
    assert_eq!(got, want);
}
