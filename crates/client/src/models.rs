//! A released model or survival result as a researcher reads it: the coefficient table, the
//! curves' summary, and their charts (a forest plot of the ratios or coefficients, the
//! Kaplan–Meier curves with their bands) as standalone SVG; a drug-safety result as its table of
//! pairs.

use medspace_worker::wire::{ModelResult, SurvivalResult};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A p-value as text (`<1e-16` below what a double resolves).
fn p_text(p: f64) -> String {
    if p < 1e-16 {
        "<1e-16".into()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// The coefficient table, one line per term.
pub fn model_lines(m: &ModelResult) -> Vec<String> {
    let ratio = match m.family.as_str() {
        "logistic" => "odds ratio (95% CI)",
        "poisson" => "rate ratio (95% CI)",
        _ => "",
    };
    let mut out = vec![
        format!(
            "{} regression, n={}, {} Newton iterations, deviance {:.4}{}{}",
            m.family,
            m.n,
            m.iterations,
            m.deviance,
            if m.family == "linear" {
                format!(", scale {:.4}", m.scale)
            } else {
                String::new()
            },
            if m.dp {
                ", differentially private statistics"
            } else {
                ""
            }
        ),
        format!(
            "{:<28} {:>11} {:>10} {:>8} {:>9}   {ratio}",
            "term", "coef", "std err", "z", "p"
        ),
    ];
    for t in &m.terms {
        let r = t
            .ratio
            .filter(|_| t.name != "intercept")
            .map(|[r, lo, hi]| format!("{r:.3} ({lo:.3}–{hi:.3})"))
            .unwrap_or_default();
        out.push(format!(
            "{:<28} {:>11.5} {:>10.5} {:>8.3} {:>9}   {r}",
            t.name,
            t.coefficient,
            t.std_error,
            t.z,
            p_text(t.p_value)
        ));
    }
    out
}

/// Each curve's summary: persons, events, survival at the last released bin, and the test.
pub fn survival_lines(s: &SurvivalResult) -> Vec<String> {
    let mut out = Vec::new();
    for c in &s.curves {
        let events: u64 = c.points.iter().map(|p| p.events).sum();
        let last = c.points.last();
        out.push(format!(
            "{:<14} entered {:>6}  events {:>5}  survival at day {:>5}: {}{}",
            c.group,
            c.entered,
            events,
            last.map(|p| p.day + s.bin_days).unwrap_or(0),
            last.map(|p| format!("{:.4} ({:.4}–{:.4})", p.survival, p.ci_low, p.ci_high))
                .unwrap_or_else(|| "—".into()),
            if c.suppressed_bins > 0 {
                format!(
                    "  ({} later bins withheld: small risk set)",
                    c.suppressed_bins
                )
            } else {
                String::new()
            }
        ));
    }
    if let Some((chi2, df, p)) = s.log_rank {
        out.push(format!(
            "log-rank test: chi2 {chi2:.3} on {df} df, p {}",
            p_text(p)
        ));
    }
    out
}

fn svg_head(w: f64, h: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\">{}</text>\n",
        escape(title)
    )
}

/// A forest plot: each covariate's odds or rate ratio (coefficient for a linear model) with its
/// 95% interval, on a log axis for ratios, with the line of no effect.
pub fn forest_svg(m: &ModelResult, title: &str) -> String {
    let ratios = m.family != "linear";
    let rows: Vec<(&str, f64, f64, f64)> = m
        .terms
        .iter()
        .filter(|t| t.name != "intercept")
        .map(|t| match (ratios, t.ratio) {
            (true, Some([r, lo, hi])) => (t.name.as_str(), r.ln(), lo.ln(), hi.ln()),
            _ => (t.name.as_str(), t.coefficient, t.ci_low, t.ci_high),
        })
        .filter(|(_, v, lo, hi)| v.is_finite() && lo.is_finite() && hi.is_finite())
        .collect();
    let (w, row_h, left, right, top) = (760.0_f64, 26.0_f64, 230.0_f64, 210.0_f64, 44.0_f64);
    let h = top + rows.len() as f64 * row_h + 50.0;
    let lo = rows.iter().map(|r| r.2).fold(0.0_f64, f64::min);
    let hi = rows.iter().map(|r| r.3).fold(0.0_f64, f64::max);
    let span = (hi - lo).max(1e-9);
    let x = |v: f64| left + (v - lo) / span * (w - left - right);
    let mut svg = svg_head(w, h, title);
    let zero = x(0.0);
    svg.push_str(&format!(
        "<line x1=\"{zero:.1}\" y1=\"{}\" x2=\"{zero:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n",
        top - 10.0,
        top + rows.len() as f64 * row_h
    ));
    for (i, (name, v, l, u)) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h + row_h / 2.0;
        let shown = |t: f64| if ratios { t.exp() } else { t };
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#1f5fae\" stroke-width=\"2\"/>\n<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"#1f5fae\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\">{:.3} ({:.3}–{:.3})</text>\n",
            left - 10.0,
            y + 4.0,
            escape(name),
            x(*l),
            x(*u),
            x(*v) - 4.0,
            y - 4.0,
            w - right + 10.0,
            y + 4.0,
            shown(*v),
            shown(*l),
            shown(*u)
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{zero:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n</svg>\n",
        h - 16.0,
        if ratios {
            if m.family == "logistic" {
                "odds ratio, log scale (1 = no effect)"
            } else {
                "rate ratio, log scale (1 = no effect)"
            }
        } else {
            "coefficient (0 = no effect)"
        }
    ));
    svg
}

const COLOURS: [&str; 6] = [
    "#1f5fae", "#c2410c", "#15803d", "#7e22ce", "#b45309", "#0e7490",
];

/// The Kaplan–Meier curves as steps with their 95% bands, one colour per group.
pub fn survival_svg(s: &SurvivalResult, title: &str) -> String {
    let (w, h, left, bottom, top, right) = (720.0_f64, 420.0_f64, 60.0, 64.0, 44.0, 150.0);
    let days = s
        .curves
        .iter()
        .filter_map(|c| c.points.last().map(|p| p.day + s.bin_days))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    // The survival axis starts at the lowest band's tenth below (curves near 1 stay readable).
    let floor = s
        .curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.ci_low))
        .fold(1.0_f64, f64::min);
    let floor = ((floor * 10.0).floor() / 10.0).clamp(0.0, 0.9);
    let x = |d: f64| left + d / days * (w - left - right);
    let y =
        |v: f64| top + (1.0 - (v.clamp(floor, 1.0) - floor) / (1.0 - floor)) * (h - top - bottom);
    let mut svg = svg_head(w, h, title);
    for i in 0..=4 {
        let tick = floor + (1.0 - floor) * f64::from(i) / 4.0;
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#eee\"/>\n<text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\" fill=\"#555\">{tick:.3}</text>\n",
            y(tick),
            w - right,
            left - 6.0,
            y(tick) + 4.0
        ));
    }
    for i in 0..=4 {
        let d = days * f64::from(i) / 4.0;
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{d:.0}</text>\n",
            x(d),
            h - bottom + 18.0
        ));
    }
    for (i, c) in s.curves.iter().enumerate() {
        let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or("#333");
        let mut line = format!("M{:.1},{:.1}", x(0.0), y(1.0));
        let mut upper = Vec::new();
        let mut lower = Vec::new();
        for p in &c.points {
            let end = f64::from(p.day + s.bin_days);
            line.push_str(&format!(" H{:.1} V{:.1}", x(end), y(p.survival)));
            upper.push(format!("{:.1},{:.1}", x(end), y(p.ci_high)));
            lower.push(format!("{:.1},{:.1}", x(end), y(p.ci_low)));
        }
        lower.reverse();
        if !upper.is_empty() {
            svg.push_str(&format!(
                "<polygon points=\"{} {}\" fill=\"{colour}\" fill-opacity=\"0.12\" stroke=\"none\"/>\n",
                upper.join(" "),
                lower.join(" ")
            ));
        }
        svg.push_str(&format!(
            "<path d=\"{line}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{} (n={})</text>\n",
            w - right + 10.0,
            top + 16.0 + i as f64 * 18.0,
            escape(&c.group),
            c.entered
        ));
    }
    let test = s
        .log_rank
        .map(|(chi2, df, p)| format!("; log-rank chi2 {chi2:.2} on {df} df, p {}", p_text(p)))
        .unwrap_or_default();
    svg.push_str(&format!(
        "<text x=\"{left}\" y=\"{:.1}\" fill=\"#555\">days after the index date (bins of {} days); shaded: 95% band{}</text>\n</svg>\n",
        h - 14.0,
        s.bin_days,
        escape(&test)
    ));
    svg
}

fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// A drug-safety result as a table: one line per pair, signals flagged.
pub fn drug_safety_lines(r: &medspace_worker::wire::DrugSafetyResult) -> Vec<String> {
    let mut out = vec![format!(
        "{} over new users (washout {} d), event 1-{} d after the first exposure{}{}",
        if r.scan {
            "scan of every drug x event"
        } else {
            "listed pairs"
        },
        r.washout_days,
        r.window_days,
        r.fdr
            .map(|q| format!(", Benjamini-Hochberg FDR {q}"))
            .unwrap_or_default(),
        if r.dp {
            ", cells noised"
        } else {
            ", exact cells (secure aggregation)"
        }
    )];
    out.push(format!(
        "{:<30} {:>5} {:>6} {:>5} {:>7} {:>6} {:>15} {:>6} {:>15} {:>6} {:>7} signal",
        "drug -> event", "a", "b", "c", "d", "PRR", "95% CI", "ROR", "95% CI", "IC025", "chi2"
    ));
    for p in &r.pairs {
        let name = format!("{} -> {}", p.pair.drug, p.pair.event);
        match (&p.table, &p.stats) {
            (Some(t), Some(s)) => {
                let ci = |c: Option<(f64, f64)>| {
                    c.map_or_else(|| "-".into(), |(lo, hi)| format!("{lo:.2}-{hi:.2}"))
                };
                let signal = match p.scan_signal {
                    Some(true) => "SIGNAL (scan)",
                    Some(false) => "",
                    None if s.signals.prr_rule => "SIGNAL",
                    None => "",
                };
                out.push(format!(
                    "{name:<30} {:>5} {:>6} {:>5} {:>7} {:>6} {:>15} {:>6} {:>15} {:>6} {:>7} {signal}",
                    t.a,
                    t.b,
                    t.c,
                    t.d,
                    fmt_opt(s.prr, 2),
                    ci(s.prr_ci),
                    fmt_opt(s.ror, 2),
                    ci(s.ror_ci),
                    fmt_opt(s.ic025, 2),
                    fmt_opt(s.chi2, 1),
                ));
            }
            _ => out.push(format!("{name:<30} suppressed (a cell below k)")),
        }
    }
    out
}

/// A vertical study's release as a table: one line per cell (persons in both, claims and paid
/// per person in the window, with standard deviations when released).
pub fn vertical_lines(v: &medspace_worker::wire::VerticalResult, k: u32) -> Vec<String> {
    let mut out = vec![format!(
        "hospital cohort x insurer claims over {} days after the index date{}{}",
        v.days,
        v.compare
            .as_ref()
            .map(|c| format!(", split by {c}"))
            .unwrap_or_default(),
        if v.dp {
            ", noised by both sides"
        } else {
            ", exact (cells below k withheld)"
        }
    )];
    out.push(format!(
        "{:<26} {:>7} {:>16} {:>20}",
        "cell", "persons", "claims/person", "paid/person"
    ));
    let with_sd = |m: Option<f64>, sd: Option<f64>, digits: usize| match (m, sd) {
        (Some(m), Some(sd)) => format!("{m:.digits$} (sd {sd:.digits$})"),
        (Some(m), None) => format!("{m:.digits$}"),
        _ => "-".into(),
    };
    for cell in &v.cells {
        let (label, c) = (cell.label(v.compare.as_deref()), &cell.values);
        match c.n {
            None => out.push(format!("{label:<26} withheld (< {k})")),
            Some(n) => out.push(format!(
                "{label:<26} {n:>7} {:>16} {:>20}",
                with_sd(c.claims_mean, c.claims_sd, 2),
                with_sd(c.paid_mean, c.paid_sd, 0),
            )),
        }
    }
    out
}

/// A vertical study's chart: mean paid per person for each cell, with its standard deviation
/// when released; withheld cells drawn empty.
pub fn vertical_svg(v: &medspace_worker::wire::VerticalResult, k: u32, title: &str) -> String {
    let (w, bar_h, gap, left, top) = (680.0_f64, 22.0_f64, 8.0_f64, 190.0_f64, 40.0_f64);
    let max = v
        .cells
        .iter()
        .filter_map(|c| {
            c.values
                .paid_mean
                .map(|m| m + c.values.paid_sd.unwrap_or(0.0))
        })
        .fold(1.0_f64, f64::max);
    let scale = (w - left - 110.0) / max;
    let h = top + v.cells.len() as f64 * (bar_h + gap) + 30.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\">{}</text>\n",
        escape(title)
    );
    for (i, cell) in v.cells.iter().enumerate() {
        let (label, c) = (cell.label(v.compare.as_deref()), &cell.values);
        let y = top + i as f64 * (bar_h + gap);
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            left - 8.0,
            y + bar_h * 0.7,
            escape(&label)
        ));
        match (c.n, c.paid_mean) {
            (Some(n), Some(m)) => {
                let len = m.max(0.0) * scale;
                svg.push_str(&format!(
                    "<rect x=\"{left}\" y=\"{y}\" width=\"{len:.1}\" height=\"{bar_h}\" fill=\"#3b7dd8\"/>\n"
                ));
                if let Some(sd) = c.paid_sd {
                    let (x0, x1) = (left + (m - sd).max(0.0) * scale, left + (m + sd) * scale);
                    let yc = y + bar_h / 2.0;
                    svg.push_str(&format!(
                        "<line x1=\"{x0:.1}\" y1=\"{yc:.1}\" x2=\"{x1:.1}\" y2=\"{yc:.1}\" stroke=\"#222\"/>\n"
                    ));
                }
                svg.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{}\">{m:.0} (n={n})</text>\n",
                    left + len + 6.0 + c.paid_sd.map_or(0.0, |sd| sd * scale),
                    y + bar_h * 0.7
                ));
            }
            _ => svg.push_str(&format!(
                "<rect x=\"{left}\" y=\"{y}\" width=\"60\" height=\"{bar_h}\" fill=\"none\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n<text x=\"{:.1}\" y=\"{}\" fill=\"#777\">withheld (&lt; {k})</text>\n",
                left + 66.0,
                y + bar_h * 0.7
            )),
        }
    }
    svg.push_str(&format!(
        "<text x=\"10\" y=\"{:.1}\" fill=\"#555\">mean paid per person in the window{}</text>\n</svg>\n",
        h - 10.0,
        if v.dp { ", noised by both sides" } else { " (line: one standard deviation)" }
    ));
    svg
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use medspace_worker::wire::{CurvePoint, CurveResult, TermRow};

    fn model() -> ModelResult {
        let term = |name: &str, c: f64| TermRow {
            name: name.into(),
            coefficient: c,
            std_error: 0.1,
            z: c / 0.1,
            p_value: 0.01,
            ci_low: c - 0.196,
            ci_high: c + 0.196,
            ratio: Some([c.exp(), (c - 0.196).exp(), (c + 0.196).exp()]),
        };
        ModelResult {
            family: "logistic".into(),
            terms: vec![
                term("intercept", -2.0),
                term("age", 0.03),
                term("a<b", -0.5),
            ],
            deviance: 123.0,
            iterations: 6,
            n: 500,
            scale: 1.0,
            dp: false,
        }
    }

    #[test]
    fn the_table_and_forest_plot_show_every_covariate() {
        let m = model();
        let lines = model_lines(&m);
        assert_eq!(lines.len(), 2 + 3);
        assert!(lines[0].contains("n=500"));
        assert!(lines[3].contains("1.030"), "{}", lines[3]);
        let svg = forest_svg(&m, "t");
        assert!(svg.contains("a&lt;b"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            2,
            "one marker per covariate"
        );
        assert!(svg.contains("odds ratio"));
    }

    #[test]
    fn curves_are_drawn_with_bands_and_the_test() {
        let s = SurvivalResult {
            bin_days: 30,
            curves: vec![CurveResult {
                group: "female".into(),
                entered: 100,
                points: (0..4)
                    .map(|i| CurvePoint {
                        day: i * 30,
                        at_risk: 100 - u64::from(i) * 10,
                        events: 5,
                        censored: 5,
                        survival: 1.0 - f64::from(i + 1) * 0.05,
                        ci_low: 0.8 - f64::from(i) * 0.05,
                        ci_high: 1.0,
                    })
                    .collect(),
                suppressed_bins: 2,
            }],
            log_rank: Some((4.2, 1, 0.04)),
        };
        let lines = survival_lines(&s);
        assert!(lines[0].contains("events    20"), "{}", lines[0]);
        assert!(lines[0].contains("withheld"));
        assert!(lines[1].contains("chi2 4.200"));
        let svg = survival_svg(&s, "km");
        assert_eq!(svg.matches("<polygon").count(), 1);
        assert!(svg.contains("female (n=100)"));
    }
}
