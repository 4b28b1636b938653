//! An ingest committed in batches as it reads (`IngestOptions::commit_every`): it stores what
//! one atomic batch stores, never splits a Bundle file, and an interrupted one resumes after
//! its last commit, or starts over when its input changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use medspace_vault::error::VaultError;
use medspace_vault::{IngestOptions, IngestReport, TABLES, Vault, export, open_session};

use crate::common::vkey;

/// Bulk NDJSON of `patients` generated patients (one file per type) in `dir`; the number of
/// resources written.
fn ndjson(dir: &Path, patients: u64) -> u64 {
    let cfg = medspace_synth::SynthConfig {
        patients,
        seed: 11,
        hospital: 0,
    };
    medspace_synth::write_ndjson(cfg, dir, |_| {}).unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            text.lines().count() as u64
        })
        .sum()
}

fn ingest(node: &Path, input: &Path, opts: &IngestOptions) -> Result<IngestReport, VaultError> {
    let mut vault = Vault::open(node, &vkey(node)).unwrap();
    vault.ingest_paths(&[input.to_path_buf()], opts)
}

fn chunked(every: usize, threads: usize) -> IngestOptions {
    IngestOptions {
        commit_every: every,
        threads,
        ..IngestOptions::default()
    }
}

/// Rows per CDM table, read through a session.
fn table_rows(node: &Path) -> BTreeMap<&'static str, i64> {
    let ctx = open_session(node, &vkey(node)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    TABLES
        .iter()
        .map(|t| {
            let b = rt
                .block_on(medspace_vault::sql(
                    &ctx,
                    &format!("select count(*) from {t}"),
                ))
                .unwrap();
            (*t, b[0].column(0).as_primitive::<Int64Type>().value(0))
        })
        .collect()
}

/// The stored resources, exported as NDJSON: per file, its lines in sorted order (the order of
/// lines follows the segments, which differ between one batch and many).
fn stored(node: &Path) -> BTreeMap<String, Vec<String>> {
    let vault = Vault::open(node, &vkey(node)).unwrap();
    let out = tempfile::tempdir().unwrap();
    export::export_ndjson(&vault, out.path()).unwrap();
    std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let mut lines: Vec<String> = std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
            lines.sort();
            (p.file_name().unwrap().to_string_lossy().to_string(), lines)
        })
        .collect()
}

fn segments(node: &Path) -> usize {
    std::fs::read_dir(node.join("vault/segments"))
        .unwrap()
        .count()
}

#[test]
fn a_chunked_ingest_stores_what_one_batch_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    let total = ndjson(&input, 40);
    let whole = tmp.path().join("whole");
    let one = ingest(&whole, &input, &IngestOptions::default()).unwrap();
    assert_eq!((one.read, one.stored, one.commits), (total, total, 1));
    for threads in [1, 3] {
        let node = tmp.path().join(format!("chunked-{threads}"));
        let r = ingest(&node, &input, &chunked(400, threads)).unwrap();
        assert_eq!(r.read, total);
        assert_eq!(r.stored, total, "{:?}", r.errors.first());
        assert!(r.errors.is_empty());
        // Batches close at about 400 items (NDJSON files split at line boundaries).
        assert_eq!(r.commits, total.div_ceil(400), "{threads} threads");
        assert_eq!(segments(&node) as u64, r.commits);
        assert_eq!(r.stored_by_type, one.stored_by_type);
        assert_eq!(r.rows_by_table, one.rows_by_table);
        assert_eq!(table_rows(&node), table_rows(&whole));
        assert_eq!(stored(&node), stored(&whole));
    }
}

#[test]
fn files_are_read_in_dependency_order() {
    let mut files: Vec<PathBuf> = [
        "x/Observation.000.ndjson",
        "x/Claim.ndjson",
        "x/Encounter.ndjson",
        "x/Observation.001.ndjson",
        "x/notes.json",
        "x/Patient.ndjson",
        "x/Organization.ndjson",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    medspace_vault::ingest_order(&mut files);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "Organization.ndjson",
            "Patient.ndjson",
            "Encounter.ndjson",
            "Observation.000.ndjson",
            "Observation.001.ndjson",
            "Claim.ndjson",
            "notes.json"
        ]
    );
}

#[test]
fn an_interrupted_chunked_ingest_resumes_after_its_last_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    let total = ndjson(&input, 40);
    let reference = tmp.path().join("reference");
    ingest(&reference, &input, &chunked(400, 2)).unwrap();
    for threads in [1, 2] {
        let node = tmp.path().join(format!("node-{threads}"));
        // A crash once three batches committed (the fourth is half written).
        let crash = IngestOptions {
            fail_after_commits: Some(3),
            ..chunked(400, threads)
        };
        let err = ingest(&node, &input, &crash).unwrap_err();
        assert!(matches!(err, VaultError::InjectedFault(3)), "{err}");
        // Run again: the committed part is not read again, the rest is stored once.
        let r = ingest(&node, &input, &chunked(400, threads)).unwrap();
        assert_eq!(r.resumed, 1200, "{threads} threads");
        assert_eq!(r.read + r.resumed, total);
        assert_eq!((r.stored, r.unchanged), (total - 1200, 0));
        assert!(
            r.summary_line().ends_with(" resumed=1200"),
            "{}",
            r.summary_line()
        );
        assert_eq!(table_rows(&node), table_rows(&reference));
        assert_eq!(stored(&node), stored(&reference));
        // Ended: the same ingest again starts from the beginning, and finds nothing new.
        let again = ingest(&node, &input, &chunked(400, threads)).unwrap();
        assert_eq!((again.resumed, again.read), (0, total));
        assert_eq!(
            (again.unchanged, again.stored, again.commits),
            (total, 0, 0)
        );
        assert_eq!(table_rows(&node), table_rows(&reference));
    }
}

#[test]
fn a_changed_input_starts_over() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    let total = ndjson(&input, 20);
    let node = tmp.path().join("node");
    let crash = IngestOptions {
        fail_after_commits: Some(2),
        ..chunked(300, 1)
    };
    ingest(&node, &input, &crash).unwrap_err();
    // A file of the input changed since: its cursor means nothing any more.
    let patients = input.join("Patient.ndjson");
    let mut text = std::fs::read_to_string(&patients).unwrap();
    text.push('\n');
    std::fs::write(&patients, text).unwrap();
    let r = ingest(&node, &input, &chunked(300, 1)).unwrap();
    assert_eq!((r.resumed, r.read), (0, total));
    assert_eq!(
        r.unchanged, 600,
        "what the first run committed reads as unchanged"
    );
    assert_eq!(r.stored, total - 600);
}

#[test]
fn a_bundle_file_is_never_split() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("bundles");
    std::fs::create_dir_all(&input).unwrap();
    let mut entries = 0;
    for i in 0..3 {
        let b = medspace_synth::patient_bundle(5, 0, i);
        entries += b["entry"].as_array().unwrap().len() as u64;
        std::fs::write(input.join(format!("p{i}.json")), b.to_string()).unwrap();
    }
    let node = tmp.path().join("node");
    // Far fewer items per batch than a Bundle holds: one batch per file.
    let r = ingest(&node, &input, &chunked(5, 2)).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors.first());
    assert_eq!((r.read, r.commits), (entries, 3));
    let whole = tmp.path().join("whole");
    ingest(&whole, &input, &IngestOptions::default()).unwrap();
    assert_eq!(table_rows(&node), table_rows(&whole));
    assert_eq!(stored(&node), stored(&whole));
}

#[test]
fn refusing_bad_input_keeps_the_input_one_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    ndjson(&input, 10);
    let bad = input.join("Observation.ndjson");
    let mut text = std::fs::read_to_string(&bad).unwrap();
    text.push_str("{\"resourceType\": \n");
    std::fs::write(&bad, text).unwrap();
    let node = tmp.path().join("node");
    let refuse = IngestOptions {
        on_error: medspace_vault::OnError::Refuse,
        ..chunked(50, 2)
    };
    let r = ingest(&node, &input, &refuse).unwrap();
    assert!(!r.committed);
    assert_eq!(r.commits, 0);
    assert_eq!(
        segments(&node),
        0,
        "nothing was committed, not even a first batch"
    );
}

#[test]
fn batches_that_commit_nothing_never_lead_to_a_name_used_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    let total = ndjson(&input, 20);
    let patients = tmp.path().join("patients");
    std::fs::create_dir_all(&patients).unwrap();
    for f in ["Organization", "Practitioner", "Patient"] {
        let name = format!("{f}.ndjson");
        std::fs::copy(input.join(&name), patients.join(&name)).unwrap();
    }
    let node = tmp.path().join("node");
    let first = ingest(&node, &patients, &IngestOptions::default()).unwrap();
    assert_eq!(first.commits, 1);
    // The organizations, practitioners and patients come first, all already stored: their
    // small batches commit nothing, and the batches named after them commit.
    let r = ingest(&node, &input, &chunked(7, 2)).unwrap();
    assert_eq!(r.unchanged, first.stored);
    assert_eq!(r.stored, total - first.stored);
    let before = table_rows(&node);
    // Another ingest after it must not take the name of a committed segment.
    let other = tmp.path().join("other");
    let cfg = medspace_synth::SynthConfig {
        patients: 5,
        seed: 12,
        hospital: 1,
    };
    medspace_synth::write_ndjson(cfg, &other, |_| {}).unwrap();
    let third = ingest(&node, &other, &IngestOptions::default()).unwrap();
    assert!(third.committed);
    let after = table_rows(&node);
    assert_eq!(after["person"], before["person"] + 5);
    assert_eq!(
        after["measurement"],
        before["measurement"] + third.rows_by_table["measurement"] as i64
    );
    let vault = Vault::open(&node, &vkey(&node)).unwrap();
    assert_eq!(vault.ingests().len(), segments(&node));
    assert_eq!(vault.resource_count() as u64, total + third.stored);
}
