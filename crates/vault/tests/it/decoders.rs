//! Fuzzing of every decoder of external input: arbitrary bytes, arbitrary FHIR-shaped JSON and
//! mutations of valid input, fed to the FHIR file reader, to ingest from files, folders and
//! memory, to the field parsers, to the vocabulary loader and to the patient lookups.
//!
//! What must hold: nothing panics; every input ends in a typed error or in an ingest report that
//! counts each bad item (with file, position and reason); a batch that commits nothing leaves
//! the vault exactly as it was; what is committed reads back; and no error message repeats a
//! value of the input (patient data).
//!
//! Cases per property: `PROPTEST_CASES` (default 48, a few seconds in all).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medspace_vault::error::VaultError;
use medspace_vault::fhir::{self, BadReason, Item, Position};
use medspace_vault::vocab::{CodeSystem, code_is_valid};
use medspace_vault::{IngestOptions, IngestReport, OnError, Vault, Vocabulary, export};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};

/// A value no error message may repeat.
const SECRET: &str = "Zq7-private-value";

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Vaults and what "unchanged" means.

/// A vault in `dir/node` with a fixed passphrase (the cheapest argon2id parameters).
fn vault_in(dir: &Path) -> (PathBuf, Vault) {
    let node = dir.join("node");
    let vault = Vault::open(&node, &vkey(&node)).unwrap();
    (node, vault)
}

/// The committed state as seen on disk and in memory.
#[derive(Debug, PartialEq, Eq)]
struct State {
    manifest: Option<Vec<u8>>,
    segments: Vec<String>,
    resources: usize,
    by_type: BTreeMap<String, u64>,
}

fn state(node: &Path, vault: &Vault) -> State {
    let mut segments: Vec<String> = std::fs::read_dir(node.join("vault/segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    segments.sort();
    State {
        manifest: std::fs::read(node.join("vault/manifest.json")).ok(),
        segments,
        resources: vault.resource_count(),
        by_type: vault.counts_by_type(),
    }
}

fn opts(mode: OnError) -> IngestOptions {
    IngestOptions {
        on_error: mode,
        ..IngestOptions::default()
    }
}

fn mode() -> impl Strategy<Value = OnError> {
    prop_oneof![Just(OnError::Skip), Just(OnError::Refuse)]
}

/// The checks every ingest must pass. `fresh`: the vault was empty before (then the report's
/// counts add up exactly).
fn check_ingest(
    node: &Path,
    vault: &Vault,
    before: &State,
    result: Result<IngestReport, VaultError>,
    mode: OnError,
    fresh: bool,
) -> Result<IngestReport, TestCaseError> {
    let after = state(node, vault);
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            // A typed error (only I/O or a corrupt vault can cause one); nothing committed.
            prop_assert_eq!(&after, before, "error {} changed the vault", e);
            return Err(TestCaseError::fail(format!("ingest failed: {e}")));
        }
    };
    for e in &r.errors {
        let text = e.to_string();
        prop_assert!(!text.contains(SECRET), "error repeats input: {}", text);
    }
    match mode {
        OnError::Skip => {
            prop_assert_eq!(r.skipped, r.errors.len() as u64);
            prop_assert_eq!(r.refused, 0);
            if fresh {
                prop_assert_eq!(
                    r.read,
                    r.stored + r.unchanged + r.updated + r.skipped,
                    "{}",
                    r.summary_line()
                );
            }
        }
        OnError::Refuse => {
            prop_assert_eq!(r.skipped, 0);
            if r.errors.is_empty() {
                prop_assert_eq!(r.refused, 0);
            } else {
                prop_assert_eq!(r.refused, r.read);
                prop_assert!(!r.committed);
                prop_assert_eq!(r.stored, 0);
            }
        }
    }
    if r.committed {
        prop_assert!(r.stored + r.updated > 0, "{}", r.summary_line());
        prop_assert_eq!(after.segments.len(), before.segments.len() + 1);
        if fresh {
            prop_assert_eq!(after.resources, before.resources + r.stored as usize);
        }
        // What was committed reads back.
        let reread = Vault::open_read_only(node, &vkey(node)).unwrap();
        prop_assert_eq!(reread.resource_count(), vault.resource_count());
        prop_assert_eq!(reread.counts_by_type(), vault.counts_by_type());
    } else {
        prop_assert_eq!(&after, before, "{}", r.summary_line());
    }
    if r.stored == 0 && r.updated == 0 {
        prop_assert!(!r.committed);
    }
    Ok(r)
}

/// Ingests `files` (name, bytes) written into a fresh input folder, as files or as the folder.
fn ingest_files(
    files: &[(String, Vec<u8>)],
    as_folder: bool,
    mode: OnError,
) -> Result<IngestReport, TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let (node, mut vault) = vault_in(tmp.path());
    let input = tmp.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let mut paths = Vec::new();
    for (name, bytes) in files {
        let p = input.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    let paths = if as_folder { vec![input] } else { paths };
    let before = state(&node, &vault);
    let result = vault.ingest_paths(&paths, &opts(mode));
    check_ingest(&node, &vault, &before, result, mode, true)
}

// ---------------------------------------------------------------------------------------------
// Inputs.

fn extension() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["json", "ndjson", "jsonl", "txt"])
}

/// Strings a FHIR reader meets: references of every form, codes, dates valid and not, and the
/// secret, plus arbitrary ones.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "Patient/p1", "Patient/p2", "urn:uuid:p1", "urn:uuid:e1", "urn:oid:1.2", "Encounter/e1",
            "Organization/o1", "http://x/fhir/Patient/p1/_history/2", "Patient?identifier=1",
            "#c1", "Patient/", "/", "", "p1", "e1", "p 1", "http://snomed.info/sct",
            "http://loinc.org", "http://www.nlm.nih.gov/research/umls/rxnorm",
            "http://hl7.org/fhir/sid/cvx", "44054006", "4548-4", "860975", "140", "1980-05-01",
            "2020-01-01T10:00:00Z", "1980", "1980-05", "1980-13-01", "2019-02-29", "19800501",
            "male", "female", "unknown", "AMB", "EMER", "IMP", "laboratory", "vital-signs",
            "mm[Hg]", "%", "mg/dL", "ombCategory",
            "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "2106-3", "2135-2",
            SECRET,
        ])
        .prop_map(String::from),
        1 => any::<String>(),
        1 => "[a-zA-Z0-9./:_-]{0,24}",
    ]
}

/// Keys of FHIR resources (those the checks and the mapping read), plus arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "subject", "patient", "beneficiary", "encounter", "context", "reference", "code",
            "coding", "system", "display", "text", "valueQuantity", "value", "unit",
            "valueInteger", "valueString", "valueCodeableConcept", "valueBoolean", "component",
            "category", "birthDate", "gender", "deceasedDateTime", "deceasedBoolean", "period",
            "start", "end", "class", "type", "onsetDateTime", "onsetPeriod", "abatementDateTime",
            "recordedDate", "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued",
            "authoredOn", "occurrenceDateTime", "performedDateTime", "performedPeriod",
            "medicationCodeableConcept", "vaccineCode", "dispenseRequest", "validityPeriod",
            "quantity", "clinicalStatus", "extension", "url", "valueCoding", "meta", "profile",
            "contained", "entry", "resource", "fullUrl", "medication", "concept",
        ])
        .prop_map(String::from),
        1 => "[a-zA-Z]{1,10}",
    ]
}

/// Arbitrary JSON with FHIR-ish keys and strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        prop::sample::select(vec![0.0, -0.0, 1e300, -1e-300, 0.5]).prop_map(|f| json!(f)),
        string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// A FHIR-shaped resource: a type the vault maps (or not, or none), an id (valid or not), and
/// fields the checks and the mapping read, with arbitrary values. Never puts the secret in
/// `resourceType` or `fhirVersion` (whose values error messages may name).
fn resource() -> impl Strategy<Value = Value> {
    let rtype = prop::option::weighted(
        0.95,
        prop::sample::select(vec![
            "Patient",
            "Encounter",
            "Condition",
            "Observation",
            "MedicationRequest",
            "MedicationStatement",
            "MedicationAdministration",
            "Immunization",
            "Procedure",
            "AllergyIntolerance",
            "Organization",
            "Practitioner",
            "Bundle",
            "ProcedureRequest",
            "Banana",
        ]),
    );
    let id = prop::option::weighted(
        0.95,
        prop_oneof![
            4 => prop::sample::select(vec!["p1", "p2", "e1", "o1", "c1", "x-1.2"]).prop_map(String::from),
            1 => string(),
        ],
    );
    let version =
        prop::option::weighted(0.05, prop::sample::select(vec!["4.0.1", "5.0.0", "3.0.2"]));
    let fields = prop::collection::vec((key(), field_value()), 0..8);
    (rtype, id, version, fields).prop_map(|(rtype, id, version, fields)| {
        let mut m = Map::new();
        for (k, v) in fields {
            m.insert(k, v);
        }
        if let Some(t) = rtype {
            m.insert("resourceType".into(), json!(t));
        }
        if let Some(id) = id {
            m.insert("id".into(), json!(id));
        }
        if let Some(v) = version {
            m.insert("fhirVersion".into(), json!(v));
        }
        Value::Object(m)
    })
}

/// Values in the shapes FHIR fields have (references, CodeableConcepts, periods, quantities,
/// extensions) or anything.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => string().prop_map(|r| json!({"reference": r})),
        2 => (string(), string()).prop_map(|(s, c)| json!({"coding": [{"system": s, "code": c}]})),
        1 => (string(), string()).prop_map(|(a, b)| json!({"start": a, "end": b})),
        1 => (json_value(), string()).prop_map(|(v, u)| json!({"value": v, "code": u, "unit": u})),
        1 => (string(), string()).prop_map(|(u, c)| {
            json!([{"url": u, "extension": [{"url": "ombCategory", "valueCoding": {"code": c}}]}])
        }),
        1 => prop::collection::vec(
            (string(), (-1e3f64..1e3)).prop_map(|(c, v)| {
                json!({"code": {"coding": [{"code": c}]}, "valueQuantity": {"value": v}})
            }),
            0..3,
        )
        .prop_map(Value::Array),
        3 => string().prop_map(Value::from),
        2 => json_value(),
    ]
}

/// A valid generated patient (with its hospital's Organization and Practitioners).
fn valid_patient(seed: u64, index: u64) -> Vec<Value> {
    let mut v = medspace_synth::hospital_resources(seed, 0);
    v.extend(medspace_synth::patient_resources(seed, 0, index));
    v
}

fn ndjson(resources: &[Value]) -> Vec<u8> {
    resources
        .iter()
        .flat_map(|r| {
            let mut line = serde_json::to_vec(r).unwrap();
            line.push(b'\n');
            line
        })
        .collect()
}

fn bundle(resources: &[Value]) -> Value {
    let entries: Vec<Value> = resources.iter().map(|r| json!({"resource": r})).collect();
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
enum ByteEdit {
    Flip(Index, u8),
    Insert(Index, &'static str),
    Delete(Index, usize),
    Truncate(Index),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        (
            any::<Index>(),
            prop::sample::select(vec![
                "{",
                "}",
                "[",
                "]",
                "\"",
                ",",
                ":",
                "\\",
                "null",
                "\"Patient/zz\"",
                "1e999",
                "-0",
                "\"\\ud800\"",
                "\\u0000",
                "\u{0}",
                "\n",
                "\r\n",
                "[[[[[[[[[[",
                "\u{fffd}",
                "\u{1F600}",
                "\"resourceType\":\"Banana\",",
            ]),
        )
            .prop_map(|(i, s)| ByteEdit::Insert(i, s)),
        (any::<Index>(), 1usize..40).prop_map(|(i, n)| ByteEdit::Delete(i, n)),
        any::<Index>().prop_map(ByteEdit::Truncate),
    ]
}

fn apply_bytes(mut b: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for e in edits {
        let len = b.len();
        match e {
            ByteEdit::Flip(i, x) if len > 0 => {
                let i = i.index(len);
                b[i] ^= x | 1;
            }
            ByteEdit::Insert(i, s) => {
                let i = i.index(len + 1);
                b.splice(i..i, s.bytes());
            }
            ByteEdit::Delete(i, n) if len > 0 => {
                let i = i.index(len);
                b.drain(i..(i + n).min(len));
            }
            ByteEdit::Truncate(i) => b.truncate(i.index(len + 1)),
            _ => {}
        }
    }
    b
}

/// One edit of a JSON document, at a node chosen among all of its nodes.
#[derive(Clone, Debug)]
enum JsonEdit {
    Remove(Index),
    Replace(Index, Value),
    Duplicate(Index),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        any::<Index>().prop_map(JsonEdit::Remove),
        (any::<Index>(), json_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        any::<Index>().prop_map(JsonEdit::Duplicate),
    ]
}

/// JSON pointers of every node below the root.
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(c, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(c, &p, out);
            }
        }
        _ => {}
    }
}

fn apply_json(v: &mut Value, edits: &[JsonEdit]) {
    for e in edits {
        let mut all = Vec::new();
        pointers(v, "", &mut all);
        if all.is_empty() {
            continue;
        }
        let (JsonEdit::Remove(i) | JsonEdit::Replace(i, _) | JsonEdit::Duplicate(i)) = e;
        let path = all[i.index(all.len())].clone();
        let (parent, last) = path.rsplit_once('/').unwrap();
        match e {
            JsonEdit::Replace(_, new) => *v.pointer_mut(&path).unwrap() = new.clone(),
            JsonEdit::Remove(_) => match v.pointer_mut(parent).unwrap() {
                Value::Object(m) => {
                    m.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Value::Array(a) => {
                    a.remove(last.parse::<usize>().unwrap());
                }
                _ => {}
            },
            JsonEdit::Duplicate(_) => {
                let copy = v.pointer(&path).unwrap().clone();
                if let Value::Array(a) = v.pointer_mut(parent).unwrap() {
                    a.push(copy);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The FHIR file reader.

/// Reads one file with `fhir::read_file`, collecting what it hands on.
fn read(bytes: &[u8], ext: &str) -> Result<Vec<(Position, Item)>, VaultError> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(format!("in.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    let mut items = Vec::new();
    fhir::read_file(&path, &mut |pos, item| {
        items.push((pos, item));
        Ok(())
    })?;
    Ok(items)
}

fn check_read(bytes: &[u8], ext: &str) -> Result<(), TestCaseError> {
    let items = read(bytes, ext).map_err(|e| TestCaseError::fail(e.to_string()))?;
    // Every file is accounted for: at least one resource or one reason.
    prop_assert!(!items.is_empty());
    let lines = bytes.split(|b| *b == b'\n').count() as u64;
    for (pos, item) in &items {
        match pos {
            Position::Line(n) => prop_assert!(*n >= 1 && *n <= lines),
            Position::File | Position::Entry(_) | Position::At(_, _) => {}
        }
        if let Err(reason) = item {
            prop_assert!(!reason.to_string().contains(SECRET), "{}", reason);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reader_accounts_for_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        ext in extension(),
    ) {
        check_read(&bytes, ext)?;
    }

    #[test]
    fn reader_accounts_for_arbitrary_json(doc in json_value(), ext in extension()) {
        check_read(&serde_json::to_vec(&doc).unwrap(), ext)?;
    }

    #[test]
    fn reader_accounts_for_mutated_bundles(
        index in 0u64..50,
        as_ndjson in any::<bool>(),
        edits in prop::collection::vec(byte_edit(), 1..6),
    ) {
        let resources = valid_patient(9, index);
        let (bytes, ext) = if as_ndjson {
            (ndjson(&resources), "ndjson")
        } else {
            (serde_json::to_vec(&bundle(&resources)).unwrap(), "json")
        };
        check_read(&apply_bytes(bytes, &edits), ext)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Ingest.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ingest_counts_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        ext in extension(),
        mode in mode(),
    ) {
        let r = ingest_files(&[(format!("x.{ext}"), bytes)], false, mode)?;
        prop_assert!(r.read >= 1);
    }

    #[test]
    fn ingest_counts_fhir_shaped_resources(
        resources in prop::collection::vec(resource(), 1..12),
        form in 0u8..3,
        mode in mode(),
    ) {
        let r = if form == 2 {
            let tmp = tempfile::tempdir().unwrap();
            let (node, mut vault) = vault_in(tmp.path());
            let before = state(&node, &vault);
            let result = vault.ingest_values("memory", resources.clone(), &opts(mode));
            check_ingest(&node, &vault, &before, result, mode, true)?
        } else {
            let (name, bytes) = if form == 0 {
                ("r.ndjson", ndjson(&resources))
            } else {
                ("b.json", serde_json::to_vec(&bundle(&resources)).unwrap())
            };
            ingest_files(&[(name.to_string(), bytes)], false, mode)?
        };
        prop_assert_eq!(r.read, resources.len() as u64);
    }

    #[test]
    fn ingest_counts_mutated_valid_resources(
        index in 0u64..50,
        edits in prop::collection::vec(json_edit(), 1..5),
        in_bundle in any::<bool>(),
        mode in mode(),
    ) {
        let mut doc = bundle(&valid_patient(5, index));
        apply_json(&mut doc, &edits);
        let file = if in_bundle {
            ("b.json".to_string(), serde_json::to_vec(&doc).unwrap())
        } else {
            let lines: Vec<Value> = doc
                .get("entry")
                .and_then(Value::as_array)
                .map(|e| e.iter().map(|e| e.get("resource").cloned().unwrap_or(Value::Null)).collect())
                .unwrap_or_default();
            ("r.ndjson".to_string(), ndjson(&lines))
        };
        ingest_files(&[file], false, mode)?;
    }

    #[test]
    fn ingest_counts_mutated_bytes(
        index in 0u64..50,
        edits in prop::collection::vec(byte_edit(), 1..5),
        as_ndjson in any::<bool>(),
        mode in mode(),
    ) {
        let resources = valid_patient(6, index);
        let (bytes, name) = if as_ndjson {
            (ndjson(&resources), "r.ndjson")
        } else {
            (serde_json::to_vec(&bundle(&resources)).unwrap(), "b.json")
        };
        ingest_files(&[(name.to_string(), apply_bytes(bytes, &edits))], false, mode)?;
    }

    #[test]
    fn ingest_counts_a_folder(
        files in prop::collection::vec(
            (
                prop::sample::select(vec!["a", "b", "sub/c", "sub/deeper/d", "e"]),
                extension(),
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..100),
                    prop::collection::vec(resource(), 0..4).prop_map(|r| ndjson(&r)),
                    prop::collection::vec(resource(), 0..4)
                        .prop_map(|r| serde_json::to_vec(&bundle(&r)).unwrap()),
                ],
            ),
            1..5,
        ),
        mode in mode(),
    ) {
        let files: BTreeMap<String, Vec<u8>> = files
            .into_iter()
            .map(|(name, ext, bytes)| (format!("{name}.{ext}"), bytes))
            .collect();
        let files: Vec<(String, Vec<u8>)> = files.into_iter().collect();
        ingest_files(&files, true, mode)?;
    }

    #[test]
    fn bad_input_leaves_a_vault_with_data_unchanged(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        resources in prop::collection::vec(resource(), 0..6),
        ext in extension(),
        mode in mode(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let (node, mut vault) = vault_in(tmp.path());
        let seed = vault.ingest_values("seed", valid_patient(1, 0), &opts(OnError::Refuse)).unwrap();
        prop_assert!(seed.committed);
        let mut content = bytes;
        content.extend(ndjson(&resources));
        let path = tmp.path().join(format!("x.{ext}"));
        std::fs::write(&path, &content).unwrap();
        let before = state(&node, &vault);
        let result = vault.ingest_paths(&[path], &opts(mode));
        check_ingest(&node, &vault, &before, result, mode, false)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Field parsers, the vocabulary, patient lookups.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn field_parsers_take_any_string(s in prop_oneof![string(), any::<String>()], days in any::<i32>()) {
        if let Some(d) = fhir::parse_date(&s) {
            let shown = fhir::format_date(d);
            prop_assert_eq!(fhir::parse_date(&shown), Some(d));
        }
        let _ = fhir::format_date(days);
        let _ = fhir::parse_reference(&s);
        let _ = fhir::is_r4_type(&s);
        for sys in [CodeSystem::Snomed, CodeSystem::Loinc, CodeSystem::RxNorm, CodeSystem::Cvx, CodeSystem::Other] {
            let _ = code_is_valid(sys, &s);
        }
        let _ = CodeSystem::from_uri(&s);
    }

    #[test]
    fn resource_walkers_take_any_json(mut v in json_value(), r in resource()) {
        for doc in [&mut v, &mut r.clone()] {
            if let Err(reason) = fhir::check_resource(doc) {
                prop_assert!(!reason.to_string().contains(SECRET), "{}", reason);
            }
            let _ = fhir::references(doc);
            let _ = fhir::compartment_ref(doc);
            fhir::rewrite_references(doc, &mut |s| Some(format!("{s}x")));
        }
    }

    #[test]
    fn vocabulary_files_load_or_fail_typed(
        concept in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::vec(
                (any::<i32>(), prop::sample::select(vec!["SNOMED", "LOINC", "RxNorm", "CVX", "X"]),
                 prop::sample::select(vec!["S", "", "C"]), string()),
                0..5,
            )
            .prop_map(|rows| {
                let mut s = String::from("concept_id,vocabulary_id,standard_concept,concept_code\n");
                for (id, v, st, code) in rows {
                    s.push_str(&format!("{id},{v},{st},\"{}\"\n", code.replace('"', "")));
                }
                s.into_bytes()
            }),
        ],
        maps_to in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("CONCEPT.csv"), &concept).unwrap();
        std::fs::write(tmp.path().join("CONCEPT_RELATIONSHIP_maps_to.csv"), &maps_to).unwrap();
        match Vocabulary::load(tmp.path()) {
            Ok(v) => {
                let _ = v.map(CodeSystem::Snomed, "44054006");
            }
            Err(e) => prop_assert!(matches!(e, VaultError::Vocabulary { .. }), "{}", e),
        }
    }

    #[test]
    fn patient_lookups_take_any_id(id in prop_oneof![string(), any::<String>(), any::<i64>().prop_map(|n| n.to_string())]) {
        let tmp = tempfile::tempdir().unwrap();
        let (_, mut vault) = vault_in(tmp.path());
        vault.ingest_values("seed", valid_patient(2, 0), &opts(OnError::Refuse)).unwrap();
        match export::export_patient(&vault, &id) {
            Ok(b) => prop_assert_eq!(&b["resourceType"], "Bundle"),
            Err(e) => prop_assert!(matches!(e, VaultError::PatientNotFound)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cases the generators reach rarely.

/// A top-level value that is not an object, and `entry` that is not an array, are reported
/// without repeating the value.
#[test]
fn wrong_json_types_are_reported_without_their_value() {
    let secret = json!(SECRET);
    for doc in [
        secret.clone(),
        json!([SECRET]),
        json!(12_345_678),
        json!({"resourceType": "Bundle", "entry": SECRET}),
        json!({"resourceType": "Bundle", "entry": {"resource": SECRET}}),
        json!({"resourceType": "Bundle", "entry": 4.5}),
    ] {
        let items = read(&serde_json::to_vec(&doc).unwrap(), "json").unwrap();
        assert_eq!(items.len(), 1, "{doc}");
        let (_, item) = &items[0];
        let Err(reason) = item else {
            panic!("{doc} was accepted")
        };
        assert!(matches!(reason, BadReason::Malformed(_)), "{reason}");
        let text = reason.to_string();
        assert!(
            !text.contains(SECRET) && !text.contains("12345678"),
            "{text}"
        );
    }
}

/// Nesting deeper than the JSON parser's limit is a reported error, from a file and in memory.
#[test]
fn deep_nesting_is_reported() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let doc = format!(
        r#"{{"resourceType": "Basic", "id": "b", "x": {}}}"#,
        deep(300)
    );
    let items = read(doc.as_bytes(), "ndjson").unwrap();
    assert!(matches!(items[0].1, Err(BadReason::Malformed(_))));
    let tmp = tempfile::tempdir().unwrap();
    let (node, mut vault) = vault_in(tmp.path());
    let before = state(&node, &vault);
    let mut v = json!([]);
    for _ in 0..300 {
        v = json!([v]);
    }
    let r = vault.ingest_values(
        "memory",
        [json!({"resourceType": "Basic", "id": "b", "x": v})],
        &opts(OnError::Skip),
    );
    match r {
        Ok(r) => assert!(r.committed || state(&node, &vault) == before),
        Err(e) => {
            drop(vault);
            let reopened = Vault::open(&node, &vkey(&node)).unwrap();
            assert_eq!(state(&node, &reopened), before, "{e}");
        }
    }
}

/// A vocabulary from the fuzzed files is usable by an ingest.
#[test]
fn ingest_with_a_loaded_vocabulary() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("CONCEPT.csv"),
        "concept_id,vocabulary_id,standard_concept,concept_code\n201826,SNOMED,S,44054006\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("CONCEPT_RELATIONSHIP_maps_to.csv"),
        "concept_id_1,concept_id_2,relationship_id\n",
    )
    .unwrap();
    let vocab = Arc::new(Vocabulary::load(tmp.path()).unwrap());
    let (_, mut vault) = vault_in(tmp.path());
    let r = vault
        .ingest_values(
            "v",
            valid_patient(4, 1),
            &IngestOptions {
                vocabulary: Some(vocab),
                ..IngestOptions::default()
            },
        )
        .unwrap();
    assert!(r.committed && r.errors.is_empty());
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
