//! Outbreak (aberration) detection on daily syndromic counts, for public-health surveillance.
//!
//! Every day each region × age band releases one count (persons with a syndrome), summed by
//! secure aggregation and perhaps made noisy by discrete Laplace DP noise. The agency runs a
//! detector on each daily series; this module is the mathematics of the detectors: pure, no I/O,
//! no clock, deterministic, f64.
//!
//! `series[t]` is the count of day `t`; `None` is a missing window (a failed job). A missing day
//! never alerts and never appears in the output, and every baseline leaves missing days out.
//! A value that is not finite, or whose magnitude exceeds [`MAX_COUNT`], is **refused**
//! ([`AberrationError::BadValue`]): a missing window is `None`, so a NaN is an upstream bug, not
//! a gap to paper over. [`detect`] returns one [`Point`] per present day that has enough history
//! for the method; other days are absent.
//!
//! # EARS C1, C2, C3
//!
//! The Early Aberration Reporting System of the CDC (Hutwagner, Thompson, Seeman & Treadwell,
//! *J Urban Health* 2003;80(2 Suppl 1):i89–i96), with the statistics as Fricker, Hegler & Dunfee
//! write them (*Stat Med* 2008;27:3407–3429, §2.1):
//!
//! - **C1**: `C1_t = (x_t − x̄)/s` over the baseline `t−7 … t−1`; alert when `C1_t > 3`.
//! - **C2**: the same over `t−9 … t−3` (a guard band of 2 days); alert when `C2_t > 3`.
//! - **C3**: `C3_t = Σ_{i=t−2}^{t} max(0, C2_i − 1)`; alert when `C3_t > 2`.
//!
//! `x̄` and `s` are the mean and the sample standard deviation (n − 1) of the baseline's present
//! days; a baseline needs at least [`EarsParams::min_baseline`] present days (default 4 of 7),
//! else the day is absent. `s` is floored at [`EarsParams::min_sd`] (default 0.2) so that a flat
//! baseline (all zeros, common for rare syndromes) gives a finite statistic; the R package
//! `surveillance` (`earsC`, `minSigma`) defaults to no floor, and 0.2 is the usual choice for
//! counts of a few per day. For C3, a C2 term of a day that is missing or lacks a baseline counts
//! as 0; the first C3 day is `guard + baseline + 2` (day 11 with the defaults). EARS works on the
//! raw (possibly negative, DP-noisy) values.
//!
//! [`Point`] for EARS: `expected = x̄`, `score` = the statistic, and `threshold` = the count above
//! which the day alerts: `x̄ + h·s` for C1/C2; for C3, with `P` the sum of the two previous terms,
//! `x̄ + s·(1 + h − P)` when `P ≤ h`, and `−∞` when `P > h` (the day alerts whatever its count).
//! So for every method `alert ⇔ observed > threshold` (up to rounding at the boundary; `alert`
//! is computed from the score as the literature defines it).
//!
//! # Seasonal: quasi-Poisson regression with harmonics
//!
//! A log-linear model of the kind of Serfling (*Public Health Rep* 1963;78:494–506: linear trend
//! plus annual sine/cosine terms), fitted as a quasi-Poisson GLM as in Farrington, Andrews, Beale
//! & Catchpole (*J R Stat Soc A* 1996;159:547–563), with the negative-binomial threshold of
//! Noufaily et al. (*Stat Med* 2013;32:1206–1222). For day `t`:
//!
//! - **History**: the present days of `[t − guard − history, t − guard)` (defaults 365 and 7),
//!   clamped at day 0, each value clamped to ≥ 0; at least [`SeasonalParams::min_history`]
//!   (default 56) present days, else the day is absent.
//! - **Design** ([`Design`]): intercept; linear trend `(d − t)/365.25` (in years, 0 at `t`);
//!   `sin(2πk·d/365.25)`, `cos(2πk·d/365.25)` for `k = 1..=harmonics` (default 2), *only when the
//!   history window spans at least [`SeasonalParams::annual_min_span`] days* (default 365: a
//!   shorter window cannot separate the season from the trend, so the annual terms are dropped and
//!   the model is local); day-of-week indicators for `d mod 7 = 1..6` (day 0 of the series defines
//!   weekday 0).
//! - **Fit**: Poisson IRLS with log link, a p×p Cholesky solve per step, step halving while the
//!   deviance rises; converged when the Newton decrement `g'Δ` (score times step) is at most
//!   `1e-9·(D + 1)`, `D` the deviance, and that last step is still taken (so the coefficients
//!   agree with statsmodels to about 1e-12). [`fit_seasonal`] starts cold, at `μ = (y + ȳ)/2` as
//!   statsmodels does; [`detect`] starts each day from the previous day's coefficients (two
//!   steps instead of five) and measures the trend from the first day of the call (moved every
//!   two years) instead of `t`, which changes the intercept only, not `μ`. A singular design (e.g. a weekday with no
//!   present day) or no convergence within [`SeasonalParams::max_iterations`] leaves the day
//!   absent. When every history value is 0 there is no finite fit: `expected = 0`,
//!   `threshold = 0`. Unlike Farrington's method, past outbreaks are not down-weighted: once an
//!   outbreak is older than the guard band it raises the baseline.
//! - **Dispersion**: `φ = max(1, X²/(n − p))`, `X²` Pearson's statistic (statsmodels'
//!   `scale="X2"` before the floor).
//! - **Threshold**: the upper `1 − alpha` quantile (default alpha 0.01, one-sided) of a negative
//!   binomial with mean `μ_t` and variance `φ·μ_t` (Poisson when `φ = 1`): the smallest `k` with
//!   `P(X ≤ k) ≥ 1 − alpha`, summed exactly from 0 in log space, or, when `μ_t + 50√(φμ_t)`
//!   exceeds 200 000, the Cornish–Fisher approximation `μ + √(φμ)·(z + γ(z² − 1)/6)` with
//!   `γ = (2φ − 1)/√(φμ)`, rounded up. Alert when `x_t > threshold` (raw `x_t`).
//! - **Score**: the Pearson residual `(x_t − μ_t)/√(φ·μ_t)` (with denominator 1 when `μ_t = 0`).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dp::DpError;

pub mod eval;

/// Largest magnitude of a count (refused above).
pub const MAX_COUNT: f64 = 1e12;
/// Longest series, in days.
pub const MAX_DAYS: usize = 100_000;
/// Most annual harmonics.
pub const MAX_HARMONICS: usize = 6;
/// Days in a year, for the trend's unit and the annual period.
pub const YEAR: f64 = 365.25;
/// Largest baseline, guard band or history length, in days.
const MAX_WINDOW: usize = 10_000;
/// Day-of-week indicator columns (weekday 0 is the reference).
const DOW_COLUMNS: usize = 6;
/// Beyond this many terms the NB/Poisson quantile is approximated (Cornish–Fisher).
const EXACT_QUANTILE_TERMS: f64 = 200_000.0;
/// [`detect`] moves the trend's origin after this many days.
const REBASE_DAYS: usize = 730;
/// IRLS stops when the Newton decrement is at most this times `D + 1` (D the deviance).
const CONVERGENCE: f64 = 1e-9;

/// Errors of the detectors and of the evaluation harness.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AberrationError {
    /// An empty series.
    #[error("empty series")]
    EmptySeries,
    /// A series longer than [`MAX_DAYS`].
    #[error("series too long: days={days} (at most {MAX_DAYS})")]
    TooLong {
        /// Its length.
        days: usize,
    },
    /// A value that is not finite or exceeds [`MAX_COUNT`] in magnitude.
    #[error("bad value: day={day} (a count must be finite and at most {MAX_COUNT:e} in magnitude)")]
    BadValue {
        /// The day.
        day: usize,
    },
    /// A parameter out of its range.
    #[error("bad parameter: field=`{field}`")]
    BadParam {
        /// The parameter's name, as in the serialized form.
        field: &'static str,
    },
    /// A simulation scenario out of range.
    #[error("bad scenario: field=`{field}`")]
    BadScenario {
        /// The field's name.
        field: &'static str,
    },
    /// The DP noise sampler failed.
    #[error("noise: {0}")]
    Noise(#[from] DpError),
    /// A worker thread of the evaluation stopped without an answer.
    #[error("evaluation worker failed")]
    Worker,
}

/// A detection method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// EARS C1: 7-day baseline just before the day.
    C1,
    /// EARS C2: 7-day baseline after a 2-day guard band.
    C2,
    /// EARS C3: the sum of the positive parts of C2 − 1 over the day and the two before.
    C3,
    /// Quasi-Poisson regression with trend, annual harmonics and day of week.
    Seasonal,
}

impl Method {
    /// Every method, in this order.
    pub const ALL: [Method; 4] = [Method::C1, Method::C2, Method::C3, Method::Seasonal];

    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::C1 => "c1",
            Method::C2 => "c2",
            Method::C3 => "c3",
            Method::Seasonal => "seasonal",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One evaluated day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The day (index into the series).
    pub day: usize,
    /// The released count.
    pub observed: f64,
    /// The baseline mean (EARS) or the fitted mean (seasonal).
    pub expected: f64,
    /// The count above which the day alerts (see the module docs; `−∞` possible for C3).
    pub threshold: f64,
    /// The method's statistic (EARS) or the Pearson residual (seasonal).
    pub score: f64,
    /// Whether the day alerts.
    pub alert: bool,
}

/// Parameters of every method.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// C1, C2, C3.
    pub ears: EarsParams,
    /// The seasonal regression.
    pub seasonal: SeasonalParams,
}

/// Parameters of EARS C1, C2, C3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarsParams {
    /// Baseline length in days (7).
    pub baseline: usize,
    /// Present days a baseline needs (4, a majority of 7); at least 2 and at most `baseline`.
    pub min_baseline: usize,
    /// Guard band of C2 and C3 in days (2).
    pub guard: usize,
    /// Alert threshold of C1 and C2, in standard deviations (3).
    pub threshold: f64,
    /// Alert threshold of C3 (2).
    pub c3_threshold: f64,
    /// Floor of the baseline's standard deviation (0.2); positive.
    pub min_sd: f64,
}

impl Default for EarsParams {
    fn default() -> Self {
        EarsParams {
            baseline: 7,
            min_baseline: 4,
            guard: 2,
            threshold: 3.0,
            c3_threshold: 2.0,
            min_sd: 0.2,
        }
    }
}

/// Parameters of the seasonal regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeasonalParams {
    /// History window in days before the guard band (365).
    pub history: usize,
    /// Guard band in days between the history and the day (7), so that the first week of an
    /// outbreak does not raise its own baseline.
    pub guard: usize,
    /// Present history days a fit needs (56, eight weeks); more than the number of columns.
    pub min_history: usize,
    /// One-sided false-alert probability per day under the model (0.01); in (0, 1).
    pub alpha: f64,
    /// Annual harmonics (2), at most [`MAX_HARMONICS`].
    pub harmonics: usize,
    /// Shortest history window (in days, missing days included) that carries the annual terms
    /// (365).
    pub annual_min_span: usize,
    /// A linear trend (on).
    pub trend: bool,
    /// Day-of-week indicators (on).
    pub day_of_week: bool,
    /// IRLS iterations at most (100).
    pub max_iterations: usize,
}

impl Default for SeasonalParams {
    fn default() -> Self {
        SeasonalParams {
            history: 365,
            guard: 7,
            min_history: 56,
            alpha: 0.01,
            harmonics: 2,
            annual_min_span: 365,
            trend: true,
            day_of_week: true,
            max_iterations: 100,
        }
    }
}

impl Params {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), AberrationError> {
        self.ears.validate()?;
        self.seasonal.validate()
    }
}

fn check(ok: bool, field: &'static str) -> Result<(), AberrationError> {
    if ok {
        Ok(())
    } else {
        Err(AberrationError::BadParam { field })
    }
}

impl EarsParams {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), AberrationError> {
        check((2..=MAX_WINDOW).contains(&self.baseline), "baseline")?;
        check(
            (2..=self.baseline).contains(&self.min_baseline),
            "min_baseline",
        )?;
        check(self.guard <= MAX_WINDOW, "guard")?;
        check(
            self.threshold.is_finite() && self.threshold > 0.0,
            "threshold",
        )?;
        check(
            self.c3_threshold.is_finite() && self.c3_threshold > 0.0,
            "c3_threshold",
        )?;
        check(self.min_sd.is_finite() && self.min_sd > 0.0, "min_sd")
    }
}

impl SeasonalParams {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), AberrationError> {
        check(self.history <= MAX_WINDOW, "history")?;
        check(self.guard <= MAX_WINDOW, "guard")?;
        check(self.harmonics <= MAX_HARMONICS, "harmonics")?;
        check(self.annual_min_span <= MAX_WINDOW, "annual_min_span")?;
        let columns = Design {
            origin: 0,
            trend: self.trend,
            harmonics: self.harmonics,
            day_of_week: self.day_of_week,
        }
        .columns();
        check(
            self.min_history > columns && self.min_history <= self.history,
            "min_history",
        )?;
        check(self.alpha > 0.0 && self.alpha < 1.0, "alpha")?;
        check((1..=1000).contains(&self.max_iterations), "max_iterations")
    }
}

/// Checks a series: not empty, not too long, every value finite and within [`MAX_COUNT`].
pub fn check_series(series: &[Option<f64>]) -> Result<(), AberrationError> {
    if series.is_empty() {
        return Err(AberrationError::EmptySeries);
    }
    if series.len() > MAX_DAYS {
        return Err(AberrationError::TooLong { days: series.len() });
    }
    for (day, v) in series.iter().enumerate() {
        if let Some(v) = v
            && !(v.is_finite() && v.abs() <= MAX_COUNT)
        {
            return Err(AberrationError::BadValue { day });
        }
    }
    Ok(())
}

/// Runs one method over the whole series.
pub fn detect(
    method: Method,
    series: &[Option<f64>],
    params: &Params,
) -> Result<Vec<Point>, AberrationError> {
    detect_days(method, series, 0..series.len(), params)
}

/// Runs one method on the days of `days` only (the rest of the series is still history); days
/// past the series' end are ignored.
pub fn detect_days(
    method: Method,
    series: &[Option<f64>],
    days: std::ops::Range<usize>,
    params: &Params,
) -> Result<Vec<Point>, AberrationError> {
    params.validate()?;
    check_series(series)?;
    let days = days.start..days.end.min(series.len());
    let e = &params.ears;
    Ok(match method {
        Method::C1 => days
            .filter_map(|t| ears_point(series, t, 0, e.threshold, e))
            .collect(),
        Method::C2 => days
            .filter_map(|t| ears_point(series, t, e.guard, e.threshold, e))
            .collect(),
        Method::C3 => days.filter_map(|t| c3_point(series, t, e)).collect(),
        Method::Seasonal => {
            // One trend origin for two years of days, so that every day's row is computed once
            // and the trend stays near 0 (well conditioned against the intercept).
            let mut caches = Caches::new(days.start, series.len());
            let mut warm: Option<(Design, Vec<f64>)> = None;
            let mut out = Vec::new();
            for t in days {
                if t - caches.origin > REBASE_DAYS {
                    caches = Caches::new(t, series.len());
                    warm = None;
                }
                if let Some(p) = seasonal_point(series, t, &params.seasonal, &mut caches, &mut warm)
                {
                    out.push(p);
                }
            }
            out
        }
    })
}

fn value(series: &[Option<f64>], day: usize) -> Option<f64> {
    series.get(day).copied().flatten()
}

/// Mean and floored sample standard deviation of the baseline that ends `lag` days before `t`.
fn baseline(series: &[Option<f64>], t: usize, lag: usize, e: &EarsParams) -> Option<(f64, f64)> {
    let end = t.checked_sub(lag)?;
    let begin = end.checked_sub(e.baseline)?;
    let window = series.get(begin..end)?;
    let (n, sum) = window
        .iter()
        .flatten()
        .fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    if n < e.min_baseline {
        return None;
    }
    let mean = sum / n as f64;
    let ss: f64 = window
        .iter()
        .flatten()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    let sd = (ss / (n - 1) as f64).sqrt();
    Some((mean, sd.max(e.min_sd)))
}

/// The EARS statistic of day `t` with the baseline `lag` days back: (observed, mean, sd, z).
fn ears_z(
    series: &[Option<f64>],
    t: usize,
    lag: usize,
    e: &EarsParams,
) -> Option<(f64, f64, f64, f64)> {
    let x = value(series, t)?;
    let (mean, sd) = baseline(series, t, lag, e)?;
    Some((x, mean, sd, (x - mean) / sd))
}

fn ears_point(
    series: &[Option<f64>],
    t: usize,
    lag: usize,
    h: f64,
    e: &EarsParams,
) -> Option<Point> {
    let (x, mean, sd, z) = ears_z(series, t, lag, e)?;
    Some(Point {
        day: t,
        observed: x,
        expected: mean,
        threshold: mean + h * sd,
        score: z,
        alert: z > h,
    })
}

fn c3_point(series: &[Option<f64>], t: usize, e: &EarsParams) -> Option<Point> {
    // The first C3 day: the C2 terms of t−1 and t−2 must have had room for a baseline.
    if t < e.guard + e.baseline + 2 {
        return None;
    }
    let (x, mean, sd, z) = ears_z(series, t, e.guard, e)?;
    let term = |d: usize| {
        ears_z(series, d, e.guard, e)
            .map(|(_, _, _, z)| (z - 1.0).max(0.0))
            .unwrap_or(0.0)
    };
    let previous = term(t - 1) + term(t - 2);
    let h = e.c3_threshold;
    let score = previous + (z - 1.0).max(0.0);
    let threshold = if previous <= h {
        mean + sd * (1.0 + h - previous)
    } else {
        f64::NEG_INFINITY
    };
    Some(Point {
        day: t,
        observed: x,
        expected: mean,
        threshold,
        score,
        alert: score > h,
    })
}

/// The columns of the seasonal model for a fit at day `origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Design {
    /// The day the trend is measured from (the day being evaluated).
    pub origin: usize,
    /// A linear trend column.
    pub trend: bool,
    /// Annual harmonics (0 when the history is too short for them).
    pub harmonics: usize,
    /// Six day-of-week indicator columns.
    pub day_of_week: bool,
}

impl Design {
    /// The number of columns.
    pub fn columns(&self) -> usize {
        1 + usize::from(self.trend)
            + 2 * self.harmonics
            + if self.day_of_week { DOW_COLUMNS } else { 0 }
    }

    /// The column names: `intercept`, `trend`, `sin1`, `cos1`, …, `dow1` … `dow6`.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec!["intercept".to_string()];
        if self.trend {
            names.push("trend".into());
        }
        for k in 1..=self.harmonics {
            names.push(format!("sin{k}"));
            names.push(format!("cos{k}"));
        }
        if self.day_of_week {
            names.extend((1..=DOW_COLUMNS).map(|j| format!("dow{j}")));
        }
        names
    }

    /// The row of day `day`.
    pub fn row(&self, day: usize) -> Vec<f64> {
        let mut row = Vec::with_capacity(self.columns());
        self.push_row(day, &mut row);
        row
    }

    fn push_row(&self, day: usize, out: &mut Vec<f64>) {
        out.push(1.0);
        if self.trend {
            out.push((day as f64 - self.origin as f64) / YEAR);
        }
        for k in 1..=self.harmonics {
            let angle = std::f64::consts::TAU * k as f64 * day as f64 / YEAR;
            out.push(angle.sin());
            out.push(angle.cos());
        }
        if self.day_of_week {
            let weekday = day % 7;
            out.extend((1..=DOW_COLUMNS).map(|j| if weekday == j { 1.0 } else { 0.0 }));
        }
    }

    /// The linear predictor of `day` under `beta` (0 when the lengths differ).
    fn eta(&self, day: usize, beta: &[f64]) -> f64 {
        if beta.len() != self.columns() {
            return 0.0;
        }
        self.row(day).iter().zip(beta).map(|(x, b)| x * b).sum()
    }
}

/// A fitted seasonal model.
#[derive(Debug, Clone, PartialEq)]
pub struct SeasonalFit {
    /// The columns.
    pub design: Design,
    /// The history days used (present days of the window).
    pub days: Vec<usize>,
    /// Their values, clamped to ≥ 0.
    pub y: Vec<f64>,
    /// The coefficients, in the order of [`Design::names`].
    pub coefficients: Vec<f64>,
    /// Pearson's X² at the fit.
    pub pearson_chi2: f64,
    /// Residual degrees of freedom, `n − p`.
    pub df_resid: usize,
    /// `max(1, X²/(n − p))`.
    pub dispersion: f64,
    /// IRLS iterations taken.
    pub iterations: usize,
}

impl SeasonalFit {
    /// The fitted mean of `day`.
    pub fn mean(&self, day: usize) -> f64 {
        self.design.eta(day, &self.coefficients).exp()
    }

    /// Pearson's X²/(n − p) before the floor at 1 (statsmodels' `scale="X2"`).
    pub fn pearson_scale(&self) -> f64 {
        self.pearson_chi2 / self.df_resid as f64
    }
}

/// Fits the seasonal model for day `t` (which may lie past the series' end: a forecast); the
/// trend's origin is `t`. `None` when the history is too short, all zero, the design singular
/// or IRLS does not converge.
pub fn fit_seasonal(
    series: &[Option<f64>],
    t: usize,
    params: &SeasonalParams,
) -> Result<Option<SeasonalFit>, AberrationError> {
    params.validate()?;
    check_series(series)?;
    let mut caches = Caches::new(t, series.len());
    Ok(match history(series, t, params, t) {
        Some(History::Data(design, days, y)) => caches.for_design(design).and_then(|cache| {
            cache.fill(&days);
            fit(cache, days, y, params, None)
        }),
        _ => None,
    })
}

enum History {
    /// Every history value is 0: no finite fit.
    Zero,
    /// The design, the present days and their clamped values.
    Data(Design, Vec<usize>, Vec<f64>),
}

/// The history of day `t`, with the trend measured from `origin`.
fn history(series: &[Option<f64>], t: usize, p: &SeasonalParams, origin: usize) -> Option<History> {
    let end = t.checked_sub(p.guard)?;
    let begin = end.saturating_sub(p.history);
    let design = Design {
        origin,
        trend: p.trend,
        harmonics: if end - begin >= p.annual_min_span {
            p.harmonics
        } else {
            0
        },
        day_of_week: p.day_of_week,
    };
    let (days, y): (Vec<usize>, Vec<f64>) = series
        .iter()
        .enumerate()
        .take(end)
        .skip(begin)
        .filter_map(|(d, v)| v.map(|v| (d, v.max(0.0))))
        .unzip();
    if days.len() < p.min_history {
        return None;
    }
    if y.iter().all(|&v| v == 0.0) {
        return Some(History::Zero);
    }
    Some(History::Data(design, days, y))
}

/// One day's design row: its nonzero `(column, x_j)` pairs in column order (the day-of-week
/// indicators make most entries zero) and the products `(k·p + j, x_j·x_k)` of the lower
/// triangle (`k ≥ j`) of `x xᵀ`, all that the information matrix needs.
struct Row {
    entries: Vec<(usize, f64)>,
    products: Vec<(usize, f64)>,
}

impl Row {
    fn new(design: &Design, day: usize) -> Row {
        let cols = design.columns();
        let entries: Vec<(usize, f64)> = design
            .row(day)
            .into_iter()
            .enumerate()
            .filter(|&(_, v)| v != 0.0)
            .collect();
        let mut products = Vec::with_capacity(entries.len() * (entries.len() + 1) / 2);
        for (i, &(j, xj)) in entries.iter().enumerate() {
            for &(k, xk) in entries.iter().skip(i) {
                products.push((k * cols + j, xj * xk));
            }
        }
        Row { entries, products }
    }

    fn eta(&self, beta: &[f64]) -> f64 {
        // A plain loop: this is the hottest line of the seasonal method, and tests run it
        // unoptimized.
        let mut eta = 0.0;
        for &(j, x) in &self.entries {
            if let Some(b) = beta.get(j) {
                eta += x * b;
            }
        }
        eta
    }
}

/// The rows of one design, by day, computed when first needed.
struct RowCache {
    design: Design,
    rows: Vec<Option<Row>>,
}

impl RowCache {
    fn fill(&mut self, days: &[usize]) {
        for &d in days {
            if let Some(slot) = self.rows.get_mut(d)
                && slot.is_none()
            {
                *slot = Some(Row::new(&self.design, d));
            }
        }
    }

    fn get(&self, day: usize) -> Option<&Row> {
        self.rows.get(day)?.as_ref()
    }
}

/// The row caches of one call: one per design (with and without the annual terms), all with the
/// same trend origin.
struct Caches {
    origin: usize,
    days: usize,
    list: Vec<RowCache>,
}

impl Caches {
    fn new(origin: usize, days: usize) -> Caches {
        Caches {
            origin,
            days,
            list: Vec::new(),
        }
    }

    fn for_design(&mut self, design: Design) -> Option<&mut RowCache> {
        if !self.list.iter().any(|c| c.design == design) {
            self.list.push(RowCache {
                design,
                rows: (0..self.days).map(|_| None).collect(),
            });
        }
        self.list.iter_mut().find(|c| c.design == design)
    }
}

fn fit(
    cache: &RowCache,
    days: Vec<usize>,
    y: Vec<f64>,
    p: &SeasonalParams,
    start: Option<&[f64]>,
) -> Option<SeasonalFit> {
    let rows: Vec<&Row> = days.iter().map(|&d| cache.get(d)).collect::<Option<_>>()?;
    let cols = cache.design.columns();
    let (beta, iterations, means) = irls(&rows, &y, cols, start, p.max_iterations)?;
    let mut chi2 = 0.0;
    for (&mu, &yi) in means.iter().zip(&y) {
        if mu > 0.0 {
            chi2 += (yi - mu) * (yi - mu) / mu;
        } else if yi > 0.0 {
            return None;
        }
    }
    let df_resid = days.len().checked_sub(cols).filter(|&df| df > 0)?;
    let scale = chi2 / df_resid as f64;
    if !scale.is_finite() {
        return None;
    }
    Some(SeasonalFit {
        design: cache.design,
        days,
        y,
        coefficients: beta,
        pearson_chi2: chi2,
        df_resid,
        dispersion: scale.max(1.0),
        iterations,
    })
}

/// The Poisson objective `Σ (μ − y·η)` (the deviance is twice this plus a constant) at `beta`,
/// with the linear predictors and the means; `None` when not finite.
fn objective(
    rows: &[&Row],
    y: &[f64],
    beta: &[f64],
    eta: &mut Vec<f64>,
    mu: &mut Vec<f64>,
) -> Option<f64> {
    eta.clear();
    mu.clear();
    let mut obj = 0.0;
    for (row, &yi) in rows.iter().zip(y) {
        let e = row.eta(beta);
        let m = e.exp();
        obj += m - yi * e;
        eta.push(e);
        mu.push(m);
    }
    obj.is_finite().then_some(obj)
}

/// Poisson IRLS with log link: the coefficients, the iterations taken and the fitted means, or
/// `None` (singular, not finite, not converged). Converged when the Newton decrement `g'Δ` (score times step,
/// twice the objective's predicted decrease) is at most `1e-9·(D + 1)`; that step is still
/// taken, so the result is one quadratically convergent step beyond the test.
fn irls(
    rows: &[&Row],
    y: &[f64],
    cols: usize,
    start: Option<&[f64]>,
    max_iterations: usize,
) -> Option<(Vec<f64>, usize, Vec<f64>)> {
    let n = y.len();
    if n == 0 || cols == 0 || rows.len() != n {
        return None;
    }
    // Σ (y ln y − y), so that the deviance is D = 2·(objective + constant).
    let constant: f64 = y
        .iter()
        .map(|&v| if v > 0.0 { v * v.ln() - v } else { 0.0 })
        .sum();
    let mut mu = Vec::with_capacity(n);
    let mut eta = Vec::with_capacity(n);
    let (mut beta, mut obj) = match start.filter(|s| s.len() == cols) {
        Some(s) => {
            let obj = objective(rows, y, s, &mut eta, &mut mu)?;
            (s.to_vec(), Some(obj))
        }
        None => {
            // statsmodels' start: μ = (y + ȳ)/2, no coefficients yet.
            let mean = y.iter().sum::<f64>() / n as f64;
            mu = y.iter().map(|&v| (v + mean) / 2.0).collect();
            eta = mu.iter().map(|m| m.ln()).collect();
            (vec![0.0; cols], None)
        }
    };
    let mut a = vec![0.0; cols * cols];
    let mut b = vec![0.0; cols];
    let mut g = vec![0.0; cols];
    let mut trial_mu = Vec::with_capacity(n);
    let mut trial_eta = Vec::with_capacity(n);
    for iteration in 1..=max_iterations {
        a.iter_mut().for_each(|v| *v = 0.0);
        b.iter_mut().for_each(|v| *v = 0.0);
        g.iter_mut().for_each(|v| *v = 0.0);
        for ((row, &yi), (&m, &e)) in rows.iter().zip(y).zip(mu.iter().zip(&eta)) {
            // Working response z = η + (y − μ)/μ with weight μ: W·z = μη + y − μ; the score
            // is X'(y − μ).
            let wz = m * e + yi - m;
            let r = yi - m;
            for &(j, xj) in &row.entries {
                if let (Some(bj), Some(gj)) = (b.get_mut(j), g.get_mut(j)) {
                    *bj += xj * wz;
                    *gj += xj * r;
                }
            }
            for &(at, xx) in &row.products {
                if let Some(v) = a.get_mut(at) {
                    *v += m * xx;
                }
            }
        }
        let mut next = cholesky_solve(&mut a, &b, cols)?;
        // Meaningless from the cold start, whose μ has no coefficients behind it.
        let decrement = obj.map(|_| {
            g.iter()
                .zip(next.iter().zip(&beta))
                .map(|(gj, (nj, bj))| gj * (nj - bj))
                .sum::<f64>()
        });
        let mut next_obj = objective(rows, y, &next, &mut trial_eta, &mut trial_mu);
        if let Some(old) = obj {
            // Step halving towards the previous coefficients while the deviance rises.
            let mut halvings = 0;
            while next_obj.is_none_or(|o| o > old + 1e-12 * old.abs()) {
                halvings += 1;
                if halvings > 40 {
                    return None;
                }
                for (nj, bj) in next.iter_mut().zip(&beta) {
                    *nj = (*nj + bj) / 2.0;
                }
                next_obj = objective(rows, y, &next, &mut trial_eta, &mut trial_mu);
            }
        }
        let new_obj = next_obj?;
        let deviance = 2.0 * (new_obj + constant);
        beta = next;
        obj = Some(new_obj);
        std::mem::swap(&mut mu, &mut trial_mu);
        std::mem::swap(&mut eta, &mut trial_eta);
        match decrement {
            Some(d) if !d.is_finite() => return None,
            Some(d) if d.abs() <= CONVERGENCE * (deviance.abs() + 1.0) => {
                return Some((beta, iteration, mu));
            }
            _ => {}
        }
    }
    None
}

/// Solves `A β = b` for symmetric positive definite `A` (row-major, overwritten by its Cholesky
/// factor); `None` when not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let at = |a: &[f64], i: usize, j: usize| a.get(i * n + j).copied();
    for j in 0..n {
        let mut d = at(a, j, j)?;
        for k in 0..j {
            let l = at(a, j, k)?;
            d -= l * l;
        }
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let d = d.sqrt();
        *a.get_mut(j * n + j)? = d;
        for i in j + 1..n {
            let mut s = at(a, i, j)?;
            for k in 0..j {
                s -= at(a, i, k)? * at(a, j, k)?;
            }
            *a.get_mut(i * n + j)? = s / d;
        }
    }
    // L z = b, then L' β = z.
    let mut z = vec![0.0; n];
    for i in 0..n {
        let mut s = *b.get(i)?;
        for k in 0..i {
            s -= at(a, i, k)? * z.get(k)?;
        }
        *z.get_mut(i)? = s / at(a, i, i)?;
    }
    let mut beta = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = *z.get(i)?;
        for k in i + 1..n {
            s -= at(a, k, i)? * beta.get(k)?;
        }
        *beta.get_mut(i)? = s / at(a, i, i)?;
    }
    beta.iter().all(|v| v.is_finite()).then_some(beta)
}

fn seasonal_point(
    series: &[Option<f64>],
    t: usize,
    p: &SeasonalParams,
    caches: &mut Caches,
    warm: &mut Option<(Design, Vec<f64>)>,
) -> Option<Point> {
    let x = value(series, t)?;
    let (mu, phi) = match history(series, t, p, caches.origin)? {
        History::Zero => (0.0, 1.0),
        History::Data(design, days, y) => {
            let cache = caches.for_design(design)?;
            cache.fill(&days);
            cache.fill(&[t]);
            // Start from the previous day's fit: a neighbouring window's optimum is a couple of
            // Newton steps from this one's.
            let start = warm
                .as_ref()
                .filter(|(d, _)| *d == design)
                .map(|(_, beta)| beta.as_slice());
            let fitted = fit(cache, days, y, p, start)?;
            let mu = cache.get(t)?.eta(&fitted.coefficients).exp();
            let phi = fitted.dispersion;
            *warm = Some((design, fitted.coefficients));
            (mu, phi)
        }
    };
    if !mu.is_finite() {
        return None;
    }
    let threshold = upper_quantile(mu, phi, p.alpha);
    let sd = (phi * mu).sqrt();
    let score = if sd > 0.0 { (x - mu) / sd } else { x - mu };
    // A fit on counts near the largest accepted (1e12) can overflow its variance: no
    // threshold, so no point that day (as a day without enough history).
    if !threshold.is_finite() || !score.is_finite() {
        return None;
    }
    Some(Point {
        day: t,
        observed: x,
        expected: mu,
        threshold,
        score,
        alert: x > threshold,
    })
}

/// The smallest integer `k ≥ 0` with `P(X ≤ k) ≥ 1 − alpha` for `X` negative binomial with mean
/// `mu` and variance `phi·mu` (Poisson when `phi ≤ 1 + 1e-9`); see the module docs.
pub fn upper_quantile(mu: f64, phi: f64, alpha: f64) -> f64 {
    if mu.is_nan() || mu <= 0.0 {
        return 0.0;
    }
    let phi = if phi.is_finite() { phi.max(1.0) } else { 1.0 };
    let sd = (phi * mu).sqrt();
    let target = 1.0 - alpha;
    if mu + 50.0 * sd <= EXACT_QUANTILE_TERMS {
        let poisson = phi <= 1.0 + 1e-9;
        // log P(X = 0), and the ratio P(k+1)/P(k).
        let (mut log_p, q) = if poisson {
            (-mu, 0.0)
        } else {
            let q = (phi - 1.0) / phi;
            // r·ln(1/φ) with r = μ/(φ − 1).
            (-mu * (phi - 1.0).ln_1p() / (phi - 1.0), q)
        };
        let mut cdf = 0.0;
        let last = (mu + 50.0 * sd + 50.0).ceil();
        let mut k = 0.0;
        while k <= last {
            cdf += log_p.exp();
            if cdf >= target {
                return k;
            }
            let ratio = if poisson {
                mu / (k + 1.0)
            } else {
                // (k + r)·q/(k + 1), with r·q = μ/φ.
                (k * q + mu / phi) / (k + 1.0)
            };
            log_p += ratio.ln();
            k += 1.0;
        }
        // Rounding kept the sum just below the target: the tail beyond is negligible.
        return last;
    }
    let z = normal_quantile(target);
    let skew = (2.0 * phi - 1.0) / sd;
    (mu + sd * (z + skew * (z * z - 1.0) / 6.0)).ceil().max(0.0)
}

/// The standard normal quantile: Acklam's rational approximation refined by one Halley step on
/// `libm::erfc` (relative error near machine precision).
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return if p >= 1.0 {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        };
    }
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let poly = |c: &[f64], x: f64| c.iter().fold(0.0, |acc, &v| acc * x + v);
    let low = 0.02425;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        poly(&C, q) / (poly(&D, q) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        poly(&A, r) * q / (poly(&B, r) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -poly(&C, q) / (poly(&D, q) * q + 1.0)
    };
    // Halley refinement: e = Φ(x) − p.
    let e = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

#[cfg(test)]
mod tests;
