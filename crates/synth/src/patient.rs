//! One synthetic patient, generated in named steps: demographics, chronic conditions, death,
//! the Patient resource, latent physiology, the encounter schedule, and per encounter the visit
//! itself, diagnoses with their medication, acute problems, vital signs and labs, smoking
//! status, procedures and immunizations.
//!
//! Every step draws from the patient's own random stream, so the order of the steps and of the
//! draws inside each step is part of the output: keep it when changing a step
//! (`tests/determinism.rs` pins a hash of the output). The home address comes from a stream of
//! its own ([`crate::region`]), so adding it changed nothing else.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::AS_OF_YEAR;
use crate::calendar::{date_str, datetime_str, days_from_civil};
use crate::codes::{
    ACUTE, AFIB, CHRONIC, CKD, CVX, DIABETES, HYPERLIPIDEMIA, HYPERTENSION, LOINC, MEDS, N_CHRONIC,
    OBESITY, PREDIABETES, RXNORM, SNOMED, UCUM, codeable,
};
use crate::hospital::PRACTITIONERS;
use crate::ids::{next_id, organization_id, patient_id, practitioner_id};
use crate::names::{FAMILY_NAMES, GIVEN_F_NAMES, GIVEN_M_NAMES, pick};
use crate::region::home_address;

/// Which chronic conditions a patient has, indexed like [`CHRONIC`].
type Conditions = [bool; N_CHRONIC];

/// Generates the resources of patient `index` of hospital `hospital` (Patient first).
///
/// References to the hospital's Organization and Practitioners use the ids of
/// [`hospital_resources`](crate::hospital_resources) for the same `(seed, hospital)`.
pub fn patient_resources(seed: u64, hospital: u32, index: u64) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (u64::from(hospital) << 40) ^ index,
    );
    let mut out = Vec::with_capacity(48);
    let pid = patient_id(seed, hospital, index);
    let org_ref = format!("Organization/{}", organization_id(seed, hospital));
    let as_of = days_from_civil(AS_OF_YEAR, 1, 1);

    let person = Demographics::sample(&mut rng, as_of);
    let has = chronic_conditions(&mut rng, person.band);
    let death_day = death(&mut rng, &person, as_of);
    let mrn = format!("H{hospital}-{index:09}");
    let address = home_address(seed, hospital, index);
    out.push(patient(
        &mut rng, &person, &pid, &mrn, &org_ref, address, death_day,
    ));
    let latent = Latent::sample(&mut rng, &has, person.age);
    let practitioner = format!(
        "Practitioner/{}",
        practitioner_id(seed, hospital, rng.random_range(0..PRACTITIONERS))
    );
    let days = encounter_days(&mut rng, person.birth, death_day.unwrap_or(as_of), &has);
    let chart = Chart {
        patient_ref: format!("Patient/{pid}"),
        org_ref,
        practitioner,
        age: person.age,
        has,
        latent,
    };
    for (enc_no, day) in days.into_iter().enumerate() {
        visit(&mut rng, &chart, enc_no, day, &mut out);
    }
    out
}

/// Sex, gender and age of a patient.
struct Demographics {
    female: bool,
    gender: &'static str,
    /// Birth day (days since 1970-01-01).
    birth: i64,
    /// Age in whole years at the "as of" date.
    age: i64,
    /// Age band of the prevalence tables: 0 under 40, 1 under 65, 2 from 65.
    band: usize,
}

impl Demographics {
    /// Age roughly follows a European population pyramid.
    fn sample(rng: &mut ChaCha8Rng, as_of: i64) -> Demographics {
        let female = rng.random_bool(0.51);
        let gender = if rng.random_bool(0.003) {
            "other"
        } else if female {
            "female"
        } else {
            "male"
        };
        let age_years = {
            let u: f64 = rng.random();
            // Mixture: more adults than children, fewer very old people.
            if u < 0.18 {
                rng.random_range(0.0..18.0)
            } else if u < 0.75 {
                rng.random_range(18.0..65.0)
            } else {
                rng.random_range(65.0..98.0)
            }
        };
        let birth = as_of - (age_years * 365.25) as i64 - rng.random_range(0..365);
        let age = ((as_of - birth) as f64 / 365.25) as i64;
        let band = if age < 40 {
            0
        } else if age < 65 {
            1
        } else {
            2
        };
        Demographics {
            female,
            gender,
            birth,
            age,
            band,
        }
    }
}

/// The chronic conditions, drawn with the prevalence of the age band, then correlated.
fn chronic_conditions(rng: &mut ChaCha8Rng, band: usize) -> Conditions {
    let mut has = [false; N_CHRONIC];
    for (i, c) in CHRONIC.iter().enumerate() {
        let p = c.prevalence.get(band).copied().unwrap_or(0.0);
        if let Some(slot) = has.get_mut(i) {
            *slot = rng.random_bool(p.clamp(0.0, 1.0));
        }
    }
    // Correlations: obesity raises the odds of diabetes and hypertension; diabetes excludes
    // prediabetes.
    if has[OBESITY] && !has[DIABETES] && band > 0 && rng.random_bool(0.12) {
        has[DIABETES] = true;
    }
    if has[OBESITY] && !has[HYPERTENSION] && rng.random_bool(0.15) {
        has[HYPERTENSION] = true;
    }
    if has[DIABETES] {
        has[PREDIABETES] = false;
    }
    has
}

/// The day of death within the last five years, if the patient died (more likely when old).
fn death(rng: &mut ChaCha8Rng, person: &Demographics, as_of: i64) -> Option<i64> {
    let p_death = match person.age {
        a if a >= 85 => 0.25,
        a if a >= 75 => 0.10,
        a if a >= 65 => 0.04,
        _ => 0.005,
    };
    let deceased = person.age >= 1 && rng.random_bool(p_death);
    if deceased {
        Some(as_of - rng.random_range(1..(365 * 5).min((as_of - person.birth).max(2))))
    } else {
        None
    }
}

/// The Patient resource: name, US Core race and ethnicity, record number, home address, birth
/// and death.
fn patient(
    rng: &mut ChaCha8Rng,
    person: &Demographics,
    pid: &str,
    mrn: &str,
    org_ref: &str,
    address: Value,
    death_day: Option<i64>,
) -> Value {
    let family = pick(rng, FAMILY_NAMES);
    let given = if person.female {
        pick(rng, GIVEN_F_NAMES)
    } else {
        pick(rng, GIVEN_M_NAMES)
    };
    let (race_code, race_display) = match rng.random_range(0..10) {
        0 => ("2054-5", "Black or African American"),
        1 => ("2028-9", "Asian"),
        2 => ("2131-1", "Other Race"),
        _ => ("2106-3", "White"),
    };
    let (eth_code, eth_display) = if rng.random_bool(0.1) {
        ("2135-2", "Hispanic or Latino")
    } else {
        ("2186-5", "Not Hispanic or Latino")
    };
    let mut patient = json!({
        "resourceType": "Patient",
        "id": pid,
        "extension": [
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": race_code, "display": race_display}},
                {"url": "text", "valueString": race_display}]},
            {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": eth_code, "display": eth_display}},
                {"url": "text", "valueString": eth_display}]}
        ],
        "identifier": [{"system": "https://medspace.example/mrn", "value": mrn}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": person.gender,
        "birthDate": date_str(person.birth),
        "address": [address],
        "managingOrganization": {"reference": org_ref},
    });
    if let (Some(d), Some(obj)) = (death_day, patient.as_object_mut()) {
        obj.insert("deceasedDateTime".into(), json!(datetime_str(d, 600)));
    }
    patient
}

/// A patient's latent physiology, correlated with the conditions; each encounter's vitals and
/// labs scatter around it.
struct Latent {
    bmi: f64,
    a1c: f64,
    sbp: f64,
    dbp: f64,
    chol: f64,
    creat: f64,
}

impl Latent {
    fn sample(rng: &mut ChaCha8Rng, has: &Conditions, age: i64) -> Latent {
        let bmi = if has[OBESITY] {
            normal(rng, 34.0, 3.5).max(30.0)
        } else if age < 18 {
            normal(rng, 18.5, 2.5)
        } else {
            normal(rng, 25.0, 3.0).min(29.9)
        };
        let a1c = if has[DIABETES] {
            normal(rng, 7.8, 1.2).max(6.5)
        } else if has[PREDIABETES] {
            normal(rng, 6.0, 0.2).clamp(5.7, 6.4)
        } else {
            normal(rng, 5.3, 0.3).min(5.6)
        };
        let sbp = if has[HYPERTENSION] {
            normal(rng, 148.0, 12.0)
        } else {
            normal(rng, 112.0 + age as f64 * 0.2, 9.0)
        };
        Latent {
            bmi,
            a1c,
            sbp,
            dbp: sbp * 0.62 + normal(rng, 0.0, 5.0),
            chol: if has[HYPERLIPIDEMIA] {
                normal(rng, 245.0, 25.0)
            } else {
                normal(rng, 180.0, 25.0)
            },
            creat: if has[CKD] {
                normal(rng, 1.6, 0.3)
            } else {
                normal(rng, 0.9, 0.15)
            }
            .max(0.4),
        }
    }
}

fn n_chronic(has: &Conditions) -> i64 {
    has.iter().filter(|h| **h).count() as i64
}

/// The encounter days, sorted: a yearly wellness visit over the last years (more with chronic
/// disease), at most ten.
fn encounter_days(rng: &mut ChaCha8Rng, birth: i64, end_day: i64, has: &Conditions) -> Vec<i64> {
    let first_day = birth.max(end_day - 365 * 6);
    let span = (end_day - first_day).max(1);
    let n_enc = (1 + span / 365 + n_chronic(has)).min(10);
    let mut days: Vec<i64> = (0..n_enc)
        .map(|_| first_day + rng.random_range(0..span))
        .collect();
    days.sort_unstable();
    days
}

/// What every encounter of a patient refers to.
struct Chart {
    patient_ref: String,
    org_ref: String,
    practitioner: String,
    age: i64,
    has: Conditions,
    latent: Latent,
}

/// One encounter, once its Encounter resource is written.
struct Encounter {
    enc_ref: String,
    day: i64,
    /// Start minute of the day.
    start: i64,
    /// When things were recorded: five minutes after the start.
    when: String,
}

/// One encounter and everything recorded at it. The chronic conditions are diagnosed at the
/// first encounter (onset recorded there).
fn visit(rng: &mut ChaCha8Rng, chart: &Chart, enc_no: usize, day: i64, out: &mut Vec<Value>) {
    let enc = encounter(rng, chart, enc_no, day, out);
    if enc_no == 0 {
        chronic_diagnoses(rng, chart, &enc, out);
    }
    acute_conditions(rng, chart, &enc, out);
    vital_signs_and_labs(rng, chart, &enc, out);
    if chart.age >= 18 && enc_no == 0 {
        smoking_status(rng, chart, &enc, out);
    }
    procedures(rng, chart, &enc, out);
    immunization(rng, chart, &enc, out);
}

/// The Encounter resource: an emergency now and then, else a general examination (first visit
/// or no chronic disease) or a check-up.
fn encounter(
    rng: &mut ChaCha8Rng,
    chart: &Chart,
    enc_no: usize,
    day: i64,
    out: &mut Vec<Value>,
) -> Encounter {
    let eid = next_id(rng);
    let enc_ref = format!("Encounter/{eid}");
    let emergency = rng.random_bool(0.05);
    let (class, type_code, type_display) = if emergency {
        ("EMER", "50849002", "Emergency room admission (procedure)")
    } else if enc_no == 0 || n_chronic(&chart.has) == 0 {
        (
            "AMB",
            "162673000",
            "General examination of patient (procedure)",
        )
    } else {
        ("AMB", "185349003", "Encounter for check up (procedure)")
    };
    let start: i64 = rng.random_range(8 * 60..17 * 60);
    out.push(json!({
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
        "type": [codeable(SNOMED, type_code, type_display)],
        "subject": {"reference": chart.patient_ref},
        "participant": [{"individual": {"reference": chart.practitioner}}],
        "period": {"start": datetime_str(day, start), "end": datetime_str(day, start + 30)},
        "serviceProvider": {"reference": chart.org_ref},
    }));
    Encounter {
        enc_ref,
        day,
        start,
        when: datetime_str(day, start + 5),
    }
}

/// Each chronic condition as an active Condition, followed by the medication it calls for.
fn chronic_diagnoses(rng: &mut ChaCha8Rng, chart: &Chart, enc: &Encounter, out: &mut Vec<Value>) {
    for (i, c) in CHRONIC.iter().enumerate() {
        if !chart.has.get(i).copied().unwrap_or(false) {
            continue;
        }
        let cid = next_id(rng);
        out.push(json!({
            "resourceType": "Condition",
            "id": cid,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "code": codeable(SNOMED, c.snomed, c.display),
            "subject": {"reference": chart.patient_ref},
            "encounter": {"reference": enc.enc_ref},
            "onsetDateTime": enc.when,
            "recordedDate": enc.when,
        }));
        medications(rng, chart, enc, i, out);
    }
}

/// The MedicationRequests for chronic condition `condition`.
fn medications(
    rng: &mut ChaCha8Rng,
    chart: &Chart,
    enc: &Encounter,
    condition: usize,
    out: &mut Vec<Value>,
) {
    for (cond, rx, disp) in MEDS {
        if *cond != condition {
            continue;
        }
        let mid = next_id(rng);
        out.push(json!({
            "resourceType": "MedicationRequest",
            "id": mid,
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": codeable(RXNORM, rx, disp),
            "subject": {"reference": chart.patient_ref},
            "encounter": {"reference": enc.enc_ref},
            "authoredOn": enc.when,
            "requester": {"reference": chart.practitioner},
        }));
    }
}

/// Acute problems, sometimes; resolved one to three weeks later.
fn acute_conditions(rng: &mut ChaCha8Rng, chart: &Chart, enc: &Encounter, out: &mut Vec<Value>) {
    for (code, display, p) in ACUTE {
        if rng.random_bool(*p) {
            let cid = next_id(rng);
            let abate = datetime_str(enc.day + rng.random_range(7..21), enc.start);
            out.push(json!({
                "resourceType": "Condition",
                "id": cid,
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "code": codeable(SNOMED, code, display),
                "subject": {"reference": chart.patient_ref},
                "encounter": {"reference": enc.enc_ref},
                "onsetDateTime": enc.when,
                "abatementDateTime": abate,
                "recordedDate": enc.when,
            }));
        }
    }
}

/// One measured value: LOINC code and display, value, UCUM unit, observation category.
struct Measured {
    code: &'static str,
    display: &'static str,
    value: f64,
    unit: &'static str,
    category: &'static str,
}

impl Measured {
    fn new(
        code: &'static str,
        display: &'static str,
        value: f64,
        unit: &'static str,
        category: &'static str,
    ) -> Measured {
        Measured {
            code,
            display,
            value,
            unit,
            category,
        }
    }
}

/// Vital signs at every encounter and labs for adults, as quantity Observations.
fn vital_signs_and_labs(
    rng: &mut ChaCha8Rng,
    chart: &Chart,
    enc: &Encounter,
    out: &mut Vec<Value>,
) {
    let mut values = vital_signs(rng, chart);
    if chart.age >= 18 {
        values.extend(labs(rng, &chart.latent));
    }
    for m in values {
        let oid = next_id(rng);
        out.push(json!({
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": m.category, "display": m.category}]}],
            "code": codeable(LOINC, m.code, m.display),
            "subject": {"reference": chart.patient_ref},
            "encounter": {"reference": enc.enc_ref},
            "effectiveDateTime": enc.when,
            "issued": format!("{}.000+00:00", enc.when.get(..19).unwrap_or(&enc.when)),
            "valueQuantity": {"value": m.value, "unit": m.unit, "system": UCUM, "code": m.unit},
        }));
    }
}

/// BMI and blood pressure drift together around the latent values; heart rate is higher with
/// atrial fibrillation.
fn vital_signs(rng: &mut ChaCha8Rng, chart: &Chart) -> Vec<Measured> {
    let latent = &chart.latent;
    let drift = normal(rng, 0.0, 1.0);
    vec![
        Measured::new(
            "39156-5",
            "Body Mass Index",
            round1(latent.bmi + drift * 0.5),
            "kg/m2",
            "vital-signs",
        ),
        Measured::new(
            "8480-6",
            "Systolic Blood Pressure",
            (latent.sbp + drift * 6.0).round(),
            "mm[Hg]",
            "vital-signs",
        ),
        Measured::new(
            "8462-4",
            "Diastolic Blood Pressure",
            (latent.dbp + drift * 4.0).round(),
            "mm[Hg]",
            "vital-signs",
        ),
        Measured::new(
            "8867-4",
            "Heart rate",
            normal(rng, if chart.has[AFIB] { 95.0 } else { 72.0 }, 9.0).round(),
            "/min",
            "vital-signs",
        ),
    ]
}

/// HbA1c, glucose (following HbA1c), total cholesterol and creatinine.
fn labs(rng: &mut ChaCha8Rng, latent: &Latent) -> Vec<Measured> {
    let a1c = round1(latent.a1c + normal(rng, 0.0, 0.25));
    // Mean glucose from HbA1c (ADAG: eAG = 28.7 * A1c - 46.7) plus fasting noise.
    let glucose = (28.7 * a1c - 46.7 + normal(rng, 0.0, 12.0))
        .max(55.0)
        .round();
    vec![
        Measured::new(
            "4548-4",
            "Hemoglobin A1c/Hemoglobin.total in Blood",
            a1c,
            "%",
            "laboratory",
        ),
        Measured::new("2339-0", "Glucose", glucose, "mg/dL", "laboratory"),
        Measured::new(
            "2093-3",
            "Total Cholesterol",
            (latent.chol + normal(rng, 0.0, 10.0)).round(),
            "mg/dL",
            "laboratory",
        ),
        Measured::new(
            "2160-0",
            "Creatinine",
            (latent.creat * 100.0 + normal(rng, 0.0, 5.0)).round() / 100.0,
            "mg/dL",
            "laboratory",
        ),
    ]
}

/// Smoking status, a coded observation.
fn smoking_status(rng: &mut ChaCha8Rng, chart: &Chart, enc: &Encounter, out: &mut Vec<Value>) {
    let oid = next_id(rng);
    let (code, display) = if rng.random_bool(0.2) {
        ("449868002", "Smokes tobacco daily (finding)")
    } else {
        ("266919005", "Never smoked tobacco (finding)")
    };
    out.push(json!({
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "social-history", "display": "social-history"}]}],
        "code": codeable(LOINC, "72166-2", "Tobacco smoking status NHIS"),
        "subject": {"reference": chart.patient_ref},
        "encounter": {"reference": enc.enc_ref},
        "effectiveDateTime": enc.when,
        "valueCodeableConcept": codeable(SNOMED, code, display),
    }));
}

/// HbA1c measurement for (pre)diabetics, medication reconciliation sometimes, a colonoscopy
/// rarely from 50.
fn procedures(rng: &mut ChaCha8Rng, chart: &Chart, enc: &Encounter, out: &mut Vec<Value>) {
    let mut procs: Vec<(&str, &str)> = Vec::new();
    if chart.has[DIABETES] || chart.has[PREDIABETES] {
        procs.push(("43396009", "Hemoglobin A1c measurement (procedure)"));
    }
    if rng.random_bool(0.3) {
        procs.push(("430193006", "Medication Reconciliation (procedure)"));
    }
    if chart.age >= 50 && rng.random_bool(0.05) {
        procs.push(("73761001", "Colonoscopy"));
    }
    for (code, display) in procs {
        let prid = next_id(rng);
        out.push(json!({
            "resourceType": "Procedure",
            "id": prid,
            "status": "completed",
            "code": codeable(SNOMED, code, display),
            "subject": {"reference": chart.patient_ref},
            "encounter": {"reference": enc.enc_ref},
            "performedPeriod": {"start": enc.when, "end": datetime_str(enc.day, enc.start + 20)},
        }));
    }
}

/// Seasonal flu vaccine at some visits.
fn immunization(rng: &mut ChaCha8Rng, chart: &Chart, enc: &Encounter, out: &mut Vec<Value>) {
    if rng.random_bool(0.35) {
        let iid = next_id(rng);
        out.push(json!({
            "resourceType": "Immunization",
            "id": iid,
            "status": "completed",
            "vaccineCode": codeable(CVX, "140", "Influenza, seasonal, injectable, preservative free"),
            "patient": {"reference": chart.patient_ref},
            "encounter": {"reference": enc.enc_ref},
            "occurrenceDateTime": enc.when,
            "primarySource": true,
        }));
    }
}

/// A normal deviate (Box-Muller: two uniforms give one standard normal deviate).
pub(crate) fn normal(rng: &mut ChaCha8Rng, mean: f64, sd: f64) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
