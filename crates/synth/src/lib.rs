//! Deterministic synthetic FHIR R4 patients for tests, benchmarks and the devnet.
//!
//! Every patient is a pure function of `(seed, hospital, index)`: the same triple always yields
//! the same resources, so a hospital's population can be generated in any order, in shards or in
//! parallel, and tests can rely on exact output. The generator is deliberately light (only
//! `serde_json` and `rand`) so the devnet can create thousands of patients per second.
//!
//! What it produces, per patient: a `Patient` (US Core race/ethnicity extensions, one home
//! address in one of [`REGIONS`] regions — postal codes `010..` to `029..`, see [`region_of`]),
//! `Encounter`s (wellness, chronic-care and emergency visits), `Condition`s with age-dependent
//! prevalence (SNOMED CT), `MedicationRequest`s that follow the conditions (RxNorm), vital signs
//! and lab `Observation`s with correlated plausible values (LOINC: diabetics have higher HbA1c
//! and glucose, hypertensives higher blood pressure, BMI tracks diabetes), `Procedure`s (SNOMED
//! CT) and `Immunization`s (CVX). Per hospital there is one `Organization` and a few
//! `Practitioner`s. References use the relative `Type/id` form of FHIR Bulk Data; within a
//! transaction Bundle (see [`patient_bundle`]) each entry has `fullUrl = urn:uuid:<id>` and
//! references use it.
//!
//! On top of that, [`Scenarios`] inject records with a known answer, each from a random stream
//! of its own so the generated record stays as it is and they are only appended to it: a
//! drug-safety signal ([`SafetyScenario`]: drugs, one causing an adverse event at a known excess
//! risk) and surveillance syndromes with an outbreak in one region ([`OutbreakScenario`]: cases
//! at a known daily rate per region). [`generate_with`] and [`write_ndjson_with`] take them;
//! without any, the output is that of [`generate`] and [`write_ndjson`].
//!
//! Beside the hospitals' records, [`claims`] generates an insurer's claims feed: which of each
//! hospital's patients insurer-1 covers ([`claims::covered`]), under which member id, and per
//! covered patient the insurer's Patient, Coverage, and for each encounter of the hospital's
//! record an Encounter stub with the ExplanationOfBenefit billing it
//! ([`claims::insurer_resources`]), plus members who are no hospital's patient
//! ([`claims::insurer_only_members`]). Its amounts carry a known excess: a diabetic's
//! encounters cost [`claims::DIABETES_COST_FACTOR`] times more.
//!
//! Clinical figures are chosen to be plausible, not epidemiologically exact.
//!
//! Module map:
//! * `patient` — one patient, in named steps (demographics, conditions, death, the Patient,
//!   latent physiology, encounters, diagnoses and medication, acute problems, vitals and labs,
//!   smoking status, procedures, immunizations).
//! * `region` — the home address and the region it is in ([`region_of`], [`region_zip3`]).
//! * `hospital` — a hospital's Organization and Practitioners.
//! * `codes` — code systems and the clinical catalogue (conditions, prevalence, medication).
//! * `names` — people's names.
//! * `ids` — deterministic UUID-shaped ids.
//! * `calendar` — day counts and FHIR date strings.
//! * `safety` — drug-safety ground truth: drugs injected on top of the generated records, one
//!   causing an adverse event at a known excess risk ([`patient_resources_with_safety`]).
//! * `outbreak` — surveillance ground truth: syndromes at a background rate and an outbreak in
//!   one region ([`patient_resources_with_outbreak`], [`OutbreakScenario::rate`]).
//! * `claims` — the insurer's claims feed: coverage, member ids, Encounter stubs and
//!   ExplanationOfBenefits with amounts by encounter class and a known diabetes excess.
//! * This file: the configuration, the scenarios together ([`Scenarios`],
//!   [`patient_resources_with`]), the whole-population API ([`generate`], [`generate_with`],
//!   [`write_ndjson`], [`write_ndjson_with`]) and transaction Bundles ([`patient_bundle`]).

mod calendar;
pub mod claims;
mod codes;
mod hospital;
mod ids;
mod names;
mod outbreak;
mod patient;
mod region;
mod safety;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub use calendar::{civil_from_days, days_from_civil};
pub use hospital::hospital_resources;
pub use ids::{organization_id, patient_id};
pub use outbreak::{
    AGI_SNOMED, ILI_SNOMED, Outbreak, OutbreakScenario, RASH_SNOMED, SARI_SNOMED, Syndrome,
    patient_resources_with_outbreak, pharmacy_sales,
};
pub use patient::patient_resources;
pub use region::{REGIONS, region_of, region_zip3};
pub use safety::{
    NULL_DRUG_RXNORM, SIGNAL_DRUG_RXNORM, SIGNAL_EVENT_SNOMED, SafetyScenario, SafetySignal,
    patient_resources_with_safety,
};

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

/// The ground truths injected on top of the generated records (none by default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scenarios {
    /// Drugs and the adverse event one of them causes.
    pub safety: Option<SafetyScenario>,
    /// Syndromes under surveillance and an outbreak.
    pub outbreak: Option<OutbreakScenario>,
}

/// The patient's resources ([`patient_resources`]) followed by what `scenarios` inject: the
/// safety scenario's (as [`patient_resources_with_safety`]), then the outbreak scenario's (as
/// [`patient_resources_with_outbreak`]). Each is drawn from its own stream and from the
/// generated record only, so each comes out as it does alone.
pub fn patient_resources_with(
    seed: u64,
    hospital: u32,
    index: u64,
    scenarios: &Scenarios,
) -> Vec<Value> {
    let mut out = patient_resources(seed, hospital, index);
    let mut injected = Vec::new();
    if let Some(s) = scenarios.safety.as_ref().filter(|s| !s.signals.is_empty()) {
        injected.extend(safety::inject(seed, hospital, index, s, &out));
    }
    if let Some(s) = &scenarios.outbreak {
        injected.extend(outbreak::inject(seed, hospital, index, s, &out));
    }
    out.extend(injected);
    out
}

/// Summary of a generation run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthSummary {
    /// Patients written.
    pub patients: u64,
    /// Resources written, all types together.
    pub resources: u64,
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

/// Whether patient `index` of a hospital is also treated at the next hospital of the
/// consortium (one in ten): the ground truth of the count-once tests, where a patient held by
/// two hospitals must count once.
pub fn is_shared(index: u64) -> bool {
    index % 10 == 4
}

/// The records hospital `hospital` (of `hospitals`, each with `per_hospital` generated
/// patients) holds of patients first treated at the previous hospital: a copy of each shared
/// patient's record (same Patient id, same history), with the referring hospital's
/// Organization and Practitioners it refers to, as a referral brings it. Nothing with one
/// hospital.
pub fn shared_resources(seed: u64, hospital: u32, hospitals: u32, per_hospital: u64) -> Vec<Value> {
    shared_resources_with(
        seed,
        hospital,
        hospitals,
        per_hospital,
        &Scenarios::default(),
    )
}

/// [`shared_resources`] of records generated with `scenarios` injected (the referred copy is
/// the whole record, injected events included).
pub fn shared_resources_with(
    seed: u64,
    hospital: u32,
    hospitals: u32,
    per_hospital: u64,
    scenarios: &Scenarios,
) -> Vec<Value> {
    if hospitals < 2 {
        return Vec::new();
    }
    let from = (hospital + hospitals - 1) % hospitals;
    let mut out = hospital_resources(seed, from);
    for i in (0..per_hospital).filter(|i| is_shared(*i)) {
        out.extend(patient_resources_with(seed, from, i, scenarios));
    }
    out
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

/// [`generate`] with what `scenarios` inject into every patient's record (see
/// [`patient_resources_with`]); no scenario gives [`generate`]'s output.
pub fn generate_with(cfg: SynthConfig, scenarios: &Scenarios) -> Vec<Value> {
    let mut out = hospital_resources(cfg.seed, cfg.hospital);
    for i in 0..cfg.patients {
        out.extend(patient_resources_with(cfg.seed, cfg.hospital, i, scenarios));
    }
    out
}

/// [`generate`] with the drugs and events of `scenario` injected into every patient's record
/// (see [`patient_resources_with_safety`]); an empty scenario gives [`generate`]'s output.
pub fn generate_with_safety(cfg: SynthConfig, scenario: &SafetyScenario) -> Vec<Value> {
    let mut out = hospital_resources(cfg.seed, cfg.hospital);
    for i in 0..cfg.patients {
        out.extend(patient_resources_with_safety(
            cfg.seed,
            cfg.hospital,
            i,
            scenario,
        ));
    }
    out
}

/// Writes Bulk Data style NDJSON (one file per resource type, `<Type>.ndjson`) into `dir`.
///
/// `on_patient` is called after each patient (for progress bars).
pub fn write_ndjson(
    cfg: SynthConfig,
    dir: &Path,
    on_patient: impl FnMut(u64),
) -> Result<SynthSummary, SynthError> {
    write_ndjson_with(cfg, &Scenarios::default(), dir, on_patient)
}

/// [`write_ndjson`] of [`generate_with`]'s resources: what `scenarios` inject follows each
/// patient's record.
pub fn write_ndjson_with(
    cfg: SynthConfig,
    scenarios: &Scenarios,
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
        for r in patient_resources_with(cfg.seed, cfg.hospital, i, scenarios) {
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
