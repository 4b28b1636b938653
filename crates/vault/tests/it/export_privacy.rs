//! A patient's export carries only that patient's resources: links to another patient, a
//! coverage whose subscriber is someone else, another patient's related persons and anything in
//! their compartment, a third patient named as a performer stay home, and the references to
//! them keep no id or name.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_vault::{IngestOptions, Vault, export};
use serde_json::{Value, json};

/// Two patients of one family: Ann holds a coverage her husband Bob subscribes, her Patient
/// links to his, her encounter names his related person as a participant, and both were seen
/// by the same practitioner.
fn family() -> Vec<Value> {
    vec![
        json!({"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Careful"}]}),
        json!({"resourceType": "Organization", "id": "payer", "name": "Payer Mutual"}),
        json!({
            "resourceType": "Patient", "id": "ann", "birthDate": "1961-02-03",
            "name": [{"family": "Annfamily", "given": ["Annette"]}],
            "link": [{"other": {"reference": "Patient/bob", "display": "Robert Bobfamily"}, "type": "seealso"}],
            "generalPractitioner": [{"reference": "Practitioner/doc"}]
        }),
        json!({
            "resourceType": "Patient", "id": "bob", "birthDate": "1958-07-09",
            "name": [{"family": "Bobfamily", "given": ["Robert"]}],
            "address": [{"line": ["12 Secret Lane"]}]
        }),
        json!({"resourceType": "Patient", "id": "carol", "name": [{"family": "Carolfamily"}]}),
        json!({
            "resourceType": "RelatedPerson", "id": "bobs-sister",
            "patient": {"reference": "Patient/bob"},
            "name": [{"family": "Sisterfamily", "given": ["Carla"]}]
        }),
        json!({
            "resourceType": "Coverage", "id": "cov", "status": "active",
            "beneficiary": {"reference": "Patient/ann"},
            "subscriber": {"reference": "Patient/bob", "display": "Robert Bobfamily"},
            "payor": [{"reference": "Organization/payer"}]
        }),
        json!({
            "resourceType": "Encounter", "id": "enc-ann", "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/ann"},
            "participant": [
                {"individual": {"reference": "Practitioner/doc"}},
                {"individual": {"reference": "RelatedPerson/bobs-sister"}}
            ],
            "partOf": {"reference": "Encounter/enc-bob"}
        }),
        json!({
            "resourceType": "Encounter", "id": "enc-bob", "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/bob"},
            "reasonCode": [{"text": "Bob's private reason"}]
        }),
        json!({
            "resourceType": "Observation", "id": "obs-ann", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "weight"},
            "effectiveDateTime": "2020-01-01T00:00:00Z",
            "valueQuantity": {"value": 70, "unit": "kg"},
            "subject": {"reference": "Patient/ann"},
            "performer": [{"reference": "Patient/carol"}]
        }),
    ]
}

#[test]
fn an_export_carries_only_the_patients_own_resources() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let key = medspace_vault::VaultKey::create(
        &node,
        &medspace_vault::seal::Passphrase::new("test passphrase").unwrap(),
        medspace_vault::seal::KdfParams::INSECURE_FAST,
    )
    .unwrap();
    let mut vault = Vault::open(&node, &key).unwrap();
    let n = family().len() as u64;
    let report = vault
        .ingest_values("family", family(), &IngestOptions::default())
        .unwrap();
    assert_eq!(
        (report.stored, report.skipped),
        (n, 0),
        "{:?}",
        report.errors
    );
    let bundle = export::export_patient(&vault, "ann").unwrap();
    let text = bundle.to_string();
    let entries = bundle["entry"].as_array().unwrap();
    let mut keys: Vec<String> = entries
        .iter()
        .map(|e| {
            let r = &e["resource"];
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            )
        })
        .collect();
    keys.sort();
    // Hers and the shared ones, nothing of Bob's.
    assert_eq!(
        keys,
        [
            "Coverage/cov",
            "Encounter/enc-ann",
            "Observation/obs-ann",
            "Organization/payer",
            "Patient/ann",
            "Practitioner/doc"
        ]
    );
    for other in [
        "bob",
        "Bobfamily",
        "Robert",
        "1958-07-09",
        "Secret Lane",
        "Sisterfamily",
        "Carla",
        "private reason",
        "carol",
        "Carolfamily",
    ] {
        assert!(!text.contains(other), "{other} left in Ann's export");
    }
    // The references to Bob's resources remain as a bare "withheld".
    assert_eq!(text.matches(export::WITHHELD).count(), 5, "{text}");
    // Her own data is all there.
    for hers in ["Annfamily", "1961-02-03", "Payer Mutual", "Careful"] {
        assert!(text.contains(hers), "{hers} missing");
    }

    // Bob's export holds his sister (in his compartment), and nothing of Ann's.
    let bob = export::export_patient(&vault, "bob").unwrap().to_string();
    assert!(bob.contains("Sisterfamily") && bob.contains("private reason"));
    for other in ["Annfamily", "1961-02-03", "enc-ann", "obs-ann", "\"cov\""] {
        assert!(!bob.contains(other), "{other} left in Bob's export");
    }
}
