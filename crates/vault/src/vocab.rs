//! The OMOP vocabulary subset: source code -> source concept id -> standard concept id.
//!
//! Loaded from `CONCEPT.csv` and `CONCEPT_RELATIONSHIP_maps_to.csv` (OHDSI layout). Codes the
//! subset does not cover map to concept id 0 and keep their source code in `*_source_value`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::VaultError;

/// Code systems the vault maps, by FHIR system URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodeSystem {
    /// SNOMED CT.
    Snomed,
    /// LOINC.
    Loinc,
    /// RxNorm.
    RxNorm,
    /// CVX vaccine codes.
    Cvx,
    /// Anything else.
    Other,
}

impl CodeSystem {
    /// From a FHIR `Coding.system`.
    pub fn from_uri(uri: &str) -> CodeSystem {
        match uri {
            "http://snomed.info/sct" => CodeSystem::Snomed,
            "http://loinc.org" => CodeSystem::Loinc,
            "http://www.nlm.nih.gov/research/umls/rxnorm" => CodeSystem::RxNorm,
            "http://hl7.org/fhir/sid/cvx" => CodeSystem::Cvx,
            _ => CodeSystem::Other,
        }
    }

    fn from_vocabulary_id(id: &str) -> CodeSystem {
        match id {
            "SNOMED" => CodeSystem::Snomed,
            "LOINC" => CodeSystem::Loinc,
            "RxNorm" => CodeSystem::RxNorm,
            "CVX" => CodeSystem::Cvx,
            _ => CodeSystem::Other,
        }
    }
}

/// Concept ids found for a source code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mapped {
    /// The source code's own concept (0 when unknown).
    pub source_concept_id: i32,
    /// The standard concept it maps to (0 when unmapped).
    pub concept_id: i32,
}

/// An in-memory vocabulary.
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    by_code: HashMap<(CodeSystem, String), (i32, bool)>,
    maps_to: HashMap<i32, i32>,
    /// Each code's concept class and domain (`SNOMED Clinical Finding`, `Condition`).
    classes: HashMap<String, (String, String)>,
}

impl Vocabulary {
    /// An empty vocabulary (every code maps to 0).
    pub fn empty() -> Vocabulary {
        Vocabulary::default()
    }

    /// Number of concepts loaded.
    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    /// Whether nothing is loaded.
    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }

    /// Loads `CONCEPT.csv` and `CONCEPT_RELATIONSHIP_maps_to.csv` from `dir`.
    pub fn load(dir: &Path) -> Result<Vocabulary, VaultError> {
        let mut v = Vocabulary::default();
        let concept = dir.join("CONCEPT.csv");
        let bad = |path: &PathBuf, reason: String| VaultError::Vocabulary {
            path: path.clone(),
            reason,
        };
        let mut rdr = csv::Reader::from_path(&concept).map_err(|e| bad(&concept, e.to_string()))?;
        let headers = rdr
            .headers()
            .map_err(|e| bad(&concept, e.to_string()))?
            .clone();
        let col = |name: &str, path: &PathBuf| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| bad(path, format!("column {name} missing")))
        };
        let (c_id, c_vocab, c_std, c_code) = (
            col("concept_id", &concept)?,
            col("vocabulary_id", &concept)?,
            col("standard_concept", &concept)?,
            col("concept_code", &concept)?,
        );
        let (c_class, c_domain) = (
            headers.iter().position(|h| h == "concept_class_id"),
            headers.iter().position(|h| h == "domain_id"),
        );
        for rec in rdr.records() {
            let rec = rec.map_err(|e| bad(&concept, e.to_string()))?;
            let id: i32 = rec
                .get(c_id)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(&concept, "concept_id is not an integer".into()))?;
            let system = CodeSystem::from_vocabulary_id(rec.get(c_vocab).unwrap_or(""));
            if system == CodeSystem::Other {
                continue;
            }
            let standard = rec.get(c_std) == Some("S");
            let code = rec.get(c_code).unwrap_or("").to_string();
            if let (Some(class), Some(domain)) = (
                c_class.and_then(|i| rec.get(i)).filter(|x| !x.is_empty()),
                c_domain.and_then(|i| rec.get(i)).filter(|x| !x.is_empty()),
            ) {
                let vocabulary = rec.get(c_vocab).unwrap_or("");
                v.classes
                    .entry(code.clone())
                    .or_insert_with(|| (format!("{vocabulary} {class}"), domain.to_string()));
            }
            v.by_code.insert((system, code), (id, standard));
        }
        let rel = dir.join("CONCEPT_RELATIONSHIP_maps_to.csv");
        let mut rdr = csv::Reader::from_path(&rel).map_err(|e| bad(&rel, e.to_string()))?;
        for rec in rdr.records() {
            let rec = rec.map_err(|e| bad(&rel, e.to_string()))?;
            let (Some(a), Some(b)) = (
                rec.get(0).and_then(|s| s.parse::<i32>().ok()),
                rec.get(1).and_then(|s| s.parse::<i32>().ok()),
            ) else {
                return Err(bad(&rel, "concept ids are not integers".into()));
            };
            if rec.get(2).is_some_and(|r| r == "Maps to") {
                v.maps_to.insert(a, b);
            }
        }
        Ok(v)
    }

    /// The generalization the vocabulary gives codes, as a parent map for de-identification's
    /// `tree` hierarchies: a code rolls up to its concept class (`SNOMED Clinical Finding`),
    /// a class to its domain (`Condition`). The subset carries no concept hierarchy
    /// (CONCEPT_ANCESTOR); with one, a code's parent concepts would come first.
    pub fn parents(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for (code, (class, domain)) in &self.classes {
            out.insert(code.clone(), class.clone());
            out.insert(class.clone(), domain.clone());
        }
        out
    }

    /// Looks a source code up.
    pub fn map(&self, system: CodeSystem, code: &str) -> Mapped {
        match self.by_code.get(&(system, code.to_string())) {
            Some(&(id, true)) => Mapped {
                source_concept_id: id,
                concept_id: id,
            },
            Some(&(id, false)) => Mapped {
                source_concept_id: id,
                concept_id: self.maps_to.get(&id).copied().unwrap_or(0),
            },
            None => Mapped::default(),
        }
    }
}

/// Whether a code is well-formed for its system (SNOMED CT concept-id shape, LOINC mod-10
/// check digit, RxNorm / CVX digits).
pub fn code_is_valid(system: CodeSystem, code: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match system {
        CodeSystem::Snomed => {
            digits(code) && (6..=18).contains(&code.len()) && snomed_partition_ok(code)
        }
        CodeSystem::Loinc => match code.split_once('-') {
            Some((body, check)) => {
                digits(body)
                    && body.len() <= 7
                    && check.len() == 1
                    && digits(check)
                    && luhn_check_digit(body) == check.bytes().next().map(|b| b - b'0')
            }
            None => false,
        },
        CodeSystem::RxNorm => digits(code) && code.len() <= 8,
        CodeSystem::Cvx => digits(code) && code.len() <= 3,
        CodeSystem::Other => !code.is_empty(),
    }
}

/// LOINC's check digit: the Luhn (mod 10) algorithm over the code body.
fn luhn_check_digit(body: &str) -> Option<u8> {
    let mut sum = 0u32;
    for (i, b) in body.bytes().rev().enumerate() {
        let d = u32::from(b.checked_sub(b'0')?);
        sum += if i % 2 == 0 {
            let x = d * 2;
            x / 10 + x % 10
        } else {
            d
        };
    }
    u8::try_from((10 - sum % 10) % 10).ok()
}

/// SNOMED CT concept ids end in a partition identifier and a check digit; the partition
/// (second and third digit from the right) is `00` (short format) or `10` (namespaced) for
/// concepts. Description (`01`) or relationship (`02`) ids are not concept codes.
fn snomed_partition_ok(code: &str) -> bool {
    let n = code.len();
    matches!(
        code.get(n.saturating_sub(3)..n.saturating_sub(1)),
        Some("00") | Some("10")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roll_up_to_their_class_then_domain() {
        let dir = std::env::temp_dir().join(format!("medspace-vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("CONCEPT.csv"),
            "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,valid_start_date,valid_end_date,invalid_reason\n\
             201826,Type 2 diabetes,Condition,SNOMED,Clinical Finding,S,44054006,1970-01-01,2099-12-31,\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("CONCEPT_RELATIONSHIP_maps_to.csv"),
            "concept_id_1,concept_id_2,relationship_id\n",
        )
        .unwrap();
        let v = Vocabulary::load(&dir).unwrap();
        let p = v.parents();
        assert_eq!(
            p.get("44054006").map(String::as_str),
            Some("SNOMED Clinical Finding")
        );
        assert_eq!(
            p.get("SNOMED Clinical Finding").map(String::as_str),
            Some("Condition")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn check_digits() {
        for good in ["44054006", "38341003", "195967001", "15777000", "431855005"] {
            assert!(code_is_valid(CodeSystem::Snomed, good), "{good}");
        }
        assert!(!code_is_valid(CodeSystem::Snomed, "44054016"));
        assert!(!code_is_valid(CodeSystem::Snomed, "12345"));
        assert!(!code_is_valid(CodeSystem::Snomed, "12x45678"));
        for good in ["4548-4", "2339-0", "8480-6", "8462-4", "39156-5", "72166-2"] {
            assert!(code_is_valid(CodeSystem::Loinc, good), "{good}");
        }
        assert!(!code_is_valid(CodeSystem::Loinc, "4548-5"));
        assert!(!code_is_valid(CodeSystem::Loinc, "4548"));
        assert!(code_is_valid(CodeSystem::RxNorm, "860975"));
        assert!(!code_is_valid(CodeSystem::RxNorm, "86x975"));
        assert!(code_is_valid(CodeSystem::Cvx, "140"));
        assert!(!code_is_valid(CodeSystem::Cvx, "1400"));
    }
}
