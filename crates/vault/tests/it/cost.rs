//! What a visit cost (OMOP `cost`): an ExplanationOfBenefit gives one row about the visit of the
//! Encounter it bills, with the submitted charge, the payment and the patient's share. Checked
//! on the Synthea sample (amounts read from the JSON independently) and on the synthetic
//! insurer's claims feed (`medspace_synth::claims`); an update of a claim replaces its row, a
//! delete (of the claim, its Encounter or its Patient) retracts it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use common::vkey;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Date32Type, Float64Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use medspace_synth::claims;
use medspace_vault::fhir::BadReason;
use medspace_vault::{IngestOptions, OnError, Vault, open_session};
use serde_json::{Value, json};

fn batches(node: &Path, sql: &str) -> Vec<RecordBatch> {
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

fn refuse() -> IngestOptions {
    IngestOptions {
        on_error: OnError::Refuse,
        ..IngestOptions::default()
    }
}

/// One cost row with what its visit says: (person_id, visit start day, charge, paid,
/// paid_by_payer, paid_by_patient), and its constants (domain, type, currency).
#[derive(Debug)]
struct CostRow {
    person: i64,
    day: i32,
    charge: Option<f64>,
    paid: Option<f64>,
    by_payer: Option<f64>,
    by_patient: Option<f64>,
    domain: String,
    ty: i64,
    currency: Option<i64>,
}

/// Every cost row joined to its visit (rows without a visit are left out: compare the count
/// with `select count(*) from cost`).
fn cost_rows(node: &Path) -> Vec<CostRow> {
    let mut out = Vec::new();
    let sql = "select v.person_id, v.visit_start_date, c.total_charge, c.total_paid, \
               c.paid_by_payer, c.paid_by_patient, c.cost_domain_id, c.cost_type_concept_id, \
               c.currency_concept_id \
               from cost c join visit_occurrence v on c.cost_event_id = v.visit_occurrence_id";
    for b in batches(node, sql) {
        let f = |c: usize, i: usize| {
            let a = b.column(c).as_primitive::<Float64Type>();
            (!a.is_null(i)).then(|| a.value(i))
        };
        let domain = datafusion::arrow::compute::cast(
            b.column(6),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let currency = b.column(8).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push(CostRow {
                person: b.column(0).as_primitive::<Int64Type>().value(i),
                day: b.column(1).as_primitive::<Date32Type>().value(i),
                charge: f(2, i),
                paid: f(3, i),
                by_payer: f(4, i),
                by_patient: f(5, i),
                domain: domain.as_string::<i32>().value(i).to_string(),
                ty: b.column(7).as_primitive::<Int64Type>().value(i),
                currency: (!currency.is_null(i)).then(|| currency.value(i)),
            });
        }
    }
    out
}

/// Days since 1970-01-01 of the calendar date a FHIR dateTime starts with.
fn day_of(s: &str) -> i32 {
    let y: i32 = s[0..4].parse().unwrap();
    let m: u32 = s[5..7].parse().unwrap();
    let d: u32 = s[8..10].parse().unwrap();
    i32::try_from(medspace_synth::days_from_civil(y, m, d)).unwrap()
}

/// The id a reference names (`urn:uuid:<id>` or `Type/<id>`).
fn ref_id(r: &str) -> &str {
    r.rsplit(['/', ':']).next().unwrap()
}

/// The amount of the `total` with category `code`.
fn total_of(eob: &Value, code: &str) -> Option<f64> {
    eob["total"].as_array()?.iter().find_map(|t| {
        t["category"]["coding"]
            .as_array()?
            .iter()
            .any(|c| c["code"] == code)
            .then(|| t["amount"]["value"].as_f64())
            .flatten()
    })
}

/// An ExplanationOfBenefit's charge and payment, read as the mapping is specified.
fn charge_and_paid(eob: &Value) -> (Option<f64>, Option<f64>) {
    let charge = total_of(eob, "submitted").or_else(|| {
        let nets: Vec<f64> = eob["item"]
            .as_array()?
            .iter()
            .filter_map(|i| i["net"]["value"].as_f64())
            .collect();
        (!nets.is_empty()).then(|| nets.iter().sum())
    });
    let paid = eob["payment"]["amount"]["value"]
        .as_f64()
        .or_else(|| total_of(eob, "benefit"));
    (charge, paid)
}

/// A comparable text of (person, day, charge, paid).
fn key(person: i64, day: i32, charge: Option<f64>, paid: Option<f64>) -> String {
    let cents = |x: Option<f64>| x.map_or("null".into(), |x| format!("{x:.2}"));
    format!("{person}|{day}|{}|{}", cents(charge), cents(paid))
}

fn check_row_constants(rows: &[CostRow]) {
    for r in rows {
        assert_eq!((r.domain.as_str(), r.ty), ("Visit", 32810), "{r:?}");
        assert_eq!(r.currency, Some(44_818_668), "{r:?}");
        assert_eq!(r.by_payer, r.paid, "{r:?}");
        let expected = match (r.charge, r.paid) {
            (Some(c), Some(p)) => Some((c - p).max(0.0)),
            _ => None,
        };
        assert_eq!(r.by_patient, expected, "{r:?}");
    }
}

#[test]
fn synthea_claims_become_cost_rows_of_their_visits() {
    let test = "synthea_claims_become_cost_rows_of_their_visits";
    let Some(dir) = common::synthea_dir(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path();
    let mut vault = Vault::open(node, &vkey(node)).unwrap();
    let report = vault
        .ingest_paths(&[dir.join("hospital-a")], &refuse())
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors.first());
    // The sample, read independently: encounters (id -> patient, start day) and claims.
    let mut encounters: HashMap<String, (String, i32)> = HashMap::new();
    let mut eobs: Vec<Value> = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("hospital-a"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let bundle: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        for e in bundle["entry"].as_array().unwrap() {
            let r = &e["resource"];
            match r["resourceType"].as_str().unwrap() {
                "Encounter" => {
                    let patient = ref_id(r["subject"]["reference"].as_str().unwrap());
                    let start = r["period"]["start"].as_str().unwrap();
                    encounters.insert(
                        r["id"].as_str().unwrap().to_string(),
                        (patient.to_string(), day_of(start)),
                    );
                }
                "ExplanationOfBenefit" => eobs.push(r.clone()),
                _ => {}
            }
        }
    }
    let mut expected: Vec<String> = Vec::new();
    for eob in &eobs {
        let encounter = eob["item"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["encounter"].as_array())
            .flatten()
            .filter_map(|e| e["reference"].as_str())
            .find_map(|r| encounters.get(ref_id(r)));
        let Some((patient, day)) = encounter else {
            continue;
        };
        let (charge, paid) = charge_and_paid(eob);
        let person = vault.person_id_for_patient_id(patient).unwrap();
        expected.push(key(person, *day, charge, paid));
    }
    assert!(
        expected.len() > 600,
        "{} of {} resolve",
        expected.len(),
        eobs.len()
    );
    assert_eq!(
        count(node, "select count(*) from cost"),
        expected.len() as i64,
        "one row per claim whose encounter resolves"
    );
    let rows = cost_rows(node);
    assert_eq!(rows.len(), expected.len(), "every row is about a visit");
    check_row_constants(&rows);
    let mut got: Vec<String> = rows
        .iter()
        .map(|r| key(r.person, r.day, r.charge, r.paid))
        .collect();
    got.sort();
    expected.sort();
    // A few claims by name first (a clearer failure), then all of them.
    for k in expected.iter().step_by(97) {
        assert!(got.binary_search(k).is_ok(), "claim {k} has no such row");
    }
    assert_eq!(got, expected);
    // Synthea's claims: some paid in part, some not at all (the patient paid everything).
    assert!(rows.iter().any(|r| r.paid == Some(0.0)));
    assert!(rows.iter().any(|r| r.by_patient.is_some_and(|p| p > 0.0)));
}

/// The first `n` covered patients of hospital `hospital` (their indexes and resources).
fn covered_members(seed: u64, hospital: u32, n: usize) -> Vec<(u64, Vec<Value>)> {
    (0..)
        .filter_map(|i| claims::insurer_resources(seed, hospital, i).map(|r| (i, r)))
        .take(n)
        .collect()
}

fn of_type<'a>(rs: &'a [Value], ty: &'a str) -> impl Iterator<Item = &'a Value> {
    rs.iter().filter(move |r| r["resourceType"] == ty)
}

#[test]
fn the_insurers_claims_land_on_their_members_visits() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path();
    let mut vault = Vault::open(node, &vkey(node)).unwrap();
    let members = covered_members(2024, 0, 50);
    let only = claims::insurer_only_members(2024, 10);
    let all: Vec<Vec<Value>> = members
        .iter()
        .map(|(_, r)| r.clone())
        .chain(only.iter().cloned())
        .collect();
    let report = vault
        .ingest_values("insurer-1", all.iter().flatten().cloned(), &refuse())
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors.first());
    let n_eobs: usize = all
        .iter()
        .map(|r| of_type(r, "ExplanationOfBenefit").count())
        .sum();
    assert_eq!(count(node, "select count(*) from cost"), n_eobs as i64);
    assert_eq!(report.rows_by_table.get("cost"), Some(&(n_eobs as u64)));
    // Per member: the claims (start day of the billed period, charge, payment) and the total
    // paid, from the feed.
    let mut expected: BTreeMap<i64, (Vec<String>, f64)> = BTreeMap::new();
    for rs in &all {
        let member = rs[0]["id"].as_str().unwrap();
        let person = vault.person_id_for_patient_id(member).unwrap();
        let slot = expected.entry(person).or_default();
        for eob in of_type(rs, "ExplanationOfBenefit") {
            let day = day_of(eob["billablePeriod"]["start"].as_str().unwrap());
            let (charge, paid) = charge_and_paid(eob);
            slot.0.push(key(person, day, charge, paid));
            slot.1 += eob["payment"]["amount"]["value"].as_f64().unwrap();
        }
    }
    let rows = cost_rows(node);
    assert_eq!(rows.len(), n_eobs, "every claim's row is about a visit");
    check_row_constants(&rows);
    let mut got: BTreeMap<i64, (Vec<String>, f64)> = BTreeMap::new();
    for r in &rows {
        let slot = got.entry(r.person).or_default();
        slot.0.push(key(r.person, r.day, r.charge, r.paid));
        slot.1 += r.paid.unwrap();
    }
    assert_eq!(got.len(), expected.len(), "one person per member");
    for (person, (mut claims_expected, paid_expected)) in expected {
        let (mut claims_got, paid_got) = got.remove(&person).unwrap();
        claims_expected.sort();
        claims_got.sort();
        assert_eq!(claims_got, claims_expected, "person {person}");
        assert!(
            (paid_got - paid_expected).abs() < 1e-6,
            "person {person}: paid {paid_got} != {paid_expected}"
        );
    }
    // The same total by SQL, per person.
    let by_sql = batches(
        node,
        "select v.person_id, sum(c.total_paid) from cost c join visit_occurrence v \
         on c.cost_event_id = v.visit_occurrence_id group by v.person_id",
    );
    let n: usize = by_sql.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(n, all.len());
}

/// A transaction Bundle deleting `Type/id`.
fn delete(ty: &str, id: &str) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": format!("{ty}/{id}")}}]})
}

fn total_paid(node: &Path) -> f64 {
    let b = batches(node, "select sum(total_paid) from cost");
    let a = b[0].column(0).as_primitive::<Float64Type>();
    if a.is_null(0) { 0.0 } else { a.value(0) }
}

#[test]
fn updates_and_deletes_of_a_claim_carry_to_its_cost_row() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path();
    let mut vault = Vault::open(node, &vkey(node)).unwrap();
    // A member with at least three claims.
    let (_, rs) = covered_members(77, 1, 40)
        .into_iter()
        .find(|(_, rs)| of_type(rs, "ExplanationOfBenefit").count() >= 3)
        .unwrap();
    let eobs: Vec<Value> = of_type(&rs, "ExplanationOfBenefit").cloned().collect();
    let n = eobs.len() as i64;
    let r = vault
        .ingest_values("feed", rs.iter().cloned(), &refuse())
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(count(node, "select count(*) from cost"), n);
    let paid_before = total_paid(node);

    // A changed claim outside an update feed is a conflict: its row stays.
    let mut changed = eobs[0].clone();
    let old_paid = changed["payment"]["amount"]["value"].as_f64().unwrap();
    changed["payment"]["amount"]["value"] = json!(old_paid + 1000.0);
    let r = vault
        .ingest_values("feed", vec![changed.clone()], &IngestOptions::default())
        .unwrap();
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].reason, BadReason::Conflict);
    assert!((total_paid(node) - paid_before).abs() < 1e-6);

    // In an update feed it is a new version: its row replaces the old one.
    let feed = IngestOptions {
        updates: true,
        ..IngestOptions::default()
    };
    let r = vault
        .ingest_values("feed", vec![changed.clone()], &feed)
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.updated, 1);
    assert_eq!(r.rows_by_table.get("cost"), Some(&1));
    assert_eq!(r.rows_retracted_by_table.get("cost"), Some(&1));
    assert_eq!(count(node, "select count(*) from cost"), n);
    assert!((total_paid(node) - (paid_before + 1000.0)).abs() < 1e-6);
    assert_eq!(
        count(
            node,
            &format!(
                "select count(*) from cost where total_paid = {}",
                old_paid + 1000.0
            )
        ),
        1
    );
    assert_eq!(cost_rows(node).len() as i64, n, "still about its visit");

    // Deleting the claim retracts its row.
    let eob_id = changed["id"].as_str().unwrap();
    let r = vault
        .ingest_values(
            "feed",
            vec![delete("ExplanationOfBenefit", eob_id)],
            &refuse(),
        )
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.deleted, 1);
    assert_eq!(r.rows_retracted_by_table.get("cost"), Some(&1));
    assert_eq!(count(node, "select count(*) from cost"), n - 1);
    assert!((total_paid(node) - (paid_before - old_paid)).abs() < 1e-6);

    // Deleting an Encounter takes the claim billing it with it.
    let enc = ref_id(
        eobs[1]["item"][0]["encounter"][0]["reference"]
            .as_str()
            .unwrap(),
    );
    let r = vault
        .ingest_values("feed", vec![delete("Encounter", enc)], &refuse())
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.deleted, 2, "the encounter and its claim");
    assert!(vault.is_deleted(&format!(
        "ExplanationOfBenefit/{}",
        eobs[1]["id"].as_str().unwrap()
    )));
    assert_eq!(r.rows_retracted_by_table.get("cost"), Some(&1));
    assert_eq!(count(node, "select count(*) from cost"), n - 2);

    // Deleting the member takes every claim.
    let member = rs[0]["id"].as_str().unwrap();
    let r = vault
        .ingest_values("feed", vec![delete("Patient", member)], &refuse())
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        r.rows_retracted_by_table.get("cost"),
        Some(&((n - 2) as u64))
    );
    assert_eq!(count(node, "select count(*) from cost"), 0);
}

#[test]
fn a_claim_without_a_visit_gives_no_row_and_a_claim_none() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path();
    let mut vault = Vault::open(node, &vkey(node)).unwrap();
    let patient = json!({"resourceType": "Patient", "id": "m1", "gender": "female"});
    let encounter = json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
        "class": {"code": "AMB"}, "subject": {"reference": "Patient/m1"},
        "period": {"start": "2024-03-01T10:00:00+00:00", "end": "2024-03-01T10:30:00+00:00"}});
    let amounts = json!([{"category": {"coding": [{"code": "submitted"}]},
        "amount": {"value": 200.0, "currency": "USD"}}]);
    // No encounter anywhere: stored, no row.
    let unbilled = json!({"resourceType": "ExplanationOfBenefit", "id": "x1", "status": "active",
        "patient": {"reference": "Patient/m1"}, "item": [{"sequence": 1}], "total": amounts});
    // A Claim: no row.
    let claim = json!({"resourceType": "Claim", "id": "c1", "status": "active",
        "patient": {"reference": "Patient/m1"},
        "item": [{"sequence": 1, "encounter": [{"reference": "Encounter/e1"}]}]});
    // The encounter on the second item; only an item net for the charge, a benefit total for
    // the payment.
    let billed = json!({"resourceType": "ExplanationOfBenefit", "id": "x2", "status": "active",
        "patient": {"reference": "Patient/m1"},
        "item": [{"sequence": 1, "net": {"value": 50.0, "currency": "USD"}},
                 {"sequence": 2, "net": {"value": 70.0, "currency": "USD"},
                  "encounter": [{"reference": "Encounter/e1"}]}],
        "total": [{"category": {"coding": [{"code": "benefit"}]},
                   "amount": {"value": 100.0, "currency": "USD"}}]});
    let r = vault
        .ingest_values(
            "t",
            vec![patient, encounter, unbilled, claim, billed],
            &refuse(),
        )
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.stored, 5);
    assert_eq!(r.rows_by_table.get("cost"), Some(&1));
    let rows = cost_rows(node);
    assert_eq!(rows.len(), 1);
    check_row_constants(&rows);
    assert_eq!(
        (rows[0].charge, rows[0].paid, rows[0].by_patient),
        (Some(120.0), Some(100.0), Some(20.0))
    );
    assert_eq!(rows[0].day, day_of("2024-03-01"));
}
