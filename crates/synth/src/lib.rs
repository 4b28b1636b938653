//! Deterministic synthetic FHIR R4 patients for tests, benchmarks and the devnet.
//!
//! Every patient is a pure function of `(seed, hospital, index)`: the same triple always yields
//! the same resources, so a hospital's population can be generated in any order, in shards or in
//! parallel, and tests can rely on exact output. The generator is deliberately light (only
//! `serde_json` and `rand`) so the devnet can create thousands of patients per second.
//!
//! What it produces, per patient: a `Patient` (US Core race/ethnicity extensions), `Encounter`s
//! (wellness, chronic-care and emergency visits), `Condition`s with age-dependent prevalence
//! (SNOMED CT), `MedicationRequest`s that follow the conditions (RxNorm), vital signs and lab
//! `Observation`s with correlated plausible values (LOINC: diabetics have higher HbA1c and
//! glucose, hypertensives higher blood pressure, BMI tracks diabetes), `Procedure`s (SNOMED CT)
//! and `Immunization`s (CVX). Per hospital there is one `Organization` and a few `Practitioner`s.
//! References use the relative `Type/id` form of FHIR Bulk Data; within a transaction Bundle
//! (see [`patient_bundle`]) each entry has `fullUrl = urn:uuid:<id>` and references use it.
//!
//! Clinical figures are chosen to be plausible, not epidemiologically exact.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// The fixed "as of" date of the generated world (no wall clock: output is reproducible).
pub const AS_OF_YEAR: i32 = 2025;

/// Errors of the generator (only I/O can fail).
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Writing an output file failed.
    #[error("cannot write synthetic data: path={path} error={source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    /// Number of patients.
    pub patients: u64,
    /// Seed of the whole population.
    pub seed: u64,
    /// Hospital number (0, 1, 2 ...): each hospital gets its own disjoint patients and staff.
    pub hospital: u32,
}

/// Summary of a generation run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthSummary {
    /// Patients written.
    pub patients: u64,
    /// Resources written, all types together.
    pub resources: u64,
}

/// Number of practitioners per hospital.
const PRACTITIONERS: u64 = 8;

/// A deterministic UUID-shaped id for `(seed, hospital, kind, index)`.
fn make_id(seed: u64, hospital: u32, kind: u64, index: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed ^ (u64::from(hospital) << 48) ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index,
    );
    let a: u64 = rng.random();
    let b: u64 = rng.random();
    uuid_string(a, b)
}

fn uuid_string(a: u64, b: u64) -> String {
    // Version 4 / RFC 4122 variant bits so the ids look like ordinary random UUIDs.
    let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// The Organization id of hospital `k`.
pub fn organization_id(seed: u64, hospital: u32) -> String {
    make_id(seed, hospital, 1, 0)
}

/// The Organization and Practitioner resources of hospital `k` (referenced by its patients).
pub fn hospital_resources(seed: u64, hospital: u32) -> Vec<Value> {
    let org = organization_id(seed, hospital);
    let mut out = Vec::with_capacity(PRACTITIONERS as usize + 1);
    out.push(json!({
        "resourceType": "Organization",
        "id": org,
        "identifier": [{"system": "https://medspace.example/hospital", "value": format!("hospital-{hospital}")}],
        "active": true,
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov", "display": "Healthcare Provider"}], "text": "Healthcare Provider"}],
        "name": format!("Synthetic Hospital {}", hospital_letter(hospital)),
    }));
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA11C_E000 ^ u64::from(hospital));
    for i in 0..PRACTITIONERS {
        let family = pick(&mut rng, FAMILY_NAMES);
        let given = pick(&mut rng, GIVEN_F_NAMES);
        out.push(json!({
            "resourceType": "Practitioner",
            "id": practitioner_id(seed, hospital, i),
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("99{:08}", u64::from(hospital) * 1000 + i)}],
            "active": true,
            "name": [{"family": family, "given": [given], "prefix": ["Dr."]}],
            "gender": if rng.random_bool(0.5) { "female" } else { "male" },
        }));
    }
    out
}

fn practitioner_id(seed: u64, hospital: u32, i: u64) -> String {
    make_id(seed, hospital, 2, i)
}

fn hospital_letter(hospital: u32) -> String {
    match char::from_u32(u32::from(b'A').saturating_add(hospital)) {
        Some(c) if hospital < 26 => c.to_string(),
        _ => hospital.to_string(),
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    if items.is_empty() {
        return "";
    }
    let i = rng.random_range(0..items.len());
    items.get(i).copied().unwrap_or("")
}

const FAMILY_NAMES: &[&str] = &[
    "Smith",
    "Müller",
    "García",
    "Rossi",
    "Dubois",
    "Novak",
    "Jansen",
    "Silva",
    "Kowalski",
    "Nielsen",
    "Schmidt",
    "Bianchi",
    "Martin",
    "Costa",
    "Fischer",
    "Moreau",
    "Weber",
    "Ricci",
    "Bernard",
    "Kim",
    "Nguyen",
    "Haddad",
    "Okafor",
    "Lindqvist",
];
const GIVEN_F_NAMES: &[&str] = &[
    "Anna", "Maria", "Sofia", "Emma", "Lea", "Clara", "Julia", "Elena", "Ines", "Nora", "Mila",
    "Hanna",
];
const GIVEN_M_NAMES: &[&str] = &[
    "Jonas", "Luca", "Paul", "Noah", "Marco", "David", "Felix", "Elias", "Tomas", "Hugo", "Leon",
    "Adam",
];

/// A chronic condition the generator knows.
struct Chronic {
    snomed: &'static str,
    display: &'static str,
    /// Prevalence for age < 40, 40..65, >= 65.
    prevalence: [f64; 3],
}

const DIABETES: usize = 0;
const HYPERTENSION: usize = 1;
const HYPERLIPIDEMIA: usize = 2;
const PREDIABETES: usize = 3;
const ASTHMA: usize = 4;
const CKD: usize = 5;
const OBESITY: usize = 6;
const AFIB: usize = 7;

const CHRONIC: &[Chronic] = &[
    Chronic {
        snomed: "44054006",
        display: "Diabetes mellitus type 2 (disorder)",
        prevalence: [0.02, 0.10, 0.20],
    },
    Chronic {
        snomed: "38341003",
        display: "Hypertension",
        prevalence: [0.05, 0.28, 0.55],
    },
    Chronic {
        snomed: "55822004",
        display: "Hyperlipidemia",
        prevalence: [0.04, 0.20, 0.35],
    },
    Chronic {
        snomed: "15777000",
        display: "Prediabetes",
        prevalence: [0.05, 0.15, 0.18],
    },
    Chronic {
        snomed: "195967001",
        display: "Asthma",
        prevalence: [0.08, 0.07, 0.06],
    },
    Chronic {
        snomed: "431855005",
        display: "Chronic kidney disease stage 1 (disorder)",
        prevalence: [0.005, 0.03, 0.10],
    },
    Chronic {
        snomed: "162864005",
        display: "Body mass index 30+ - obesity (finding)",
        prevalence: [0.10, 0.22, 0.20],
    },
    Chronic {
        snomed: "49436004",
        display: "Atrial fibrillation",
        prevalence: [0.001, 0.02, 0.09],
    },
];

/// Acute conditions (code, display, yearly probability).
const ACUTE: &[(&str, &str, f64)] = &[
    ("444814009", "Viral sinusitis (disorder)", 0.12),
    ("195662009", "Acute viral pharyngitis (disorder)", 0.10),
    ("10509002", "Acute bronchitis (disorder)", 0.06),
    ("65363002", "Otitis media", 0.04),
    ("283371005", "Laceration of forearm", 0.02),
];

/// Medication per chronic condition: (condition index, RxNorm code, display).
const MEDS: &[(usize, &str, &str)] = &[
    (
        DIABETES,
        "860975",
        "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet",
    ),
    (HYPERTENSION, "314076", "lisinopril 10 MG Oral Tablet"),
    (HYPERTENSION, "197361", "amlodipine 5 MG Oral Tablet"),
    (HYPERLIPIDEMIA, "312961", "simvastatin 20 MG Oral Tablet"),
    (
        ASTHMA,
        "895994",
        "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
    ),
    (AFIB, "855332", "Warfarin Sodium 5 MG Oral Tablet"),
];

/// One encounter's vitals and labs are generated from the patient's latent state.
struct Latent {
    bmi: f64,
    a1c: f64,
    sbp: f64,
    dbp: f64,
    chol: f64,
    creat: f64,
}

fn normal(rng: &mut ChaCha8Rng, mean: f64, sd: f64) -> f64 {
    // Box-Muller: two uniforms give one standard normal deviate.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

fn date_str(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn datetime_str(days: i64, minute_of_day: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:00+00:00",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

fn codeable(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

const SNOMED: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const CVX: &str = "http://hl7.org/fhir/sid/cvx";
const UCUM: &str = "http://unitsofmeasure.org";

/// Generates the resources of patient `index` of hospital `hospital` (Patient first).
///
/// References to the hospital's Organization and Practitioners use the ids of
/// [`hospital_resources`] for the same `(seed, hospital)`.
pub fn patient_resources(seed: u64, hospital: u32, index: u64) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (u64::from(hospital) << 40) ^ index,
    );
    let mut out = Vec::with_capacity(48);
    let pid = make_id(seed, hospital, 3, index);
    let patient_ref = format!("Patient/{pid}");
    let org_ref = format!("Organization/{}", organization_id(seed, hospital));
    let as_of = days_from_civil(AS_OF_YEAR, 1, 1);

    // Demographics: age roughly follows a European population pyramid.
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
    let mut has = [false; 8];
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
    let p_death = match age {
        a if a >= 85 => 0.25,
        a if a >= 75 => 0.10,
        a if a >= 65 => 0.04,
        _ => 0.005,
    };
    let deceased = age >= 1 && rng.random_bool(p_death);
    let death_day = if deceased {
        Some(as_of - rng.random_range(1..(365 * 5).min((as_of - birth).max(2))))
    } else {
        None
    };
    let end_day = death_day.unwrap_or(as_of);

    let family = pick(&mut rng, FAMILY_NAMES);
    let given = if female {
        pick(&mut rng, GIVEN_F_NAMES)
    } else {
        pick(&mut rng, GIVEN_M_NAMES)
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
        "identifier": [{"system": "https://medspace.example/mrn", "value": format!("H{hospital}-{index:09}")}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": gender,
        "birthDate": date_str(birth),
        "managingOrganization": {"reference": org_ref},
    });
    if let (Some(d), Some(obj)) = (death_day, patient.as_object_mut()) {
        obj.insert("deceasedDateTime".into(), json!(datetime_str(d, 600)));
    }
    out.push(patient);

    // Latent physiology, correlated with the conditions.
    let bmi = if has[OBESITY] {
        normal(&mut rng, 34.0, 3.5).max(30.0)
    } else if age < 18 {
        normal(&mut rng, 18.5, 2.5)
    } else {
        normal(&mut rng, 25.0, 3.0).min(29.9)
    };
    let a1c = if has[DIABETES] {
        normal(&mut rng, 7.8, 1.2).max(6.5)
    } else if has[PREDIABETES] {
        normal(&mut rng, 6.0, 0.2).clamp(5.7, 6.4)
    } else {
        normal(&mut rng, 5.3, 0.3).min(5.6)
    };
    let sbp = if has[HYPERTENSION] {
        normal(&mut rng, 148.0, 12.0)
    } else {
        normal(&mut rng, 112.0 + age as f64 * 0.2, 9.0)
    };
    let latent = Latent {
        bmi,
        a1c,
        sbp,
        dbp: sbp * 0.62 + normal(&mut rng, 0.0, 5.0),
        chol: if has[HYPERLIPIDEMIA] {
            normal(&mut rng, 245.0, 25.0)
        } else {
            normal(&mut rng, 180.0, 25.0)
        },
        creat: if has[CKD] {
            normal(&mut rng, 1.6, 0.3)
        } else {
            normal(&mut rng, 0.9, 0.15)
        }
        .max(0.4),
    };

    // Encounters: a yearly wellness visit over the last years (more with chronic disease).
    let n_chronic = has.iter().filter(|h| **h).count() as i64;
    let first_day = birth.max(end_day - 365 * 6);
    let span = (end_day - first_day).max(1);
    let n_enc = (1 + span / 365 + n_chronic).min(10);
    let practitioner = format!(
        "Practitioner/{}",
        practitioner_id(seed, hospital, rng.random_range(0..PRACTITIONERS))
    );
    let mut enc_days: Vec<i64> = (0..n_enc)
        .map(|_| first_day + rng.random_range(0..span))
        .collect();
    enc_days.sort_unstable();
    let next_id = |rng: &mut ChaCha8Rng| {
        let a: u64 = rng.random();
        let b: u64 = rng.random();
        uuid_string(a, b)
    };
    // The chronic conditions are diagnosed at the first encounter (onset recorded there).
    for (enc_no, day) in enc_days.iter().copied().enumerate() {
        let eid = next_id(&mut rng);
        let enc_ref = format!("Encounter/{eid}");
        let emergency = rng.random_bool(0.05);
        let (class, type_code, type_display) = if emergency {
            ("EMER", "50849002", "Emergency room admission (procedure)")
        } else if enc_no == 0 || n_chronic == 0 {
            (
                "AMB",
                "162673000",
                "General examination of patient (procedure)",
            )
        } else {
            ("AMB", "185349003", "Encounter for check up (procedure)")
        };
        let start = rng.random_range(8 * 60..17 * 60);
        out.push(json!({
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
            "type": [codeable(SNOMED, type_code, type_display)],
            "subject": {"reference": patient_ref},
            "participant": [{"individual": {"reference": practitioner}}],
            "period": {"start": datetime_str(day, start), "end": datetime_str(day, start + 30)},
            "serviceProvider": {"reference": org_ref},
        }));
        let when = datetime_str(day, start + 5);
        if enc_no == 0 {
            for (i, c) in CHRONIC.iter().enumerate() {
                if !has.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let cid = next_id(&mut rng);
                out.push(json!({
                    "resourceType": "Condition",
                    "id": cid,
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                    "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                    "code": codeable(SNOMED, c.snomed, c.display),
                    "subject": {"reference": patient_ref},
                    "encounter": {"reference": enc_ref},
                    "onsetDateTime": when,
                    "recordedDate": when,
                }));
                for (cond, rx, disp) in MEDS {
                    if *cond != i {
                        continue;
                    }
                    let mid = next_id(&mut rng);
                    out.push(json!({
                        "resourceType": "MedicationRequest",
                        "id": mid,
                        "status": "active",
                        "intent": "order",
                        "medicationCodeableConcept": codeable(RXNORM, rx, disp),
                        "subject": {"reference": patient_ref},
                        "encounter": {"reference": enc_ref},
                        "authoredOn": when,
                        "requester": {"reference": practitioner},
                    }));
                }
            }
        }
        // Acute problems, sometimes.
        for (code, display, p) in ACUTE {
            if rng.random_bool(*p) {
                let cid = next_id(&mut rng);
                let abate = datetime_str(day + rng.random_range(7..21), start);
                out.push(json!({
                    "resourceType": "Condition",
                    "id": cid,
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
                    "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                    "code": codeable(SNOMED, code, display),
                    "subject": {"reference": patient_ref},
                    "encounter": {"reference": enc_ref},
                    "onsetDateTime": when,
                    "abatementDateTime": abate,
                    "recordedDate": when,
                }));
            }
        }
        // Vital signs.
        let drift = normal(&mut rng, 0.0, 1.0);
        let mut vitals: Vec<(&str, &str, f64, &str, &str)> = vec![
            (
                "39156-5",
                "Body Mass Index",
                round1(latent.bmi + drift * 0.5),
                "kg/m2",
                "vital-signs",
            ),
            (
                "8480-6",
                "Systolic Blood Pressure",
                (latent.sbp + drift * 6.0).round(),
                "mm[Hg]",
                "vital-signs",
            ),
            (
                "8462-4",
                "Diastolic Blood Pressure",
                (latent.dbp + drift * 4.0).round(),
                "mm[Hg]",
                "vital-signs",
            ),
            (
                "8867-4",
                "Heart rate",
                normal(&mut rng, if has[AFIB] { 95.0 } else { 72.0 }, 9.0).round(),
                "/min",
                "vital-signs",
            ),
        ];
        if age >= 18 {
            let a1c = round1(latent.a1c + normal(&mut rng, 0.0, 0.25));
            // Mean glucose from HbA1c (ADAG: eAG = 28.7 * A1c - 46.7) plus fasting noise.
            let glucose = (28.7 * a1c - 46.7 + normal(&mut rng, 0.0, 12.0))
                .max(55.0)
                .round();
            vitals.push((
                "4548-4",
                "Hemoglobin A1c/Hemoglobin.total in Blood",
                a1c,
                "%",
                "laboratory",
            ));
            vitals.push(("2339-0", "Glucose", glucose, "mg/dL", "laboratory"));
            vitals.push((
                "2093-3",
                "Total Cholesterol",
                (latent.chol + normal(&mut rng, 0.0, 10.0)).round(),
                "mg/dL",
                "laboratory",
            ));
            vitals.push((
                "2160-0",
                "Creatinine",
                (latent.creat * 100.0 + normal(&mut rng, 0.0, 5.0)).round() / 100.0,
                "mg/dL",
                "laboratory",
            ));
        }
        for (code, display, value, unit, category) in vitals {
            let oid = next_id(&mut rng);
            out.push(json!({
                "resourceType": "Observation",
                "id": oid,
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category, "display": category}]}],
                "code": codeable(LOINC, code, display),
                "subject": {"reference": patient_ref},
                "encounter": {"reference": enc_ref},
                "effectiveDateTime": when,
                "issued": format!("{}.000+00:00", &when[..19.min(when.len())]),
                "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
            }));
        }
        // Smoking status, a coded observation.
        if age >= 18 && enc_no == 0 {
            let oid = next_id(&mut rng);
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
                "subject": {"reference": patient_ref},
                "encounter": {"reference": enc_ref},
                "effectiveDateTime": when,
                "valueCodeableConcept": codeable(SNOMED, code, display),
            }));
        }
        // Procedures.
        let mut procs: Vec<(&str, &str)> = Vec::new();
        if has[DIABETES] || has[PREDIABETES] {
            procs.push(("43396009", "Hemoglobin A1c measurement (procedure)"));
        }
        if rng.random_bool(0.3) {
            procs.push(("430193006", "Medication Reconciliation (procedure)"));
        }
        if age >= 50 && rng.random_bool(0.05) {
            procs.push(("73761001", "Colonoscopy"));
        }
        for (code, display) in procs {
            let prid = next_id(&mut rng);
            out.push(json!({
                "resourceType": "Procedure",
                "id": prid,
                "status": "completed",
                "code": codeable(SNOMED, code, display),
                "subject": {"reference": patient_ref},
                "encounter": {"reference": enc_ref},
                "performedPeriod": {"start": when, "end": datetime_str(day, start + 20)},
            }));
        }
        // Seasonal flu vaccine at some visits.
        if rng.random_bool(0.35) {
            let iid = next_id(&mut rng);
            out.push(json!({
                "resourceType": "Immunization",
                "id": iid,
                "status": "completed",
                "vaccineCode": codeable(CVX, "140", "Influenza, seasonal, injectable, preservative free"),
                "patient": {"reference": patient_ref},
                "encounter": {"reference": enc_ref},
                "occurrenceDateTime": when,
                "primarySource": true,
            }));
        }
    }
    out
}

/// One patient as a FHIR R4 transaction Bundle (entries with `fullUrl = urn:uuid:<id>`),
/// including the hospital's Organization and Practitioners, with every reference rewritten
/// to the `urn:uuid:` form so it resolves inside the Bundle.
pub fn patient_bundle(seed: u64, hospital: u32, index: u64) -> Value {
    let mut resources = hospital_resources(seed, hospital);
    resources.extend(patient_resources(seed, hospital, index));
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|mut r| {
            rewrite_refs_to_urn(&mut r);
            let rtype = r
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let id = r.get("id").and_then(Value::as_str).unwrap_or("").to_string();
            json!({"fullUrl": format!("urn:uuid:{id}"), "resource": r, "request": {"method": "POST", "url": rtype}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn rewrite_refs_to_urn(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "reference"
                    && let Value::String(s) = child
                    && let Some((_, id)) = s.split_once('/')
                {
                    *s = format!("urn:uuid:{id}");
                    continue;
                }
                rewrite_refs_to_urn(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs_to_urn),
        _ => {}
    }
}

/// All resources of `cfg.patients` patients of hospital `cfg.hospital`, in memory: the
/// hospital's Organization and Practitioners first, then each patient's resources.
pub fn generate(cfg: SynthConfig) -> Vec<Value> {
    let mut out = hospital_resources(cfg.seed, cfg.hospital);
    for i in 0..cfg.patients {
        out.extend(patient_resources(cfg.seed, cfg.hospital, i));
    }
    out
}

/// Writes Bulk Data style NDJSON (one file per resource type, `<Type>.ndjson`) into `dir`.
///
/// `on_patient` is called after each patient (for progress bars).
pub fn write_ndjson(
    cfg: SynthConfig,
    dir: &Path,
    mut on_patient: impl FnMut(u64),
) -> Result<SynthSummary, SynthError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SynthError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut writers: Vec<(String, BufWriter<File>)> = Vec::new();
    let mut summary = SynthSummary::default();
    let write = |resource: &Value,
                 writers: &mut Vec<(String, BufWriter<File>)>|
     -> Result<(), SynthError> {
        let rtype = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("Unknown");
        let pos = match writers.iter().position(|(t, _)| t == rtype) {
            Some(p) => p,
            None => {
                let path = dir.join(format!("{rtype}.ndjson"));
                let f = File::create(&path).map_err(io(&path))?;
                writers.push((rtype.to_string(), BufWriter::with_capacity(1 << 20, f)));
                writers.len() - 1
            }
        };
        if let Some((_, w)) = writers.get_mut(pos) {
            let path = dir.join(format!("{rtype}.ndjson"));
            serde_json::to_writer(&mut *w, resource).map_err(|e| SynthError::Io {
                path: path.clone(),
                source: e.into(),
            })?;
            w.write_all(b"\n").map_err(io(&path))?;
        }
        Ok(())
    };
    for r in hospital_resources(cfg.seed, cfg.hospital) {
        write(&r, &mut writers)?;
        summary.resources += 1;
    }
    for i in 0..cfg.patients {
        for r in patient_resources(cfg.seed, cfg.hospital, i) {
            write(&r, &mut writers)?;
            summary.resources += 1;
        }
        summary.patients += 1;
        on_patient(i + 1);
    }
    for (t, mut w) in writers {
        w.flush().map_err(io(&dir.join(format!("{t}.ndjson"))))?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for d in [-25_000i64, -1, 0, 1, 10_957, 20_089, 30_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(date_str(0), "1970-01-01");
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let a = make_id(1, 0, 3, 0);
        let b = make_id(1, 0, 3, 1);
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
