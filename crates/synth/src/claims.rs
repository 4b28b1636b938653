//! The insurer's claims feed: what insurer-1 holds of its members, as FHIR R4 resources, for a
//! vertical study that joins a hospital's clinical record with the insurer's claims.
//!
//! Who is covered: [`covered`], about [`COVERED_SHARE`] of each hospital's patients, drawn
//! from a stream of its own (seeded by `(seed, hospital, index)` and a salt), so it is
//! independent of everything else generated. A covered patient is a member under the insurer's
//! own id ([`member_id`], never the hospital's Patient id). [`insurer_resources`] gives what the
//! insurer holds of them: a Patient (id = the member id; the hospital Patient's name, sex,
//! birth date and home address; no clinical data), a Coverage (payor insurer-1), and per
//! encounter of the hospital's record ([`patient_resources`] for the same arguments, so the
//! dates match) an Encounter stub (same period, class and type; no diagnoses) followed by the
//! ExplanationOfBenefit that bills it (`item[0].encounter`; type `professional` for an
//! ambulatory visit, `institutional` otherwise; `billablePeriod` = the encounter's period;
//! `total` of categories `submitted` and `benefit`; `payment.amount`).
//! [`insurer_only_members`] are members who are no hospital's patient (Patient, Coverage and a
//! few billed Encounter stubs each).
//!
//! The amounts are the ground truth of a cost study. An encounter's charge is
//! `base × exp(σz − σ²/2)`, with `base` by encounter class ([`base_charge`]: ambulatory
//! [`BASE_CHARGE_AMBULATORY`], emergency [`BASE_CHARGE_EMERGENCY`], inpatient
//! [`BASE_CHARGE_INPATIENT`]), `z` a standard normal deviate and σ = [`CHARGE_SPREAD`] (a
//! lognormal spread whose mean is `base`), times [`DIABETES_COST_FACTOR`] for a patient with
//! diabetes ([`DIABETES_SNOMED`] among the conditions of the hospital's record; an insurer-only
//! member has none). The payer pays [`PAYER_SHARE`] of the charge, the patient the rest. So the
//! expected payment for an encounter is [`expected_paid`]`(class, diabetic)`, and per class the
//! mean paid for diabetics over the mean paid for the others is the factor. Amounts are in USD,
//! rounded to cents.
//!
//! Every draw of a covered patient comes from the patient's claims stream (seeded by
//! `(seed, hospital, index)` and another salt), in this order: the Coverage id, then per
//! encounter the stub's id, the ExplanationOfBenefit's id and the charge's normal deviate.
//! Ids are UUID-shaped and drawn per patient, so they are unique across hospitals and patients.
//!
//! References between a member's resources are relative (`Patient/<member id>`,
//! `Coverage/<id>`, `Encounter/<id>`) and resolve among them. The insurer and the provider are
//! named by identifier, not by reference (a claims vault holds no Organization): the insurer as
//! [`INSURER_SYSTEM`] `|` [`INSURER`], a hospital as `https://medspace.example/hospital` `|`
//! `hospital-<n>`, the identifier of its Organization.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::AS_OF_YEAR;
use crate::calendar::{date_str, datetime_str, days_from_civil};
use crate::codes::{SNOMED, codeable};
use crate::ids::{self, insurer_only_member_id, next_id};
use crate::names::{FAMILY_NAMES, GIVEN_F_NAMES, GIVEN_M_NAMES, pick};
use crate::patient::{normal, patient_resources};
use crate::region::home_address;

/// The insurer's name, its identifier value and the payor of every Coverage.
pub const INSURER: &str = "insurer-1";
/// The identifier system naming the insurer.
pub const INSURER_SYSTEM: &str = "https://medspace.example/insurer";
/// The identifier system of the insurer's member ids (on its Patients).
pub const MEMBER_SYSTEM: &str = "https://medspace.example/insurer-1/member";
/// Share of a hospital's patients the insurer covers.
pub const COVERED_SHARE: f64 = 0.6;
/// SNOMED CT of type 2 diabetes: a patient with it costs [`DIABETES_COST_FACTOR`] times more.
pub const DIABETES_SNOMED: &str = "44054006";
/// The known excess: a diabetic patient's charges (and payments) are this many times those of
/// a patient without diabetes, in expectation, per encounter class.
pub const DIABETES_COST_FACTOR: f64 = 1.8;
/// Mean charge of an ambulatory encounter (USD).
pub const BASE_CHARGE_AMBULATORY: f64 = 150.0;
/// Mean charge of an emergency encounter (USD).
pub const BASE_CHARGE_EMERGENCY: f64 = 1_200.0;
/// Mean charge of an inpatient encounter (USD).
pub const BASE_CHARGE_INPATIENT: f64 = 9_000.0;
/// σ of the charge's lognormal spread (of its logarithm).
pub const CHARGE_SPREAD: f64 = 0.4;
/// Share of the charge the payer pays.
pub const PAYER_SHARE: f64 = 0.8;

/// Mixed into the seed of the coverage draw.
const COVER_SALT: u64 = 0xC0FE_12ED_5A17_0001;
/// Mixed into the seed of a covered patient's claims stream.
const CLAIMS_SALT: u64 = 0xC1A1_35EE_D5A1_0002;
/// Mixed into the seed of an insurer-only member's stream.
const ONLY_SALT: u64 = 0x0A1E_BE11_0F1E_0003;

const CLAIM_TYPE: &str = "http://terminology.hl7.org/CodeSystem/claim-type";
const ADJUDICATION: &str = "http://terminology.hl7.org/CodeSystem/adjudication";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// A stream of its own for `(seed, hospital, index)`, told apart by `salt`.
fn stream(seed: u64, salt: u64, hospital: u32, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        (seed ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(hospital) << 40) ^ index,
    )
}

/// The mean charge of an encounter of class `class` (FHIR `Encounter.class.code`: `EMER`
/// emergency, `IMP` / `ACUTE` inpatient, anything else ambulatory).
pub fn base_charge(class: &str) -> f64 {
    match class {
        "EMER" => BASE_CHARGE_EMERGENCY,
        "IMP" | "ACUTE" => BASE_CHARGE_INPATIENT,
        _ => BASE_CHARGE_AMBULATORY,
    }
}

/// The expected payment of the insurer for one encounter of class `class`: the mean charge,
/// times [`DIABETES_COST_FACTOR`] for a diabetic, times [`PAYER_SHARE`].
pub fn expected_paid(class: &str, diabetic: bool) -> f64 {
    let factor = if diabetic { DIABETES_COST_FACTOR } else { 1.0 };
    base_charge(class) * factor * PAYER_SHARE
}

/// Whether the insurer covers patient `index` of hospital `hospital` (with probability
/// [`COVERED_SHARE`], from a stream of its own).
pub fn covered(seed: u64, hospital: u32, index: u64) -> bool {
    stream(seed, COVER_SALT, hospital, index).random_bool(COVERED_SHARE)
}

/// The insurer's member id of patient `index` of hospital `hospital`: the id of its Patient in
/// the claims feed, another id than the hospital's Patient id.
pub fn member_id(seed: u64, hospital: u32, index: u64) -> String {
    ids::member_id(seed, hospital, index)
}

/// What the insurer holds of patient `index` of hospital `hospital`, or `None` when it does not
/// cover them: the member's Patient, the Coverage, and per encounter of the hospital's record
/// an Encounter stub and its ExplanationOfBenefit (see the module's documentation).
pub fn insurer_resources(seed: u64, hospital: u32, index: u64) -> Option<Vec<Value>> {
    if !covered(seed, hospital, index) {
        return None;
    }
    let record = patient_resources(seed, hospital, index);
    let hospital_patient = record.iter().find(|r| is(r, "Patient"))?;
    let member = member_id(seed, hospital, index);
    let mut rng = stream(seed, CLAIMS_SALT, hospital, index);
    let mut out = Vec::with_capacity(2 + 2 * record.len() / 8);
    let mut patient = json!({
        "resourceType": "Patient",
        "id": member,
        "identifier": [{"system": MEMBER_SYSTEM, "value": member}],
    });
    if let Some(p) = patient.as_object_mut() {
        for field in ["name", "gender", "birthDate", "address"] {
            if let Some(v) = hospital_patient.get(field) {
                p.insert(field.into(), v.clone());
            }
        }
    }
    out.push(patient);
    let coverage = next_id(&mut rng);
    out.push(coverage_of(&coverage, &member));
    let billed = Billed {
        member: &member,
        coverage: &coverage,
        provider: json!({
            "identifier": {"system": "https://medspace.example/hospital", "value": format!("hospital-{hospital}")},
            "display": format!("hospital-{hospital}"),
        }),
        diabetic: record.iter().any(is_diabetes),
    };
    for enc in record.iter().filter(|r| is(r, "Encounter")) {
        let period = enc.get("period").cloned().unwrap_or_else(|| json!({}));
        let class = enc
            .get("class")
            .cloned()
            .unwrap_or_else(|| json!({"system": ACT_CODE, "code": "AMB"}));
        bill(&mut rng, &billed, period, class, enc.get("type"), &mut out);
    }
    Some(out)
}

/// `n` members of the insurer who are patients of no hospital, each as a list of resources:
/// the Patient (its own name, sex, birth date and home address), the Coverage, and one to four
/// encounters of the last three years as Encounter stubs with their ExplanationOfBenefit
/// (mostly ambulatory, some emergency, a few inpatient; no diabetes factor). Their ids are
/// distinct from every hospital patient's and member's.
pub fn insurer_only_members(seed: u64, n: u64) -> Vec<Vec<Value>> {
    (0..n).map(|i| insurer_only_member(seed, i)).collect()
}

fn insurer_only_member(seed: u64, index: u64) -> Vec<Value> {
    let mut rng = stream(seed, ONLY_SALT, 0, index);
    let member = insurer_only_member_id(seed, index);
    let as_of = days_from_civil(AS_OF_YEAR, 1, 1);
    let female = rng.random_bool(0.51);
    let birth = as_of - rng.random_range(18 * 365..90 * 365);
    let family = pick(&mut rng, FAMILY_NAMES);
    let given = pick(&mut rng, if female { GIVEN_F_NAMES } else { GIVEN_M_NAMES });
    let mut out = vec![json!({
        "resourceType": "Patient",
        "id": member,
        "identifier": [{"system": MEMBER_SYSTEM, "value": member}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": if female { "female" } else { "male" },
        "birthDate": date_str(birth),
        "address": [home_address(seed ^ ONLY_SALT, 0, index)],
    })];
    let coverage = next_id(&mut rng);
    out.push(coverage_of(&coverage, &member));
    let billed = Billed {
        member: &member,
        coverage: &coverage,
        provider: json!({
            "identifier": {"system": "https://medspace.example/provider", "value": "community-practice"},
            "display": "Community practice",
        }),
        diabetic: false,
    };
    let encounters: u32 = rng.random_range(1..=4);
    let mut days: Vec<i64> = (0..encounters)
        .map(|_| as_of - rng.random_range(1..3 * 365))
        .collect();
    days.sort_unstable();
    for day in days {
        let u: f64 = rng.random();
        let (class, code, display, nights) = if u < 0.02 {
            ("IMP", "32485007", "Hospital admission (procedure)", 3)
        } else if u < 0.1 {
            (
                "EMER",
                "50849002",
                "Emergency room admission (procedure)",
                0,
            )
        } else {
            ("AMB", "185349003", "Encounter for check up (procedure)", 0)
        };
        let start: i64 = rng.random_range(8 * 60..17 * 60);
        let period = json!({"start": datetime_str(day, start), "end": datetime_str(day + nights, start + 30)});
        let ty = json!([codeable(SNOMED, code, display)]);
        bill(
            &mut rng,
            &billed,
            period,
            json!({"system": ACT_CODE, "code": class}),
            Some(&ty),
            &mut out,
        );
    }
    out
}

/// Whether `r` is a resource of type `ty`.
fn is(r: &Value, ty: &str) -> bool {
    r.get("resourceType").and_then(Value::as_str) == Some(ty)
}

/// Whether `r` is a Condition coded [`DIABETES_SNOMED`].
fn is_diabetes(r: &Value) -> bool {
    is(r, "Condition")
        && r.get("code")
            .and_then(|c| c.get("coding"))
            .and_then(Value::as_array)
            .is_some_and(|codings| {
                codings
                    .iter()
                    .any(|c| c.get("code").and_then(Value::as_str) == Some(DIABETES_SNOMED))
            })
}

/// The member's Coverage by the insurer.
fn coverage_of(id: &str, member: &str) -> Value {
    json!({
        "resourceType": "Coverage",
        "id": id,
        "status": "active",
        "subscriberId": member,
        "beneficiary": {"reference": format!("Patient/{member}")},
        "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code": "self"}]},
        "payor": [insurer()],
    })
}

/// The insurer, named by identifier.
fn insurer() -> Value {
    json!({"identifier": {"system": INSURER_SYSTEM, "value": INSURER}, "display": INSURER})
}

/// What every claim of a member shares.
struct Billed<'a> {
    member: &'a str,
    coverage: &'a str,
    /// Who bills (a Reference by identifier).
    provider: Value,
    diabetic: bool,
}

/// Cents.
fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One billed encounter: its Encounter stub, then its ExplanationOfBenefit. Draws the stub's
/// id, the ExplanationOfBenefit's id and the charge's deviate, in this order.
fn bill(
    rng: &mut ChaCha8Rng,
    b: &Billed<'_>,
    period: Value,
    class: Value,
    ty: Option<&Value>,
    out: &mut Vec<Value>,
) {
    let encounter_id = next_id(rng);
    let eob_id = next_id(rng);
    let class_code = class
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("AMB")
        .to_string();
    let factor = if b.diabetic {
        DIABETES_COST_FACTOR
    } else {
        1.0
    };
    let z = normal(rng, 0.0, 1.0);
    let spread = (CHARGE_SPREAD * z - CHARGE_SPREAD * CHARGE_SPREAD / 2.0).exp();
    let charge = cents(base_charge(&class_code) * factor * spread);
    let paid = cents(charge * PAYER_SHARE);
    let mut encounter = json!({
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished",
        "class": class,
        "subject": {"reference": format!("Patient/{}", b.member)},
        "period": period,
        "serviceProvider": b.provider,
    });
    if let (Some(t), Some(e)) = (ty, encounter.as_object_mut()) {
        e.insert("type".into(), t.clone());
    }
    out.push(encounter);
    let service = ty
        .and_then(|t| t.get(0))
        .cloned()
        .unwrap_or_else(|| json!({"text": "Encounter"}));
    let claim_type = match class_code.as_str() {
        "EMER" | "IMP" | "ACUTE" => "institutional",
        _ => "professional",
    };
    let created = period
        .get("end")
        .or_else(|| period.get("start"))
        .cloned()
        .unwrap_or(Value::Null);
    let usd = |value: f64| json!({"value": value, "currency": "USD"});
    let category = |code: &str| json!({"coding": [{"system": ADJUDICATION, "code": code}]});
    out.push(json!({
        "resourceType": "ExplanationOfBenefit",
        "id": eob_id,
        "status": "active",
        "type": {"coding": [{"system": CLAIM_TYPE, "code": claim_type}]},
        "use": "claim",
        "patient": {"reference": format!("Patient/{}", b.member)},
        "billablePeriod": period,
        "created": created,
        "insurer": insurer(),
        "provider": b.provider,
        "outcome": "complete",
        "insurance": [{"focal": true, "coverage": {"reference": format!("Coverage/{}", b.coverage)}}],
        "item": [{
            "sequence": 1,
            "productOrService": service,
            "servicedPeriod": period,
            "encounter": [{"reference": format!("Encounter/{encounter_id}")}],
            "net": usd(charge),
        }],
        "total": [
            {"category": category("submitted"), "amount": usd(charge)},
            {"category": category("benefit"), "amount": usd(paid)},
        ],
        "payment": {"amount": usd(paid)},
    }));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use std::collections::{HashMap, HashSet};

    use super::*;

    fn all_ids(resources: &[Value]) -> Vec<String> {
        resources
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        for i in 0..20 {
            assert_eq!(covered(3, 1, i), covered(3, 1, i));
            assert_eq!(member_id(3, 1, i), member_id(3, 1, i));
            assert_eq!(insurer_resources(3, 1, i), insurer_resources(3, 1, i));
            assert_eq!(insurer_resources(3, 1, i).is_some(), covered(3, 1, i));
        }
        assert_eq!(insurer_only_members(3, 5), insurer_only_members(3, 5));
        assert_ne!(insurer_only_members(3, 5), insurer_only_members(4, 5));
        let first = (0..20).find(|i| covered(3, 1, *i)).unwrap();
        assert_ne!(member_id(3, 1, first), member_id(4, 1, first));
        // Another seed covers other patients.
        let a: Vec<bool> = (0..64).map(|i| covered(3, 1, i)).collect();
        let b: Vec<bool> = (0..64).map(|i| covered(4, 1, i)).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn about_sixty_percent_are_covered() {
        let n = (0..1000).filter(|i| covered(11, 0, *i)).count();
        // 600 expected, sd 15.5.
        assert!((550..=650).contains(&n), "{n}");
        let n = (0..1000).filter(|i| covered(11, 2, *i)).count();
        assert!((550..=650).contains(&n), "{n}");
    }

    #[test]
    fn the_member_is_the_hospital_patient_without_clinical_data() {
        let mut seen = 0;
        for i in 0..40 {
            let Some(out) = insurer_resources(5, 0, i) else {
                continue;
            };
            seen += 1;
            let record = patient_resources(5, 0, i);
            let hp = &record[0];
            let p = &out[0];
            assert_eq!(p["resourceType"], "Patient");
            assert_eq!(p["id"], member_id(5, 0, i));
            assert_ne!(p["id"], hp["id"], "the insurer's own id");
            for f in ["birthDate", "gender", "address"] {
                assert_eq!(p[f], hp[f], "{f}");
            }
            assert!(p.get("extension").is_none() && p.get("deceasedDateTime").is_none());
            let types: HashSet<&str> = out
                .iter()
                .map(|r| r["resourceType"].as_str().unwrap())
                .collect();
            let allowed: HashSet<&str> =
                ["Patient", "Coverage", "Encounter", "ExplanationOfBenefit"].into();
            assert!(types.is_subset(&allowed), "{types:?}");
            let cov = &out[1];
            assert_eq!(cov["resourceType"], "Coverage");
            assert_eq!(cov["payor"][0]["identifier"]["value"], INSURER);
            assert_eq!(
                cov["beneficiary"]["reference"],
                format!("Patient/{}", p["id"].as_str().unwrap())
            );
            // One stub and one claim per encounter of the hospital's record, same period and
            // class, in the record's order; no diagnoses.
            let encounters: Vec<&Value> = record
                .iter()
                .filter(|r| r["resourceType"] == "Encounter")
                .collect();
            let stubs: Vec<&Value> = out
                .iter()
                .filter(|r| r["resourceType"] == "Encounter")
                .collect();
            let eobs: Vec<&Value> = out
                .iter()
                .filter(|r| r["resourceType"] == "ExplanationOfBenefit")
                .collect();
            assert_eq!(stubs.len(), encounters.len());
            assert_eq!(eobs.len(), encounters.len());
            for ((e, s), eob) in encounters.iter().zip(&stubs).zip(&eobs) {
                assert_eq!(s["period"], e["period"]);
                assert_eq!(s["class"], e["class"]);
                assert_ne!(s["id"], e["id"]);
                assert!(s.get("diagnosis").is_none() && s.get("reasonCode").is_none());
                assert_eq!(eob["billablePeriod"], e["period"]);
                let ty = eob["type"]["coding"][0]["code"].as_str().unwrap();
                let class = e["class"]["code"].as_str().unwrap();
                assert_eq!(
                    ty,
                    if class == "AMB" {
                        "professional"
                    } else {
                        "institutional"
                    }
                );
                let submitted = eob["total"][0]["amount"]["value"].as_f64().unwrap();
                let paid = eob["payment"]["amount"]["value"].as_f64().unwrap();
                assert_eq!(
                    eob["total"][0]["category"]["coding"][0]["code"],
                    "submitted"
                );
                assert!(submitted > 0.0 && paid > 0.0 && paid <= submitted);
                assert_eq!(eob["insurer"]["identifier"]["value"], INSURER);
            }
        }
        assert!(seen > 10, "{seen}");
        assert_eq!(
            (0..40)
                .filter(|i| insurer_resources(5, 0, *i).is_none())
                .count(),
            (0..40).filter(|i| !covered(5, 0, *i)).count()
        );
    }

    #[test]
    fn every_claim_refers_to_resources_of_the_same_output() {
        let mut outputs: Vec<Vec<Value>> =
            (0..60).filter_map(|i| insurer_resources(9, 1, i)).collect();
        outputs.extend(insurer_only_members(9, 30));
        for out in &outputs {
            let keys: HashSet<String> = out
                .iter()
                .map(|r| {
                    format!(
                        "{}/{}",
                        r["resourceType"].as_str().unwrap(),
                        r["id"].as_str().unwrap()
                    )
                })
                .collect();
            let patient = format!("Patient/{}", out[0]["id"].as_str().unwrap());
            let mut eobs = 0;
            for r in out {
                if r["resourceType"] != "ExplanationOfBenefit" {
                    continue;
                }
                eobs += 1;
                let enc = r["item"][0]["encounter"][0]["reference"].as_str().unwrap();
                assert!(keys.contains(enc), "{enc}");
                let stub = out
                    .iter()
                    .find(|s| format!("Encounter/{}", s["id"].as_str().unwrap()) == enc)
                    .unwrap();
                assert_eq!(stub["period"], r["billablePeriod"]);
                assert_eq!(stub["subject"]["reference"], patient.as_str());
                assert_eq!(r["patient"]["reference"], patient.as_str());
                let cov = r["insurance"][0]["coverage"]["reference"].as_str().unwrap();
                assert!(keys.contains(cov), "{cov}");
            }
            assert!(eobs >= 1);
        }
    }

    #[test]
    fn ids_are_unique_across_hospitals_patients_and_members() {
        let mut ids: Vec<String> = Vec::new();
        let mut hospital_ids: HashSet<String> = HashSet::new();
        for h in 0..3 {
            for i in 0..80 {
                hospital_ids.extend(all_ids(&patient_resources(13, h, i)));
                if let Some(out) = insurer_resources(13, h, i) {
                    ids.extend(all_ids(&out));
                }
            }
        }
        for m in insurer_only_members(13, 50) {
            ids.extend(all_ids(&m));
        }
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "an id repeats");
        assert!(
            ids.iter().all(|i| !hospital_ids.contains(i)),
            "an id is a hospital's"
        );
        assert!(ids.len() > 1000, "{}", ids.len());
    }

    #[test]
    fn insurer_only_members_have_a_few_claims_of_every_class() {
        let members = insurer_only_members(21, 200);
        let mut classes: HashMap<String, usize> = HashMap::new();
        for m in &members {
            assert_eq!(m[0]["resourceType"], "Patient");
            assert_eq!(m[1]["resourceType"], "Coverage");
            let n = m
                .iter()
                .filter(|r| r["resourceType"] == "ExplanationOfBenefit")
                .count();
            assert!((1..=4).contains(&n), "{n}");
            for e in m.iter().filter(|r| r["resourceType"] == "Encounter") {
                *classes
                    .entry(e["class"]["code"].as_str().unwrap().into())
                    .or_default() += 1;
            }
        }
        for c in ["AMB", "EMER", "IMP"] {
            assert!(classes.get(c).copied().unwrap_or(0) > 0, "{classes:?}");
        }
    }

    /// Mean paid per encounter class, for diabetics and the others, over covered patients.
    fn mean_paid(seed: u64, patients: u64) -> HashMap<(String, bool), (f64, usize)> {
        let mut sums: HashMap<(String, bool), (f64, usize)> = HashMap::new();
        for h in 0..2 {
            for i in 0..patients {
                let Some(out) = insurer_resources(seed, h, i) else {
                    continue;
                };
                let diabetic = patient_resources(seed, h, i).iter().any(is_diabetes);
                let classes: HashMap<String, String> = out
                    .iter()
                    .filter(|r| r["resourceType"] == "Encounter")
                    .map(|r| {
                        (
                            format!("Encounter/{}", r["id"].as_str().unwrap()),
                            r["class"]["code"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                for eob in out
                    .iter()
                    .filter(|r| r["resourceType"] == "ExplanationOfBenefit")
                {
                    let enc = eob["item"][0]["encounter"][0]["reference"]
                        .as_str()
                        .unwrap();
                    let paid = eob["payment"]["amount"]["value"].as_f64().unwrap();
                    let s = sums.entry((classes[enc].clone(), diabetic)).or_default();
                    s.0 += paid;
                    s.1 += 1;
                }
            }
        }
        sums.into_iter()
            .map(|(k, (sum, n))| (k, (sum / n as f64, n)))
            .collect()
    }

    #[test]
    fn diabetics_cost_the_known_factor_more_per_class() {
        let means = mean_paid(17, 400);
        let (amb_d, n_amb_d) = means[&("AMB".to_string(), true)];
        let (amb, n_amb) = means[&("AMB".to_string(), false)];
        assert!(n_amb_d >= 150 && n_amb >= 1500, "{n_amb_d} {n_amb}");
        let ratio = amb_d / amb;
        assert!(
            (ratio - DIABETES_COST_FACTOR).abs() < 0.15,
            "ambulatory: {ratio}"
        );
        assert!(
            (amb / expected_paid("AMB", false) - 1.0).abs() < 0.05,
            "{amb}"
        );
        assert!(
            (amb_d / expected_paid("AMB", true) - 1.0).abs() < 0.1,
            "{amb_d}"
        );
        let (emer_d, n_emer_d) = means[&("EMER".to_string(), true)];
        let (emer, n_emer) = means[&("EMER".to_string(), false)];
        assert!(n_emer_d >= 10 && n_emer >= 80, "{n_emer_d} {n_emer}");
        let ratio = emer_d / emer;
        assert!((1.3..2.4).contains(&ratio), "emergency: {ratio}");
        assert!(
            (emer / expected_paid("EMER", false) - 1.0).abs() < 0.15,
            "{emer}"
        );
        // The classes differ as their bases do.
        assert!(emer / amb > 6.0, "{emer} {amb}");
    }

    #[test]
    fn base_and_expected_amounts() {
        assert_eq!(base_charge("AMB"), BASE_CHARGE_AMBULATORY);
        assert_eq!(base_charge("EMER"), BASE_CHARGE_EMERGENCY);
        assert_eq!(base_charge("IMP"), BASE_CHARGE_INPATIENT);
        assert_eq!(base_charge("wellness"), BASE_CHARGE_AMBULATORY);
        let r = expected_paid("IMP", true) / expected_paid("IMP", false);
        assert!((r - DIABETES_COST_FACTOR).abs() < 1e-12);
        assert!((expected_paid("AMB", false) - 120.0).abs() < 1e-9);
        assert_eq!(cents(12.345_6), 12.35);
    }
}
