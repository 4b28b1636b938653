//! The privacy figures of a released table, recomputed from the output alone ([`verify`]):
//! k, distinct and entropy l, t — with pycanon's definitions (checked against it in
//! `tests/it/against_pycanon.rs`).
//!
//! - `k`: the size of the smallest equivalence class (rows sharing all QI labels).
//! - distinct `l`: per sensitive attribute, the fewest distinct values in a class.
//! - entropy `l`: per sensitive attribute, `exp(min over classes of −Σ p ln p)`. pycanon returns
//!   its integer part (`int(...)`); [`SensitiveFigures::entropy_l`] is the exact value and
//!   [`SensitiveFigures::entropy_l_floor`] pycanon's convention.
//! - `t`: per sensitive attribute, the largest Earth Mover's Distance between a class's
//!   distribution and the whole released table's, with the equal ground distance (every pair of
//!   distinct values at distance 1): `½ Σ_v |q_v − p_v|`, pycanon's categorical case.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::spec::ReleaseSpec;

/// The figures of one sensitive attribute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensitiveFigures {
    pub field: String,
    /// Fewest distinct values in a class.
    pub distinct_l: u64,
    /// `exp` of the smallest class entropy (natural logarithm).
    pub entropy_l: f64,
    /// Largest equal-distance EMD between a class and the released table.
    pub t: f64,
}

impl SensitiveFigures {
    /// pycanon's `entropy_l_diversity`: the integer part of [`Self::entropy_l`].
    pub fn entropy_l_floor(&self) -> u64 {
        let f = self.entropy_l.floor();
        if f.is_finite() && f >= 0.0 {
            f as u64
        } else {
            0
        }
    }
}

/// The privacy figures of a released table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Released records.
    pub records: u64,
    /// Equivalence classes.
    pub classes: u64,
    /// Size of the smallest class (0 for an empty release).
    pub k: u64,
    /// One entry per sensitive attribute, in the spec's order.
    pub sensitive: Vec<SensitiveFigures>,
}

impl Figures {
    /// Distinct l over all sensitive attributes (the minimum), `None` without any.
    pub fn distinct_l(&self) -> Option<u64> {
        self.sensitive.iter().map(|s| s.distinct_l).min()
    }
    /// Entropy l over all sensitive attributes (the minimum).
    pub fn entropy_l(&self) -> Option<f64> {
        self.sensitive
            .iter()
            .map(|s| s.entropy_l)
            .min_by(f64::total_cmp)
    }
    /// t over all sensitive attributes (the maximum).
    pub fn t(&self) -> Option<f64> {
        self.sensitive.iter().map(|s| s.t).max_by(f64::total_cmp)
    }
}

/// Shannon entropy (natural log) of a class's counts of one attribute.
pub(crate) fn entropy(counts: impl Iterator<Item = u64>, size: u64) -> f64 {
    if size == 0 {
        return 0.0;
    }
    let n = size as f64;
    -counts
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            p * p.ln()
        })
        .sum::<f64>()
}

/// `exp(h)` as pycanon computes it (`np.exp(1) ** h`).
pub(crate) fn exp_l(h: f64) -> f64 {
    std::f64::consts::E.powf(h)
}

/// Equal-distance EMD of a class (`(value id, count)` pairs, ids distinct) against the global
/// distribution `global` (probability per value id): `½ (Σ_{v∈class} |q_v − p_v| + Σ_{v∉class} p_v)`.
pub(crate) fn emd(hist: impl Iterator<Item = (usize, u64)>, size: u64, global: &[f64]) -> f64 {
    if size == 0 {
        return 0.0;
    }
    let n = size as f64;
    let (mut s, mut covered) = (0.0f64, 0.0f64);
    for (v, c) in hist {
        let p = global.get(v).copied().unwrap_or(0.0);
        s += (c as f64 / n - p).abs();
        covered += p;
    }
    0.5 * (s + (1.0 - covered).max(0.0))
}

/// Running minimum/maximum of one attribute's figures over classes.
#[derive(Clone, Debug)]
pub(crate) struct Acc {
    pub(crate) distinct: u64,
    pub(crate) entropy: f64,
    pub(crate) t: f64,
    pub(crate) any: bool,
}

impl Acc {
    pub(crate) fn new() -> Self {
        Acc {
            distinct: u64::MAX,
            entropy: f64::INFINITY,
            t: 0.0,
            any: false,
        }
    }
    pub(crate) fn add(&mut self, distinct: u64, entropy: f64, t: f64) {
        self.any = true;
        self.distinct = self.distinct.min(distinct);
        if entropy < self.entropy {
            self.entropy = entropy;
        }
        if t > self.t {
            self.t = t;
        }
    }
    pub(crate) fn finish(&self, field: &str) -> SensitiveFigures {
        if !self.any {
            return SensitiveFigures {
                field: field.to_string(),
                distinct_l: 0,
                entropy_l: 0.0,
                t: 0.0,
            };
        }
        SensitiveFigures {
            field: field.to_string(),
            distinct_l: self.distinct,
            entropy_l: exp_l(self.entropy),
            t: self.t,
        }
    }
}

/// Recomputes the figures from a released table: `qi_labels[row]` the generalized QI labels,
/// `sensitive[row]` the sensitive values in the spec's order (missing cells count as `""`).
/// Independent of the search: it groups the strings themselves.
pub fn verify(qi_labels: &[Vec<String>], sensitive: &[Vec<String>], spec: &ReleaseSpec) -> Figures {
    let n_sa = spec.sensitive.len();
    let mut class_of: HashMap<&[String], usize> = HashMap::new();
    // Per class: size and, per attribute, counts by value.
    let mut classes: Vec<(u64, Vec<HashMap<&str, u64>>)> = Vec::new();
    let mut global: Vec<HashMap<&str, u64>> = vec![HashMap::new(); n_sa];
    for (row, labels) in qi_labels.iter().enumerate() {
        let next = classes.len();
        let c = *class_of.entry(labels.as_slice()).or_insert(next);
        if c == next {
            classes.push((0, vec![HashMap::new(); n_sa]));
        }
        let sa_row = sensitive.get(row);
        if let Some((size, hists)) = classes.get_mut(c) {
            *size += 1;
            for (a, (h, g)) in hists.iter_mut().zip(global.iter_mut()).enumerate() {
                let v = sa_row
                    .and_then(|r| r.get(a))
                    .map(String::as_str)
                    .unwrap_or("");
                *h.entry(v).or_insert(0) += 1;
                *g.entry(v).or_insert(0) += 1;
            }
        }
    }
    let records = qi_labels.len() as u64;
    // Global distributions, values numbered in sorted order.
    let mut ids: Vec<HashMap<&str, usize>> = Vec::with_capacity(n_sa);
    let mut dist: Vec<Vec<f64>> = Vec::with_capacity(n_sa);
    for g in &global {
        let mut vals: Vec<(&str, u64)> = g.iter().map(|(k, v)| (*k, *v)).collect();
        vals.sort_unstable();
        ids.push(vals.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect());
        dist.push(
            vals.iter()
                .map(|(_, c)| *c as f64 / records.max(1) as f64)
                .collect(),
        );
    }
    let mut accs = vec![Acc::new(); n_sa];
    let mut k = u64::MAX;
    for (size, hists) in &classes {
        k = k.min(*size);
        for (a, h) in hists.iter().enumerate() {
            let mut counts: Vec<(usize, u64)> = h
                .iter()
                .map(|(v, c)| {
                    (
                        ids.get(a)
                            .and_then(|m| m.get(v))
                            .copied()
                            .unwrap_or(usize::MAX),
                        *c,
                    )
                })
                .collect();
            counts.sort_unstable();
            let e = entropy(counts.iter().map(|p| p.1), *size);
            let t = emd(
                counts.iter().copied(),
                *size,
                dist.get(a).map(Vec::as_slice).unwrap_or(&[]),
            );
            if let Some(acc) = accs.get_mut(a) {
                acc.add(counts.len() as u64, e, t);
            }
        }
    }
    Figures {
        records,
        classes: classes.len() as u64,
        k: if classes.is_empty() { 0 } else { k },
        sensitive: accs
            .iter()
            .zip(&spec.sensitive)
            .map(|(a, f)| a.finish(f))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sa: &[&str]) -> ReleaseSpec {
        ReleaseSpec::from_json(&format!(
            r#"{{"version":1,"dataset":"d","quasi_identifiers":[{{"field":"age","hierarchy":{{"kind":"suppress"}}}},{{"field":"zip","hierarchy":{{"kind":"suppress"}}}}],"sensitive":{},"k":2,"max_suppression":0}}"#,
            serde_json::to_string(sa).unwrap()
        ))
        .unwrap()
    }

    fn rows(t: &[(&str, &str, &str)]) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
        (
            t.iter()
                .map(|r| vec![r.0.to_string(), r.1.to_string()])
                .collect(),
            t.iter().map(|r| vec![r.2.to_string()]).collect(),
        )
    }

    /// A hand-computed table: classes {A: flu, flu, cold} and {B: flu, hiv, cold, cold}.
    #[test]
    fn hand_computed() {
        let (q, s) = rows(&[
            ("30-39", "021**", "flu"),
            ("30-39", "021**", "flu"),
            ("30-39", "021**", "cold"),
            ("40-49", "021**", "flu"),
            ("40-49", "021**", "hiv"),
            ("40-49", "021**", "cold"),
            ("40-49", "021**", "cold"),
        ]);
        let f = verify(&q, &s, &spec(&["dx"]));
        assert_eq!((f.records, f.classes, f.k), (7, 2, 3));
        let sa = &f.sensitive[0];
        assert_eq!(sa.distinct_l, 2);
        // Class A: p = (2/3, 1/3); class B: (1/4, 1/4, 1/2): A has the smaller entropy.
        let ha = -(2.0f64 / 3.0 * (2.0f64 / 3.0).ln() + 1.0 / 3.0 * (1.0f64 / 3.0).ln());
        assert!((sa.entropy_l - ha.exp()).abs() < 1e-12);
        assert_eq!(sa.entropy_l_floor(), 1);
        // Global: cold 3/7, flu 3/7, hiv 1/7. A: cold 1/3, flu 2/3, hiv 0 →
        // ½(|1/3−3/7| + |2/3−3/7| + 1/7) = ½(2/21 + 5/21 + 3/21) = 5/21.
        // B: cold 1/2, flu 1/4, hiv 1/4 → ½(1/14 + 5/28 + 3/28) = ½(2/28 + 5/28 + 3/28) = 5/28.
        assert!((sa.t - 5.0 / 21.0).abs() < 1e-12, "{}", sa.t);
        assert_eq!(f.distinct_l(), Some(2));
    }

    #[test]
    fn singletons_and_empty() {
        let (q, s) = rows(&[("1", "a", "x"), ("2", "a", "x")]);
        let f = verify(&q, &s, &spec(&["dx"]));
        assert_eq!((f.k, f.classes), (1, 2));
        assert_eq!(f.sensitive[0].distinct_l, 1);
        assert_eq!(f.sensitive[0].entropy_l, 1.0);
        assert_eq!(f.sensitive[0].t, 0.0);
        let f = verify(&[], &[], &spec(&["dx"]));
        assert_eq!((f.records, f.k, f.sensitive[0].distinct_l), (0, 0, 0));
        // Uniform over two values in every class: entropy l is 2.
        let (q, s) = rows(&[
            ("1", "a", "x"),
            ("1", "a", "y"),
            ("2", "a", "x"),
            ("2", "a", "y"),
        ]);
        let f = verify(&q, &s, &spec(&["dx"]));
        assert!((f.sensitive[0].entropy_l - 2.0).abs() < 1e-12);
    }
}
