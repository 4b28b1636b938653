//! The release spec: what to release and under which privacy models. Versioned JSON
//! (`"version": 1`), unknown fields rejected, every constraint validated by
//! [`ReleaseSpec::from_json`]; [`ReleaseSpec::hash`] identifies it on the ledger.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::DeidError;
use crate::hierarchy::Hierarchy;

/// The only spec version this crate reads.
pub const VERSION: u32 = 1;

/// A quasi-identifier and its generalization hierarchy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuasiIdentifier {
    pub field: String,
    pub hierarchy: Hierarchy,
}

/// l-diversity of every sensitive attribute in every equivalence class.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum LDiversity {
    /// At least `n` distinct values.
    Distinct(u32),
    /// `exp(entropy) ≥ x` (natural logarithm, as pycanon).
    Entropy(f64),
}

impl LDiversity {
    /// The distinct-value count every satisfying class must have (entropy `x` implies
    /// `⌈x⌉` distinct values, since `exp(H) ≤` the number of distinct values).
    pub fn distinct_needed(&self) -> u64 {
        match *self {
            LDiversity::Distinct(n) => u64::from(n),
            LDiversity::Entropy(x) => {
                let c = x.ceil();
                if c.is_finite() && c >= 0.0 {
                    c as u64
                } else {
                    0
                }
            }
        }
    }
}

/// What happens to dates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Dates {
    /// Every date of a person is shifted by the same pseudo-random number of days in `[-n, n]`
    /// ([`crate::pseudonym::Pseudonymizer::date_shift`], applied by the caller before the
    /// search); date quasi-identifiers may stay at day level.
    ShiftDays(u32),
    /// Date quasi-identifiers are released at month level or coarser.
    #[default]
    Month,
    /// Date quasi-identifiers are released at year level or coarser.
    Year,
}

impl Dates {
    /// The lowest level a `date` hierarchy may take.
    pub fn min_date_level(&self) -> usize {
        match self {
            Dates::ShiftDays(_) => 0,
            Dates::Month => 1,
            Dates::Year => 2,
        }
    }
}

/// The information-loss measure the search minimizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Utility {
    /// Non-uniform entropy (bits): `Σ_records Σ_QI −log2 P(raw value | released value)`, a
    /// suppressed record counted as generalized to `*`.
    #[default]
    Entropy,
    /// Discernibility: `Σ_classes |E|²` plus `n` per suppressed record.
    Discernibility,
}

fn default_threshold() -> f64 {
    0.2
}

/// A release: the dataset, the tables and columns to keep, the quasi-identifiers, the
/// sensitive attributes and the privacy models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    pub version: u32,
    pub dataset: String,
    #[serde(default)]
    pub tables: BTreeMap<String, Vec<String>>,
    pub quasi_identifiers: Vec<QuasiIdentifier>,
    #[serde(default)]
    pub sensitive: Vec<String>,
    pub k: u32,
    #[serde(default)]
    pub l: Option<LDiversity>,
    #[serde(default)]
    pub t: Option<f64>,
    pub max_suppression: f64,
    #[serde(default)]
    pub dates: Dates,
    #[serde(default)]
    pub linkable: bool,
    #[serde(default)]
    pub utility: Utility,
    /// A record whose re-identification risk exceeds this counts as at risk.
    #[serde(default = "default_threshold")]
    pub risk_threshold: f64,
}

impl ReleaseSpec {
    /// Parses and validates a spec.
    pub fn from_json(json: &str) -> Result<Self, DeidError> {
        let spec: ReleaseSpec =
            serde_json::from_str(json).map_err(|e| DeidError::Json(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every constraint; the error says which.
    pub fn validate(&self) -> Result<(), DeidError> {
        let bad = |m: String| Err(DeidError::Spec(m));
        if self.version != VERSION {
            return bad(format!(
                "version {} is not supported (expected {VERSION})",
                self.version
            ));
        }
        if self.dataset.trim().is_empty() {
            return bad("`dataset` is empty".into());
        }
        for (table, cols) in &self.tables {
            if table.trim().is_empty() {
                return bad("a table name is empty".into());
            }
            if cols.is_empty() {
                return bad(format!("table `{table}` keeps no column"));
            }
            let mut seen = BTreeSet::new();
            for c in cols {
                if c.trim().is_empty() {
                    return bad(format!("table `{table}` has an empty column name"));
                }
                if !seen.insert(c) {
                    return bad(format!("table `{table}` lists column `{c}` twice"));
                }
            }
        }
        if self.quasi_identifiers.is_empty() {
            return bad("no quasi-identifier".into());
        }
        let mut seen = BTreeSet::new();
        for f in self
            .quasi_identifiers
            .iter()
            .map(|q| &q.field)
            .chain(self.sensitive.iter())
        {
            if f.trim().is_empty() {
                return bad("a field name is empty".into());
            }
            if !seen.insert(f) {
                return bad(format!(
                    "field `{f}` is listed twice (quasi-identifiers and sensitive attributes must be distinct)"
                ));
            }
        }
        for q in &self.quasi_identifiers {
            q.hierarchy.validate(&q.field).map_err(DeidError::Spec)?;
        }
        if self.k < 2 {
            return bad(format!("k = {} (must be at least 2)", self.k));
        }
        match self.l {
            None => {}
            Some(l) => {
                if self.sensitive.is_empty() {
                    return bad("l-diversity needs at least one sensitive attribute".into());
                }
                match l {
                    LDiversity::Distinct(n) => {
                        if n < 1 || n > self.k {
                            return bad(format!(
                                "distinct l = {n} (must be in 1..=k = {})",
                                self.k
                            ));
                        }
                    }
                    LDiversity::Entropy(x) => {
                        if !x.is_finite() || x < 1.0 || x > f64::from(self.k) {
                            return bad(format!(
                                "entropy l = {x} (must be in [1, k = {}])",
                                self.k
                            ));
                        }
                    }
                }
            }
        }
        if let Some(t) = self.t {
            if self.sensitive.is_empty() {
                return bad("t-closeness needs at least one sensitive attribute".into());
            }
            if !t.is_finite() || !(0.0..=1.0).contains(&t) {
                return bad(format!("t = {t} (must be in [0, 1])"));
            }
        }
        if !self.max_suppression.is_finite() || !(0.0..=1.0).contains(&self.max_suppression) {
            return bad(format!(
                "max_suppression = {} (must be in [0, 1])",
                self.max_suppression
            ));
        }
        if let Dates::ShiftDays(n) = self.dates
            && (n == 0 || n > 3650)
        {
            return bad(format!("shift_days = {n} (must be in 1..=3650)"));
        }
        if !self.risk_threshold.is_finite()
            || self.risk_threshold <= 0.0
            || self.risk_threshold > 1.0
        {
            return bad(format!(
                "risk_threshold = {} (must be in (0, 1])",
                self.risk_threshold
            ));
        }
        Ok(())
    }

    /// SHA-256 of the canonical serialization: a domain tag, then compact JSON of the spec with
    /// every field present, in declaration order (tables sorted by name, floats in Rust's
    /// shortest round-trip form). Two specs that parse to the same value hash the same.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"medspace-deid/release-spec/v1\n");
        // Serializing this struct cannot fail (string keys, finite or non-finite floats are
        // written as null); an error would hash as the empty document, which no valid spec is.
        h.update(serde_json::to_vec(self).unwrap_or_default());
        h.finalize().into()
    }

    /// The spec's hash in hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{
        "version": 1, "dataset": "hospital-a/omop",
        "tables": {"person": ["person_id", "year_of_birth"], "condition_occurrence": ["condition_concept_id"]},
        "quasi_identifiers": [
            {"field": "age", "hierarchy": {"kind": "interval", "widths": [5, 10, 20]}},
            {"field": "zip", "hierarchy": {"kind": "prefix", "keep": [3, 1]}},
            {"field": "admitted", "hierarchy": {"kind": "date"}},
            {"field": "condition", "hierarchy": {"kind": "tree", "levels": 2}},
            {"field": "sex", "hierarchy": {"kind": "suppress"}}
        ],
        "sensitive": ["diagnosis"],
        "k": 5, "l": {"distinct": 2}, "t": 0.4, "max_suppression": 0.05,
        "dates": {"shift_days": 30}, "linkable": false, "utility": "discernibility"
    }"#;

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<ReleaseSpec, DeidError> {
        let mut v: serde_json::Value = serde_json::from_str(OK).unwrap();
        edit(&mut v);
        ReleaseSpec::from_json(&v.to_string())
    }

    #[test]
    fn parses_and_defaults() {
        let s = ReleaseSpec::from_json(OK).unwrap();
        assert_eq!(s.k, 5);
        assert_eq!(s.l, Some(LDiversity::Distinct(2)));
        assert_eq!(s.dates, Dates::ShiftDays(30));
        assert_eq!(s.utility, Utility::Discernibility);
        assert_eq!(s.risk_threshold, 0.2);
        let s = with(|v| {
            let o = v.as_object_mut().unwrap();
            for f in ["l", "t", "dates", "linkable", "utility"] {
                o.remove(f);
            }
        })
        .unwrap();
        assert_eq!(
            (s.l, s.t, s.dates, s.linkable, s.utility),
            (None, None, Dates::Month, false, Utility::Entropy)
        );
        let s = with(|v| v["dates"] = "year".into()).unwrap();
        assert_eq!(s.dates, Dates::Year);
        let s = with(|v| v["l"] = serde_json::json!({"entropy": 1.5})).unwrap();
        assert_eq!(s.l, Some(LDiversity::Entropy(1.5)));
    }

    #[test]
    fn rejects_bad_specs() {
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "unknown variant",
                Box::new(|v| v["quasi_identifiers"][0]["hierarchy"]["kind"] = "fuzzy".into()),
            ),
            ("unknown field", Box::new(|v| v["extra"] = 1.into())),
            ("version", Box::new(|v| v["version"] = 2.into())),
            ("k = 1", Box::new(|v| v["k"] = 1.into())),
            (
                "distinct l = 6",
                Box::new(|v| v["l"] = serde_json::json!({"distinct": 6})),
            ),
            (
                "entropy l",
                Box::new(|v| v["l"] = serde_json::json!({"entropy": 9.5})),
            ),
            (
                "max_suppression",
                Box::new(|v| v["max_suppression"] = 1.5.into()),
            ),
            (
                "max_suppression",
                Box::new(|v| v["max_suppression"] = (-0.1).into()),
            ),
            (
                "no quasi-identifier",
                Box::new(|v| v["quasi_identifiers"] = serde_json::json!([])),
            ),
            (
                "listed twice",
                Box::new(|v| v["sensitive"] = serde_json::json!(["age"])),
            ),
            (
                "listed twice",
                Box::new(|v| v["quasi_identifiers"][1]["field"] = "age".into()),
            ),
            (
                "needs at least one sensitive",
                Box::new(|v| v["sensitive"] = serde_json::json!([])),
            ),
            ("t = 2", Box::new(|v| v["t"] = 2.into())),
            (
                "interval widths",
                Box::new(|v| {
                    v["quasi_identifiers"][0]["hierarchy"]["widths"] = serde_json::json!([10, 5])
                }),
            ),
            (
                "twice",
                Box::new(|v| v["tables"]["person"] = serde_json::json!(["a", "a"])),
            ),
            (
                "shift_days",
                Box::new(|v| v["dates"] = serde_json::json!({"shift_days": 0})),
            ),
            (
                "risk_threshold",
                Box::new(|v| v["risk_threshold"] = 0.into()),
            ),
            ("dataset", Box::new(|v| v["dataset"] = "".into())),
        ];
        for (want, edit) in cases {
            let err = with(edit).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn hash_is_canonical() {
        let a = ReleaseSpec::from_json(OK).unwrap();
        // Same spec, different whitespace and key order: same hash.
        let v: serde_json::Value = serde_json::from_str(OK).unwrap();
        let b = ReleaseSpec::from_json(&serde_json::to_string_pretty(&v).unwrap()).unwrap();
        assert_eq!(a.hash(), b.hash());
        let c = with(|v| v["k"] = 6.into()).unwrap();
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.hash_hex().len(), 64);
        // Round trip.
        let back = ReleaseSpec::from_json(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
}
