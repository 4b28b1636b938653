//! Encryption at rest: no patient data readable in a vault's files, wrong passphrases and keys
//! refused without changing anything, re-wrapping and re-encryption, tampering detected as a
//! typed error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use medspace_vault::seal::{KdfParams, Passphrase};
use medspace_vault::{IngestOptions, Vault, VaultError, VaultKey, catalog, export, open_session};
use serde_json::json;

const NAME: &str = "Quintessa";
const BIRTH: &str = "1937-04-19";
const FHIR_ID: &str = "pat-zq-77813";

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s).unwrap()
}

/// A vault with one known patient (and a few generated ones), sealed under `passphrase`.
fn vault_with_known_patient(dir: &Path, passphrase: &str) -> (PathBuf, VaultKey) {
    let node = dir.join("node");
    let key = VaultKey::create(&node, &pass(passphrase), KdfParams::INSECURE_FAST).unwrap();
    let mut vault = Vault::open(&node, &key).unwrap();
    let mut resources = vec![
        json!({"resourceType": "Patient", "id": FHIR_ID, "gender": "female", "birthDate": BIRTH,
               "name": [{"family": NAME, "given": ["Zelda"]}]}),
        json!({"resourceType": "Condition", "id": "c-zq", "subject": {"reference": format!("Patient/{FHIR_ID}")},
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
               "onsetDateTime": BIRTH}),
    ];
    resources.extend(medspace_synth::hospital_resources(5, 0));
    resources.extend((0..3).flat_map(|i| medspace_synth::patient_resources(5, 0, i)));
    let r = vault
        .ingest_values("known", resources, &IngestOptions::default())
        .unwrap();
    assert!(
        r.committed && r.errors.is_empty(),
        "{} errors",
        r.errors.len()
    );
    (node, key)
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn no_patient_data_in_the_vaults_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, key) = vault_with_known_patient(tmp.path(), "s3cret");
    let needles = [NAME, BIRTH, FHIR_ID, "44054006", "Zelda"];
    let files = all_files(&node);
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "parquet"))
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for n in needles {
            assert!(!contains(&bytes, n), "{n} in plaintext in {}", f.display());
        }
        // Nor compressed: nothing in the vault is a readable zstd frame.
        assert!(
            zstd::decode_all(&bytes[..]).is_err() || bytes.is_empty(),
            "{}",
            f.display()
        );
    }
    // Control: the needles are really there, in the plaintext the vault gives its owner.
    let vault = Vault::open_read_only(&node, &key).unwrap();
    let bundle = serde_json::to_string(&export::export_patient(&vault, FHIR_ID).unwrap()).unwrap();
    for n in needles {
        assert!(bundle.contains(n), "{n} missing from the export");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ctx = open_session(&node, &key).unwrap();
    let rows = rt
        .block_on(medspace_vault::sql(
            &ctx,
            "SELECT COUNT(*) FROM condition_occurrence WHERE condition_source_value = '44054006'",
        ))
        .unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    assert!(
        !text.contains("| 0 "),
        "the encrypted tables read back: {text}"
    );
}

#[test]
fn wrong_passphrase_and_wrong_keys_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, _) = vault_with_known_patient(tmp.path(), "right");
    let before: Vec<(PathBuf, Vec<u8>)> = all_files(&node)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(&f).unwrap()))
        .collect();
    assert!(matches!(
        VaultKey::unlock(&node, &pass("wrong")),
        Err(VaultError::WrongPassphrase(_))
    ));
    // Keys of another vault: refused before anything is read or written.
    let (_, other) = vault_with_known_patient(&tmp.path().join("other"), "right");
    assert!(matches!(
        Vault::open(&node, &other),
        Err(VaultError::WrongKey(_))
    ));
    assert!(matches!(
        Vault::open_read_only(&node, &other),
        Err(VaultError::WrongKey(_))
    ));
    assert!(matches!(
        open_session(&node, &other),
        Err(VaultError::WrongKey(_))
    ));
    let after: Vec<(PathBuf, Vec<u8>)> = all_files(&node)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(&f).unwrap()))
        .collect();
    assert_eq!(before, after);
    // A node without a vault has no key to unlock.
    assert!(matches!(
        VaultKey::unlock(&tmp.path().join("none"), &pass("x")),
        Err(VaultError::NoKey(_))
    ));
}

#[test]
fn rewrap_changes_the_passphrase_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, key) = vault_with_known_patient(tmp.path(), "old");
    let hash = catalog::content_hash(&node, &key).unwrap();
    let data_before = std::fs::read(node.join("vault/manifest.json")).unwrap();
    assert!(matches!(
        VaultKey::rewrap(
            &node,
            &pass("not-old"),
            &pass("new"),
            KdfParams::INSECURE_FAST
        ),
        Err(VaultError::WrongPassphrase(_))
    ));
    VaultKey::rewrap(&node, &pass("old"), &pass("new"), KdfParams::INSECURE_FAST).unwrap();
    assert!(matches!(
        VaultKey::unlock(&node, &pass("old")),
        Err(VaultError::WrongPassphrase(_))
    ));
    let key2 = VaultKey::unlock(&node, &pass("new")).unwrap();
    assert_eq!(catalog::content_hash(&node, &key2).unwrap(), hash);
    assert_eq!(
        std::fs::read(node.join("vault/manifest.json")).unwrap(),
        data_before
    );
    let vault = Vault::open_read_only(&node, &key2).unwrap();
    assert!(export::export_patient(&vault, FHIR_ID).is_ok());
}

#[test]
fn reencryption_rewrites_every_file_under_a_new_data_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, key) = vault_with_known_patient(tmp.path(), "old");
    let hash = catalog::content_hash(&node, &key).unwrap();
    let persons = Vault::open_read_only(&node, &key).unwrap().persons();
    let before: Vec<(PathBuf, Vec<u8>)> = all_files(&node)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(&f).unwrap()))
        .collect();
    let new_key = Vault::reencrypt(&node, &key, &pass("new"), KdfParams::INSECURE_FAST).unwrap();
    // Every data file changed; the logical content and the pseudonyms did not.
    for (f, bytes) in &before {
        if f.file_name().is_some_and(|n| n == "LOCK") {
            continue;
        }
        assert_ne!(
            &std::fs::read(f).unwrap(),
            bytes,
            "{} unchanged",
            f.display()
        );
    }
    assert!(!tmp.path().join("node/vault.old").exists());
    assert_eq!(catalog::content_hash(&node, &new_key).unwrap(), hash);
    let unlocked = VaultKey::unlock(&node, &pass("new")).unwrap();
    let vault = Vault::open_read_only(&node, &unlocked).unwrap();
    assert_eq!(vault.persons(), persons);
    assert!(export::export_patient(&vault, FHIR_ID).is_ok());
    assert!(matches!(
        Vault::open_read_only(&node, &key),
        Err(VaultError::WrongKey(_))
    ));
    assert!(matches!(
        VaultKey::unlock(&node, &pass("old")),
        Err(VaultError::WrongPassphrase(_))
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ctx = open_session(&node, &unlocked).unwrap();
    assert!(
        rt.block_on(medspace_vault::sql(&ctx, "SELECT * FROM person"))
            .is_ok()
    );
    // A writer can still add to it.
    let mut w = Vault::open(&node, &unlocked).unwrap();
    let r = w
        .ingest_values(
            "more",
            medspace_synth::patient_resources(5, 0, 9),
            &IngestOptions::default(),
        )
        .unwrap();
    assert!(r.committed);
}

/// Flips one byte in the middle of `path`.
fn flip(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn segment_file(node: &Path, name: &str) -> PathBuf {
    node.join("vault/segments/seg-00000001").join(name)
}

#[test]
fn one_flipped_byte_is_detected_on_read() {
    let tmp = tempfile::tempdir().unwrap();
    // Original resources: the export fails with a typed error naming the file.
    let (node, key) = vault_with_known_patient(&tmp.path().join("a"), "p");
    flip(&segment_file(&node, "resources.ndjson.zst"));
    let vault = Vault::open_read_only(&node, &key).unwrap();
    match export::export_patient(&vault, FHIR_ID) {
        Err(VaultError::Tampered(p)) => assert!(p.ends_with("resources.ndjson.zst")),
        other => panic!("expected Tampered, got {other:?}"),
    }
    // The index: the vault does not open.
    let (node, key) = vault_with_known_patient(&tmp.path().join("b"), "p");
    flip(&segment_file(&node, "index.jsonl"));
    assert!(matches!(
        Vault::open_read_only(&node, &key),
        Err(VaultError::Tampered(_))
    ));
    // The manifest.
    let (node, key) = vault_with_known_patient(&tmp.path().join("c"), "p");
    flip(&node.join("vault/manifest.json"));
    assert!(matches!(
        Vault::open(&node, &key),
        Err(VaultError::Tampered(_))
    ));
    // The key file: refused as a wrong passphrase would be.
    let (node, _) = vault_with_known_patient(&tmp.path().join("d"), "p");
    let kf = node.join("vault/vault.key");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&kf).unwrap()).unwrap();
    let sealed = v["sealed"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if sealed.starts_with('0') { "1" } else { "0" },
        &sealed[1..]
    );
    v["sealed"] = json!(flipped);
    std::fs::write(&kf, v.to_string()).unwrap();
    assert!(matches!(
        VaultKey::unlock(&node, &pass("p")),
        Err(VaultError::WrongPassphrase(_))
    ));
    // A Parquet file: a flipped byte anywhere either fails the query or leaves its answer
    // exactly as it was (bytes no query reads, such as the page index, or the leading magic);
    // never a different answer. The data pages and the footer are authenticated.
    let (node, key) = vault_with_known_patient(&tmp.path().join("e"), "p");
    let f = segment_file(&node, "cdm/person.parquet");
    let orig = std::fs::read(&f).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let query = |node: &Path| {
        let ctx = open_session(node, &key).unwrap();
        rt.block_on(medspace_vault::sql(
            &ctx,
            "SELECT * FROM person ORDER BY person_id",
        ))
        .map(|b| {
            datafusion::arrow::util::pretty::pretty_format_batches(&b)
                .unwrap()
                .to_string()
        })
    };
    let good = query(&node).unwrap();
    let (mut refused, mut tried) = (0, 0);
    for i in (0..orig.len()).step_by(29) {
        let mut bytes = orig.clone();
        bytes[i] ^= 0x01;
        std::fs::write(&f, &bytes).unwrap();
        tried += 1;
        match query(&node) {
            Err(_) => refused += 1,
            Ok(t) => assert_eq!(t, good, "byte {i} changed the answer undetected"),
        }
    }
    assert!(
        refused * 2 > tried,
        "only {refused} of {tried} flips refused"
    );
    std::fs::write(&f, &orig).unwrap();
    // A file moved into another segment's place does not open there.
    let (node, key) = vault_with_known_patient(&tmp.path().join("f"), "p");
    let mut w = Vault::open(&node, &key).unwrap();
    w.ingest_values(
        "more",
        medspace_synth::patient_resources(5, 0, 7),
        &IngestOptions::default(),
    )
    .unwrap();
    drop(w);
    let second = node.join("vault/segments/seg-00000002/index.jsonl");
    std::fs::copy(segment_file(&node, "index.jsonl"), &second).unwrap();
    assert!(matches!(
        Vault::open_read_only(&node, &key),
        Err(VaultError::Tampered(_))
    ));
}

/// The rows of `sql` over the vault's encrypted tables, each as its values joined by `|`.
fn answers(node: &Path, key: &VaultKey, sql: &str) -> Vec<String> {
    use datafusion::arrow::util::display::array_value_to_string;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ctx = open_session(node, key).unwrap();
    let batches = rt.block_on(medspace_vault::sql(&ctx, sql)).unwrap();
    let mut out = Vec::new();
    for b in &batches {
        for row in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, row).unwrap())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

/// DataFusion over the encrypted Parquet answers what the input says (counted here from the
/// FHIR resources themselves, not through the vault), and gives the same answers after the
/// data key is rotated; the old key no longer opens the tables.
#[test]
fn encrypted_tables_answer_as_the_input_says_before_and_after_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let key = VaultKey::create(&node, &pass("p"), KdfParams::INSECURE_FAST).unwrap();
    let mut resources = medspace_synth::hospital_resources(11, 0);
    resources.extend((0..40).flat_map(|i| medspace_synth::patient_resources(11, 0, i)));
    // Expected, from the input: persons per (gender concept, birth year); conditions.
    let mut persons = std::collections::BTreeMap::<String, u64>::new();
    let mut conditions = 0u64;
    for r in &resources {
        match r["resourceType"].as_str() {
            Some("Patient") => {
                let gender = match r["gender"].as_str() {
                    Some("male") => 8507,
                    Some("female") => 8532,
                    _ => 0,
                };
                let year = r["birthDate"].as_str().map(|b| &b[..4]).unwrap_or("");
                *persons.entry(format!("{gender}|{year}")).or_default() += 1;
            }
            Some("Condition") => conditions += 1,
            _ => {}
        }
    }
    assert!(persons.values().sum::<u64>() == 40 && conditions > 0);
    let mut expected: Vec<String> = persons.iter().map(|(k, n)| format!("{k}|{n}")).collect();
    expected.sort();
    let mut vault = Vault::open(&node, &key).unwrap();
    let r = vault
        .ingest_values("synth", resources, &IngestOptions::default())
        .unwrap();
    assert!(r.committed && r.errors.is_empty());
    drop(vault);
    let by_sex_and_year = "SELECT gender_concept_id, year_of_birth, COUNT(*) FROM person \
                           GROUP BY gender_concept_id, year_of_birth";
    let count_conditions = "SELECT COUNT(*) FROM condition_occurrence";
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let before = sorted(answers(&node, &key, by_sex_and_year));
    assert_eq!(before, expected);
    assert_eq!(
        answers(&node, &key, count_conditions),
        vec![conditions.to_string()]
    );
    let new_key = Vault::reencrypt(&node, &key, &pass("p2"), KdfParams::INSECURE_FAST).unwrap();
    assert_eq!(sorted(answers(&node, &new_key, by_sex_and_year)), before);
    assert_eq!(
        answers(&node, &new_key, count_conditions),
        vec![conditions.to_string()]
    );
    assert!(matches!(
        open_session(&node, &key),
        Err(VaultError::WrongKey(_))
    ));
}

/// A job's cohort as a scratch table: encrypted on disk, gone when dropped, and a table left by
/// a process that died (a day old) removed by the next one written; a younger one stays.
#[test]
fn scratch_tables_are_sealed_dropped_and_swept_after_a_crash() {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    let tmp = tempfile::tempdir().unwrap();
    let (node, key) = vault_with_known_patient(tmp.path(), "scratch passphrase");
    let schema = Arc::new(Schema::new(vec![Field::new("who", DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(vec![FHIR_ID, NAME]))],
    )
    .unwrap();
    let scratch = node.join("vault/scratch");
    let files = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&scratch)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let first = medspace_vault::ScratchTable::write(&node, &key, "cohort", &batch).unwrap();
    let [table] = files().try_into().unwrap();
    let bytes = std::fs::read(&table).unwrap();
    for plain in [FHIR_ID, NAME] {
        assert!(
            !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{plain} in plain text"
        );
    }
    // As a crashed process leaves them: one table two days old, one an hour old.
    let old = scratch.join("cohort-00000000000000aa.parquet");
    let young = scratch.join("cohort-00000000000000bb.parquet");
    for (p, age) in [(&old, 48 * 3600), (&young, 3600)] {
        std::fs::copy(&table, p).unwrap();
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(age))
            .unwrap();
    }
    let second = medspace_vault::ScratchTable::write(&node, &key, "cohort", &batch).unwrap();
    let now = files();
    assert!(!now.contains(&old), "the day-old table is swept");
    assert!(
        now.contains(&young) && now.contains(&table),
        "younger tables stay"
    );
    assert_eq!(now.len(), 3);
    drop(first);
    drop(second);
    assert_eq!(files(), vec![young], "dropped tables are gone");
}
