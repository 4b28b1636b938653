//! The release report: privacy figures, re-identification risk, utility lost; as JSON and as a
//! standalone HTML page (inline SVG, no script, no external resource).
//!
//! # Risk measures (El Emam's definitions)
//!
//! For a released class `j` of `f_j` records whose QI vector matches `F_j` records of the
//! population table:
//!
//! - **prosecutor** (the attacker knows the target is in the release): a record's risk is
//!   `1/f_j`; reported the highest and the average over released records (`classes / n`).
//! - **journalist** (the attacker knows the target is in the population): `1/F_j`. The
//!   population here is the input microdata generalized the same way before suppression, of
//!   which the release is a subset. Suppression removes whole classes, so `F_j = f_j` for every
//!   released class and the journalist figures equal the prosecutor's: reported separately
//!   because a caller may supply a larger population.
//! - **marketer** (re-identify as many as possible): the expected share of correct matches,
//!   `(1/n) Σ_j f_j / F_j`.
//! - **records at risk**: the share of released records whose prosecutor (journalist) risk
//!   exceeds the spec's `risk_threshold`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::figures::Figures;

/// One attacker model's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskFigures {
    /// The highest risk of a released record.
    pub highest: f64,
    /// The average risk over released records.
    pub average: f64,
    /// Share of released records whose risk exceeds the threshold.
    pub records_at_risk: f64,
}

/// The re-identification risks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    pub threshold: f64,
    pub prosecutor: RiskFigures,
    pub journalist: RiskFigures,
    pub marketer: f64,
}

/// Risks of a release: `classes` holds `(f_j, F_j)`, the released size of each class and its
/// population size (`F_j ≥ f_j`).
pub fn risk(classes: &[(u64, u64)], threshold: f64) -> Risk {
    let n: u64 = classes.iter().map(|c| c.0).sum();
    let figures = |size: &dyn Fn(&(u64, u64)) -> u64| {
        let mut highest = 0.0f64;
        let (mut sum, mut at_risk) = (0.0f64, 0u64);
        for c in classes.iter().filter(|c| c.0 > 0) {
            let r = 1.0 / size(c).max(1) as f64;
            highest = highest.max(r);
            sum += c.0 as f64 * r;
            if r > threshold {
                at_risk += c.0;
            }
        }
        let share = |x: f64| if n == 0 { 0.0 } else { x / n as f64 };
        RiskFigures {
            highest,
            average: share(sum),
            records_at_risk: share(at_risk as f64),
        }
    };
    let prosecutor = figures(&|c| c.0);
    let journalist = figures(&|c| c.1.max(c.0));
    let marketer = journalist.average;
    Risk {
        threshold,
        prosecutor,
        journalist,
        marketer,
    }
}

/// A QI's level in the release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QiLevel {
    pub field: String,
    pub level: u32,
    pub name: String,
}

/// Everything a release's reader and the ledger need to know about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub dataset: String,
    /// [`crate::ReleaseSpec::hash`] in hex.
    pub spec_hash: String,
    /// Input records.
    pub records: u64,
    /// The released table's figures.
    pub figures: Figures,
    pub risk: Risk,
    pub suppressed: u64,
    pub suppressed_share: f64,
    /// The chosen generalization.
    pub levels: Vec<QiLevel>,
    /// `"entropy"` or `"discernibility"`.
    pub utility: String,
    /// The measure's value for the release.
    pub information_loss: f64,
    /// The same scaled to `0..=1` (entropy: divided by the loss of generalizing everything to
    /// `*`; discernibility: `(DM − n) / (n² − n)`).
    pub information_loss_normalized: f64,
    /// `(class size, number of classes)`, ascending by size.
    pub class_sizes: Vec<(u64, u64)>,
    pub lattice_size: u64,
    pub nodes_evaluated: u64,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Report {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain data cannot fail; NaN would be written as null.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A standalone HTML page: the figures as a table, class sizes as an inline SVG bar chart.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>De-identified release: {ds}</title>\n<style>body{{font-family:sans-serif;max-width:52rem;margin:2rem auto;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}th{{background:#f3f3f3}}</style></head><body>\n<h1>De-identified release: {ds}</h1>\n<p>Spec <code>{hash}</code></p>\n<h2>Privacy</h2>\n<table>\n",
            ds = esc(&self.dataset),
            hash = esc(&self.spec_hash)
        );
        let mut row = |k: &str, v: String| {
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
        };
        row("Input records", self.records.to_string());
        row("Released records", self.figures.records.to_string());
        row(
            "Suppressed records",
            format!(
                "{} ({:.2} %)",
                self.suppressed,
                100.0 * self.suppressed_share
            ),
        );
        row("Equivalence classes", self.figures.classes.to_string());
        row("k (smallest class)", self.figures.k.to_string());
        for s in &self.figures.sensitive {
            row(
                &format!("{}: distinct l", s.field),
                s.distinct_l.to_string(),
            );
            row(
                &format!("{}: entropy l", s.field),
                format!("{:.4}", s.entropy_l),
            );
            row(&format!("{}: t (EMD)", s.field), format!("{:.4}", s.t));
        }
        let r = &self.risk;
        row(
            "Prosecutor risk, highest / average",
            format!("{:.4} / {:.4}", r.prosecutor.highest, r.prosecutor.average),
        );
        row(
            "Journalist risk, highest / average",
            format!("{:.4} / {:.4}", r.journalist.highest, r.journalist.average),
        );
        row("Marketer risk", format!("{:.4}", r.marketer));
        row(
            &format!("Records at risk (> {})", r.threshold),
            format!("{:.2} %", 100.0 * r.prosecutor.records_at_risk),
        );
        row(
            "Information loss",
            format!(
                "{:.4} ({}), normalized {:.4}",
                self.information_loss, self.utility, self.information_loss_normalized
            ),
        );
        for l in &self.levels {
            row(
                &format!("Level of {}", l.field),
                format!("{} ({})", l.level, l.name),
            );
        }
        row(
            "Lattice nodes / evaluated",
            format!("{} / {}", self.lattice_size, self.nodes_evaluated),
        );
        h.push_str("</table>\n<h2>Equivalence class sizes</h2>\n");
        h.push_str(&self.svg());
        h.push_str("\n</body></html>\n");
        h
    }

    /// The class-size histogram as SVG bars (at most 40 bars; larger sizes share the last one).
    fn svg(&self) -> String {
        const BARS: usize = 40;
        let mut bars: Vec<(String, u64)> = Vec::new();
        for (i, (size, count)) in self.class_sizes.iter().enumerate() {
            if i + 1 < BARS {
                bars.push((size.to_string(), *count));
            } else if i + 1 == BARS {
                bars.push((format!("≥{size}"), *count));
            } else if let Some(last) = bars.last_mut() {
                last.1 += count;
            }
        }
        let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
        let (w, hgt, bw) = (40 + 18 * bars.len().max(1), 240, 18usize);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" role=\"img\" aria-label=\"number of equivalence classes by size\">\n"
        );
        for (i, (label, count)) in bars.iter().enumerate() {
            let bh = (180.0 * *count as f64 / max as f64).round() as usize;
            let x = 30 + i * bw;
            let _ = writeln!(
                s,
                "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{bh}\" fill=\"#4a7bb7\"><title>size {}: {count} classes</title></rect><text x=\"{}\" y=\"215\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
                200 - bh,
                bw - 2,
                esc(label),
                x + bw / 2,
                esc(label)
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"2\" y=\"14\" font-size=\"10\">max {max}</text><text x=\"30\" y=\"234\" font-size=\"10\">class size</text></svg>"
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_hand_computed() {
        // Released classes of sizes 2, 5, 3 (10 records); populations 4, 5, 6.
        let r = risk(&[(2, 4), (5, 5), (3, 6)], 0.2);
        assert_eq!(r.prosecutor.highest, 0.5);
        assert!((r.prosecutor.average - 3.0 / 10.0).abs() < 1e-15);
        // Records with risk > 0.2: the class of 2 (1/2) and of 3 (1/3): 5 of 10.
        assert!((r.prosecutor.records_at_risk - 0.5).abs() < 1e-15);
        assert_eq!(r.journalist.highest, 0.25);
        // (2/4 + 5/5 + 3/6) / 10 = 0.2.
        assert!((r.journalist.average - 0.2).abs() < 1e-15);
        assert!((r.marketer - 0.2).abs() < 1e-15);
        // Journalist at risk: 1/4 and 1/5 and 1/6: only 1/4 > 0.2 → 2 of 10.
        assert!((r.journalist.records_at_risk - 0.2).abs() < 1e-15);
        let r = risk(&[], 0.2);
        assert_eq!(
            (r.prosecutor.highest, r.prosecutor.average, r.marketer),
            (0.0, 0.0, 0.0)
        );
    }
}
