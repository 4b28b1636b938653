//! The quality fix for unmapped codes: a vault ingested without a vocabulary (every concept id
//! 0) is re-mapped through one; afterwards its CDM tables equal those of the same data ingested
//! with that vocabulary, nothing else changes (rows, ids, pseudonyms, the original resources),
//! and the quality profile's unknown-code share drops to what the vocabulary does not cover.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use crate::common;

use common::vkey;
use std::path::Path;
use std::sync::Arc;

use medspace_vault::{IngestOptions, OnError, Vault, Vocabulary, open_session};

/// Every CDM table's rows as sorted text lines, without the tables' own row ids (a re-mapped
/// row is a new row: the vault's surrogate ids are its own business; person and visit ids,
/// which rows refer to, are kept).
fn answers(node: &Path) -> Vec<String> {
    let ctx = open_session(node, &vkey(node)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut out = Vec::new();
    for table in medspace_vault::TABLES {
        let first = medspace_vault::cdm::columns(table)[0].name;
        let select = if first == "person_id" || first == "visit_occurrence_id" {
            format!("select * from {table}")
        } else {
            format!("select * exclude ({first}) from {table}")
        };
        let b = rt.block_on(medspace_vault::sql(&ctx, &select)).unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&b)
            .unwrap()
            .to_string();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        out.push(format!("== {table}"));
        out.extend(lines);
    }
    out
}

/// A vocabulary with the standard SNOMED concepts of half of the generator's condition codes
/// (the others stay unmapped).
fn vocabulary(dir: &Path) -> (Arc<Vocabulary>, usize) {
    let mut codes: Vec<String> = medspace_synth::patient_resources(5, 0, 0)
        .into_iter()
        .chain((1..6).flat_map(|i| medspace_synth::patient_resources(5, 0, i)))
        .filter(|r| r["resourceType"] == "Condition")
        .filter_map(|r| r["code"]["coding"][0]["code"].as_str().map(String::from))
        .collect();
    codes.sort();
    codes.dedup();
    let mapped = codes.len().div_ceil(2);
    let mut csv = String::from(
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason\n",
    );
    for (i, c) in codes.iter().take(mapped).enumerate() {
        csv.push_str(&format!(
            "{},c{i},Condition,SNOMED,Clinical Finding,S,{c},1970-01-01,2099-12-31,\n",
            9_000_000 + i
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("CONCEPT.csv"), csv).unwrap();
    std::fs::write(
        dir.join("CONCEPT_RELATIONSHIP_maps_to.csv"),
        "concept_id_1,concept_id_2,relationship_id\n",
    )
    .unwrap();
    (Arc::new(Vocabulary::load(dir).unwrap()), mapped)
}

fn ingest(node: &Path, vocabulary: Option<Arc<Vocabulary>>) {
    let mut v = Vault::open(node, &vkey(node)).unwrap();
    let opts = IngestOptions {
        on_error: OnError::Refuse,
        vocabulary,
        ..IngestOptions::default()
    };
    let resources = medspace_synth::hospital_resources(5, 0)
        .into_iter()
        .chain((0..6).flat_map(|i| medspace_synth::patient_resources(5, 0, i)));
    let r = v.ingest_values("synth", resources, &opts).unwrap();
    assert!(r.committed);
}

#[test]
fn a_remap_through_the_vocabulary_equals_an_ingest_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (voc, mapped) = vocabulary(&dir.path().join("vocab"));
    assert!(mapped > 0);
    let (plain, with) = (dir.path().join("plain"), dir.path().join("with"));
    ingest(&plain, None);
    ingest(&with, Some(voc.clone()));
    let before = answers(&plain);
    assert_ne!(before, answers(&with), "the vocabulary maps something");
    let unknown = |node: &Path| {
        let key = vkey(node);
        let p = medspace_vault::quality::profile_node(node, &key, 20_000).unwrap();
        let t = p
            .tables
            .iter()
            .find(|t| t.table == "condition_occurrence")
            .unwrap();
        let c = t
            .columns
            .iter()
            .find(|c| c.column == "condition_concept_id")
            .unwrap();
        c.unknown_codes.unwrap()
    };
    let unknown_before = unknown(&plain);
    let resources_before = Vault::open_read_only(&plain, &vkey(&plain))
        .unwrap()
        .resource_count();
    let pseudonyms = |node: &Path| Vault::open_read_only(node, &vkey(node)).unwrap().persons();
    let persons_before = pseudonyms(&plain);

    let mut v = Vault::open(&plain, &vkey(&plain)).unwrap();
    let done = v.remap(voc, false).unwrap();
    drop(v);
    assert_eq!(done.unversioned, 0);
    assert!(!done.batches.is_empty());
    assert!(
        done.batches
            .iter()
            .all(|r| r.committed && r.errors.is_empty())
    );
    assert_eq!(answers(&plain), answers(&with));
    assert!(
        unknown(&plain) < unknown_before,
        "the unmapped share dropped"
    );
    assert_eq!(unknown(&plain), unknown(&with));
    let v = Vault::open_read_only(&plain, &vkey(&plain)).unwrap();
    assert_eq!(
        v.resource_count(),
        resources_before,
        "no resource added or lost"
    );
    assert_eq!(
        pseudonyms(&plain),
        persons_before,
        "person ids and pseudonyms kept"
    );
}
