//! Each kind of bad input is reported with file, position and reason; `skip` stores the rest,
//! `refuse` stores nothing; the vault is never left changed by a refused batch.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::path::{Path, PathBuf};

use medspace_vault::fhir::{BadReason, Position};
use medspace_vault::{IngestOptions, OnError, Vault};
use serde_json::json;

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn good_lines() -> String {
    [
        json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-05-01"}),
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}, "onsetDateTime": "2020-01-01"}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect()
}

fn skip() -> IngestOptions {
    IngestOptions {
        on_error: OnError::Skip,
        ..IngestOptions::default()
    }
}

fn refuse() -> IngestOptions {
    IngestOptions {
        on_error: OnError::Refuse,
        ..IngestOptions::default()
    }
}

/// Ingests `good + bad_line` as NDJSON in skip mode, returns the single error.
fn one_bad_line(bad_line: &str) -> (medspace_vault::IngestReport, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let content = format!("{}{}\n", good_lines(), bad_line);
    let file = write(tmp.path(), "in.ndjson", &content);
    let mut vault = Vault::open(&tmp.path().join("node"), &vkey(&tmp.path().join("node"))).unwrap();
    let report = vault
        .ingest_paths(std::slice::from_ref(&file), &skip())
        .unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].file, file);
    assert_eq!(report.errors[0].position, Position::Line(3));
    assert_eq!((report.read, report.stored, report.skipped), (3, 2, 1));
    let n = vault.resource_count();
    (report, n)
}

#[test]
fn malformed_resource_is_skipped() {
    let (r, n) = one_bad_line(
        r#"{"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p1"}}"#,
    );
    assert!(matches!(&r.errors[0].reason, BadReason::Malformed(m) if m.contains("code")));
    assert_eq!(n, 2);
    let (r, _) =
        one_bad_line(r#"{"resourceType": "Patient", "id": "p2", "birthDate": "1980-02-30"}"#);
    assert!(matches!(&r.errors[0].reason, BadReason::Malformed(m) if m.contains("birthDate")));
    let (r, _) = one_bad_line(r#"{"resourceType": "Patient", "id": "p 2"}"#);
    assert!(matches!(&r.errors[0].reason, BadReason::Malformed(m) if m.contains("id")));
    let (r, _) = one_bad_line(r#"{"resourceType": "Patient", "id": "p2", "gender": }"#);
    assert!(matches!(&r.errors[0].reason, BadReason::Malformed(m) if m.contains("invalid json")));
}

#[test]
fn unknown_resource_type_is_skipped() {
    let (r, _) = one_bad_line(r#"{"resourceType": "Banana", "id": "b1"}"#);
    assert_eq!(
        r.errors[0].reason,
        BadReason::UnknownResourceType("Banana".into())
    );
}

#[test]
fn non_r4_resource_is_skipped() {
    let (r, _) = one_bad_line(
        r#"{"resourceType": "ProcedureRequest", "id": "x1", "subject": {"reference": "Patient/p1"}}"#,
    );
    assert!(matches!(r.errors[0].reason, BadReason::NotR4(_)));
    let (r, _) = one_bad_line(
        r#"{"resourceType": "CapabilityStatement", "id": "cs", "fhirVersion": "5.0.0"}"#,
    );
    assert!(matches!(r.errors[0].reason, BadReason::NotR4(_)));
    let (r, _) = one_bad_line(
        r#"{"resourceType": "MedicationRequest", "id": "m1", "subject": {"reference": "Patient/p1"}, "medication": {"concept": {"text": "x"}}}"#,
    );
    assert!(matches!(r.errors[0].reason, BadReason::NotR4(_)));
}

#[test]
fn dangling_reference_is_skipped_and_cascades() {
    let (r, _) = one_bad_line(
        r#"{"resourceType": "Condition", "id": "c9", "subject": {"reference": "Patient/nobody"}, "code": {"coding": []}}"#,
    );
    assert_eq!(
        r.errors[0].reason,
        BadReason::DanglingReference("subject".into())
    );
    // A skipped Patient makes the resources that point to it dangle too.
    let tmp = tempfile::tempdir().unwrap();
    let lines = [
        json!({"resourceType": "Patient", "id": "p1", "birthDate": "1980-13-01"}),
        json!({"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p1"}}),
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"}, "code": {}}),
    ];
    let content: String = lines.iter().map(|v| v.to_string() + "\n").collect();
    let file = write(tmp.path(), "x.ndjson", &content);
    let mut vault = Vault::open(&tmp.path().join("node"), &vkey(&tmp.path().join("node"))).unwrap();
    let r = vault.ingest_paths(&[file], &skip()).unwrap();
    assert_eq!((r.read, r.stored, r.skipped), (3, 0, 3));
    assert!(!r.committed);
    assert_eq!(vault.resource_count(), 0);
}

#[test]
fn truncated_file_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"fullUrl": "urn:uuid:p2", "resource": {"resourceType": "Patient", "id": "p2"}},
    ]})
    .to_string();
    let cut = &bundle[..bundle.len() - 30];
    let file = write(tmp.path(), "cut.json", cut);
    let mut vault = Vault::open(&tmp.path().join("node"), &vkey(&tmp.path().join("node"))).unwrap();
    let r = vault
        .ingest_paths(std::slice::from_ref(&file), &refuse())
        .unwrap();
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].reason, BadReason::Truncated);
    assert_eq!(r.errors[0].file, file);
    assert!(matches!(r.errors[0].position, Position::At(1, _)));
    assert!(!r.committed);
    assert_eq!(vault.resource_count(), 0);
    // Truncated NDJSON: the last line is cut.
    let content = format!(
        "{}{}",
        good_lines(),
        r#"{"resourceType": "Patient", "id": "#
    );
    let file = write(tmp.path(), "cut.ndjson", &content);
    let r = vault.ingest_paths(&[file], &skip()).unwrap();
    assert_eq!(r.errors[0].reason, BadReason::Truncated);
    assert_eq!(r.errors[0].position, Position::Line(3));
    assert_eq!(r.stored, 2);
}

#[test]
fn empty_file_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write(tmp.path(), "empty.json", "");
    let b = write(tmp.path(), "blank.ndjson", "\n\n  \n");
    let c = write(
        tmp.path(),
        "nobundle.json",
        r#"{"resourceType": "Bundle", "type": "transaction", "entry": []}"#,
    );
    let mut vault = Vault::open(&tmp.path().join("node"), &vkey(&tmp.path().join("node"))).unwrap();
    let r = vault
        .ingest_paths(&[a.clone(), b.clone(), c.clone()], &skip())
        .unwrap();
    let files: Vec<_> = r
        .errors
        .iter()
        .map(|e| (e.file.clone(), e.reason.clone(), e.position))
        .collect();
    assert_eq!(
        files,
        vec![
            (a, BadReason::EmptyFile, Position::File),
            (b, BadReason::EmptyFile, Position::File),
            (c, BadReason::EmptyFile, Position::File)
        ]
    );
}

#[test]
fn refuse_mode_stores_nothing_and_keeps_the_vault() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let good = write(tmp.path(), "good.ndjson", &good_lines());
    let mut vault = Vault::open(&node, &vkey(&node)).unwrap();
    assert!(vault.ingest_paths(&[good], &refuse()).unwrap().committed);
    let manifest_before = std::fs::read(node.join("vault/manifest.json")).unwrap();
    let more = [
        json!({"resourceType": "Patient", "id": "p7"}),
        json!({"resourceType": "Banana", "id": "b"}),
    ];
    let content: String = more.iter().map(|v| v.to_string() + "\n").collect();
    let bad = write(tmp.path(), "bad.ndjson", &content);
    let r = vault
        .ingest_paths(std::slice::from_ref(&bad), &refuse())
        .unwrap();
    assert_eq!((r.read, r.stored, r.refused, r.committed), (2, 0, 2, false));
    assert_eq!(vault.resource_count(), 2);
    assert_eq!(
        std::fs::read(node.join("vault/manifest.json")).unwrap(),
        manifest_before
    );
    assert_eq!(
        std::fs::read_dir(node.join("vault/segments"))
            .unwrap()
            .count(),
        1
    );
    // The same batch with skip stores the good one.
    let r = vault.ingest_paths(&[bad], &skip()).unwrap();
    assert_eq!((r.stored, r.skipped), (1, 1));
}

#[test]
fn changed_clinical_resource_is_a_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let mut vault = Vault::open(&node, &vkey(&node)).unwrap();
    let a = write(tmp.path(), "a.ndjson", &good_lines());
    vault.ingest_paths(&[a], &skip()).unwrap();
    let changed =
        json!({"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1980-05-01"})
            .to_string();
    let b = write(tmp.path(), "b.ndjson", &changed);
    let r = vault.ingest_paths(&[b], &skip()).unwrap();
    assert_eq!(r.errors[0].reason, BadReason::Conflict);
    assert_eq!(r.stored, 0);
    // Reference data may change: a new Organization version replaces the old one.
    let o1 = write(
        tmp.path(),
        "o1.ndjson",
        &json!({"resourceType": "Organization", "id": "o", "name": "A"}).to_string(),
    );
    let o2 = write(
        tmp.path(),
        "o2.ndjson",
        &json!({"resourceType": "Organization", "id": "o", "name": "B"}).to_string(),
    );
    assert_eq!(vault.ingest_paths(&[o1], &skip()).unwrap().stored, 1);
    let r = vault.ingest_paths(&[o2], &skip()).unwrap();
    assert_eq!((r.stored, r.updated), (0, 1));
    let got = vault
        .load_resources(&["Organization/o".to_string()])
        .unwrap();
    assert_eq!(got[0].1["name"], "B");
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
