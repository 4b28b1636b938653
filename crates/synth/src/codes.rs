//! The clinical catalogue of the generator: code systems, chronic and acute conditions with
//! their prevalence, and the medication that follows each chronic condition.

use serde_json::{Value, json};

pub(crate) const SNOMED: &str = "http://snomed.info/sct";
pub(crate) const LOINC: &str = "http://loinc.org";
pub(crate) const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub(crate) const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";

/// A CodeableConcept with one coding and its display as text.
pub(crate) fn codeable(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

/// A chronic condition the generator knows.
pub(crate) struct Chronic {
    pub snomed: &'static str,
    pub display: &'static str,
    /// Prevalence for age < 40, 40..65, >= 65.
    pub prevalence: [f64; 3],
}

/// Indices into [`CHRONIC`] (and into a patient's condition flags).
pub(crate) const DIABETES: usize = 0;
pub(crate) const HYPERTENSION: usize = 1;
pub(crate) const HYPERLIPIDEMIA: usize = 2;
pub(crate) const PREDIABETES: usize = 3;
pub(crate) const ASTHMA: usize = 4;
pub(crate) const CKD: usize = 5;
pub(crate) const OBESITY: usize = 6;
pub(crate) const AFIB: usize = 7;

/// Number of chronic conditions.
pub(crate) const N_CHRONIC: usize = CHRONIC.len();

pub(crate) const CHRONIC: &[Chronic] = &[
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
pub(crate) const ACUTE: &[(&str, &str, f64)] = &[
    ("444814009", "Viral sinusitis (disorder)", 0.12),
    ("195662009", "Acute viral pharyngitis (disorder)", 0.10),
    ("10509002", "Acute bronchitis (disorder)", 0.06),
    ("65363002", "Otitis media", 0.04),
    ("283371005", "Laceration of forearm", 0.02),
];

/// Medication per chronic condition: (condition index, RxNorm code, display).
pub(crate) const MEDS: &[(usize, &str, &str)] = &[
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
